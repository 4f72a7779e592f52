"""The LSL recorder: every matching stream on the network into one session file.

Threads: one resolver (``pylsl.ContinuousResolver``) finds streams, including ones that join
late; one puller thread per stream pulls chunks from its inlet (``recover=True``, so a stream
that is lost and comes back is followed), measures the clock offset periodically and notices
gaps; all of them put messages on one queue; one writer thread owns the ``SessionWriter`` and is
the only code that touches the file.

Lost and gaps. With ``recover=True`` an inlet never raises when its source disappears; it just
returns nothing. A puller marks its stream *lost* when no sample has arrived for
``max(1 s, 10 sample periods)`` and *recovered* when samples come again; independently, a jump
between consecutive timestamps larger than ``max(5 sample periods, 0.25 s)`` is written as a gap
``[last, next]`` in the sender's clock (so gaps are exact, whatever the cause).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from capture.session import SessionWriter, StreamSpec

DEFAULT_TYPES: tuple[str, ...] = ("IMU", "Blendshapes", "Markers")


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
    full = np.concatenate([[last], ts]) if last is not None else ts
    jumps = np.flatnonzero(np.diff(full) > gap_threshold(srate))
    return [(float(full[i]), float(full[i + 1])) for i in jumps]


@dataclass
class StreamStatus:
    """Live view of one recorded stream (read by the status line)."""

    key: str = ""
    name: str = ""
    type: str = ""
    srate: float = 0.0
    samples: int = 0
    gaps: int = 0
    lost: bool = False
    last_offset: float = float("nan")
    first_wall: float = 0.0


@dataclass
class _Msg:
    kind: str                 # add | data | offset | offset_fail | gap | lost | recovered | marker
    ident: str
    payload: Any = None
    t: float = 0.0


class _Puller(threading.Thread):
    """Pulls one stream's chunks onto the queue."""

    def __init__(self, info: Any, ident: str, out: "queue.Queue[_Msg]", stop: threading.Event,
                 offset_interval: float) -> None:
        super().__init__(name=f"lsl-pull-{info.name()}", daemon=True)
        self.info, self.sid, self.out, self.stop_event = info, ident, out, stop
        self.offset_interval = offset_interval
        self.error: BaseException | None = None

    def run(self) -> None:  # noqa: C901 - one loop, kept together on purpose
        import pylsl

        try:
            inlet = pylsl.StreamInlet(self.info, max_buflen=360, recover=True)
            full = inlet.info(timeout=10.0)
            spec = StreamSpec.from_info(full)
            self.out.put(_Msg("add", self.sid, spec))
            inlet.open_stream(timeout=10.0)
        except Exception as err:  # noqa: BLE001 - reported by the recorder, thread ends
            self.error = err
            self.out.put(_Msg("error", self.sid, f"could not open stream "
                                                  f"{self.info.name()!r}: {err}"))
            return
        srate = spec.nominal_srate
        is_string = spec.is_string
        max_samples = max(64, int(srate * 2) if srate > 0 else 1024)
        lost_after = max(1.0, 10.0 / srate) if srate > 0 else float("inf")
        next_offset = 0.0
        last_ts: float | None = None
        last_data = time.monotonic()
        lost = False
        draining = False
        while True:
            now = time.monotonic()
            if now >= next_offset and not draining:
                try:
                    off = inlet.time_correction(timeout=1.0)
                    self.out.put(_Msg("offset", self.sid, float(off), pylsl.local_clock()))
                except Exception:  # noqa: BLE001 - timeout or lost: skipped, counted
                    self.out.put(_Msg("offset_fail", self.sid))
                next_offset = time.monotonic() + self.offset_interval
            try:
                samples, ts = inlet.pull_chunk(timeout=0.1 if not draining else 0.0,
                                               max_samples=max_samples, as_numpy=True)
            except Exception as err:  # noqa: BLE001 - LostError only without recover
                self.out.put(_Msg("error", self.sid, f"stream {spec.name!r}: {err}"))
                break
            if len(ts):
                ts = np.asarray(ts, np.float64)
                if is_string:
                    samples = np.vectorize(
                        lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                        otypes=[object])(samples)
                else:
                    samples = np.array(samples, copy=True)
                for a, b in find_gaps(last_ts, ts, srate):
                    self.out.put(_Msg("gap", self.sid, (a, b)))
                last_ts = float(ts[-1])
                last_data = time.monotonic()
                if lost:
                    lost = False
                    self.out.put(_Msg("recovered", self.sid, t=pylsl.local_clock()))
                self.out.put(_Msg("data", self.sid, (samples, ts)))
                if is_string:
                    for row, t in zip(samples, ts):
                        self.out.put(_Msg("marker", self.sid, str(row[0]), float(t)))
                continue  # more may be waiting: pull again before checking stop
            if draining:
                break
            if not lost and time.monotonic() - last_data > lost_after:
                lost = True
                self.out.put(_Msg("lost", self.sid, t=pylsl.local_clock()))
            if self.stop_event.is_set():
                draining = True  # one last non-blocking pull for what is buffered
        inlet.close_stream()


@dataclass
class Recorder:
    """Records LSL streams into a new session file. Use as a context manager, or start()/stop().

    ``types`` selects stream types; ``names`` (stream names or source ids) restricts to those
    streams (tests use it so that parallel runs never see each other's streams).
    """

    path: str | Path
    subject: str = ""
    types: Sequence[str] = DEFAULT_TYPES
    names: Sequence[str] | None = None
    offset_interval: float = 5.0
    flush_interval: float = 0.5
    resolve_interval: float = 0.5
    on_error: Callable[[str], None] | None = None
    status: dict[str, StreamStatus] = field(default_factory=dict, init=False)
    errors: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._queue: queue.Queue[_Msg] = queue.Queue()
        self._stop = threading.Event()
        self._writer_done = threading.Event()
        self._pullers: dict[str, _Puller] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.max_queue = 0
        self.started = 0.0
        # Create the file now, so that an existing file is refused before anything starts.
        self._writer = SessionWriter(self.path, subject=self.subject,
                                     flush_interval=self.flush_interval,
                                     attrs={"recorder_types": list(self.types)})

    # ---------------------------------------------------------------- control
    def start(self) -> "Recorder":
        """Start resolving, pulling and writing (returns immediately)."""
        import pylsl

        self.started = time.monotonic()
        self._queue.put(_Msg("event", "", "recording started", pylsl.local_clock()))
        for target, name in ((self._write_loop, "session-writer"),
                             (self._resolve_loop, "lsl-resolver")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop: pull what is buffered, write it all, close the file. Safe to call twice."""
        import pylsl

        if self._stop.is_set():
            self._writer_done.wait(timeout)
            return
        self._stop.set()
        for th in self._threads[1:]:
            th.join(timeout)
        for p in list(self._pullers.values()):
            p.join(timeout)
        self._queue.put(_Msg("event", "", "recording stopped", pylsl.local_clock()))
        self._queue.put(_Msg("close", ""))
        self._writer_done.wait(timeout)

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def writer_failed(self) -> bool:
        """True if the writer thread ended before ``stop`` (its error is in ``errors``)."""
        return any(e.startswith("writer failed") for e in self.errors)

    def wait_for_types(self, types: Sequence[str], timeout: float) -> list[str]:
        """Wait until a stream of each type in ``types`` is being recorded.

        Returns the types still missing after ``timeout`` (empty list: all there)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                have = {s.type.lower() for s in self.status.values() if s.key}
            missing = [t for t in types if t.lower() not in have]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.05)

    def wait_for_samples(self, n: int, timeout: float, stream_type: str | None = None) -> bool:
        """Wait until every recorded stream (of ``stream_type``) has at least ``n`` samples."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                st = [s for s in self.status.values()
                      if s.key and (stream_type is None or s.type == stream_type)]
            if st and all(s.samples >= n for s in st):
                return True
            time.sleep(0.05)
        return False

    def status_line(self) -> str:
        """One line: elapsed time, then per stream samples, rate, gaps, lost."""
        el = time.monotonic() - self.started if self.started else 0.0
        parts = [f"{int(el // 60):02d}:{el % 60:04.1f}"]
        with self._lock:
            for s in self.status.values():
                if not s.key:
                    continue
                dt = max(time.monotonic() - s.first_wall, 1e-9) if s.first_wall else 0
                rate = s.samples / dt if dt else 0.0
                flag = " LOST" if s.lost else ""
                gaps = f" {s.gaps} gaps" if s.gaps else ""
                parts.append(f"{s.key} [{s.type}] {s.samples} smp {rate:.0f}/s{gaps}{flag}")
        parts.append(f"queue {self._queue.qsize()}")
        return " | ".join(parts)

    # ---------------------------------------------------------------- threads
    def _resolve_loop(self) -> None:
        import pylsl

        resolver = pylsl.ContinuousResolver(pred=build_predicate(self.types, self.names))
        try:
            while not self._stop.is_set():
                for info in resolver.results():
                    # A stream is one source: its source_id if it has one (LSL recovers it by
                    # that), else its uid.
                    ident = (f"{info.name()}|{info.source_id()}" if info.source_id()
                             else info.uid())
                    if ident in self._pullers:
                        continue
                    with self._lock:
                        self.status[ident] = StreamStatus(name=info.name(), type=info.type(),
                                                          srate=info.nominal_srate())
                    p = _Puller(info, ident, self._queue, self._stop, self.offset_interval)
                    self._pullers[ident] = p
                    p.start()
                self._stop.wait(self.resolve_interval)
        finally:
            del resolver

    def _write_loop(self) -> None:
        w = self._writer
        keys: dict[str, str] = {}
        try:
            while True:
                try:
                    msg = self._queue.get(timeout=0.2)
                except queue.Empty:
                    w.maybe_flush()
                    continue
                self.max_queue = max(self.max_queue, self._queue.qsize() + 1)
                if msg.kind == "close":
                    break
                self._handle(w, keys, msg)
                w.maybe_flush()
        except Exception as err:  # noqa: BLE001 - report, then still close the file
            self._report(f"writer failed: {err!r}")
            self._stop.set()
        finally:
            try:
                w.close()
            finally:
                self._writer_done.set()

    def _handle(self, w: SessionWriter, keys: dict[str, str], msg: _Msg) -> None:
        st = self.status.get(msg.ident)
        if msg.kind == "event":
            w.add_event(msg.t, msg.payload)
            return
        if msg.kind == "error":
            self._report(msg.payload)
            return
        if msg.kind == "add":
            key = w.add_stream(msg.payload)
            keys[msg.ident] = key
            with self._lock:
                st.key = key
            w.add_event(msg.payload.created_at, f"stream added: {key}")
            return
        key = keys[msg.ident]
        if msg.kind == "data":
            samples, ts = msg.payload
            w.append(key, samples, ts)
            with self._lock:
                if not st.first_wall:
                    st.first_wall = time.monotonic()
                st.samples += len(ts)
        elif msg.kind == "offset":
            w.add_clock_offset(key, msg.t, msg.payload)
            st.last_offset = msg.payload
        elif msg.kind == "offset_fail":
            w.count(key, "offset_failures")
        elif msg.kind == "gap":
            w.add_gap(key, *msg.payload)
            with self._lock:
                st.gaps += 1
        elif msg.kind == "lost":
            w.count(key, "lost")
            w.add_event(msg.t, f"stream lost: {key}")
            with self._lock:
                st.lost = True
        elif msg.kind == "recovered":
            w.count(key, "recovered")
            w.add_event(msg.t, f"stream recovered: {key}")
            with self._lock:
                st.lost = False
        elif msg.kind == "marker":
            w.add_event(msg.t, msg.payload, source=key)

    def _report(self, text: str) -> None:
        self.errors.append(text)
        if self.on_error:
            self.on_error(text)
