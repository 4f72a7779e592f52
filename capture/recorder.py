"""The LSL recorder: every matching stream on the network into one session file.

How the pieces fit. ``Recorder`` (here) owns the threads and the one queue they share:

* the resolver (``capture.recorder_streams.find_streams``) finds streams, also late ones,
  and starts a ``StreamThread`` for each, which opens its inlet, hands it to the pull loop
  and then measures the stream's clock offset every ``offset_interval``;
* the pull loop (``PullLoop``, one thread for all streams) pulls every inlet every
  ``RecordLimits.pull_interval_s`` and puts one batch of messages per round on the queue;
* the writer thread (``_write_loop`` here) owns the ``SessionWriter`` and is the only code that
  touches the file; it also checks the disk (``capture.recorder_disk``).

Cost. Per second the Python work is a fixed number of pull rounds (1 / pull_interval_s, for
all streams together), as many writer wake-ups, and two HDF5 writes per stream and flush (the
writer writes whole chunks, ``capture.session_chunks.WriteLimits``), whatever the sample rate:
no per-sample Python. Each thread that wakes costs more than the work it does, so there is one
pull thread, not one per stream, and the command's own loop wakes every
``RecordLimits.status_poll_s``.

Memory. About 40 of the recorder's 53 MB resident is Python with numpy, h5py and pylsl
imported; the command imports nothing else it does not use (no asyncio, ssl, socket or
importlib.metadata: ``imusic.runner.BlockingRunner``). capture/FORMAT.md "The recorder's
memory" has the table, part by part, and what was tried and left.

Late streams. Adding a stream to the file means reopening it without SWMR, which HDF5 refuses
while any other process has the file open (a reader's lock: ``imusic info``, a notebook, a
viewer). A stream that joins while one does is held back: the writer asks the pull loop not to
pull it, so its samples wait in its inlet's own buffer (``streams.INLETS["record"]``, 360 s),
and adds it as soon as the reader lets go (checked every ``late_check_s``), with nothing lost.
The other streams are recorded meanwhile. One warning names the process. At stop the writer
waits up to ``late_close_wait_s`` more; a stream still held then is not in the file, and
``errors`` says so and which process kept the file open.

Stop and failures (thresholds in ``RecordLimits``). The pull loop checks the stop flag after
every round and then drains the inlets briefly, so ``stop()`` returns within about a second
while sources keep streaming. The writer checks free disk space: it warns when less than an
hour is left and stops cleanly below a reserve (``DiskFull``). If a write fails anyway, it
frees its reserve file, so that HDF5 has room to close, and cuts the file back to its last good
flush (``SessionWriter.close_after_failure``). ``failure`` then holds the one line to show.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from imusic.capture.recorder_disk import (
    DiskFull,
    check_free_space,
    make_ballast,
    saved_summary,
    size_text,
    stream_byte_rate,
)
from imusic.capture.recorder_disk import size_text as _size
from imusic.capture.recorder_streams import (
    DEFAULT_TYPES,
    Msg,
    PullLoop,
    StreamThread,
    build_predicate,
    find_gaps,
    gap_threshold,
    find_streams,
)
from imusic.capture.session import (FileHeldError, SessionWriter, StreamSpec,
                                    describe_write_error)
from imusic.capture.session_h5 import hold_reserve_lock, reserve_path
from imusic.firmware_bridge.streams import INLETS

__all__ = ["DEFAULT_TYPES", "DiskFull", "RecordLimits", "Recorder", "StreamStatus",
           "build_predicate", "find_gaps", "gap_threshold", "make_ballast", "saved_summary",
           "size_text", "stream_byte_rate"]


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

    stop_within_s: float = 0.8       # stop(): the pull loop drains and ends within this long
    drain_s: float = 0.3             # at stop, how long the pull loop pulls what is buffered
    pull_interval_s: float = 0.1     # the pull loop pulls what every inlet holds this often
    #                                  (and checks the stop flag): it adds this to what a kill
    #                                  loses
    offset_timeout_s: float = 0.5    # wait for one clock-offset measurement
    close_timeout_s: float = 15.0    # stop(): wait for the writer to write the queue and close
    resolve_wait_s: float = 0.1      # one resolve query waits this long for a new stream
    resolve_fast_s: float = 30.0     # one-shot resolves this long after start and a new stream
    resolve_poll_s: float = 0.5      # then: how often the continuous resolver's list is read
    warn_free_hours: float = 1.0     # warn when free disk lasts less than this at the data rate
    min_free_bytes: int = 1 << 20    # stop cleanly when free disk falls below this (0 = never)
    ballast_bytes: int = 512 << 10   # disk kept in a reserve file, freed so a failed file can close
    disk_check_s: float = 0.5        # how often the writer checks free disk space
    status_poll_s: float = 0.5       # how often ``imusic record`` looks for stop, failure and
    #                                  the end of --seconds (a signal is seen at once)
    late_check_s: float = 0.5        # how often the writer looks again whether a stream held
    #                                  back by a reader of the file can be added
    late_close_wait_s: float = 10.0  # at stop, how long it waits for that reader to let go


@dataclass
class LateStream:
    """A stream the writer could not add yet (a reader has the file open): its spec, the
    messages that came for it meanwhile (queued before its pulls stopped, clock offsets), and
    since when it waits."""

    spec: StreamSpec
    since: float
    blockers: list[str]
    messages: list[Msg] = field(default_factory=list)
    overflow_warned: bool = False


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
        self._queue: queue.Queue[Msg] = queue.Queue()
        self._stop = threading.Event()
        self._writer_done = threading.Event()
        self._pulls = PullLoop(self._queue, self._stop, self.limits)
        self._streams: dict[str, StreamThread] = {}   # stream ident -> its thread
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._specs: dict[str, StreamSpec] = {}   # puller ident -> spec (for ``on_data``)
        self._late: dict[str, LateStream] = {}    # streams held back while a reader has the file
        self._next_late_check = 0.0
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
        # Its lock tells readers (``imusic info``) that the file is being recorded.
        self._ballast = reserve_path(self.path)
        self._lock_fd: int | None = None
        free = self.free_bytes()
        try:
            if self.limits.min_free_bytes and free < self.limits.min_free_bytes:
                raise OSError("below the reserve")
            make_ballast(self._ballast, self.limits.ballast_bytes)
            if self._ballast.exists():
                self._lock_fd = hold_reserve_lock(self.path)
        except OSError:
            self._drop_ballast()
            # Nothing was recorded: remove the empty session too, so the name stays free.
            with contextlib.suppress(Exception):
                self._writer.close()
            self.path.unlink(missing_ok=True)
            raise DiskFull(f"{self.path}: only {_size(free)} free on its disk, below the "
                           f"{_size(self.limits.min_free_bytes)} reserve: free space or "
                           "record elsewhere") from None

    # ---------------------------------------------------------------- control
    def start(self) -> "Recorder":
        """Start resolving, pulling and writing (returns immediately)."""
        import pylsl

        self.started = time.monotonic()
        self._queue.put(Msg("event", "", "recording started", pylsl.local_clock()))
        for target, name in ((self._write_loop, "session-writer"),
                             (self._resolve_loop, "lsl-resolver")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        self._pulls.start()
        self._threads.append(self._pulls)
        return self

    def stop(self) -> None:
        """Stop: pull what is buffered, write it all, close the file. Safe to call twice.

        The resolver, the pull loop and the stream threads get ``limits.stop_within_s``
        together to drain and end; one that is still blocked then is left behind (what it
        pulled is already queued). The writer then writes the whole queue and closes the
        file."""
        import pylsl

        if self._stop.is_set() and self._writer_done.is_set():
            return
        self._stop.set()
        deadline = time.monotonic() + self.limits.stop_within_s
        for th in self._threads[1:] + list(self._streams.values()):
            th.join(max(0.0, deadline - time.monotonic()))
        if not self._closing:
            self._closing = True
            self._queue.put(Msg("event", "", "recording stopped", pylsl.local_clock()))
            self._queue.put(Msg("close", ""))
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
            for ident, s in self.status.items():
                if ident in self._late:
                    parts.append(f"{s.name} [{s.type}] WAITING for a reader to close the file")
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
        find_streams(build_predicate(self.types, self.names), self.limits, self._stop,
                        self._found, self._report)

    def _found(self, info: Any, ident: str) -> bool:
        """A stream the resolver found: open it if it is new (True)."""
        if ident in self._streams or self._stop.is_set():
            return False
        with self._lock:
            self.status[ident] = StreamStatus(name=info.name(), type=info.type(),
                                              srate=info.nominal_srate())
        th = StreamThread(info, ident, self._queue, self._stop, self._pulls,
                          self.offset_interval, self.limits)
        self._streams[ident] = th
        th.start()
        return True

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
                if self._late and time.monotonic() >= self._next_late_check:
                    self._next_late_check = time.monotonic() + self.limits.late_check_s
                    self._add_late(w, keys)
                if time.monotonic() >= next_disk:
                    next_disk = time.monotonic() + self.limits.disk_check_s
                    self._check_disk()
                w.maybe_flush()
            self._add_late(w, keys, wait_s=self.limits.late_close_wait_s)
            try:
                w.close()
            except FileHeldError as err:   # all is written and closed; only the seal is not
                self.failure = str(err)
        except DiskFull as err:
            # Stop with room left: the file closes cleanly with all that was written.
            self._fail(f"{err}; recording stopped", w.close)
        except Exception as err:  # noqa: BLE001 - a write failed: stop, keep what is on disk
            self._fail(f"{self.path}: writing failed ({describe_write_error(err)}); "
                       "recording stopped", w.close_after_failure)
        finally:
            self._drop_ballast()
            self._writer_done.set()

    def _drop_ballast(self) -> None:
        """Delete the reserve file and drop its lock."""
        self._ballast.unlink(missing_ok=True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def _fail(self, text: str, close: Callable[[], Any]) -> None:
        """Stop recording after a disk or write failure; close; say what the file keeps."""
        self._stop.set()
        # Room to close: the reserve's blocks are freed once it is unlinked and its lock's
        # descriptor closed.
        self._drop_ballast()
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
        warning, self._warned_hours = check_free_space(
            self.path, self.free_bytes(), self.byte_rate, self.limits.min_free_bytes,
            self.limits.warn_free_hours, self._warned_hours)
        if warning:
            self._warn(warning)

    def _warn(self, text: str) -> None:
        if self.on_warning:
            self.on_warning(text)

    def _handle(self, w: SessionWriter, keys: dict[str, str], msg: Msg) -> None:
        if msg.kind == "batch":
            for m in msg.payload:
                self._handle(w, keys, m)
            return
        st = self.status.get(msg.ident)
        if msg.kind == "event":
            w.add_event(msg.t, msg.payload)
            return
        if msg.kind == "error":
            self._report(msg.payload)
            return
        if msg.kind == "add":
            blockers = w.structure_blocked_by()
            if blockers:
                self._hold_late(msg.ident, msg.payload, blockers)
            else:
                self._add(w, keys, msg.ident, msg.payload)
            return
        late = self._late.get(msg.ident)
        if late is not None:
            late.messages.append(msg)
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

    def _add(self, w: SessionWriter, keys: dict[str, str], ident: str, spec: StreamSpec) -> None:
        key = w.add_stream(spec)
        keys[ident] = key
        self._specs[ident] = spec
        with self._lock:
            self.status[ident].key = key
        w.add_event(spec.created_at, f"stream added: {key}")
        self.byte_rate += stream_byte_rate(spec)
        self._check_disk()

    def _hold_late(self, ident: str, spec: StreamSpec, blockers: list[str]) -> None:
        """Hold a new stream back while ``blockers`` have the file open (module docstring)."""
        self._pulls.hold(ident)
        self._late[ident] = LateStream(spec, time.monotonic(), blockers)
        self._warn(f"stream {spec.name!r} joined while {', '.join(blockers)} has {self.path} "
                   f"open: it is held in its LSL buffer (up to {INLETS['record'].max_buflen} s) "
                   "and recorded once that process closes the file")

    def _add_late(self, w: SessionWriter, keys: dict[str, str], wait_s: float = 0.0) -> None:
        """Add the held streams if no reader has the file open now (waiting up to ``wait_s``
        for that), each with what came for it meanwhile; after the pull loop has ended, drain
        their inlets here."""
        deadline = time.monotonic() + wait_s
        while self._late and (blockers := w.structure_blocked_by()):
            if time.monotonic() >= deadline:
                for late in self._late.values():
                    late.blockers = blockers
                    self._warn_overflow(late)
                if wait_s:
                    self._give_up_late(blockers)
                return
            time.sleep(self.limits.late_check_s)
        for ident, late in list(self._late.items()):
            self._add(w, keys, ident, late.spec)
            del self._late[ident]
            for msg in late.messages:
                self._handle(w, keys, msg)
            parked = self._pulls.release(ident)
            if parked is not None:   # the pull loop has ended: what the inlet holds, here
                out: list[Msg] = []
                drain_until = time.monotonic() + self.limits.drain_s
                while parked.pull(out) and time.monotonic() < drain_until:
                    pass
                for msg in out:
                    self._handle(w, keys, msg)
                parked.inlet.close_stream()
            self._warn(f"stream {late.spec.name!r} added to {self.path} after waiting "
                       f"{time.monotonic() - late.since:.1f} s for a reader to close it")

    def _warn_overflow(self, late: LateStream) -> None:
        """Say once that a held stream has waited past its inlet's buffer."""
        if (not late.overflow_warned
                and time.monotonic() - late.since > INLETS["record"].max_buflen):
            late.overflow_warned = True
            self._warn(f"stream {late.spec.name!r} has waited longer than its "
                       f"{INLETS['record'].max_buflen} s LSL buffer for {', '.join(late.blockers)} "
                       f"to close {self.path}: its oldest samples are being dropped")

    def _give_up_late(self, blockers: list[str]) -> None:
        """At stop: the held streams are not in the file; say which and why."""
        for ident, late in self._late.items():
            self._report(f"{self.path}: stream {late.spec.name!r} was not recorded: "
                         f"{', '.join(blockers)} kept the file open from when it joined until "
                         "the end; close readers of a session while it records")
            parked = self._pulls.release(ident)
            if parked is not None:
                parked.inlet.close_stream()
        self._late.clear()

    def _report(self, text: str) -> None:
        self.errors.append(text)
        if self.on_error:
            self.on_error(text)
