"""Where the live pipelines' inputs come from, and the LSL reading they share.

* :class:`LinkOptions`: which IMU source a pipeline reads, a wearable (serial, UDP, BLE) or an
  ``IMU`` LSL stream; :func:`device_session` makes the device session for a wearable,
  :func:`open_imu_inlet` the inlet for a stream.
* :func:`open_inlet`: one LSL stream found by an XPath predicate, or one clear line saying
  what is missing and how to start it.
* :func:`pull_ready`: the one way the pipelines read an inlet. It blocks until a sample
  arrives (or the timeout), then takes everything already waiting. An inlet's own
  ``pull_chunk(timeout=T)`` returns early only when ``max_samples`` are in; with fewer it waits
  the whole ``T``, which held every chunk back by up to the 50 ms the pipelines polled with.
* :class:`PacketReader`: an ``IMU`` stream read a whole device packet at a time (what
  ``imusic live --lsl`` reads), so that a frame never counts from a packet's first sample
  while the rest is microseconds behind.
* :class:`FrameBuffer` and :func:`read_frames`: the newest Blendshapes frames of a stream
  (ARKit for the hybrid's fuser, the twin's truth for the demo's live error).
* :class:`MarkerWatch` and :func:`is_calibration_marker`: every ``Markers`` stream, read for
  the markers that ask the live model to take the neutral pose again.

``imusic.pipelines`` puts these together with the live loop (``imusic.live_loop``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from imusic.firmware_bridge import streams
from imusic.firmware_bridge.device import DeviceSession, SessionConfig
from imusic.firmware_bridge.transports import link_factory
from imusic.hardware.rig import load_rig
from imusic.hardware.vocabulary import N_BLENDSHAPES


@dataclass
class LinkOptions:
    """Where the IMU samples come from: exactly one of serial, udp, ble, lsl."""

    serial: str | None = None
    udp: int | None = None
    udp_host: str = "0.0.0.0"
    ble: str | None = None
    lsl: str | None = None
    """Name or source_id of an IMU LSL stream ('' for the first IMU stream found)."""
    rig: str = "auto"
    baud: int = 921600
    allow: tuple[str, ...] = ()
    """With udp: the only hosts datagrams are accepted from (empty: any)."""
    lsl_settle_s: float = 1.0
    """With a bare ``--lsl`` (no name): seconds spent looking for other IMU streams once one is
    found; with several, none is chosen (the user names one)."""

    def describe(self) -> str:
        """The link in words, for messages."""
        if self.serial:
            return f"serial {self.serial}"
        if self.udp is not None:
            return f"UDP {self.udp_host}:{self.udp}"
        if self.ble:
            return f"BLE {self.ble}"
        return f"LSL IMU stream {self.lsl or '(any)'}"


@dataclass
class ReadOptions:
    """How the pipelines wait on an inlet."""

    wait_s: float = 0.1
    """Longest a reader blocks for a first sample before it looks at its halt flag again
    (how long a stop may take; no latency: a sample ends the wait at once)."""
    max_chunk: int = 1024
    """Most samples taken in one read (a backlog is read in several)."""
    yield_before_drain: bool = True
    """Give up the core once between the first sample and taking the rest (see
    :func:`pull_ready`): without it, 7 % of reads of a two-sample packet took its first
    sample alone (measured on this 2-core machine; 0.3 % with it)."""


READ = ReadOptions()
"""The read options every pipeline uses."""


def device_session(link: LinkOptions, name: str | None) -> DeviceSession:
    """The device session for a wearable link (serial, UDP or BLE); ``name`` names its IMU
    stream (None: ``imusic-<serial>``)."""
    rig: Any = link.rig
    if rig and rig != "auto":
        rig = load_rig(rig)
    factory = link_factory(serial=link.serial, baud=link.baud, ble=link.ble, udp=link.udp,
                           udp_host=link.udp_host, allow=link.allow)
    return DeviceSession(factory, SessionConfig(rig=rig, name=name))


def open_inlet(predicate: str, what: str, fix: str, timeout_s: float = 10.0,
               only_one_s: float | None = None) -> Any:
    """An LSL inlet (clock-synchronised, monotonic, recovering) on the first stream matching the
    XPath ``predicate``; ``LookupError`` naming ``what`` and the ``fix`` when none appears.
    With ``only_one_s``, look that much longer for others and refuse to choose (LookupError
    listing them) when there are several. (``firmware_bridge.streams``: ``resolve_one`` and
    the ``live`` inlet settings.)"""
    return streams.open_inlet(streams.resolve_one(predicate, what, fix, timeout_s, only_one_s),
                              "live")


def open_imu_inlet(link: LinkOptions) -> Any:
    """The inlet on the IMU stream ``link.lsl`` names (a name or source_id; '' the only one)."""
    want = link.lsl or ""
    return open_inlet(
        streams.predicate(streams.IMU_TYPE, want),
        f"IMU LSL stream {want!r}", "start 'imusic stream' (or 'imusic emulate' + 'imusic "
        "stream') first, or check --lsl NAME",
        only_one_s=None if want else link.lsl_settle_s)


def pull_ready(inlet: Any, options: ReadOptions = READ) -> tuple[list, list]:
    """(rows, timestamps) of every sample ready, waiting up to ``options.wait_s`` for the first
    (see the module docstring); two empty lists when none came.

    A device packet of several samples reaches the inlet in one piece, but liblsl's receiver
    thread queues its samples one at a time, and the first wakes this thread, which on a busy
    core preempts the receiver before it has queued the rest. Taking only what is queued then
    returns the packet's first sample alone, and its frame counts from a stamp the device held
    back to fill the packet (10 ms at 100 Hz in 20 ms packets). One ``sched_yield`` before
    taking the rest lets the receiver finish what has already arrived; it waits for nothing
    that has not."""
    row, t = inlet.pull_sample(timeout=options.wait_s)
    if t is None:
        return [], []
    if options.yield_before_drain:
        os.sched_yield()
    rows, ts = inlet.pull_chunk(timeout=0.0, max_samples=options.max_chunk - 1)
    return [row] + rows, [t] + ts


@dataclass(frozen=True)
class PacketOptions:
    """How :class:`PacketReader` finds and completes a device's packets."""

    rest_wait_s: float = 0.003
    """Longest a read that ended inside a packet waits for the packet's other samples (they
    left the stream's process in the same write, so they are normally microseconds behind)."""
    min_reads: int = 20
    """Reads seen before the packets' boundary is trusted (none is waited for until then)."""
    reads_kept: int = 200
    """Reads the boundary is learnt from: the counts are halved past this (a device that
    restarts its sequence moves its boundary; about 4 s of 50 packets/s to learn it again)."""


class PacketReader:
    """Reads an ``IMU`` inlet a whole device packet at a time, as ``--serial`` decodes it.

    A wearable sends ``instants_per_frame`` samples per packet, and ``imusic stream`` pushes
    each packet as one LSL chunk. :func:`pull_ready` can still return a packet's first
    sample alone (see there), and the frame it completes then counts from a stamp the device
    held back to fill the packet. Sequence numbers count instants, so a packet ends at one
    residue of ``seq + 1`` modulo the packet size; that residue is learnt as the one most reads
    end at (a read that ends inside a packet is the exception). A read that ends elsewhere
    waits up to ``rest_wait_s`` for the rest. A stream without ``device.seq`` or with one
    instant per packet is read as :func:`pull_ready` reads it."""

    def __init__(self, inlet: Any, layout: streams.ImuLayout,
                 options: PacketOptions = PacketOptions(), read: ReadOptions = READ) -> None:
        self.inlet = inlet
        self.options = options
        self.read = read
        self.size = layout.instants_per_frame if layout.seq is not None else 1
        self._seq_col = layout.seq
        self._ends = np.zeros(self.size, np.int64)
        """Reads that ended at each residue of ``seq + 1`` modulo ``size``."""
        self.completed = 0
        """Reads that ended inside a packet and got its rest by waiting."""
        self.incomplete = 0
        """Reads that ended inside a packet and waited ``rest_wait_s`` in vain."""

    def _end(self, row: Any) -> int:
        return (int(row[self._seq_col]) + 1) % self.size

    def pull(self) -> tuple[list, list]:
        """(rows, timestamps) of every sample ready and the rest of the last one's packet;
        two empty lists when none came within ``read.wait_s``."""
        rows, ts = pull_ready(self.inlet, self.read)
        if not ts or self.size == 1:
            return rows, ts
        end = self._end(rows[-1])
        boundary = int(np.argmax(self._ends))
        if end != boundary and self._ends.sum() >= self.options.min_reads:
            deadline = time.monotonic() + self.options.rest_wait_s
            while end != boundary and (left := deadline - time.monotonic()) > 0:
                row, t = self.inlet.pull_sample(timeout=left)
                if t is None:
                    break
                rows.append(row)
                ts.append(t)
                end = self._end(row)
            if end == boundary:
                self.completed += 1
            else:
                self.incomplete += 1
        self._ends[end] += 1
        if self._ends.sum() > self.options.reads_kept:
            self._ends //= 2
        return rows, ts


class FrameBuffer:
    """The newest blendshape frames with their timestamps (thread-safe): ARKit for the fuser,
    the twin's truth for the demo's live error."""

    def __init__(self, span_s: float = 2.0) -> None:
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self._heads: deque[np.ndarray] = deque()   # each frame's head yaw/pitch/roll (zeros if none)
        self._lock = threading.Lock()
        self._span = span_s
        self.lost_at: float | None = None

    def add(self, t: float, values: np.ndarray | None) -> None:
        """Add a frame captured at ``t``; ``values`` None is a face-lost packet."""
        with self._lock:
            if values is None:
                self.lost_at = t
                return
            row = np.asarray(values, np.float64)
            self._frames.append((t, row[:N_BLENDSHAPES]))
            head = row[N_BLENDSHAPES:N_BLENDSHAPES + 3]
            self._heads.append(head.copy() if len(head) == 3 else np.zeros(3))
            while self._frames and self._frames[-1][0] - self._frames[0][0] > self._span:
                self._frames.popleft()
                self._heads.popleft()

    def head_at(self, t: float) -> np.ndarray | None:
        """The head yaw/pitch/roll of the frame captured at exactly ``t`` (as ``at`` returned
        it), or None."""
        with self._lock:
            for (ft, _), head in zip(reversed(self._frames), reversed(self._heads)):
                if ft == t:
                    return head.copy()
                if ft < t:
                    break
        return None

    def at(self, t: float, tolerance_s: float) -> tuple[np.ndarray | None, float | None]:
        """The newest frame captured no later than ``t + tolerance_s``, and its time; (None,
        None) when there is none, or the face was reported lost after it. How old the frame
        may be is the fuser's decision (``FusionConfig.lost_timeout_s``)."""
        with self._lock:
            if not self._frames:
                return None, None
            times = np.fromiter((f[0] for f in self._frames), float, len(self._frames))
            k = int(np.searchsorted(times, t + tolerance_s, side="right")) - 1
            if k < 0:
                return None, None
            ft, values = self._frames[k]
            if self.lost_at is not None and ft < self.lost_at <= t + tolerance_s:
                return None, None
            return values, ft


def read_frames(inlet: Any, buffer: FrameBuffer, halt: threading.Event) -> None:
    """Pull a Blendshapes inlet into ``buffer`` until ``halt`` is set; closes the inlet.
    Channels are taken by label (``streams.parse_blendshapes``), in ``STREAM_NAMES`` order."""
    try:
        layout = streams.parse_blendshapes(inlet.info(timeout=5.0))
        while not halt.is_set():
            rows, ts = pull_ready(inlet)
            for row, t in zip(layout.to_contract(rows) if ts else (), ts):
                buffer.add(t, row)
    finally:
        inlet.close_stream()


CALIBRATION_MARKERS = ("neutral", "calibrate")
"""Marker texts that ask a live model to take the neutral pose again (``--recalibrate-on-marker``)."""


def is_calibration_marker(text: str) -> bool:
    """Whether a marker asks for a new neutral pose: one of ``CALIBRATION_MARKERS`` as plain
    text, or the start of a guided session's step named ``neutral`` (``imusic session``: every
    take starts with its neutral hold, capture/protocol.py)."""
    # protocol_session (the recorder, h5py) takes a second to import: only when a marker comes
    from imusic.capture.protocol_session import parse_marker

    if text.strip().lower() in CALIBRATION_MARKERS:
        return True
    step = parse_marker(text)
    return step is not None and step.get("step") == "neutral" and step.get("edge") == "start"


@dataclass(frozen=True)
class MarkerWatchConfig:
    """How :class:`MarkerWatch` looks for Markers streams."""

    rescan_s: float = 0.5
    """How often the streams the background resolver found are checked for new ones."""
    pull_s: float = 0.05
    """Longest wait for a marker on one inlet before the next is read."""


class MarkerWatch:
    """Every LSL ``Markers`` stream there is (now or later), read on one thread; each marker's
    text goes to ``on_marker(text, stream_name)``. ``start()`` / ``stop()``."""

    def __init__(self, on_marker: Callable[[str, str], None],
                 config: MarkerWatchConfig = MarkerWatchConfig()) -> None:
        self.on_marker = on_marker
        self.config = config
        self.seen = 0
        """Markers read (any text)."""
        self._inlets: dict[str, tuple[Any, str]] = {}
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reading on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="imusic-markers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and close the inlets."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        resolver = streams.continuous_resolver(streams.predicate(streams.MARKERS_TYPE))
        next_scan = 0.0
        try:
            while not self._halt.is_set():
                if time.monotonic() >= next_scan:
                    for info in resolver.results():
                        if info.uid() not in self._inlets:
                            self._inlets[info.uid()] = (streams.open_inlet(info, "live"),
                                                        info.name())
                    next_scan = time.monotonic() + self.config.rescan_s
                if not self._inlets:
                    self._halt.wait(self.config.pull_s)
                for inlet, name in list(self._inlets.values()):
                    sample, t = inlet.pull_sample(timeout=self.config.pull_s / len(self._inlets))
                    if t is not None:
                        self.seen += 1
                        self.on_marker(str(sample[0]), name)
        finally:
            for inlet, _ in self._inlets.values():
                inlet.close_stream()
