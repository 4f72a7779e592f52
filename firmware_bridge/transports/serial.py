"""Serial transport: USB CDC or UART via pyserial-asyncio-fast, on a real port (or a pty).

The wearable's USB serial port (``/dev/ttyACM0``, ``/dev/ttyUSB0``, ``COM3``) carries the
protocol byte stream both ways at 921 600 baud (USB CDC ignores the baud rate). A device being
unplugged shows as ``TransportClosed`` from ``read()``; the session then reopens the path.
"""

from __future__ import annotations

import asyncio
import contextlib

from firmware_bridge.transports.base import Transport, TransportClosed, TransportError

DEFAULT_BAUD = 921_600
READ_SIZE = 4096


class SerialTransport(Transport):
    """The byte stream of one serial port."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD) -> None:
        self.port = port
        self.baudrate = baudrate
        self.name = f"serial:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Open the port (raises TransportError naming the port and what to check)."""
        import serial
        import serial_asyncio_fast

        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port, baudrate=self.baudrate)
        except (serial.SerialException, OSError) as err:
            raise TransportError(
                f"cannot open serial port {self.port}: {err}. Check the path with "
                f"'imusic devices', that the wearable is plugged in, and that you may use it "
                f"(on Linux: membership of the 'dialout' group)") from err

    @property
    def is_open(self) -> bool:
        """The port is open and has not reported its end."""
        return self._writer is not None and not self._writer.is_closing()

    async def read(self) -> bytes:
        """The next bytes from the port; TransportClosed when the device went away."""
        if self._reader is None:
            raise TransportClosed(f"{self.name} is not open")
        try:
            data = await self._reader.read(READ_SIZE)
        except (OSError, ConnectionError) as err:
            raise TransportClosed(f"{self.name} went away: {err}") from err
        if not data:
            raise TransportClosed(f"{self.name} closed (device unplugged or reset)")
        return data

    async def write(self, data: bytes) -> None:
        """Send bytes to the device."""
        if self._writer is None or self._writer.is_closing():
            raise TransportClosed(f"{self.name} is not open")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, ConnectionError) as err:
            raise TransportClosed(f"{self.name} went away: {err}") from err

    async def close(self) -> None:
        """Close the port; idempotent."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
