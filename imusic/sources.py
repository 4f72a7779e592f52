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
* :class:`FrameBuffer` and :func:`read_frames`: the newest Blendshapes frames of a stream
  (ARKit for the hybrid's fuser, the twin's truth for the demo's live error).
* :class:`MarkerWatch` and :func:`is_calibration_marker`: every ``Markers`` stream, read for
  the markers that ask the live model to take the neutral pose again.

``imusic.pipelines`` puts these together with the live loop (``imusic.live_loop``).
"""

from __future__ import annotations

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
    (see the module docstring); two empty lists when none came."""
    row, t = inlet.pull_sample(timeout=options.wait_s)
    if t is None:
        return [], []
    rows, ts = inlet.pull_chunk(timeout=0.0, max_samples=options.max_chunk - 1)
    return [row] + rows, [t] + ts


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
