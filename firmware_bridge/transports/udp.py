"""Wi-Fi UDP transport: the paper's ESP32 wearables send datagrams to the host.

The host listens on a configurable address and port. Each datagram holds one or more whole
frames; devices are told apart by the ``device_id`` in each frame (the Decoder's job), and the
host learns each device's address from the datagrams it sends, to send commands back (to every
device heard recently, or to a fixed ``peer``). A device that is not streaming still sends
STATUS about once a second (PROTOCOL.md), which is how the host first hears it.

Each datagram keeps the kernel's receive time (``SO_TIMESTAMPNS``, where the platform has
it): ``arrival_age()`` tells the session how long ago the datagram it just read reached the
host, so that a host busy for a while (loading a rig, running a model) does not make the
frames it catches up on look late to the clock fit. ``last_sender`` is the datagram's source
address. With ``allow`` (``--allow HOST``) datagrams from any other host are dropped and
counted in ``refused``.

The socket stays bound across device silences (``persistent``): a session re-runs its
handshake instead of reopening it, so the device's target port never changes under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import socket
import struct
import sys
import time
from typing import Iterable

from imusic.firmware_bridge.transports.base import Transport, TransportClosed, TransportError

DEFAULT_PORT = 9000
"""The host port wearables send to unless configured otherwise."""
MAX_DATAGRAM = 8192
"""Datagrams longer than this are dropped and counted (a frame is at most ~2 kB)."""
QUEUE_LIMIT = 4096
"""Datagrams buffered for read(); beyond this the oldest are dropped and counted."""
PEER_TIMEOUT_S = 30.0
"""Commands go to peers heard within this many seconds."""
MAX_AGE_S = 30.0
"""A kernel receive time further back than this (or in the future: the wall clock was set)
is not trusted: the datagram is taken as arriving when read."""
READS_PER_WAKE = 256
"""Datagrams read per readiness callback at most, so that one busy socket cannot starve the
event loop."""
_TIMESTAMP_OPT = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") and
                         platform.machine() in ("x86_64", "aarch64", "i686", "armv7l") else None)
"""SO_TIMESTAMPNS (= SCM_TIMESTAMPNS; Python names it on few platforms: Linux's value on the
common architectures), or None where receive times are taken when a datagram is read."""
_TIMESPEC = (struct.Struct("@qq"), struct.Struct("@ll"))


def resolve_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """The IP addresses of ``hosts`` (names or addresses), for ``allow``; raises TransportError
    naming a host that does not resolve."""
    out: set[str] = set()
    for host in hosts:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as err:
            raise TransportError(f"--allow {host}: cannot resolve it ({err}): give the "
                                 f"wearable's IP address") from err
        out.update(str(i[4][0]) for i in infos)
    return frozenset(out)


def _kernel_time(ancdata: list) -> float | None:
    """The receive time (s, wall clock) in a datagram's ancillary data, or None."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _TIMESTAMP_OPT:
            for spec in _TIMESPEC:
                if len(data) >= spec.size:
                    sec, nsec = spec.unpack_from(data)
                    return sec + nsec * 1e-9
    return None


def _age(stamp: float | None) -> float:
    """Seconds since a kernel receive time; 0 when unknown or not to be trusted."""
    if stamp is None:
        return 0.0
    age = time.time() - stamp
    return age if 0.0 <= age <= MAX_AGE_S else 0.0


class UdpTransport(Transport):
    """A bound UDP socket receiving frames from one or more devices."""

    datagram = True
    persistent = True

    def __init__(self, port: int, host: str = "0.0.0.0", peer: tuple[str, int] | None = None,
                 max_datagram: int = MAX_DATAGRAM, allow: Iterable[str] | None = None) -> None:
        self.host, self.port, self.peer = host, port, peer
        self.max_datagram = max_datagram
        self.allow_hosts = tuple(allow) if allow else ()
        """Hosts (names or addresses) whose datagrams are accepted; empty: any."""
        self.allowed: frozenset[str] | None = None
        """Their addresses, resolved when the socket is opened (None: any sender)."""
        self.name = f"udp:{host}:{port}"
        self.peers: dict[tuple, float] = {}
        """Address -> monotonic time last heard."""
        self.oversize = 0
        self.overflow = 0
        self.errors = 0
        self.datagrams = 0
        self.refused = 0
        """Datagrams dropped because their sender is not in ``allow``."""
        self.last_sender: tuple | None = None
        self._last_stamp: float | None = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._sock: socket.socket | None = None
        self.queue_addresses = False
        """Queue (address, datagram, receive time) for ``read_from`` (a UdpHub) instead."""

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port) (the real port when 0 was asked)."""
        if self._sock is None:
            raise TransportError(f"{self.name} is not open")
        return self._sock.getsockname()[:2]

    async def open(self) -> None:
        """Bind the socket (raises TransportError naming the address and the fix); nothing to
        do when it is bound already."""
        if self._sock is not None:
            return
        if self.allow_hosts:
            self.allowed = resolve_hosts(self.allow_hosts)
        try:
            family, _, _, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as err:
            raise TransportError(f"cannot listen on UDP {self.host}:{self.port}: {err}") from err
        try:
            sock.setblocking(False)
            sock.bind(addr)
        except OSError as err:
            sock.close()
            raise TransportError(
                f"cannot listen on UDP {self.host}:{self.port}: {err}. Is another 'imusic "
                f"stream' using the port? Pick another with --udp PORT and point the wearable "
                f"at it") from err
        if _TIMESTAMP_OPT is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _TIMESTAMP_OPT, 1)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)
        host, port = self.address
        self.name = f"udp:{host}:{port}"

    def _on_readable(self) -> None:
        sock = self._sock
        for _ in range(READS_PER_WAKE):
            if sock is None:
                return
            try:
                data, anc, _, addr = sock.recvmsg(self.max_datagram + 1, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1   # e.g. ICMP port unreachable after sending to a gone peer
                return
            self._received(data, addr, _kernel_time(anc))

    def _received(self, data: bytes, addr: tuple, stamp: float | None = None) -> None:
        if len(data) > self.max_datagram:
            self.oversize += 1
            return
        if self.allowed is not None and addr[0] not in self.allowed:
            self.refused += 1
            return
        self.datagrams += 1
        self.peers[addr] = time.monotonic()
        if self._queue.qsize() >= QUEUE_LIMIT:
            self._queue.get_nowait()
            self.overflow += 1
        # A datagram starts on a frame boundary: the leading 0x00 makes sure a truncated frame
        # at the end of the previous datagram cannot swallow this one's first frame.
        self._queue.put_nowait((addr, data if self.queue_addresses else b"\x00" + data,
                                time.time() if stamp is None else stamp))

    async def read_from(self) -> tuple[tuple, bytes, float]:
        """The next datagram, the address it came from and its receive time (wall clock s),
        with ``queue_addresses``."""
        item = await self._queue.get()
        if item is None:
            raise TransportClosed(f"{self.name} closed")
        return item

    @property
    def is_open(self) -> bool:
        """The socket is bound."""
        return self._sock is not None

    async def read(self) -> bytes:
        """The next datagram's bytes (its sender in ``last_sender``)."""
        if self._sock is None:
            raise TransportClosed(f"{self.name} is not open")
        item = await self._queue.get()
        if item is None:
            raise TransportClosed(f"{self.name} closed")
        self.last_sender, data, self._last_stamp = item
        return data

    def arrival_age(self) -> float:
        """Seconds since the datagram last read reached this host (kernel receive time)."""
        return _age(self._last_stamp)

    def send_to(self, data: bytes, addr: tuple) -> None:
        """Send one datagram (a full socket buffer drops it, counted in ``errors``)."""
        if self._sock is None:
            raise TransportClosed(f"{self.name} is not open")
        try:
            self._sock.sendto(data, addr)
        except OSError:
            self.errors += 1

    async def write(self, data: bytes) -> None:
        """Send a datagram to the configured peer, or to every device heard recently (a
        command carries its device_id, so others ignore it). Without any, nothing is sent:
        the session's handshake retries until the device has been heard."""
        if self._sock is None:
            raise TransportClosed(f"{self.name} is not open")
        now = time.monotonic()
        targets = [self.peer] if self.peer else [
            a for a, t in self.peers.items() if now - t < PEER_TIMEOUT_S]
        for addr in targets:
            self.send_to(data, addr)

    async def close(self) -> None:
        """Unbind; a pending read() raises TransportClosed. Idempotent."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            self._queue.put_nowait(None)


class DeviceChannel(Transport):
    """One device's share of a ``UdpHub``: the frames carrying its device id, and commands
    sent to the addresses it sends from. Persistent, like the socket under it."""

    datagram = True
    persistent = True

    def __init__(self, hub: UdpHub, device_id: int) -> None:
        self.hub, self.device_id = hub, device_id
        self.name = f"{hub.link.name}#{device_id:08x}"
        self.refused = 0
        """Always 0: the hub's socket counts refused senders (``hub.link.refused``)."""
        self.addresses: dict[tuple, float] = {}
        self.last_sender: tuple | None = None
        self._last_stamp: float | None = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._open = True

    async def open(self) -> None:
        """Nothing to do: the hub's socket is bound."""
        if not self.hub.link.is_open:
            raise TransportClosed(f"{self.name}: the UDP socket is closed")

    @property
    def is_open(self) -> bool:
        """The hub's socket is bound and this channel not closed."""
        return self._open and self.hub.link.is_open

    def _put(self, item: tuple | None) -> None:
        """Queue (sender, frame bytes, receive time), or None to end reads."""
        if item is not None and self._queue.qsize() >= QUEUE_LIMIT:
            self._queue.get_nowait()
            self.hub.link.overflow += 1
        self._queue.put_nowait(item)

    async def read(self) -> bytes:
        """The next frames from this device (their sender in ``last_sender``)."""
        item = await self._queue.get()
        if item is None:
            raise TransportClosed(f"{self.name} closed")
        self.last_sender, data, self._last_stamp = item
        return data

    def arrival_age(self) -> float:
        """Seconds since the datagram last read reached this host (kernel receive time)."""
        return _age(self._last_stamp)

    async def write(self, data: bytes) -> None:
        """Send to the addresses this device was heard from (recently)."""
        link = self.hub.link
        if not link.is_open:
            raise TransportClosed(f"{self.name}: the UDP socket is closed")
        now = time.monotonic()
        for addr, t in self.addresses.items():
            if now - t < PEER_TIMEOUT_S:
                link.send_to(data, addr)

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

    def __init__(self, port: int, host: str = "0.0.0.0", max_devices: int = 64,
                 allow: Iterable[str] | None = None) -> None:
        self.link = UdpTransport(port, host, allow=allow)
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
            addr, data, stamp = await self.link.read_from()
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
                    ch._put((addr, b"\x00" + piece + b"\x00", stamp))
