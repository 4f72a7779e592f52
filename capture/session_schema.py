"""The session file's schema: names, formats and what a session keeps about a stream.

Part of the session file package (``capture/session.py`` says how the pieces fit): the
constants every writer and reader agrees on (schema name and version, the ``streams`` and
``events`` groups, the health counters, LSL channel formats and their HDF5 dtypes, the HDF5
format bounds), the errors, ``StreamSpec`` (one LSL stream's info XML, parsed) and
``stream_key`` (a stream's group name). No file is opened here.
"""

from __future__ import annotations

import datetime as _dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterable

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


class SessionError(Exception):
    """A session file is missing, already exists, or is not a valid session."""


class SessionExistsError(SessionError, FileExistsError):
    """The session file to create exists already (it is never overwritten)."""


class FileHeldError(SessionError):
    """The writer could not reopen its own file: another process has it open (HDF5's lock)
    past ``WriteLimits.reopen_wait_s``. The message names the processes and what was kept."""


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


def stream_key(name: str, taken: Iterable[str] = ()) -> str:
    """An HDF5-safe group name for a stream, unique among ``taken`` (suffix ``-2``, ``-3``...)."""
    base = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._") or "stream"
    taken = set(taken)
    key, i = base, 2
    while key in taken:
        key, i = f"{base}-{i}", i + 1
    return key


def text_of(v: Any) -> str:
    """An HDF5 string (bytes or str) as str."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


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


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _package_version() -> str:
    """imusic's version: the package's ``__version__``, which pyproject.toml gives the
    distribution (read here rather than through importlib.metadata, whose email parser is
    1.4 MB of the recorder's memory)."""
    import imusic

    return str(getattr(imusic, "__version__", "unknown"))
