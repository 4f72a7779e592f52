"""Serial transport: USB CDC or UART via pyserial-asyncio-fast, on a real port (or a pty).

The wearable's USB serial port (``/dev/ttyACM0``, ``/dev/ttyUSB0``, ``COM3``) carries the
protocol byte stream both ways at 921 600 baud (USB CDC ignores the baud rate). A device being
unplugged shows as ``TransportClosed`` from ``read()``; the session then reopens the path as
soon as ``present()`` says it is back (the port's device node, or a pty's symlink target,
exists again).

Opening keeps what the device sent before it: pyserial's ``open()`` flushes the input queue
(``tcflush(TCIFLUSH)``), which after a re-plug threw away the frames a streaming wearable had
already sent to the new port. Those are real instants, with their own device times, so
``_KeepInputSerial`` opens the port without that flush; the decoder drops any partial frame
at the front.

``arrival_age()`` tells the session how long ago the bytes of the last ``read()`` reached the
host: the time of the newest ``data_received`` they were part of (no byte in the read arrived
later), not the time the read loop got round to them, which on a loaded machine is later by
whatever else the event loop ran first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import serial
import serial_asyncio_fast

from imusic.firmware_bridge.transports.base import Transport, TransportClosed, TransportError

DEFAULT_BAUD = 921_600
READ_SIZE = 4096


class _KeepInputSerial(serial.Serial):
    """pyserial's port, except that ``open()`` keeps the bytes already waiting in the input
    queue (an explicit ``reset_input_buffer()`` still flushes)."""

    def __init__(self, *args, **kwargs) -> None:
        self._opening = False
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        """Open the port as pyserial does, without discarding what arrived before."""
        self._opening = True
        try:
            super().open()
        finally:
            self._opening = False

    def _reset_input_buffer(self) -> None:
        if not self._opening:
            super()._reset_input_buffer()


class _StampedProtocol(asyncio.StreamReaderProtocol):
    """A stream reader's protocol that notes when bytes last reached it (monotonic s)."""

    def __init__(self, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(reader, loop=loop)
        self.last_received = 0.0
        """Monotonic time of the newest bytes handed to the reader."""

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        super().data_received(data)


class SerialTransport(Transport):
    """The byte stream of one serial port."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD) -> None:
        self.port = port
        self.baudrate = baudrate
        self.name = f"serial:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._protocol: _StampedProtocol | None = None
        self._read_stamp = 0.0   # monotonic time the bytes of the last read() had all arrived

    async def open(self) -> None:
        """Open the port (raises TransportError naming the port and what to check)."""
        loop = asyncio.get_running_loop()
        try:
            port = await asyncio.to_thread(_KeepInputSerial, self.port, self.baudrate)
        except (serial.SerialException, OSError) as err:
            raise TransportError(
                f"cannot open serial port {self.port}: {err}. Check the path with "
                f"'imusic devices', that the wearable is plugged in, and that you may use it "
                f"(on Linux: membership of the 'dialout' group)") from err
        reader = asyncio.StreamReader(loop=loop)
        protocol = _StampedProtocol(reader, loop)
        transport, _ = await serial_asyncio_fast.connection_for_serial(
            loop, lambda: protocol, port)
        self._reader, self._protocol = reader, protocol
        self._writer = asyncio.StreamWriter(transport, protocol, reader, loop)

    def present(self) -> bool:
        """Whether the port's path leads to a device now (a pulled USB port's node, or a
        symlink whose target, is gone): cheap, for the session to reopen a re-plugged port
        as soon as it is back."""
        return os.path.exists(self.port)

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
        if self._protocol is not None:
            self._read_stamp = self._protocol.last_received
        return data

    def arrival_age(self) -> float:
        """Seconds since the bytes the last read() returned had all reached the host."""
        return max(0.0, time.monotonic() - self._read_stamp) if self._read_stamp else 0.0

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
