"""The async Transport interface every link (serial, BLE, UDP) implements.

A transport moves the wire protocol's byte stream; it knows nothing about frames. Use it as
an async context manager so it always closes::

    async with SerialTransport("/dev/ttyUSB0") as link:
        await link.write(encode(CmdGetInfo(), 0))
        chunk = await link.read()          # some bytes, any chunking

``read()`` raises ``TransportClosed`` when the link is gone (device unplugged, BLE
disconnect, closed by us); a device session then reconnects by opening a fresh transport from
its factory (``TransportFactory``).
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Callable


class TransportError(OSError):
    """A link could not be opened or used; the message names the link and the fix."""


class TransportClosed(TransportError):
    """The link went away (or was closed): open a fresh one to continue."""


class Transport(abc.ABC):
    """One open link to one or more devices, carrying the protocol byte stream.

    Subclasses implement ``open``, ``read``, ``write`` and ``close``. ``name`` names the link in
    errors and health lines (``serial:/dev/ttyUSB0``, ``udp:0.0.0.0:9000``, ``ble:AA:BB:..``).
    """

    name: str = "transport"
    datagram: bool = False
    """True where read() returns whole datagrams that each start on a frame boundary (UDP)."""
    persistent: bool = False
    """True where the link outlives a device's silence (a bound UDP socket): a session re-runs
    the handshake on it instead of closing and reopening it."""
    last_sender: tuple | None = None
    """Where the bytes the last read() returned came from (UDP: the datagram's source
    address); None where the link has one peer only."""

    def arrival_age(self) -> float:
        """Seconds since the bytes the last read() returned reached this host: the kernel's
        receive time where the link knows it (UDP), else 0 (taken as arriving now)."""
        return 0.0

    def present(self) -> bool | None:
        """Whether the device is there to be opened (a serial port's path exists), cheaply,
        without opening it; None where the link cannot tell (UDP, BLE). A session waiting to
        reopen a link reopens it as soon as a device that was absent is present again."""
        return None

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the link (raises TransportError naming the link and the fix)."""

    @abc.abstractmethod
    async def read(self) -> bytes:
        """Wait for the next chunk of bytes (never empty); raises TransportClosed at the end."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send bytes to the device(s) (raises TransportClosed if the link is gone)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the link; idempotent, never raises."""

    @property
    def is_open(self) -> bool:
        """Whether the link is usable now (subclasses refine it)."""
        return True

    async def __aenter__(self) -> "Transport":
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


TransportFactory = Callable[[], Transport]
"""Makes a fresh, unopened Transport for the same link (used to reconnect)."""
