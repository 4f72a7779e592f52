"""Wi-Fi UDP transport: the paper's ESP32 wearables send datagrams to the host.

The host listens on a configurable address and port. Each datagram holds one or more whole
frames; devices are told apart by the ``device_id`` in each frame (the Decoder's job), and the
host learns each device's address from the datagrams it sends, to send commands back (to every
device heard recently, or to a fixed ``peer``). A device that is not streaming still sends
STATUS about once a second (PROTOCOL.md), which is how the host first hears it.

The socket stays bound across device silences (``persistent``): a session re-runs its
handshake instead of reopening it, so the device's target port never changes under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from firmware_bridge.transports.base import Transport, TransportClosed, TransportError

DEFAULT_PORT = 9000
"""The host port wearables send to unless configured otherwise."""
MAX_DATAGRAM = 8192
"""Datagrams longer than this are dropped and counted (a frame is at most ~2 kB)."""
QUEUE_LIMIT = 4096
"""Datagrams buffered for read(); beyond this the oldest are dropped and counted."""
PEER_TIMEOUT_S = 30.0
"""Commands go to peers heard within this many seconds."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.owner.errors += 1  # e.g. ICMP port unreachable after sending to a gone peer


class UdpTransport(Transport):
    """A bound UDP socket receiving frames from one or more devices."""

    datagram = True
    persistent = True

    def __init__(self, port: int, host: str = "0.0.0.0", peer: tuple[str, int] | None = None,
                 max_datagram: int = MAX_DATAGRAM) -> None:
        self.host, self.port, self.peer = host, port, peer
        self.max_datagram = max_datagram
        self.name = f"udp:{host}:{port}"
        self.peers: dict[tuple, float] = {}
        """Address -> monotonic time last heard."""
        self.oversize = 0
        self.overflow = 0
        self.errors = 0
        self.datagrams = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        self._transport: asyncio.DatagramTransport | None = None
        self.queue_addresses = False
        """Queue (address, datagram) pairs for ``read_from`` (a UdpHub) instead of bytes."""

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port) (the real port when 0 was asked)."""
        if self._transport is None:
            raise TransportError(f"{self.name} is not open")
        return self._transport.get_extra_info("sockname")[:2]

    async def open(self) -> None:
        """Bind the socket (raises TransportError naming the address and the fix)."""
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port))
        except OSError as err:
            raise TransportError(
                f"cannot listen on UDP {self.host}:{self.port}: {err}. Is another 'imusic "
                f"stream' using the port? Pick another with --udp PORT and point the wearable "
                f"at it") from err
        host, port = self.address
        self.name = f"udp:{host}:{port}"

    def _received(self, data: bytes, addr: tuple) -> None:
        if len(data) > self.max_datagram:
            self.oversize += 1
            return
        self.datagrams += 1
        self.peers[addr] = time.monotonic()
        if self._queue.qsize() >= QUEUE_LIMIT:
            self._queue.get_nowait()
            self.overflow += 1
        # A datagram starts on a frame boundary: the leading 0x00 makes sure a truncated frame
        # at the end of the previous datagram cannot swallow this one's first frame.
        self._queue.put_nowait((addr, data) if self.queue_addresses else b"\x00" + data)

    async def read_from(self) -> tuple[tuple, bytes]:
        """The next datagram and the address it came from (with ``queue_addresses``)."""
        item = await self._queue.get()
        if item is None:
            raise TransportClosed(f"{self.name} closed")
        return item

    @property
    def is_open(self) -> bool:
        """The socket is bound."""
        return self._transport is not None and not self._transport.is_closing()

    async def read(self) -> bytes:
        """The next datagram's bytes."""
        if self._transport is None:
            raise TransportClosed(f"{self.name} is not open")
        data = await self._queue.get()
        if data is None:
            raise TransportClosed(f"{self.name} closed")
        return data

    async def write(self, data: bytes) -> None:
        """Send a datagram to the configured peer, or to every device heard recently (a
        command carries its device_id, so others ignore it). Without any, nothing is sent:
        the session's handshake retries until the device has been heard."""
        if self._transport is None or self._transport.is_closing():
            raise TransportClosed(f"{self.name} is not open")
        now = time.monotonic()
        targets = [self.peer] if self.peer else [
            a for a, t in self.peers.items() if now - t < PEER_TIMEOUT_S]
        for addr in targets:
            self._transport.sendto(data, addr)

    async def close(self) -> None:
        """Unbind; a pending read() raises TransportClosed. Idempotent."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self._queue.put_nowait(None)


class DeviceChannel(Transport):
    """One device's share of a ``UdpHub``: the frames carrying its device id, and commands
    sent to the addresses it sends from. Persistent, like the socket under it."""

    datagram = True
    persistent = True

    def __init__(self, hub: UdpHub, device_id: int) -> None:
        self.hub, self.device_id = hub, device_id
        self.name = f"{hub.link.name}#{device_id:08x}"
        self.addresses: dict[tuple, float] = {}
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._open = True

    async def open(self) -> None:
        """Nothing to do: the hub's socket is bound."""
        if not self.hub.link.is_open:
            raise TransportClosed(f"{self.name}: the UDP socket is closed")

    @property
    def is_open(self) -> bool:
        """The hub's socket is bound and this channel not closed."""
        return self._open and self.hub.link.is_open

    def _put(self, data: bytes | None) -> None:
        if data is not None and self._queue.qsize() >= QUEUE_LIMIT:
            self._queue.get_nowait()
            self.hub.link.overflow += 1
        self._queue.put_nowait(data)

    async def read(self) -> bytes:
        """The next frames from this device."""
        data = await self._queue.get()
        if data is None:
            raise TransportClosed(f"{self.name} closed")
        return data

    async def write(self, data: bytes) -> None:
        """Send to the addresses this device was heard from (recently)."""
        link = self.hub.link
        if link._transport is None or link._transport.is_closing():
            raise TransportClosed(f"{self.name}: the UDP socket is closed")
        now = time.monotonic()
        for addr, t in self.addresses.items():
            if now - t < PEER_TIMEOUT_S:
                link._transport.sendto(data, addr)

    async def close(self) -> None:
        """Stop reading this channel (the hub's socket stays); idempotent."""
        if self._open:
            self._open = False
            self._put(None)


class UdpHub:
    """One UDP port shared by several wearables: splits datagrams into frames and hands each
    to the ``DeviceChannel`` of the device id in its header; ``new_devices`` yields a channel
    for each device heard for the first time. Frames too damaged to name their device are
    counted in ``unroutable`` (a device's own decoder counts the rest)."""

    def __init__(self, port: int, host: str = "0.0.0.0", max_devices: int = 64) -> None:
        self.link = UdpTransport(port, host)
        self.max_devices = max_devices
        self.channels: dict[int, DeviceChannel] = {}
        self.new_devices: asyncio.Queue[DeviceChannel] = asyncio.Queue()
        self.unroutable = 0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> UdpHub:
        self.link.queue_addresses = True
        await self.link.open()
        self._task = asyncio.create_task(self._route())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every channel and the socket; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        for ch in self.channels.values():
            await ch.close()
        await self.link.close()

    async def _route(self) -> None:
        from cobs import cobs

        while True:
            addr, data = await self.link.read_from()
            now = time.monotonic()
            for piece in data.split(b"\x00"):
                if not piece:
                    continue
                try:
                    head = cobs.decode(piece)
                except cobs.DecodeError:
                    self.unroutable += 1
                    continue
                if len(head) < 6:
                    self.unroutable += 1
                    continue
                dev = int.from_bytes(head[2:6], "little")
                ch = self.channels.get(dev)
                if ch is None:
                    if len(self.channels) >= self.max_devices:
                        self.unroutable += 1
                        continue
                    ch = self.channels[dev] = DeviceChannel(self, dev)
                    self.new_devices.put_nowait(ch)
                ch.addresses[addr] = now
                if ch._open:
                    ch._put(b"\x00" + piece + b"\x00")
