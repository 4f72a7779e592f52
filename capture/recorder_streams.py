"""The recorder's LSL side: finding streams, opening inlets, pulling, clock offsets.

Part of the recorder (``capture/recorder.py`` says how the pieces fit). Everything here talks to
LSL and puts ``Msg`` values on the recorder's queue; nothing here touches the file.

* ``find_streams`` (the resolver thread) finds streams, including ones that join late:
  one-shot resolves in a loop for ``RecordLimits.resolve_fast_s`` after the start and after
  each new stream (a new stream found in about ``resolve_wait_s``), then liblsl's continuous
  resolver (a tenth of the CPU; finds a stream in about a second).
* ``StreamThread`` (one per stream) opens its inlet (``open_inlet``, the one place an inlet
  is made) and fetches its full info, which can take seconds, hands the stream to the pull
  loop, and then measures its clock offset every ``offset_interval`` (``time_correction``
  waits up to ``offset_timeout_s`` for a lost stream, so it has a thread of its own; it wakes
  once per interval).
* ``PullLoop`` (one thread for all streams) pulls what every inlet holds every
  ``pull_interval_s`` and puts one ``batch`` message per round: one wake-up of the puller and
  of the writer per round, whatever the number of streams (a thread per stream cost a
  wake-up each). It notices gaps and lost / recovered streams (``StreamPull``).

Lost and gaps. With ``recover=True`` an inlet never raises when its source disappears; it just
returns nothing. A stream is *lost* when no sample has arrived for ``max(1 s, 10 sample
periods)`` and *recovered* when samples come again; independently, a jump between consecutive
timestamps larger than ``max(5 sample periods, 0.25 s)`` is written as a gap ``[last, next]`` in
the sender's clock (so gaps are exact, whatever the cause).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from imusic.capture.session import StreamSpec
from imusic.firmware_bridge import streams
from imusic.firmware_bridge.streams import BLENDSHAPES_TYPE, IMU_TYPE, MARKERS_TYPE

if TYPE_CHECKING:
    from imusic.capture.recorder import RecordLimits

DEFAULT_TYPES: tuple[str, ...] = (IMU_TYPE, BLENDSHAPES_TYPE, MARKERS_TYPE)
INLET_BUFLEN_S = streams.INLETS["record"].max_buflen
"""Seconds of samples an inlet buffers (as LabRecorder's inlets do)."""


def build_predicate(types: Sequence[str] = DEFAULT_TYPES,
                    names: Sequence[str] | None = None) -> str:
    """The LSL XPath predicate selecting streams by type and (optionally) name or source_id."""
    pred = " or ".join(f"type='{t}'" for t in types)
    pred = f"({pred})" if pred else "true()"
    if names:
        who = " or ".join(f"name='{n}' or source_id='{n}'" for n in names)
        pred += f" and ({who})"
    return pred


def gap_threshold(srate: float) -> float:
    """Seconds between consecutive timestamps above which a regular stream has a gap."""
    return max(5.0 / srate, 0.25) if srate > 0 else float("inf")


def find_gaps(last: float | None, ts: np.ndarray, srate: float) -> list[tuple[float, float]]:
    """Gaps ``(start, end)`` in ``ts`` (and between ``last`` and ``ts[0]``)."""
    if srate <= 0 or not len(ts):
        return []
    if last is not None and ts[0] - last > gap_threshold(srate):
        head = [(float(last), float(ts[0]))]
    else:
        head = []
    jumps = np.flatnonzero(np.diff(ts) > gap_threshold(srate))
    return head + [(float(ts[i]), float(ts[i + 1])) for i in jumps]


@dataclass
class Msg:
    """One message to the writer thread."""

    kind: str   # add | data | offset | offset_fail | gap | lost | recovered | marker | event |
    #             error | batch (payload: a list of Msg) | close
    ident: str
    payload: Any = None
    t: float = 0.0


def open_inlet(info: Any) -> Any:
    """The inlet the recorder reads a stream through (``firmware_bridge.streams``' ``record``
    settings: 360 s buffer, ``recover=True`` so a stream that is lost and comes back is
    followed, raw sender timestamps)."""
    return streams.open_inlet(info, "record")   # raw timestamps, as LabRecorder keeps them


def _decode(b: Any) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


class StreamPull:
    """One stream's inlet and what the pull loop remembers about it."""

    def __init__(self, ident: str, inlet: Any, spec: StreamSpec) -> None:
        self.ident, self.inlet, self.spec = ident, inlet, spec
        srate = spec.nominal_srate
        self.max_samples = max(64, int(srate * 2) if srate > 0 else 1024)
        self.lost_after = max(1.0, 10.0 / srate) if srate > 0 else float("inf")
        self.last_ts: float | None = None
        self.last_data = time.monotonic()
        self.lost = False

    def pull(self, out: list[Msg]) -> bool:
        """One pull; appends what came (data, gaps, recovered, markers) to ``out``. True if
        samples came; after an empty pull, notes the stream lost once it has been silent for
        ``lost_after``."""
        samples, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self.max_samples,
                                            as_numpy=True)
        if not len(ts):
            if not self.lost and time.monotonic() - self.last_data > self.lost_after:
                import pylsl

                self.lost = True
                out.append(Msg("lost", self.ident, t=pylsl.local_clock()))
            return False
        spec = self.spec
        ts = np.asarray(ts, np.float64)
        if spec.is_string:
            samples = np.vectorize(_decode, otypes=[object])(samples)
        else:
            samples = np.array(samples, copy=True)
        for a, b in find_gaps(self.last_ts, ts, spec.nominal_srate):
            out.append(Msg("gap", self.ident, (a, b)))
        self.last_ts = float(ts[-1])
        self.last_data = time.monotonic()
        if self.lost:
            import pylsl

            self.lost = False
            out.append(Msg("recovered", self.ident, t=pylsl.local_clock()))
        out.append(Msg("data", self.ident, (samples, ts)))
        if spec.is_string:
            out.extend(Msg("marker", self.ident, str(row[0]), float(t))
                       for row, t in zip(samples, ts))
        return True


class PullLoop(threading.Thread):
    """Pulls every stream's inlet each ``pull_interval_s`` until stop, then drains them."""

    def __init__(self, out: "queue.Queue[Msg]", stop: threading.Event,
                 limits: "RecordLimits") -> None:
        super().__init__(name="lsl-pull", daemon=True)
        self.out, self.stop_event, self.limits = out, stop, limits
        self._streams: list[StreamPull] = []
        self._lock = threading.Lock()
        self._held: set[str] = set()
        """Streams not pulled for now: their samples wait in their inlet's own buffer (the
        writer cannot add them to the file yet: ``Recorder``, "Late streams")."""
        self._parked: dict[str, StreamPull] = {}
        """Held streams when the loop ended: left open for the writer to drain (``release``)."""
        self.finished = False         # after the drain: streams handed over later are closed

    def add(self, sp: StreamPull) -> bool:
        """Pull ``sp`` from the next round on; False (and nothing kept) after the loop ended."""
        with self._lock:
            if self.finished:
                return False
            self._streams.append(sp)
            return True

    def hold(self, ident: str) -> None:
        """Stop pulling stream ``ident`` (also one not handed over yet) until ``release``."""
        with self._lock:
            self._held.add(ident)

    def release(self, ident: str) -> StreamPull | None:
        """Pull ``ident`` again. After the loop has ended, its ``StreamPull`` instead, for the
        caller to drain and close (None if there is none)."""
        with self._lock:
            self._held.discard(ident)
            return self._parked.pop(ident, None)

    def _round(self) -> bool:
        with self._lock:
            streams = [sp for sp in self._streams if sp.ident not in self._held]
        msgs: list[Msg] = []
        came = False
        for sp in streams:
            try:
                came = sp.pull(msgs) or came
            except Exception as err:  # noqa: BLE001 - LostError only without recover
                msgs.append(Msg("error", sp.ident, f"stream {sp.spec.name!r}: {err}"))
                with self._lock:
                    self._streams.remove(sp)
        if msgs:
            self.out.put(Msg("batch", "", msgs))
        return came

    def run(self) -> None:
        # The stop flag is checked after every round, full or empty: a stream that never
        # pauses must not keep the recorder running.
        while not self.stop_event.is_set():
            self._round()
            self.stop_event.wait(self.limits.pull_interval_s)
        # Stop: what the inlets have received until now, with a bound (a fast stream keeps
        # refilling its inlet).
        deadline = time.monotonic() + self.limits.drain_s
        while time.monotonic() < deadline and self._round():
            pass
        with self._lock:
            self.finished = True
            streams, self._streams = self._streams, []
            self._parked = {sp.ident: sp for sp in streams if sp.ident in self._held}
        for sp in streams:
            if sp.ident not in self._parked:
                sp.inlet.close_stream()


class StreamThread(threading.Thread):
    """One stream's own thread: opens its inlet and fetches its full info (seconds, at
    worst), hands it to the pull loop, then measures its clock offset every ``interval`` until
    stop (``time_correction`` waits up to ``offset_timeout_s`` for a lost stream; in a thread
    of its own it never holds up the pulls or another stream's offsets). It wakes once per
    ``interval``, so it costs nothing between."""

    def __init__(self, info: Any, ident: str, out: "queue.Queue[Msg]", stop: threading.Event,
                 pulls: PullLoop, interval: float, limits: "RecordLimits") -> None:
        super().__init__(name=f"lsl-stream-{info.name()}", daemon=True)
        self.info, self.sid, self.out, self.stop_event = info, ident, out, stop
        self.pulls, self.interval, self.limits = pulls, interval, limits
        self.error: BaseException | None = None

    def run(self) -> None:
        import pylsl

        try:
            inlet = open_inlet(self.info)
            # Data first: the inlet buffers from here on, while the full info is fetched.
            inlet.open_stream(timeout=10.0)
            spec = StreamSpec.from_info(inlet.info(timeout=10.0))
        except Exception as err:  # noqa: BLE001 - reported by the recorder, thread ends
            self.error = err
            self.out.put(Msg("error", self.sid, f"could not open stream "
                                                 f"{self.info.name()!r}: {err}"))
            return
        sp = StreamPull(self.sid, inlet, spec)
        # "add" goes on the queue before the first data of the stream can.
        self.out.put(Msg("add", self.sid, spec))
        if not self.pulls.add(sp):
            inlet.close_stream()
            return
        while not self.stop_event.is_set():
            try:
                off = inlet.time_correction(timeout=self.limits.offset_timeout_s)
                self.out.put(Msg("offset", self.sid, float(off), pylsl.local_clock()))
            except Exception:  # noqa: BLE001 - timeout or lost: skipped, counted
                self.out.put(Msg("offset_fail", self.sid))
            self.stop_event.wait(self.interval)


def stream_ident(info: Any) -> str:
    """A stream is one source: its name and source_id if it has one (LSL recovers it by that),
    else its uid."""
    return f"{info.name()}|{info.source_id()}" if info.source_id() else info.uid()


def find_streams(pred: str, limits: "RecordLimits", stop: threading.Event,
                    found: Callable[[Any, str], bool], report: Callable[[str], None]) -> None:
    """Find streams matching ``pred`` until ``stop``; ``found(info, ident)`` for each stream
    (returns True if it was new).

    One-shot resolves in a loop while streams are arriving: a one-shot query goes out at once
    and returns as soon as one stream more than last time answers, so a new stream is found
    within milliseconds (an outlet sends a new inlet only what is pushed after it connects).
    Each costs a resolver set up and torn down: 1.4-2.5 % of a core at ten a second, more than
    the recording itself. So after ``resolve_fast_s`` without a new stream the continuous
    resolver takes over (0.2 %, its waves find a stream in ~1 s)."""

    present = 0
    fast_until = time.monotonic() + limits.resolve_fast_s
    continuous = None
    while not stop.is_set():
        try:
            if time.monotonic() < fast_until:
                continuous = None
                infos = streams.resolve(pred, present + 1, limits.resolve_wait_s)
            else:
                if continuous is None:
                    continuous = streams.continuous_resolver(pred)
                stop.wait(limits.resolve_poll_s)
                infos = continuous.results()
        except Exception as err:  # noqa: BLE001 - a network hiccup: try again
            report(f"resolving streams failed: {err}")
            stop.wait(limits.resolve_wait_s)
            continue
        present = len(infos)
        for info in infos:
            if stop.is_set():
                break
            if found(info, stream_ident(info)):
                # More streams may follow this one (a lab starting its devices): look fast.
                fast_until = time.monotonic() + limits.resolve_fast_s
