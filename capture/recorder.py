"""The LSL recorder: every matching stream on the network into one session file.

Threads: one resolver finds streams, including ones that join late (one-shot resolves in a
loop, so a new stream is found in about ``RecordLimits.resolve_wait_s``, for
``resolve_fast_s`` after the start and after each new stream; then liblsl's continuous
resolver, which costs a tenth of the CPU and finds a stream in about a second); one puller
thread per stream pulls what its inlet holds every ``pull_interval_s`` (``recover=True``, so a
stream that is lost and comes back is followed), measures the clock offset periodically and
notices gaps; all of them put messages on one queue; one writer thread owns the
``SessionWriter`` and is the only code that touches the file.

Cost. Per stream and second the Python work is a fixed number of pulls (1 / pull_interval_s)
and two HDF5 writes per flush (the writer writes whole chunks, ``capture.session.WriteLimits``),
whatever the sample rate: no per-sample Python.

Lost and gaps. With ``recover=True`` an inlet never raises when its source disappears; it just
returns nothing. A puller marks its stream *lost* when no sample has arrived for
``max(1 s, 10 sample periods)`` and *recovered* when samples come again; independently, a jump
between consecutive timestamps larger than ``max(5 sample periods, 0.25 s)`` is written as a gap
``[last, next]`` in the sender's clock (so gaps are exact, whatever the cause).

Stop and failures (thresholds in ``RecordLimits``). Pullers check the stop flag after every
pull and then drain their inlet briefly, so ``stop()`` returns within about a second while
sources keep streaming. The writer checks free disk space: it warns when less than an hour is
left and stops cleanly below a reserve (``DiskFull``). If a write fails anyway, it frees its
reserve file, so that HDF5 has room to close, and cuts the file back to its last good flush
(``SessionWriter.close_after_failure``). ``failure`` then holds the one line to show.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from capture.session import SessionReader, SessionWriter, StreamSpec, describe_write_error
from firmware_bridge.streams import BLENDSHAPES_TYPE, IMU_TYPE, MARKERS_TYPE

DEFAULT_TYPES: tuple[str, ...] = (IMU_TYPE, BLENDSHAPES_TYPE, MARKERS_TYPE)


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
class RecordLimits:
    """Time and disk thresholds of a recording (defaults are what ``imusic record`` uses)."""

    stop_within_s: float = 0.8       # stop(): pullers drain and end within this many seconds
    drain_s: float = 0.3             # at stop, how long a puller keeps pulling what is buffered
    pull_interval_s: float = 0.1     # a puller pulls what its inlet holds this often (and
    #                                  checks the stop flag): it adds this to what a kill loses
    offset_timeout_s: float = 0.5    # wait for one clock-offset measurement
    close_timeout_s: float = 15.0    # stop(): wait for the writer to write the queue and close
    resolve_wait_s: float = 0.1      # one resolve query waits this long for a new stream
    resolve_fast_s: float = 30.0     # one-shot resolves this long after start and a new stream
    resolve_poll_s: float = 0.5      # then: how often the continuous resolver's list is read
    warn_free_hours: float = 1.0     # warn when free disk lasts less than this at the data rate
    min_free_bytes: int = 1 << 20    # stop cleanly when free disk falls below this (0 = never)
    ballast_bytes: int = 512 << 10   # disk kept in a reserve file, freed so a failed file can close
    disk_check_s: float = 0.5        # how often the writer checks free disk space


class DiskFull(Exception):
    """Free disk space fell below ``RecordLimits.min_free_bytes``: stop before writes fail."""


@dataclass
class _Msg:
    kind: str                 # add | data | offset | offset_fail | gap | lost | recovered | marker
    ident: str
    payload: Any = None
    t: float = 0.0


class _Puller(threading.Thread):
    """Pulls one stream's chunks onto the queue until stop, then drains what the inlet holds."""

    def __init__(self, info: Any, ident: str, out: "queue.Queue[_Msg]", stop: threading.Event,
                 offset_interval: float, limits: "RecordLimits") -> None:
        super().__init__(name=f"lsl-pull-{info.name()}", daemon=True)
        self.info, self.sid, self.out, self.stop_event = info, ident, out, stop
        self.offset_interval = offset_interval
        self.limits = limits
        self.error: BaseException | None = None
        self.spec: StreamSpec | None = None
        self.last_ts: float | None = None
        self.last_data = time.monotonic()
        self.lost = False

    def run(self) -> None:
        import pylsl

        from firmware_bridge.streams import open_inlet

        try:
            inlet = open_inlet(self.info, "record")   # raw timestamps, as LabRecorder keeps them
            # Data first: the inlet buffers from here on, while the full info is fetched.
            inlet.open_stream(timeout=10.0)
            self.spec = StreamSpec.from_info(inlet.info(timeout=10.0))
            self.out.put(_Msg("add", self.sid, self.spec))
        except Exception as err:  # noqa: BLE001 - reported by the recorder, thread ends
            self.error = err
            self.out.put(_Msg("error", self.sid, f"could not open stream "
                                                  f"{self.info.name()!r}: {err}"))
            return
        srate = self.spec.nominal_srate
        max_samples = max(64, int(srate * 2) if srate > 0 else 1024)
        lost_after = max(1.0, 10.0 / srate) if srate > 0 else float("inf")
        next_offset = 0.0
        try:
            # The stop flag is checked after every pull, full or empty: a stream that never
            # pauses must not keep the recorder running.
            while not self.stop_event.is_set():
                if time.monotonic() >= next_offset:
                    try:
                        off = inlet.time_correction(timeout=self.limits.offset_timeout_s)
                        self.out.put(_Msg("offset", self.sid, float(off), pylsl.local_clock()))
                    except Exception:  # noqa: BLE001 - timeout or lost: skipped, counted
                        self.out.put(_Msg("offset_fail", self.sid))
                    next_offset = time.monotonic() + self.offset_interval
                if not self._pull(inlet, 0.0, max_samples):
                    if not self.lost and time.monotonic() - self.last_data > lost_after:
                        self.lost = True
                        self.out.put(_Msg("lost", self.sid, t=pylsl.local_clock()))
                self.stop_event.wait(self.limits.pull_interval_s)
            # Stop: what the inlet has received until now, with a bound (a fast stream keeps
            # refilling it).
            deadline = time.monotonic() + self.limits.drain_s
            while time.monotonic() < deadline and self._pull(inlet, 0.0, max_samples):
                pass
        except Exception as err:  # noqa: BLE001 - LostError only without recover
            self.out.put(_Msg("error", self.sid, f"stream {self.spec.name!r}: {err}"))
        finally:
            inlet.close_stream()

    def _pull(self, inlet: Any, timeout: float, max_samples: int) -> bool:
        """One pull; puts what came on the queue. True if samples came."""
        import pylsl

        samples, ts = inlet.pull_chunk(timeout=timeout, max_samples=max_samples, as_numpy=True)
        if not len(ts):
            return False
        spec = self.spec
        ts = np.asarray(ts, np.float64)
        if spec.is_string:
            samples = np.vectorize(
                lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                otypes=[object])(samples)
        else:
            samples = np.array(samples, copy=True)
        for a, b in find_gaps(self.last_ts, ts, spec.nominal_srate):
            self.out.put(_Msg("gap", self.sid, (a, b)))
        self.last_ts = float(ts[-1])
        self.last_data = time.monotonic()
        if self.lost:
            self.lost = False
            self.out.put(_Msg("recovered", self.sid, t=pylsl.local_clock()))
        self.out.put(_Msg("data", self.sid, (samples, ts)))
        if spec.is_string:
            for row, t in zip(samples, ts):
                self.out.put(_Msg("marker", self.sid, str(row[0]), float(t)))
        return True


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
    limits: RecordLimits = field(default_factory=RecordLimits)
    on_error: Callable[[str], None] | None = None
    on_warning: Callable[[str], None] | None = None
    on_data: Callable[[StreamSpec, np.ndarray, np.ndarray], None] | None = None
    """Called from the writer thread with ``(spec, samples, timestamps)`` of every chunk
    written (imusic session's live curves use it); it must be quick. If it raises it is dropped
    with a warning and recording goes on."""
    status: dict[str, StreamStatus] = field(default_factory=dict, init=False)
    errors: list[str] = field(default_factory=list, init=False)
    failure: str = field(default="", init=False)   # why writing stopped early (one line)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._queue: queue.Queue[_Msg] = queue.Queue()
        self._stop = threading.Event()
        self._writer_done = threading.Event()
        self._pullers: dict[str, _Puller] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._specs: dict[str, StreamSpec] = {}   # puller ident -> spec (for ``on_data``)
        self._closing = False
        self.max_queue = 0
        self.started = 0.0
        self.byte_rate = 0.0       # uncompressed bytes/s of the streams being recorded
        self._warned_hours = float("inf")
        # Create the file now, so that an existing file is refused before anything starts.
        self._writer = SessionWriter(self.path, subject=self.subject,
                                     flush_interval=self.flush_interval,
                                     attrs={"recorder_types": list(self.types)})
        # A reserve file: if a write fails for want of space, deleting it gives the file the
        # room to close (HDF5 cannot drop what it failed to write, only write it again).
        self._ballast = self.path.with_name(f".{self.path.name}.reserve")
        free = self.free_bytes()
        try:
            if self.limits.min_free_bytes and free < self.limits.min_free_bytes:
                raise OSError("below the reserve")
            make_ballast(self._ballast, self.limits.ballast_bytes)
        except OSError:
            # Nothing was recorded: remove the empty session too, so the name stays free.
            with contextlib.suppress(Exception):
                self._writer.close()
            self._ballast.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)
            raise DiskFull(f"{self.path}: only {_size(free)} free on its disk, below the "
                           f"{_size(self.limits.min_free_bytes)} reserve: free space or "
                           "record elsewhere") from None

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

    def stop(self) -> None:
        """Stop: pull what is buffered, write it all, close the file. Safe to call twice.

        Pullers get ``limits.stop_within_s`` together to drain and end; one that is still
        blocked then is left behind (what it pulled is already queued). The writer then
        writes the whole queue and closes the file."""
        import pylsl

        if self._stop.is_set() and self._writer_done.is_set():
            return
        self._stop.set()
        deadline = time.monotonic() + self.limits.stop_within_s
        for th in self._threads[1:] + list(self._pullers.values()):
            th.join(max(0.0, deadline - time.monotonic()))
        if not self._closing:
            self._closing = True
            self._queue.put(_Msg("event", "", "recording stopped", pylsl.local_clock()))
            self._queue.put(_Msg("close", ""))
        self._writer_done.wait(self.limits.close_timeout_s)

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def writer_failed(self) -> bool:
        """True if writing stopped early (disk full, a write error): see ``failure``."""
        return bool(self.failure)

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
        from firmware_bridge.streams import continuous_resolver, resolve

        # One-shot resolves in a loop while streams are arriving: a one-shot query goes out at
        # once and returns as soon as one stream more than last time answers, so a new stream
        # is found within milliseconds (an outlet sends a new inlet only what is pushed after
        # it connects). Each costs a resolver set up and torn down: 1.4-2.5 % of a core at ten
        # a second, more than the recording itself. So after ``resolve_fast_s`` without a new
        # stream the continuous resolver takes over (0.2 %, its waves find a stream in ~1 s).
        pred = build_predicate(self.types, self.names)
        present = 0
        fast_until = time.monotonic() + self.limits.resolve_fast_s
        continuous = None
        while not self._stop.is_set():
            try:
                if time.monotonic() < fast_until:
                    continuous = None
                    found = resolve(pred, present + 1, self.limits.resolve_wait_s)
                else:
                    if continuous is None:
                        continuous = continuous_resolver(pred)
                    self._stop.wait(self.limits.resolve_poll_s)
                    found = continuous.results()
            except Exception as err:  # noqa: BLE001 - a network hiccup: try again
                self._report(f"resolving streams failed: {err}")
                self._stop.wait(self.limits.resolve_wait_s)
                continue
            present = len(found)
            for info in found:
                # A stream is one source: its source_id if it has one (LSL recovers it by
                # that), else its uid.
                ident = (f"{info.name()}|{info.source_id()}" if info.source_id()
                         else info.uid())
                if ident in self._pullers or self._stop.is_set():
                    continue
                with self._lock:
                    self.status[ident] = StreamStatus(name=info.name(), type=info.type(),
                                                      srate=info.nominal_srate())
                p = _Puller(info, ident, self._queue, self._stop, self.offset_interval,
                            self.limits)
                self._pullers[ident] = p
                p.start()
                # More streams may follow this one (a lab starting its devices): look fast.
                fast_until = time.monotonic() + self.limits.resolve_fast_s

    def _write_loop(self) -> None:
        w = self._writer
        keys: dict[str, str] = {}
        next_disk = 0.0
        try:
            while True:
                try:
                    msg = self._queue.get(timeout=0.2)
                except queue.Empty:
                    msg = None
                if msg is not None:
                    self.max_queue = max(self.max_queue, self._queue.qsize() + 1)
                    if msg.kind == "close":
                        break
                    self._handle(w, keys, msg)
                if time.monotonic() >= next_disk:
                    next_disk = time.monotonic() + self.limits.disk_check_s
                    self._check_disk()
                w.maybe_flush()
            w.close()
        except DiskFull as err:
            # Stop with room left: the file closes cleanly with all that was written.
            self._fail(f"{err}; recording stopped", w.close)
        except Exception as err:  # noqa: BLE001 - a write failed: stop, keep what is on disk
            self._fail(f"{self.path}: writing failed ({describe_write_error(err)}); "
                       "recording stopped", w.close_after_failure)
        finally:
            self._ballast.unlink(missing_ok=True)
            self._writer_done.set()

    def _fail(self, text: str, close: Callable[[], Any]) -> None:
        """Stop recording after a disk or write failure; close; say what the file keeps."""
        self._stop.set()
        self._ballast.unlink(missing_ok=True)
        try:
            close()
            kept = saved_summary(self.path)
        except Exception as err:  # noqa: BLE001 - the file could not be repaired
            kept = (f"the file could not be closed ({describe_write_error(err)}); data up to "
                    f"the last flush may be readable with 'h5clear -s {self.path}'")
        self.failure = f"{text}; {kept}"

    def free_bytes(self) -> int:
        """Free bytes on the disk of the session file."""
        return shutil.disk_usage(self.path.parent).free

    def _check_disk(self) -> None:
        """Warn when free space lasts less than ``warn_free_hours``; raise DiskFull below the
        reserve."""
        free = self.free_bytes()
        lim = self.limits
        if lim.min_free_bytes and free < lim.min_free_bytes:
            raise DiskFull(f"{self.path}: disk almost full ({_size(free)} free, below the "
                           f"{_size(lim.min_free_bytes)} reserve)")
        if self.byte_rate > 0:
            hours = (free - lim.min_free_bytes) / self.byte_rate / 3600.0
            if hours < lim.warn_free_hours and hours < 0.5 * self._warned_hours:
                self._warned_hours = hours
                self._warn(f"{self.path}: {_size(free)} free on its disk, about "
                           f"{_duration(hours * 3600)} at the current {_size(self.byte_rate)}/s; "
                           f"the recording stops when less than "
                           f"{_size(lim.min_free_bytes)} is left")

    def _warn(self, text: str) -> None:
        if self.on_warning:
            self.on_warning(text)

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
            self._specs[msg.ident] = msg.payload
            with self._lock:
                st.key = key
            w.add_event(msg.payload.created_at, f"stream added: {key}")
            self.byte_rate += stream_byte_rate(msg.payload)
            self._check_disk()
            return
        key = keys[msg.ident]
        if msg.kind == "data":
            samples, ts = msg.payload
            w.append(key, samples, ts)
            with self._lock:
                if not st.first_wall:
                    st.first_wall = time.monotonic()
                st.samples += len(ts)
            if self.on_data is not None:
                try:
                    self.on_data(self._specs[msg.ident], samples, ts)
                except Exception as err:  # noqa: BLE001 - a display must never stop recording
                    self.on_data = None
                    self._warn(f"live view of the streams stopped ({err}); recording goes on")
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


def stream_byte_rate(spec: StreamSpec) -> float:
    """Uncompressed bytes per second a stream adds to the file (samples and timestamps)."""
    if spec.nominal_srate <= 0:
        return 0.0
    item = 16 if spec.is_string else np.dtype(spec.dtype).itemsize
    return spec.nominal_srate * (spec.channel_count * item + 8)


def make_ballast(path: Path, size: int) -> None:
    """A file of ``size`` bytes with its disk blocks allocated (raises OSError if no room)."""
    if size <= 0:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.write(fd, bytes(size))     # filesystems without fallocate
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def saved_summary(path: Path) -> str:
    """What a closed session holds, in words: samples and seconds per stream."""
    with SessionReader(path) as r:
        parts = []
        for key in r.keys:
            ts = r.h5["streams"][key]["time_stamps"]
            n = min(ts.shape[0], r.h5["streams"][key]["time_series"].shape[0])
            dur = float(ts[n - 1] - ts[0]) if n > 1 else 0.0
            parts.append(f"{key} {n} samples ({dur:.1f} s)")
    return "kept " + (", ".join(parts) if parts else "no samples")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _duration(s: float) -> str:
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")
