"""Writing a session: ``SessionWriter`` and ``write_stream``.

Part of the session file package (``capture/session.py`` says how the pieces fit, and why
SWMR makes the writer alternate between structure changes with SWMR off and appends with it
on). The writer is one thread's: it creates the file (never overwriting), adds streams
(reopening the file without SWMR for the moment that takes), keeps each sample dataset's
newest rows in memory until they fill a chunk (``capture.session_chunks``), flushes at least
every ``flush_interval``, seals the file at close, and after a failed write cuts every dataset
back to what the last successful flush put on disk (``close_after_failure``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from imusic.capture.session_chunks import WRITE_LIMITS, PendingRows, WriteLimits, chunk_rows
from imusic.capture.session_h5 import file_holders
from imusic.capture.session_schema import (
    _COMPRESSION,
    _STR,
    EVENTS,
    HEALTH_FIELDS,
    LIBVER,
    SCHEMA,
    SCHEMA_VERSION,
    STREAMS,
    FileHeldError,
    SessionError,
    SessionExistsError,
    StreamSpec,
    _package_version,
    _utc_now,
    describe_write_error,
    stream_key,
)


class SessionWriter:
    """Creates a session file and appends to it (one thread only: the recorder's writer).

    Use as a context manager; on exit the file is flushed, closed and marked as cleanly closed.
    Never overwrites: a ``SessionError`` naming the file is raised if it exists.
    """

    def __init__(self, path: str | Path, *, subject: str = "", attrs: dict[str, Any] | None = None,
                 flush_interval: float = 0.5, swmr: bool = True,
                 limits: WriteLimits = WRITE_LIMITS) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise SessionExistsError(f"{self.path} already exists: choose another name "
                               "(sessions are never overwritten)")
        if not self.path.parent.is_dir():
            raise SessionError(f"{self.path}: folder {self.path.parent} does not exist")
        self.flush_interval = float(flush_interval)
        self.limits = limits
        self._swmr = swmr
        # Sample rows not yet handed to HDF5, and each sample dataset's rows per chunk.
        self._pending: dict[str, PendingRows] = {}
        self._chunk: dict[str, int] = {}
        self.h5_writes = 0        # dataset writes handed to HDF5 (the profile's call count)
        self.part_chunk_writes = 0  # writes that left a chunk part filled (paused streams)
        self._specs: dict[str, StreamSpec] = {}
        self._health: dict[str, np.ndarray] = {}
        self._dirty_health: set[str] = set()
        self._last_flush = time.monotonic()
        self.n_flushes = 0
        # Open dataset handles by path (kept open so that a failed write is raised by the
        # write or flush that did it, not lost in a handle's destructor).
        self._handles: dict[str, h5py.Dataset] = {}
        # Rows of every appended dataset: as written, and as of the last successful flush
        # (what is known to be on disk; a failed write trims back to it).
        self._rows: dict[str, int] = {}
        self._durable: dict[str, int] = {}
        self.write_error = ""
        try:
            # 'x' = create, fail if it exists (a race with another writer is refused too).
            self._h5 = h5py.File(self.path, "x", libver=LIBVER,
                                 rdcc_nbytes=self.limits.chunk_cache_bytes)
        except (FileExistsError, OSError) as err:
            raise SessionError(f"cannot create session {self.path}: {err}") from err
        root = self._h5.attrs
        root["schema"] = SCHEMA
        root["schema_version"] = SCHEMA_VERSION
        root["created"] = _utc_now()
        root["subject"] = subject
        root["host"] = platform.node()   # the host name (numpy loads platform; socket is 0.4 MB)
        root["imusic_version"] = _package_version()
        root["closed_cleanly"] = False
        for k, v in (attrs or {}).items():
            root[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
        self._h5.create_group(STREAMS)
        ev = self._h5.create_group(EVENTS)
        ev.create_dataset("time", shape=(0,), maxshape=(None,), chunks=(256,), dtype=np.float64)
        ev.create_dataset("source", shape=(0,), maxshape=(None,), chunks=(256,), dtype=_STR)
        ev.create_dataset("text", shape=(0,), maxshape=(None,), chunks=(256,), dtype=_STR)
        hb = self._h5.create_dataset("heartbeat", data=np.zeros(2, np.float64))
        hb.attrs["columns"] = json.dumps(["unix_time", "flushes"])
        self._start_swmr()

    # ----------------------------------------------------------------- structure
    def _start_swmr(self) -> None:
        if self._swmr:
            self._h5.swmr_mode = True

    def _reopen_for_structure(self) -> None:
        """Close and reopen without SWMR so that new datasets can be created."""
        if self._swmr and self._h5.swmr_mode:
            self.flush(whole_chunks=True)
            self._handles.clear()
            self._h5.close()
            self._h5 = self._open_plain("a", "add a stream")

    def _open_plain(self, mode: str, why: str) -> h5py.File:
        """Reopen the file without SWMR. A reader in another process (``imusic info``, a
        notebook) holds HDF5's file lock while it has the file open: wait for it to let go,
        for ``limits.reopen_wait_s``; then ``FileHeldError`` naming it."""
        deadline = time.monotonic() + self.limits.reopen_wait_s
        while True:
            try:
                return h5py.File(self.path, mode, libver=LIBVER,
                                 rdcc_nbytes=self.limits.chunk_cache_bytes)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holders = ", ".join(file_holders(self.path)) or "another process"
                    raise FileHeldError(
                        f"{self.path}: cannot {why}: {holders} has the file open (HDF5's "
                        f"lock) for over {self.limits.reopen_wait_s:g} s; close readers of a "
                        "session while it records") from None
                time.sleep(self.limits.reopen_retry_s)

    def structure_blocked_by(self) -> list[str]:
        """The processes whose open handle on the file would make ``add_stream`` wait now (it
        reopens the file: ``file_holders``); empty when nothing would, or when SWMR is not on
        (then nothing is reopened)."""
        if not (self._swmr and self._h5.swmr_mode):
            return []
        return file_holders(self.path)

    @property
    def keys(self) -> list[str]:
        """Keys of the streams in the file, in the order they were added."""
        return list(self._specs)

    def spec(self, key: str) -> StreamSpec:
        """The spec of a stream already added."""
        return self._specs[key]

    def add_stream(self, info: Any, key: str | None = None) -> str:
        """Add a stream (a ``pylsl.StreamInfo``, a ``StreamSpec`` or an info XML string).

        Returns its key (group name under /streams). Call it when the stream appears; the
        writer reopens the file briefly if SWMR is already on.
        """
        if isinstance(info, StreamSpec):
            spec = info
        elif isinstance(info, str):
            spec = StreamSpec.from_xml(info)
        else:
            spec = StreamSpec.from_info(info)
        key = stream_key(key or spec.name, self._specs)
        self._reopen_for_structure()
        g = self._h5[STREAMS].create_group(key)
        for attr in ("name", "type", "source_id", "hostname", "uid", "channel_format"):
            g.attrs[attr] = getattr(spec, attr)
        g.attrs["nominal_srate"] = spec.nominal_srate
        g.attrs["channel_count"] = spec.channel_count
        g.attrs["created_at"] = spec.created_at
        g.attrs["added"] = _utc_now()
        g.create_dataset("info_xml", data=spec.info_xml, dtype=_STR)
        for name in ("labels", "units", "types"):
            g.create_dataset(f"channel_{name}", data=np.array(getattr(spec, name), dtype=object),
                             dtype=_STR)
        c = spec.channel_count
        # Series and stamps share one chunk length: both are written a whole chunk at a time.
        rows = chunk_rows(spec, self.limits)
        extra = {} if spec.is_string else _COMPRESSION
        g.create_dataset("time_series", shape=(0, c), maxshape=(None, c), chunks=(rows, c),
                         dtype=spec.dtype, **extra)
        g.create_dataset("time_stamps", shape=(0,), maxshape=(None,), chunks=(rows,),
                         dtype=np.float64, **_COMPRESSION)
        for name in ("time_series", "time_stamps"):
            self._chunk[f"{STREAMS}/{key}/{name}"] = rows
            self._pending[f"{STREAMS}/{key}/{name}"] = PendingRows()
        co = g.create_dataset("clock_offsets", shape=(0, 2), maxshape=(None, 2), chunks=(256, 2),
                              dtype=np.float64)
        co.attrs["columns"] = json.dumps(["time", "offset"])
        gp = g.create_dataset("gaps", shape=(0, 2), maxshape=(None, 2), chunks=(64, 2),
                              dtype=np.float64)
        gp.attrs["columns"] = json.dumps(["start", "end"])
        h = g.create_dataset("health", data=np.zeros(len(HEALTH_FIELDS), np.int64))
        h.attrs["columns"] = json.dumps(list(HEALTH_FIELDS))
        self._specs[key] = spec
        self._health[key] = np.zeros(len(HEALTH_FIELDS), np.int64)
        self._start_swmr()
        return key

    # ----------------------------------------------------------------- appends
    def _ds(self, path: str) -> h5py.Dataset:
        ds = self._handles.get(path)
        if ds is None:
            ds = self._handles[path] = self._h5[path]
        return ds

    def _extend(self, path: str, rows: np.ndarray) -> None:
        ds = self._ds(path)
        n = self._rows.get(path)
        if n is None:
            n = ds.shape[0]
        ds.resize(n + len(rows), axis=0)
        ds[n:] = rows
        self._rows[path] = n + len(rows)
        self.h5_writes += 1

    def _hold(self, path: str, rows: np.ndarray) -> None:
        """Queue sample rows for ``path``; write whole chunks now if many are waiting."""
        p = self._pending[path]
        p.parts.append(rows)
        p.times.append(time.monotonic())
        p.rows += len(rows)
        if p.rows >= self.limits.max_pending_chunks * self._chunk[path]:
            self._write_pending(path, force=False)

    def _write_pending(self, path: str, force: bool) -> None:
        """Write the waiting rows of ``path`` that complete chunks; the rest too if ``force``
        or if its oldest row has waited ``hold_s`` (the stream paused or ended)."""
        p = self._pending[path]
        if not p.rows:
            return
        n, cr = self._rows.get(path, 0), self._chunk[path]
        m = (n + p.rows) // cr * cr - n
        if force or (m < p.rows and time.monotonic() - p.came(max(m, 0)) >= self.limits.hold_s):
            m = p.rows
        if m <= 0:
            return
        rows = p.parts[0] if len(p.parts) == 1 else np.concatenate(p.parts)
        self._extend(path, rows[:m])
        if (n + m) % cr:
            self.part_chunk_writes += 1
        rest = rows[m:]
        came = p.came(m) if len(rest) else 0.0
        p.parts, p.times, p.rows = ([rest], [came], len(rest)) if len(rest) else ([], [], 0)

    def pending_rows(self, key: str) -> int:
        """Rows of stream ``key`` given to ``append`` but not yet handed to HDF5."""
        return self._pending[f"{STREAMS}/{key}/time_series"].rows

    def durable_rows(self, key: str) -> int:
        """Rows of stream ``key`` on disk as of the last successful flush (both datasets)."""
        return min(self._durable.get(f"{STREAMS}/{key}/{name}", 0)
                   for name in ("time_series", "time_stamps"))

    def append(self, key: str, samples: Any, timestamps: Any) -> None:
        """Append ``samples`` (n, C) with their LSL ``timestamps`` (n,) to stream ``key``."""
        spec = self._specs.get(key)
        if spec is None:
            raise SessionError(f"{self.path}: no stream {key!r} (add_stream first)")
        ts = np.asarray(timestamps, np.float64).reshape(-1)
        if spec.is_string:
            data = np.array(samples, dtype=object).reshape(len(ts), -1)
        else:
            data = np.asarray(samples, dtype=spec.dtype)
            data = data.reshape(len(ts), -1) if data.size else data.reshape(0, spec.channel_count)
        if data.shape != (len(ts), spec.channel_count):
            raise SessionError(f"{self.path}: stream {key!r} takes (n, {spec.channel_count}) "
                               f"samples with n timestamps; got {data.shape} and {ts.shape}")
        if not len(ts):
            return
        self._hold(f"{STREAMS}/{key}/time_series", data)
        self._hold(f"{STREAMS}/{key}/time_stamps", ts)
        self.count(key, "samples", len(ts))
        self.count(key, "chunks")
        self.maybe_flush()

    def add_clock_offset(self, key: str, t: float, offset: float) -> None:
        """Record a clock offset (``inlet.time_correction()``) measured at local time ``t``.

        Non-finite values are refused: a failed measurement is counted, never written."""
        if not (np.isfinite(t) and np.isfinite(offset)):
            self.count(key, "offset_failures")
            return
        self._extend(f"{STREAMS}/{key}/clock_offsets", np.array([[t, offset]], np.float64))
        self.count(key, "offsets")

    def add_gap(self, key: str, start: float, end: float) -> None:
        """Record that stream ``key`` had no data between LSL times ``start`` and ``end``."""
        self._extend(f"{STREAMS}/{key}/gaps", np.array([[start, end]], np.float64))
        self.count(key, "gaps")

    def add_event(self, t: float, text: str, source: str = "recorder") -> None:
        """Add an event (a marker, a stream lost or found, a note) at LSL time ``t``."""
        self._extend(f"{EVENTS}/time", np.array([t], np.float64))
        self._extend(f"{EVENTS}/source", np.array([source], dtype=object))
        self._extend(f"{EVENTS}/text", np.array([text], dtype=object))

    def count(self, key: str, name: str, n: int = 1) -> None:
        """Add ``n`` to the health counter ``name`` (one of HEALTH_FIELDS) of stream ``key``."""
        self._health[key][HEALTH_FIELDS.index(name)] += n
        self._dirty_health.add(key)

    def health(self, key: str) -> dict[str, int]:
        """The current health counters of a stream."""
        return dict(zip(HEALTH_FIELDS, (int(v) for v in self._health[key])))

    # ----------------------------------------------------------------- flushing
    def _write_health(self) -> None:
        for key in self._dirty_health:
            self._ds(f"{STREAMS}/{key}/health")[...] = self._health[key]
        self._dirty_health.clear()
        self.n_flushes += 1
        self._ds("heartbeat")[...] = np.array([time.time(), self.n_flushes], np.float64)

    def flush(self, whole_chunks: bool = False) -> None:
        """Write the waiting rows (only those that complete chunks, and those that waited
        ``hold_s``, if ``whole_chunks``), the counters, and flush it all to disk (readers see
        it after this)."""
        for path in self._pending:
            self._write_pending(path, force=not whole_chunks)
        self._write_health()
        self._h5.flush()
        self._durable.update(self._rows)
        self._last_flush = time.monotonic()

    def maybe_flush(self) -> bool:
        """Flush if the last flush is older than ``flush_interval``; True if it flushed."""
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush(whole_chunks=True)
            return True
        return False

    def close(self) -> None:
        """Flush, close, then mark the file as cleanly closed (it opens without SWMR after).

        If the final flush fails, ``close_after_failure`` trims the file and the error is
        raised."""
        if self._h5 is None:
            return
        try:
            self.flush()
        except Exception as err:
            self.close_after_failure(describe_write_error(err))
            raise
        self._handles.clear()
        self._h5.close()
        self._h5 = None
        # Attributes cannot change under SWMR: reopen once, plainly, to seal the file.
        with self._open_plain("r+", "mark the file closed cleanly (every sample in it is "
                                     "written; it reads as an interrupted recording)") as h5:
            h5.attrs["closed_cleanly"] = True
            h5.attrs["closed"] = _utc_now()

    def close_after_failure(self, reason: str = "a write failed") -> None:
        """After a failed write (disk full, I/O error): close the file and cut every appended
        dataset back to its rows as of the last successful flush, so that no dataset holds
        rows that never reached the disk (HDF5 grows a dataset's shape before its data is
        written). The health counters are set to what is kept, ``closed_cleanly`` to True and
        ``write_error`` to ``reason``. Raises if the file cannot be reopened."""
        if self._h5 is None and not self._rows:
            return
        self.write_error = reason
        for p in self._pending.values():     # never handed to HDF5: lost with the failure
            p.parts, p.times, p.rows = [], [], 0
        # The handles' destructors report writes that fail while they close; they are the
        # failure being handled here, so they are not printed.
        hook = sys.unraisablehook
        sys.unraisablehook = lambda _unraisable: None
        try:
            self._handles.clear()
            h5, self._h5 = self._h5, None
            if h5 is not None:
                with contextlib.suppress(Exception):
                    h5.close()
                del h5
            gc.collect()
        finally:
            sys.unraisablehook = hook
        with self._open_plain("r+", "cut the file back to its last good flush") as f:
            for path in self._rows:
                keep = self._durable.get(path, 0)
                if path in f and f[path].shape[0] > keep:
                    f[path].resize(keep, axis=0)
            for key, health in self._health.items():
                base = f"{STREAMS}/{key}"
                if f"{base}/health" in f:
                    health[HEALTH_FIELDS.index("samples")] = min(
                        self._durable.get(f"{base}/time_series", 0),
                        self._durable.get(f"{base}/time_stamps", 0))
                    f[f"{base}/health"][...] = health
            f.attrs["closed_cleanly"] = True
            f.attrs["closed"] = _utc_now()
            with contextlib.suppress(Exception):   # needs a little room; the trim did not
                f.attrs["write_error"] = reason

    def __enter__(self) -> "SessionWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # The block that wrote the file failed: keep what reached it, but do not seal the file
        # as cleanly closed (``imusic info`` then says it is incomplete).
        if self._h5 is not None:
            with contextlib.suppress(Exception):
                self.flush()
            self._handles.clear()
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None


def write_stream(writer: SessionWriter, spec: StreamSpec, time_series: Any,
                 time_stamps: Any, clock_offsets: Sequence[tuple[float, float]] = ()) -> str:
    """Add a whole stream at once (for imports and synthetic sessions); returns its key."""
    key = writer.add_stream(spec)
    writer.append(key, time_series, time_stamps)
    for t, off in clock_offsets:
        writer.add_clock_offset(key, t, off)
    return key


NO_RAW_NOTE = ("recorded with --no-raw: predicted blendshapes and device health only; no raw "
               "IMU signals and no camera data")
"""The root ``privacy`` attribute of a session recorded without raw IMU signals."""


def mark_no_raw(path: str | Path) -> None:
    """Record in a closed session file that it holds no raw IMU signals (``imusic live
    --record --no-raw``): root attributes ``raw_imu = False`` and ``privacy``
    (:data:`NO_RAW_NOTE`)."""
    with h5py.File(path, "a") as h5:
        h5.attrs["raw_imu"] = False
        h5.attrs["privacy"] = NO_RAW_NOTE
