"""ARKit ground truth onto LSL: a Live Link Face UDP receiver and a take player.

* ``LiveLinkReceiver`` listens for the iPhone app's UDP packets (asyncio) and publishes each
  frame on an LSL ``Blendshapes`` outlet (61 float32 channels, ``desc/source = "arkit"``), with
  timestamps derived from the packet's frame time (``FrameClock``, see capture/ARKIT.md).
* ``replay_take`` plays a Live Link Face CSV take in real time (or faster) as a live LSL
  ``Blendshapes`` stream, or as Live Link Face packets sent to a UDP port (a stand-in for the
  phone).

Both are importable and run in-process (tests, ``imusic hybrid``, ``imusic demo``); ``imusic
arkit`` is their command-line face. Malformed datagrams never stop the receiver: they are
counted and dropped.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imusic.capture.livelink import (
    DEFAULT_PORT,
    LiveLinkPacket,
    LiveLinkPacketError,
    UnsupportedVersionError,
    build_packet,
    frame_time_fields,
    parse_packet,
)
from imusic.capture.livelink_csv import LiveLinkTake
from imusic.firmware_bridge.streams import BLENDSHAPES_TYPE, blendshapes_info  # noqa: F401

STREAM_TYPE = BLENDSHAPES_TYPE
NOMINAL_RATE_HZ = 60.0

DEFAULT_LATENCY_S = 0.050
"""Assumed time from the phone camera's capture of a frame to the packet's arrival here
(camera exposure and readout, ARKit face tracking, the app, Wi-Fi). Not measured by us: a
typical figure; ``imusic sync`` estimates the residual IMU/ARKit lag from the data anyway."""

RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
"""UDP receive buffer asked for (about 10 s of packets at 60 Hz with kernel overhead)."""

SMOOTHING_WINDOW_S = 10.0
"""Window of the running minimum of (arrival - frame time) in ``FrameClock``."""

NO_PACKETS_WARNING_S = 5.0
"""Seconds of listening without a single datagram after which ``imusic arkit`` says why."""


def no_packets_hint(port: int) -> str:
    """What to check when no Live Link Face packet arrives on ``port`` (one line)."""
    return (f"no Live Link Face packets on udp port {port}: in the app choose the 'Live Link "
            "(ARKit)' mode (the 'MetaHuman Animator' mode sends no blendshape packets), add this "
            f"machine's IP address with port {port} as a target under Settings > Live Link, keep "
            f"the phone on the same network, and let UDP {port} through the firewall")


# --------------------------------------------------------------------------- LSL outlet


# ``blendshapes_info`` (the one builder of the Blendshapes stream) lives in
# firmware_bridge.streams; it is imported above and stays importable from here.


# --------------------------------------------------------------------------- timestamps


class FrameClock:
    """Maps the phone's frame times onto the local LSL clock without network jitter.

    For each packet ``o = arrival - frame_time`` is the phone-to-local clock offset plus the
    transport delay. Delay only ever adds, so the running minimum of ``o`` over the last
    ``window_s`` seconds is the offset plus the smallest recent delay; drift between the
    clocks is followed as old minima leave the window. The stamp is
    ``frame_time + min(o) - latency_s``: spaced exactly as the frame times, and placed at the
    assumed capture instant. A frame time that goes backwards (app restarted, timecode
    source changed) resets the estimate.
    """

    def __init__(self, latency_s: float = DEFAULT_LATENCY_S,
                 window_s: float = SMOOTHING_WINDOW_S) -> None:
        self.latency_s = float(latency_s)
        self.window_s = float(window_s)
        self._mins: collections.deque[tuple[float, float]] = collections.deque()
        self._last_frame_time: float | None = None
        self.resets = 0

    def stamp(self, frame_time: float, arrival: float) -> float:
        """The LSL timestamp of a frame captured at ``frame_time`` (phone clock, s) that
        arrived at ``arrival`` (``pylsl.local_clock()``)."""
        if self._last_frame_time is not None and frame_time < self._last_frame_time:
            self._mins.clear()
            self.resets += 1
        self._last_frame_time = frame_time
        o = arrival - frame_time
        # Monotonic deque: entries increase in offset, so the front is the window minimum.
        while self._mins and self._mins[-1][1] >= o:
            self._mins.pop()
        self._mins.append((arrival, o))
        while self._mins[0][0] < arrival - self.window_s:
            self._mins.popleft()
        return frame_time + self._mins[0][1] - self.latency_s

    @property
    def offset(self) -> float | None:
        """Current estimate of (local clock - phone clock) including the minimum delay."""
        return self._mins[0][1] if self._mins else None


# --------------------------------------------------------------------------- receiver


@dataclass
class ReceiverStats:
    """Counters of a ``LiveLinkReceiver``."""

    datagrams: int = 0         # everything that arrived
    pushed: int = 0            # frames published on LSL
    no_face: int = 0           # valid packets without values (face lost)
    malformed: int = 0         # dropped: not a well-formed v6 packet
    unsupported: int = 0       # dropped: another protocol version
    other_subject: int = 0     # dropped: a second phone / subject on the same port
    device_id: str = ""
    subject: str = ""
    last_error: str = ""
    last_frame_number: int | None = None
    rate: float | None = None
    senders: set = field(default_factory=set)


class LiveLinkReceiver(asyncio.DatagramProtocol):
    """Receives Live Link Face packets on a UDP port and publishes them on LSL.

    Use ``async with LiveLinkReceiver(port=0, name=...) as rx:`` (``rx.port`` is the bound
    port) or ``await rx.start()`` / ``rx.close()``. The LSL outlet is created when the first
    packet arrives, so that its ``source_id`` can be the phone's device id
    (``livelink:<device id>``) and LSL can re-attach to it after a restart. The receiver locks
    onto the first subject it hears (or ``subject`` when given) and counts packets from others.
    No-face packets push nothing (the gap in the stream is the face loss) and are counted.
    ``on_frame(packet, timestamp)`` is called for each frame published (for in-process users).
    """

    def __init__(self, *, name: str = "ARKit", host: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 subject: str | None = None, latency_s: float = DEFAULT_LATENCY_S,
                 source_id: str | None = None, publish: bool = True,
                 on_frame: Callable[[LiveLinkPacket, float], None] | None = None) -> None:
        self.name, self.host, self.requested_port = name, host, port
        self.subject = subject
        self.source_id = source_id
        self.publish = publish
        self.on_frame = on_frame
        self.clock = FrameClock(latency_s)
        self.stats = ReceiverStats()
        self.outlet = None
        self.port: int | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._device: str | None = None

    # -- lifecycle
    async def start(self) -> int:
        """Bind the UDP socket; returns the bound port."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self, local_addr=(self.host, self.requested_port), family=socket.AF_INET)
        except OSError as err:
            raise OSError(
                f"cannot listen for Live Link Face on UDP {self.host}:{self.requested_port}: "
                f"{err.strerror or err}; pick another port with --listen PORT (and set it as the "
                "target port in the app) or stop the program that holds it") from err
        self._transport = transport
        sock = transport.get_extra_info("socket")
        try:  # room for a burst after a Wi-Fi stall (the kernel caps it at rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass
        self.port = transport.get_extra_info("sockname")[1]
        return self.port

    def close(self) -> None:
        """Close the socket and the outlet."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.outlet = None  # pylsl destroys the outlet when the object goes

    async def __aenter__(self) -> "LiveLinkReceiver":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- protocol
    def connection_made(self, transport) -> None:  # noqa: D401 - asyncio callback
        self._transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        """Parse, stamp and publish one datagram; bad ones are counted and dropped."""
        import pylsl

        arrival = pylsl.local_clock()
        self.stats.datagrams += 1
        try:
            packet = parse_packet(data)
        except UnsupportedVersionError as err:
            self.stats.unsupported += 1
            self.stats.last_error = f"{addr[0]}: {err}"
            return
        except LiveLinkPacketError as err:
            self.stats.malformed += 1
            self.stats.last_error = f"{addr[0]}: {err}"
            return
        self.handle_packet(packet, arrival, sender=addr[0])

    def handle_packet(self, packet: LiveLinkPacket, arrival: float, sender: str = "") -> float | None:
        """Publish one parsed packet that arrived at ``arrival`` (LSL clock); returns its
        timestamp, or None when nothing was pushed."""
        if self.subject is not None and packet.subject != self.subject:
            self.stats.other_subject += 1
            return None
        if self._device is None:
            self._device = packet.device_id
            self.stats.device_id, self.stats.subject = packet.device_id, packet.subject
        elif packet.device_id != self._device:
            self.stats.other_subject += 1
            return None
        if sender:
            self.stats.senders.add(sender)
        self.stats.last_frame_number = packet.frame_number
        self.stats.rate = packet.rate
        # Stamp no-face frames too, so the clock estimate keeps running during face loss.
        ts = self.clock.stamp(packet.frame_time_s, arrival)
        if packet.values is None:
            self.stats.no_face += 1
            return None
        if self.publish:
            if self.outlet is None:
                self.outlet = self._make_outlet(packet)
            self.outlet.push_sample(packet.values, ts)
        self.stats.pushed += 1
        if self.on_frame is not None:
            self.on_frame(packet, ts)
        return ts

    def _make_outlet(self, packet: LiveLinkPacket):
        import pylsl

        info = blendshapes_info(
            self.name, "arkit", self.source_id or f"livelink:{packet.device_id}",
            extra={"app": "Live Link Face", "device_id": packet.device_id,
                   "subject": packet.subject,
                   "timestamps": "phone frame time mapped to local_clock (running-min offset) "
                                 "minus assumed latency",
                   "assumed_latency_s": f"{self.clock.latency_s:.4f}"})
        return pylsl.StreamOutlet(info)

    def status_line(self) -> str:
        """One line for a live status display."""
        s = self.stats
        who = f"{s.subject or '-'} ({s.device_id[:12] or 'no phone yet'})"
        return (f"arkit {self.name} udp:{self.port} from {who}: {s.pushed} frames, "
                f"{s.no_face} no-face, {s.malformed + s.unsupported} bad, "
                f"{s.other_subject} other-subject, frame {s.last_frame_number}")


# --------------------------------------------------------------------------- replay


@dataclass
class ReplayStats:
    """Counters of a replay."""

    frames: int = 0       # frames sent (values)
    no_face: int = 0      # face-lost rows (nothing pushed on LSL; a no-face packet on UDP)
    loops: int = 0        # completed passes over the take
    position_s: float = 0.0


class UdpSender:
    """A connected UDP socket that sends Live Link Face packets (context manager)."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.connect((host, port))

    def send(self, packet: LiveLinkPacket) -> None:
        """Send one packet; a refused port (nobody listening yet) is not an error for UDP."""
        try:
            self.sock.send(build_packet(packet))
        except ConnectionRefusedError:
            pass

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> "UdpSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, or ``[v6]:PORT``) to a tuple; ``ValueError`` otherwise."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:11111)")
    return host, int(port)


async def replay_take(
    take: LiveLinkTake,
    *,
    outlet=None,
    udp: tuple[str, int] | None = None,
    speed: float = 1.0,
    loop: bool = False,
    stop: asyncio.Event | None = None,
    device_id: str = "IMUSIC-REPLAY",
    subject: str = "replay",
    stats: ReplayStats | None = None,
    stamp_offset_s: float = 0.0,
) -> ReplayStats:
    """Play ``take`` in real time divided by ``speed``, to an LSL ``outlet`` (a
    ``pylsl.StreamOutlet`` made with ``blendshapes_info``) and/or as Live Link Face packets to
    ``udp = (host, port)``.

    LSL samples are stamped with their scheduled play time on ``local_clock()``; face-lost
    rows push nothing. UDP packets carry the take's timecode as the frame time (at 60/1, as the
    app does) and face-lost rows become no-face packets. With ``loop`` the take repeats (the
    frame time keeps counting up) until ``stop`` is set. ``stamp_offset_s`` is added to every
    LSL timestamp (tests use it to inject a known ARKit/IMU lag). Returns the counters
    (``stats`` may be passed in to watch progress).
    """
    import pylsl

    if outlet is None and udp is None:
        raise ValueError("replay_take needs an LSL outlet, a UDP target, or both")
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if take.n_frames == 0:
        raise ValueError(f"{take.path}: the take has no frames to replay")
    stats = stats if stats is not None else ReplayStats()
    stop = stop if stop is not None else asyncio.Event()
    period = 1.0 / take.fps if np.isfinite(take.fps) and take.fps > 0 else 1.0 / NOMINAL_RATE_HZ
    span = take.duration + period  # one pass, so a loop continues at the take's frame rate
    sender = UdpSender(*udp) if udp is not None else None
    values = np.ascontiguousarray(take.values, dtype=np.float32)
    try:
        t0 = pylsl.local_clock()
        lap = 0
        while not stop.is_set():
            for i in range(take.n_frames):
                offset = lap * span + float(take.t[i])
                due = t0 + offset / speed
                wait = due - pylsl.local_clock()
                if wait > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=wait)
                    except asyncio.TimeoutError:
                        pass
                elif i % 64 == 0:
                    await asyncio.sleep(0)  # far behind (high speed): still let others run
                if stop.is_set():
                    return stats
                found = bool(take.face_found[i])
                if outlet is not None and found:
                    outlet.push_sample(values[i], due + stamp_offset_s)
                if sender is not None:
                    n, sub, num, den = frame_time_fields(take.start_timecode_s + offset)
                    sender.send(LiveLinkPacket(device_id, subject, n, sub, num, den,
                                               values[i] if found else None))
                stats.frames += found
                stats.no_face += not found
                stats.position_s = float(take.t[i])
            stats.loops += 1
            lap += 1
            if not loop:
                break
    finally:
        if sender is not None:
            sender.close()
    return stats
