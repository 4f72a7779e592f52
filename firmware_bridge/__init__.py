"""Talking to devices: wire protocol, async transports, device sessions, clock mapping,
the IMU LSL outlet and the device emulator."""
