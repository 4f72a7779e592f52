"""The session file: one HDF5 file per recording (layout in capture/FORMAT.md).

``SessionWriter`` creates a session and appends LSL data to it; ``SessionReader`` reads one
back (also while it is still being written, and after a killed recorder). The recorder, the
XDF import and ``imusic simulate`` all write through ``SessionWriter``; ``imusic info``,
``imusic sync`` and the exports read through ``SessionReader``.

SWMR and late streams. HDF5's single-writer/multiple-reader mode keeps the file consistent on
disk at every flush (so a ``kill -9`` leaves a readable file), but forbids creating groups or
datasets while it is on. The writer therefore works in two phases that alternate: structure
changes (a new stream, the events table) happen with SWMR off, then SWMR is switched on for
appending. When a stream joins late the writer flushes, closes the file, reopens it, creates the
stream's datasets and switches SWMR back on. That window lasts milliseconds, once per new
stream; everything else is plain appends under SWMR.

Chunks written once (``WriteLimits``). A compressed HDF5 chunk that is written part full and
then again fuller is stored anew each time, and under SWMR the old copy's space is not reused:
live sessions were mostly dead space. So the writer keeps each stream's newest rows in memory
until they fill a chunk (``chunk_s`` of samples), writes whole chunks at each flush, and writes
a part-filled chunk only when its rows have waited ``hold_s`` (a stream that paused or ended)
or at close. A sample reaches the disk at most ``chunk_s + flush_interval`` after the writer got
it (0.75 s; ``hold_s + flush_interval`` = 0.9 s for a stream that stopped mid-chunk), which is
what a killed recorder can lose. Nothing is repacked at close.

Damaged files. Every reader opens a session through ``open_h5`` (plain first; SWMR, with the
bounded retries of ``ReadLimits``, only for a file still flagged open for writing), and
``SessionReader`` turns any HDF5 error met while reading into one ``SessionError`` naming the
file and what could not be read (``reading``). So a truncated or corrupted file fails within a
second, with one message, in every command.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import json
import os
import re
import socket
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import h5py
import numpy as np

SCHEMA = "imusic.session"
SCHEMA_VERSION = 1

STREAMS = "streams"
EVENTS = "events"

# Per-stream health counters: one int64 each, in this order, in /streams/<key>/health.
HEALTH_FIELDS: tuple[str, ...] = (
    "samples",          # samples appended
    "chunks",           # append calls
    "gaps",             # gaps recorded (stream lost and back, or samples missing)
    "offsets",          # clock offsets measured and written
    "offset_failures",  # time_correction calls that failed (skipped, nothing written)
    "lost",             # times the stream was noticed lost
    "recovered",        # times it came back
)

# LSL channel formats (names as in the stream's info XML) -> HDF5 dtypes.
_FORMATS: dict[str, Any] = {
    "float32": np.float32, "double64": np.float64, "int8": np.int8, "int16": np.int16,
    "int32": np.int32, "int64": np.int64, "string": h5py.string_dtype("utf-8"),
}
# pylsl's numeric channel-format constants (cf_float32 = 1 ...) -> the names above.
_PYLSL_FORMATS = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16",
                  6: "int8", 7: "int64"}

_STR = h5py.string_dtype("utf-8")
MAX_CHANNELS = 65536     # far above any rig; guards against absurd headers
_COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
# HDF5 format bounds: every object is written in a format HDF5 1.10 reads (Debian's h5dump,
# h5py or MATLAB built on HDF5 1.10-1.14). SWMR needs at least v110. "latest" under HDF5 2.0
# writes attribute and layout versions that 1.x cannot read.
LIBVER = ("v110", "v110")


@dataclass(frozen=True)
class WriteLimits:
    """How the writer lays out and writes the sample datasets (defaults: what the recorder uses)."""

    chunk_s: float = 0.25
    """Seconds of samples per chunk of time_series and time_stamps (at the nominal rate)."""
    min_chunk_rows: int = 16
    """Fewest rows per chunk (and the chunk of irregular streams is 4x this)."""
    max_chunk_bytes: int = 1 << 20
    """Most bytes per time_series chunk (uncompressed), for streams with many channels."""
    hold_s: float = 0.4
    """Rows that have waited this long for their chunk to fill are written part filled."""
    max_pending_chunks: int = 64
    """Write whole chunks at once when this many are waiting (bulk appends: imports)."""
    chunk_cache_bytes: int = 0
    """HDF5's chunk cache per dataset (its default is 1 MiB): whole chunks are written
    straight through it, so the writer needs none."""


WRITE_LIMITS = WriteLimits()


def chunk_rows(spec: "StreamSpec", limits: WriteLimits = WRITE_LIMITS) -> int:
    """Rows per chunk of a stream's time_series and time_stamps."""
    itemsize = 16 if spec.is_string else np.dtype(spec.dtype).itemsize
    rows = (int(np.ceil(spec.nominal_srate * limits.chunk_s)) if spec.nominal_srate > 0
            else 4 * limits.min_chunk_rows)
    cap = max(limits.min_chunk_rows, limits.max_chunk_bytes // (spec.channel_count * itemsize))
    return int(min(max(limits.min_chunk_rows, rows), cap))


class _Pending:
    """Rows of one sample dataset that wait in memory for their chunk to fill."""

    __slots__ = ("parts", "times", "rows")

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.times: list[float] = []     # monotonic time each part came
        self.rows = 0

    def came(self, row: int) -> float:
        """When the waiting row ``row`` (0 = the oldest) came."""
        for part, t in zip(self.parts, self.times):
            if row < len(part):
                return t
            row -= len(part)
        return self.times[-1]


class SessionError(Exception):
    """A session file is missing, already exists, or is not a valid session."""


@dataclass(frozen=True)
class ReadLimits:
    """How far the readers go with a damaged file before giving up with one clear error."""

    swmr_metadata_attempts: int = 24
    """Reads of a metadata block whose checksum fails under SWMR (a live writer may be half way
    through it). HDF5's default, 100, doubles its wait each time: hours on a damaged file;
    24 waits about 17 ms in all."""
    check_whole_bytes: int = 16 << 20
    """``imusic info`` reads a dataset whole up to this many bytes (raw size)."""
    check_chunks: int = 8
    """Above that size it reads the first, the last and this many chunks spread between."""


READ_LIMITS = ReadLimits()


class SessionExistsError(SessionError, FileExistsError):
    """The session file to create exists already (it is never overwritten)."""


class DamagedSessionError(SessionError, ValueError):
    """A file that cannot be read back (truncated, corrupted); the message names it and what
    could not be read. A ``ValueError`` too, so that commands that refuse bad input refuse it."""


@dataclass
class StreamSpec:
    """What a session keeps about one LSL stream (everything in its info XML, parsed)."""

    name: str
    type: str
    channel_count: int
    nominal_srate: float
    channel_format: str = "float32"
    source_id: str = ""
    hostname: str = ""
    uid: str = ""
    created_at: float = 0.0
    labels: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    info_xml: str = ""

    def __post_init__(self) -> None:
        if self.channel_format not in _FORMATS:
            raise SessionError(f"stream {self.name!r}: unknown channel format "
                               f"{self.channel_format!r} (expected one of {sorted(_FORMATS)})")
        n = int(self.channel_count)
        if not 1 <= n <= MAX_CHANNELS:
            raise SessionError(f"stream {self.name!r}: channel_count must be 1..{MAX_CHANNELS}, "
                               f"got {n}")
        if not (np.isfinite(self.nominal_srate) and self.nominal_srate >= 0):
            raise SessionError(f"stream {self.name!r}: nominal_srate must be >= 0, got "
                               f"{self.nominal_srate}")
        self.channel_count = n
        self.nominal_srate = float(self.nominal_srate)
        # Missing labels are numbered so that every channel has a name.
        self.labels = list(self.labels) + [f"ch{i}" for i in range(len(self.labels), n)]
        self.units = list(self.units) + [""] * (n - len(self.units))
        self.types = list(self.types) + [""] * (n - len(self.types))
        self.labels, self.units, self.types = self.labels[:n], self.units[:n], self.types[:n]
        if not self.info_xml:
            self.info_xml = self.to_xml()

    @property
    def dtype(self) -> Any:
        """The HDF5 dtype of the stream's time series."""
        return _FORMATS[self.channel_format]

    @property
    def is_string(self) -> bool:
        """True for string streams (markers)."""
        return self.channel_format == "string"

    @classmethod
    def from_xml(cls, xml: str) -> "StreamSpec":
        """Parse an LSL stream info XML (``StreamInfo.as_xml()``, or an XDF stream header)."""
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as err:
            raise SessionError(f"stream info XML does not parse: {err}") from err

        def text(tag: str, default: str = "") -> str:
            el = root.find(tag)
            return (el.text or default).strip() if el is not None and el.text else default

        labels, units, types = [], [], []
        for ch in root.findall("./desc/channels/channel"):
            labels.append((ch.findtext("label") or "").strip())
            units.append((ch.findtext("unit") or "").strip())
            types.append((ch.findtext("type") or "").strip())
        fmt = text("channel_format", "float32")

        def number(tag: str) -> float:
            raw = text(tag, "0") or "0"
            try:
                val = float(raw)
            except ValueError:
                raise SessionError(f"stream info XML: <{tag}> is {raw[:40]!r}, not a number")
            if not np.isfinite(val):
                raise SessionError(f"stream info XML: <{tag}> is {raw[:40]!r}")
            return val

        return cls(
            name=text("name"), type=text("type"), channel_count=int(number("channel_count")),
            nominal_srate=number("nominal_srate"), channel_format=fmt,
            source_id=text("source_id"), hostname=text("hostname"), uid=text("uid"),
            created_at=number("created_at"),
            labels=[lab or f"ch{i}" for i, lab in enumerate(labels)], units=units, types=types,
            info_xml=xml,
        )

    @classmethod
    def from_info(cls, info: Any) -> "StreamSpec":
        """From a ``pylsl.StreamInfo`` (take it from ``inlet.info()`` so that desc is filled)."""
        spec = cls.from_xml(info.as_xml())
        # The XML of a local (not yet resolved) StreamInfo has all fields; trust the accessors.
        spec.name, spec.type = info.name(), info.type()
        spec.source_id = info.source_id()
        spec.channel_format = _PYLSL_FORMATS.get(info.channel_format(), spec.channel_format)
        return spec

    def to_xml(self) -> str:
        """A minimal LSL-style info XML for streams that did not come with one."""
        root = ET.Element("info")
        for tag, val in (("name", self.name), ("type", self.type),
                         ("channel_count", str(self.channel_count)),
                         ("nominal_srate", repr(self.nominal_srate)),
                         ("channel_format", self.channel_format),
                         ("source_id", self.source_id), ("hostname", self.hostname),
                         ("uid", self.uid), ("created_at", repr(self.created_at))):
            ET.SubElement(root, tag).text = val
        chans = ET.SubElement(ET.SubElement(root, "desc"), "channels")
        for lab, unit, typ in zip(self.labels, self.units, self.types):
            ch = ET.SubElement(chans, "channel")
            ET.SubElement(ch, "label").text = lab
            ET.SubElement(ch, "unit").text = unit
            ET.SubElement(ch, "type").text = typ
        return ET.tostring(root, encoding="unicode")


def describe_write_error(err: BaseException) -> str:
    """One line for a failed HDF5 or OS write: the operation and the system's reason."""
    text = str(err)
    reason = re.search(r"error message = '([^']*)'", text)
    head = text.split(" (", 1)[0].strip() or type(err).__name__
    if reason:
        return f"{head}: {reason.group(1)}"
    if isinstance(err, OSError) and err.strerror:
        return f"{head}: {err.strerror}"
    return head[:200]


def stream_key(name: str, taken: Iterable[str] = ()) -> str:
    """An HDF5-safe group name for a stream, unique among ``taken`` (suffix ``-2``, ``-3``...)."""
    base = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._") or "stream"
    taken = set(taken)
    key, i = base, 2
    while key in taken:
        key, i = f"{base}-{i}", i + 1
    return key


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _package_version() -> str:
    try:
        from imusic import __version__
        return __version__
    except Exception:  # noqa: BLE001 - the file format does not depend on the CLI package
        return "unknown"


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
        self._pending: dict[str, _Pending] = {}
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
        root["host"] = socket.gethostname()
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
            self._h5 = h5py.File(self.path, "a", libver=LIBVER,
                                 rdcc_nbytes=self.limits.chunk_cache_bytes)

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
            self._pending[f"{STREAMS}/{key}/{name}"] = _Pending()
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
        with h5py.File(self.path, "r+", libver=LIBVER) as h5:
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
        with h5py.File(self.path, "r+", libver=LIBVER) as f:
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


# ===================================================================== reading


@dataclass
class StreamData:
    """One stream of a session, loaded into memory."""

    key: str
    spec: StreamSpec
    time_series: np.ndarray        # (N, C)
    time_stamps: np.ndarray        # (N,) LSL seconds, as received (offsets not applied)
    clock_offsets: np.ndarray      # (M, 2) [local time, offset]
    gaps: np.ndarray               # (G, 2) [start, end]
    health: dict[str, int]

    def channel(self, label: str) -> np.ndarray:
        """The column of the channel named ``label`` (channels are found by label)."""
        try:
            return self.time_series[:, self.spec.labels.index(label)]
        except ValueError:
            raise KeyError(f"stream {self.spec.name!r} has no channel {label!r}") from None


@dataclass
class Event:
    """One row of /events."""

    time: float
    source: str
    text: str


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


_HDF5_ERRORS = (OSError, RuntimeError)
"""What h5py raises for damaged files (metadata checksums, bad headers, failed filters)."""


def _first_line(err: BaseException) -> str:
    text = str(err.args[0] if isinstance(err, KeyError) and err.args else err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _damaged(path: Path, what: str, err: BaseException) -> DamagedSessionError:
    return DamagedSessionError(f"{path} is damaged: {what} cannot be read "
                               f"({_first_line(err)}); restore it from a copy or record it again")


def _set_metadata_attempts(fapl: Any, attempts: int) -> None:
    """``H5Pset_metadata_read_attempts`` (not wrapped by h5py), looked up in the HDF5 library
    h5py is linked to. Without it the open still works, with HDF5's own (slow) retries."""
    try:
        fn = ctypes.CDLL(h5py.h5p.__file__).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return
    fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
    fn(fapl.id, int(attempts))


_GCOL = b"GCOL"
_GCOL_HEADER = 16     # signature, version, 3 reserved bytes, collection size (8 bytes)
_GCOL_OBJECT = 16     # index (2), reference count (2), reserved (4), size (8)
_GCOL_MIN = 4096      # the format's smallest collection


def damaged_global_heap(path: str | Path) -> int | None:
    """Byte offset of a global heap collection whose object list is corrupt, else None.

    HDF5 keeps variable-length strings (every string attribute and string dataset) in global
    heap collections, which have no checksum. HDF5 walks a collection's objects by their sizes;
    a zeroed free-space entry (index 0, size 0) makes that walk stand still, and HDF5 2.0 then
    loops forever, holding Python's lock. So the collections are walked here first, the same
    way, and a walk that stands still or runs past the collection's end is reported. Only
    collections with an intact header (signature, version 1, zero reserved bytes, a size that
    fits the file) are walked; others HDF5 itself refuses."""
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < _GCOL_MIN:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            at = buf.find(_GCOL)
            while at >= 0:
                head = buf[at:at + _GCOL_HEADER]
                n = int.from_bytes(head[8:16], "little") if len(head) == _GCOL_HEADER else 0
                if head[4:8] == b"\x01\x00\x00\x00" and _GCOL_MIN <= n <= size - at:
                    p, end = at + _GCOL_HEADER, at + n
                    while p < end:
                        if p + _GCOL_OBJECT > end:
                            break          # too small for an object: free space
                        idx = int.from_bytes(buf[p:p + 2], "little")
                        obj = int.from_bytes(buf[p + 8:p + 16], "little")
                        need = obj if idx == 0 else _GCOL_OBJECT + ((obj + 7) // 8) * 8
                        if need == 0 or need > end - p:
                            return at
                        p += need
                at = buf.find(_GCOL, at + 1)
    return None


def open_h5(path: str | Path, limits: ReadLimits = READ_LIMITS) -> h5py.File:
    """Open an HDF5 file read-only, as every session reader does; ``SessionError`` naming the
    file if it cannot be opened.

    Plain first: a cleanly closed file opens at once and a damaged one fails at once. SWMR read
    mode is used only for a file still flagged open for writing (live, or left by a killed
    recorder), with its metadata retries bounded (``ReadLimits.swmr_metadata_attempts``): SWMR
    retries every metadata read whose checksum fails, which on a damaged file takes hours."""
    path = Path(path)
    if not path.is_file():
        raise SessionError(f"{path}: no such file")
    heap = damaged_global_heap(path)
    if heap is not None:
        raise DamagedSessionError(f"{path} is damaged: the HDF5 global heap at byte {heap} (its "
                                  "strings) is corrupt; restore it from a copy")
    try:
        return h5py.File(path, "r")
    except _HDF5_ERRORS as err:
        first = err
    if "already open for write" not in str(first):
        raise DamagedSessionError(f"{path} is not a readable HDF5 file ({_first_line(first)});"
                                  " if it is a session, it is damaged or truncated") from first
    try:
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
        _set_metadata_attempts(fapl, limits.swmr_metadata_attempts)
        fid = h5py.h5f.open(str(path).encode(), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ,
                            fapl=fapl)
        return h5py.File(fid)
    except _HDF5_ERRORS as err:
        raise DamagedSessionError(f"{path} is not a readable HDF5 file ({_first_line(err)}); "
                                  "it is flagged open for writing: if no recorder is writing "
                                  "it, it is damaged") from err


@contextlib.contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn an HDF5 error raised while reading ``what`` of ``path`` into one ``SessionError``."""
    try:
        yield
    except SessionError:
        raise
    except _HDF5_ERRORS as err:
        raise _damaged(Path(path), what, err) from err
    except KeyError as err:
        # h5py says KeyError when an object or attribute will not open (a bad header, or one
        # that is missing); other KeyErrors (imusic's own, e.g. "no aligned group") pass.
        if str(err.args[0] if err.args else "").startswith(_H5PY_KEY_ERRORS):
            raise _damaged(Path(path), what, err) from err
        raise


_H5PY_KEY_ERRORS = ("Unable to", "Can't open attribute")
"""How h5py's KeyErrors for objects and attributes that will not open begin."""


class SessionReader:
    """Reads a session file; opens in SWMR read mode, so it works on live and killed files too.

    Use as a context manager (or call ``close``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SessionError(f"{self.path}: no such session file")
        self.h5 = open_h5(self.path)
        try:
            with reading(self.path, "the root attributes"):
                schema = _s(self.h5.attrs.get("schema", ""))
                version = int(self.h5.attrs.get("schema_version", 0))
        except SessionError:
            self.h5.close()
            raise
        if schema != SCHEMA:
            self.h5.close()
            raise SessionError(f"{self.path} is not an imusic session (schema {schema!r}, "
                               f"expected {SCHEMA!r})")
        if version > SCHEMA_VERSION:
            self.h5.close()
            raise SessionError(f"{self.path} has schema_version {version}; this imusic reads "
                               f"up to {SCHEMA_VERSION}: upgrade imusic")

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (schema, created, subject, host, ...)."""
        with reading(self.path, "the root attributes"):
            return {k: (_s(v) if isinstance(v, (bytes, str)) else
                        (v.item() if isinstance(v, np.generic) else v))
                    for k, v in self.h5.attrs.items()}

    @property
    def closed_cleanly(self) -> bool:
        """False if the writer never finished (killed recorder, or still recording)."""
        with reading(self.path, "the root attributes"):
            return bool(self.h5.attrs.get("closed_cleanly", False))

    @property
    def keys(self) -> list[str]:
        """Stream keys (groups under /streams)."""
        with reading(self.path, f"/{STREAMS}"):
            return list(self.h5[STREAMS]) if STREAMS in self.h5 else []

    def spec(self, key: str) -> StreamSpec:
        """The stream's spec, rebuilt from its info XML and attributes."""
        g = self._group(key)
        with reading(self.path, f"the header of stream {key!r}"):
            try:
                spec = StreamSpec.from_xml(_s(g["info_xml"][()]))
            except SessionError as err:
                raise DamagedSessionError(f"{self.path}: stream {key!r}: {err}") from err
            spec.labels = [_s(x) for x in g["channel_labels"][()]]
            spec.units = [_s(x) for x in g["channel_units"][()]]
            spec.types = [_s(x) for x in g["channel_types"][()]]
            for attr in ("name", "type", "source_id", "channel_format"):
                if attr in g.attrs:
                    setattr(spec, attr, _s(g.attrs[attr]))
        return spec

    def keys_of_type(self, stream_type: str) -> list[str]:
        """Keys of the streams whose LSL type is ``stream_type`` (case-insensitive)."""
        with reading(self.path, "the stream attributes"):
            return [k for k in self.keys
                    if _s(self._group(k).attrs.get("type", "")).lower() == stream_type.lower()]

    def _group(self, key: str) -> h5py.Group:
        if key not in self.keys:
            raise SessionError(f"{self.path}: no stream {key!r} (streams: {self.keys})")
        # The link exists: a failure to open it is damage (h5py says KeyError for both).
        with reading(self.path, f"stream {key!r}"):
            try:
                return self.h5[STREAMS][key]
            except KeyError as err:
                raise _damaged(self.path, f"stream {key!r}", err) from err

    def stream(self, key: str) -> StreamData:
        """Load one stream's data."""
        g = self._group(key)
        with reading(self.path, f"the data of stream {key!r}"):
            # Rows are appended series-first: on a live or killed file keep the common length.
            n = min(g["time_series"].shape[0], g["time_stamps"].shape[0])
            ts = g["time_series"][:n]
            if ts.dtype == object:
                ts = np.vectorize(_s, otypes=[object])(ts) if ts.size else ts
            health = g["health"][()]
            cols = json.loads(_s(g["health"].attrs.get("columns",
                                                       json.dumps(list(HEALTH_FIELDS)))))
            return StreamData(
                key=key, spec=self.spec(key), time_series=ts, time_stamps=g["time_stamps"][:n],
                clock_offsets=g["clock_offsets"][()], gaps=g["gaps"][()],
                health=dict(zip(cols, (int(v) for v in health))),
            )

    def events(self) -> list[Event]:
        """All events, in the order written."""
        with reading(self.path, f"/{EVENTS}"):
            if EVENTS not in self.h5:
                return []
            ev = self.h5[EVENTS]
            n = min(ev["time"].shape[0], ev["source"].shape[0], ev["text"].shape[0])
            return [Event(float(t), _s(s), _s(x))
                    for t, s, x in zip(ev["time"][:n], ev["source"][:n], ev["text"][:n])]

    @property
    def has_aligned(self) -> bool:
        """True once ``imusic sync`` (or ``imusic simulate``) has written the aligned group."""
        with reading(self.path, "the root group"):
            return "aligned" in self.h5

    @property
    def has_calibration(self) -> bool:
        """True once calibration has been stored (/calibration)."""
        with reading(self.path, "the root group"):
            return "calibration" in self.h5

    def close(self) -> None:
        """Close the file."""
        self.h5.close()

    def __enter__(self) -> "SessionReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(path: str | Path) -> SessionReader:
    """Open a session for reading (``with open_session(p) as s: ...``)."""
    return SessionReader(path)


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
