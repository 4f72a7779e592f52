"""Import LabRecorder XDF recordings into imusic session files.

Each XDF stream becomes a ``/streams/<key>`` group written through ``capture.session``'s writer:
its header XML (rebuilt from pyxdf's parse), samples, timestamps and clock offsets. The session
format keeps timestamps in the sender's clock with offsets beside them, like the recorder does,
so the import keeps XDF's raw timestamps and raw clock offsets. XDF stores each offset with
its collection time in the sender's clock (LabRecorder writes ``now - offset``); the session
stores ``[recorder time, offset]``, so the time is converted to ``collection time + offset``.

Clock resets (the sender's clock jumped, e.g. a device restarted mid-recording) cannot be kept
as one raw series plus one offset table. For a stream where pyxdf detects one (its clock
segments) or whose raw timestamps run backwards, the import stores pyxdf's reset-aware
synchronised timestamps (already on the recorder's clock, no offsets to add) and says so in
the root attribute ``xdf_streams`` and in an event. Streams with no samples are kept (empty).
Marker (string) samples are also copied into ``/events``, as the recorder does.

Damaged and truncated files. pyxdf reads what it can and skips a damaged chunk up to the next
boundary chunk; it says so only in its log. The import therefore walks the file's chunks itself
(``scan_xdf``): the samples each stream's chunks announce and the ``sample_count`` of its
footer (written last by LabRecorder; absent in a truncated file). Samples announced but not
read are reported per stream (``ImportedStream.lost``) and kept in the root attributes
(``xdf_streams``, ``xdf_problems``), where ``imusic info`` shows them.

Gaps. Holes in a regular stream's timestamps become ``gaps`` rows, as the recorder writes them
for a recording (``ImportConfig.gap_threshold_s``; by default the recorder's rule).

The session is written under a temporary name beside the output and renamed only once it is
complete, so a failed import leaves no file that looks like a session.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_PYXDF_ONLY = {"stream_id", "effective_srate", "segments", "clock_segments"}
"""Keys pyxdf adds to a stream's info dict that are not in the stream header XML."""


BOUNDARY = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")
"""Content of an XDF boundary chunk (tag 5): where a reader resynchronises after damage."""

_TAGS = range(1, 7)   # FileHeader, StreamHeader, Samples, ClockOffset, Boundary, StreamFooter


class XdfImportError(ValueError):
    """An XDF file that cannot be imported; the message names the file."""


@dataclass(frozen=True)
class ImportConfig:
    """Settings of an XDF import."""

    gap_threshold_s: float | None = None
    """Timestamp step (s) above which a regular stream has a gap; None: the recorder's rule
    (``capture.recorder.gap_threshold``: 5 nominal periods, at least 0.25 s)."""


@dataclass
class XdfScan:
    """What the chunks of an XDF file announce, read without pyxdf (``scan_xdf``)."""

    size: int
    announced: dict[int, int] = field(default_factory=dict)    # stream id -> samples in chunks
    footer_count: dict[int, int] = field(default_factory=dict)  # stream id -> footer's count
    problems: list[str] = field(default_factory=list)           # damage found, with byte offsets


def _varlen(buf: Any, pos: int) -> tuple[int, int] | None:
    """An XDF variable-length integer at ``pos``: (value, next position); None if invalid."""
    if pos >= len(buf) or buf[pos] not in (1, 4, 8) or pos + 1 + buf[pos] > len(buf):
        return None
    n = buf[pos]
    return int.from_bytes(buf[pos + 1:pos + 1 + n], "little"), pos + 1 + n


def _footer_count(xml: bytes) -> int | None:
    try:
        text = ET.fromstring(xml.decode("utf-8", "replace")).findtext("sample_count")
        return int(float(text)) if text is not None else None
    except (ET.ParseError, ValueError):
        return None


def scan_xdf(path: str | Path) -> XdfScan:
    """Walk the chunks of an XDF file: samples announced per stream, footer sample counts, and
    where the file is damaged or cut short. After a damaged chunk header it resumes after the
    next boundary chunk, as pyxdf does."""
    path = Path(path)
    size = path.stat().st_size
    scan = XdfScan(size=size)
    if size < 4:
        scan.problems.append(f"{path.name} is {size} bytes long: not an XDF file")
        return scan
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"XDF:":
            scan.problems.append(f"{path.name} does not start with 'XDF:'")
            return scan
        pos = 4
        while pos < size:
            head = _varlen(buf, pos)
            tag = int.from_bytes(buf[head[1]:head[1] + 2], "little") if head else 0
            if head is None or head[0] < 2 or tag not in _TAGS:
                scan.problems.append(f"damaged chunk header at byte {pos}")
                nxt = buf.find(BOUNDARY, pos + 1)
                if nxt < 0:
                    break
                pos = nxt + len(BOUNDARY)
                continue
            length, body = head
            end = body + length
            if tag in (2, 3, 4, 6) and body + 6 <= size:
                sid = int.from_bytes(buf[body + 2:body + 6], "little")
                if tag == 3:
                    n = _varlen(buf, body + 6)
                    if n is not None and n[0] <= length:
                        scan.announced[sid] = scan.announced.get(sid, 0) + n[0]
                elif tag == 6 and end <= size:
                    count = _footer_count(buf[body + 6:end])
                    if count is not None:
                        scan.footer_count[sid] = count
            if end > size:
                scan.problems.append(f"the file ends inside a chunk (byte {pos}, {length} "
                                     f"bytes long, {size - body} there): it is truncated")
                break
            pos = end
    return scan


@dataclass
class ImportedStream:
    """What the import did with one XDF stream."""

    key: str
    name: str
    type: str
    samples: int
    clock_offsets: int
    clock_reset: bool
    timestamps: str       # "raw" (sender clock, offsets kept) or "synchronized"
    expected: int = 0     # samples the file announces (footer, else chunk headers)
    gaps: int = 0         # holes in the timestamps (ImportConfig.gap_threshold_s)
    gap_s: float = 0.0    # their total length, s

    @property
    def lost(self) -> int:
        """Samples the file announces that could not be read."""
        return max(0, self.expected - self.samples)


@dataclass
class ImportReport:
    """Summary of an import."""

    source: Path
    output: Path
    streams: list[ImportedStream] = field(default_factory=list)
    events: int = 0
    problems: list[str] = field(default_factory=list)   # damage in the XDF file, in words

    @property
    def complete(self) -> bool:
        """True if everything the file announces was imported and no damage was found."""
        return not self.problems and not any(s.lost for s in self.streams)


def _info_to_xml(info: dict[str, Any]) -> str:
    """Rebuild a stream header XML from pyxdf's parsed info (dict of lists)."""

    def fill(el: ET.Element, d: dict[str, Any]) -> None:
        for key, vals in d.items():
            for v in vals if isinstance(vals, list) else [vals]:
                child = ET.SubElement(el, key)
                if isinstance(v, dict):
                    fill(child, v)
                elif v is not None:
                    child.text = str(v)

    root = ET.Element("info")
    fill(root, {k: v for k, v in info.items() if k not in _PYXDF_ONLY})
    return ET.tostring(root, encoding="unicode")


def _first(info: dict[str, Any], key: str, default: str = "") -> str:
    v = info.get(key)
    if isinstance(v, list):  # header fields are lists of strings; pyxdf's own are scalars
        v = v[0] if v else None
    return default if v is None else str(v)


class _Collect(logging.Handler):
    """Keeps pyxdf's error records (damage it skipped) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _load(path: Path, synchronize: bool) -> tuple[list[dict], dict, list[str]]:
    """pyxdf's parse, and the errors it logged (the import reports damage itself)."""
    import pyxdf

    log = logging.getLogger("pyxdf.pyxdf")
    collect = _Collect()
    level, propagate = log.level, log.propagate
    log.setLevel(logging.ERROR)
    log.addHandler(collect)
    log.propagate = False
    try:
        streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=synchronize,
                                         handle_clock_resets=True, dejitter_timestamps=False)
    finally:
        log.removeHandler(collect)
        log.setLevel(level)
        log.propagate = propagate
    return streams, header, collect.messages


def find_gaps(stamps: np.ndarray, srate: float, config: ImportConfig) -> list[tuple[float, float]]:
    """(start, end) of every step over the gap threshold in a regular stream's timestamps."""
    from imusic.capture.recorder import gap_threshold

    if srate <= 0 or len(stamps) < 2:
        return []
    limit = gap_threshold(srate) if config.gap_threshold_s is None else config.gap_threshold_s
    jumps = np.flatnonzero(np.diff(stamps) > limit)
    return [(float(stamps[i]), float(stamps[i + 1])) for i in jumps]


def _partial_name(output: Path) -> Path:
    """The temporary name an import writes to (renamed to ``output`` once complete)."""
    return output.with_name(f".{output.name}.importing-{os.getpid()}")


def _read_plans(source: Path) -> tuple[list[dict], dict, list[str]]:
    """pyxdf's two parses (raw and synchronised) joined per stream, the file header, and the
    errors pyxdf logged."""
    try:
        raw_streams, header, logged = _load(source, synchronize=False)
        synced, _, _ = _load(source, synchronize=True)
    except Exception as err:  # noqa: BLE001 - pyxdf raises many kinds for damaged files
        raise XdfImportError(f"{source} is not a readable XDF file: {err}") from err
    synced_by_id = {_first(s["info"], "stream_id"): s for s in synced}
    plans = []
    for s in raw_streams:
        info = s["info"]
        sid = _first(info, "stream_id")
        fmt = _first(info, "channel_format", "float32")
        n_ch = int(float(_first(info, "channel_count", "1") or 1))
        ts_raw = np.asarray(s["time_stamps"], np.float64).reshape(-1)
        sync = synced_by_id.get(sid, s)
        segments = sync["info"].get("clock_segments") or []
        reset = len(segments) > 1 or bool(len(ts_raw) > 1 and np.diff(ts_raw).min() < -1.0)
        if fmt == "string":
            series = np.array(s["time_series"], dtype=object).reshape(len(ts_raw), n_ch) \
                if len(ts_raw) else np.zeros((0, n_ch), dtype=object)
        else:
            series = np.asarray(s["time_series"]).reshape(len(ts_raw), n_ch) \
                if len(ts_raw) else np.zeros((0, n_ch))
        ct = np.asarray(s.get("clock_times", []), np.float64)
        cv = np.asarray(s.get("clock_values", []), np.float64)
        ts_sync = np.asarray(sync["time_stamps"], np.float64).reshape(-1)
        plans.append(dict(info=info, sid=sid, fmt=fmt, series=series, raw=ts_raw,
                          synced=ts_sync, reset=reset,
                          offsets=np.column_stack([ct + cv, cv]) if len(ct) else np.zeros((0, 2))))
    return plans, header, logged


def _expected(scan: XdfScan, sid: str) -> int:
    """Samples the file announces for stream ``sid``: its footer's count, else its chunks'."""
    try:
        n = int(sid)
    except ValueError:
        return 0
    return scan.footer_count.get(n, scan.announced.get(n, 0))


def import_xdf(source: str | Path, output: str | Path, *, subject: str = "",
               config: ImportConfig = ImportConfig()) -> ImportReport:
    """Import ``source`` (.xdf) into a new session file ``output``.

    Raises ``FileNotFoundError`` for a missing source, ``XdfImportError`` for a file pyxdf
    cannot read, and ``capture.session.SessionError`` if ``output`` exists. A damaged or
    truncated file imports what can be read; the report says what was lost
    (``ImportReport.complete``, ``ImportedStream.lost``, ``ImportReport.problems``).
    """
    from imusic.capture.session import SessionError

    source, output = Path(source), Path(output)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such XDF file")
    if output.exists():
        raise SessionError(f"{output} already exists: choose another name "
                           "(sessions are never overwritten)")
    plans, header, logged = _read_plans(source)
    scan = scan_xdf(source)
    if not plans:
        raise XdfImportError(f"{source} holds no readable stream header"
                             + (f" ({scan.problems[0]})" if scan.problems else ""))
    report = ImportReport(source=source, output=output)
    report.problems = list(dict.fromkeys(scan.problems + [f"pyxdf: {m}" for m in logged]))
    partial = _partial_name(output)
    try:
        _write(partial, source, plans, header, scan, report, subject, config)
        if output.exists():
            raise SessionError(f"{output} appeared during the import: choose another name "
                               "(sessions are never overwritten)")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return report


def _write(path: Path, source: Path, plans: list[dict], header: dict, scan: XdfScan,
           report: ImportReport, subject: str, config: ImportConfig) -> None:
    """Write the session for ``plans`` to ``path`` and fill ``report``."""
    import h5py

    from imusic.capture.session import SessionWriter, StreamSpec

    file_info = {k: v[0] if isinstance(v, list) and len(v) == 1 else v
                 for k, v in ((header or {}).get("info") or {}).items()}
    with SessionWriter(path, subject=subject, swmr=False, attrs={
            "source": "xdf", "xdf_file": source.name,
            "xdf_header": json.dumps(file_info, default=str)}) as w:
        summary = {}
        for p in plans:
            spec = StreamSpec.from_xml(_info_to_xml(p["info"]))
            key = w.add_stream(spec)
            stamps = p["synced"] if p["reset"] else p["raw"]
            if len(stamps):
                w.append(key, p["series"], stamps)
            if not p["reset"]:
                for t, off in p["offsets"]:
                    w.add_clock_offset(key, float(t), float(off))
            gaps = find_gaps(stamps, spec.nominal_srate, config)
            for start, end in gaps:
                w.add_gap(key, start, end)
            item = ImportedStream(key=key, name=spec.name, type=spec.type,
                                  samples=len(stamps), clock_offsets=0 if p["reset"] else len(p["offsets"]),
                                  clock_reset=p["reset"],
                                  timestamps="synchronized" if p["reset"] else "raw",
                                  expected=max(len(stamps), _expected(scan, p["sid"])),
                                  gaps=len(gaps), gap_s=float(sum(e - s for s, e in gaps)))
            report.streams.append(item)
            summary[key] = {"xdf_stream_id": p["sid"],
                            "clock_reset": item.clock_reset, "timestamps": item.timestamps,
                            "xdf_clock_offsets": len(p["offsets"]),
                            "samples": item.samples, "samples_in_xdf": item.expected,
                            "samples_lost": item.lost}
            if p["reset"]:
                w.add_event(float(stamps[0]) if len(stamps) else 0.0,
                            f"xdf import: clock reset in stream {key}; its timestamps were "
                            "synchronized by pyxdf (recorder clock, no offsets to add)", "import")
                report.events += 1
            if spec.is_string and len(stamps):
                # Events live on the recorder clock: use the synchronised times.
                for t, row in zip(p["synced"], p["series"]):
                    w.add_event(float(t), str(row[0]), key)
                    report.events += 1
        firsts = [float(p["synced"][0]) for p in plans if len(p["synced"])]
        w.add_event(min(firsts) if firsts else 0.0,
                    f"imported from {source.name}: {len(plans)} streams", "import")
        report.events += 1
    # Per-stream import notes as root attributes (the writer's attrs are set at creation).
    with h5py.File(path, "r+") as h5:
        h5.attrs["xdf_streams"] = json.dumps(summary)
        h5.attrs["xdf_problems"] = json.dumps(loss_lines(report))


def loss_lines(report: ImportReport) -> list[str]:
    """What an incomplete import lost, one line per stream, then the damage found in the file."""
    lines = [f"stream {s.name!r}: {s.samples} of {s.expected} samples read, {s.lost} lost"
             for s in report.streams if s.lost]
    return lines + report.problems
