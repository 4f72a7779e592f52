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
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_PYXDF_ONLY = {"stream_id", "effective_srate", "segments", "clock_segments"}
"""Keys pyxdf adds to a stream's info dict that are not in the stream header XML."""


class XdfImportError(ValueError):
    """An XDF file that cannot be imported; the message names the file."""


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


@dataclass
class ImportReport:
    """Summary of an import."""

    source: Path
    output: Path
    streams: list[ImportedStream] = field(default_factory=list)
    events: int = 0


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


def _load(path: Path, synchronize: bool) -> tuple[list[dict], dict]:
    import pyxdf

    # pyxdf logs warnings for odd files (e.g. segments differ); the report says what matters.
    logging.getLogger("pyxdf.pyxdf").setLevel(logging.ERROR)
    return pyxdf.load_xdf(str(path), synchronize_clocks=synchronize,
                          handle_clock_resets=True, dejitter_timestamps=False)


def import_xdf(source: str | Path, output: str | Path, *, subject: str = "") -> ImportReport:
    """Import ``source`` (.xdf) into a new session file ``output``.

    Raises ``FileNotFoundError`` for a missing source, ``XdfImportError`` for a file pyxdf
    cannot read, and ``capture.session.SessionError`` if ``output`` exists.
    """
    from capture.session import SessionError, SessionWriter, StreamSpec

    source, output = Path(source), Path(output)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such XDF file")
    if output.exists():
        raise SessionError(f"{output} already exists: choose another name "
                           "(sessions are never overwritten)")
    try:
        raw_streams, header = _load(source, synchronize=False)
        synced, _ = _load(source, synchronize=True)
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
        plans.append(dict(info=info, fmt=fmt, series=series, raw=ts_raw, synced=ts_sync,
                          offsets=np.column_stack([ct + cv, cv]) if len(ct) else np.zeros((0, 2)),
                          reset=reset))

    file_info = {k: v[0] if isinstance(v, list) and len(v) == 1 else v
                 for k, v in (header.get("info") or {}).items()}
    report = ImportReport(source=source, output=output)
    with SessionWriter(output, subject=subject, swmr=False, attrs={
            "source": "xdf", "xdf_file": source.name,
            "xdf_header": json.dumps(file_info, default=str)}) as w:
        summary = {}
        for p in plans:
            spec = StreamSpec.from_xml(_info_to_xml(p["info"]))
            key = w.add_stream(spec)
            stamps = p["synced"] if p["reset"] else p["raw"]
            w.append(key, p["series"], stamps)
            if not p["reset"]:
                for t, off in p["offsets"]:
                    w.add_clock_offset(key, float(t), float(off))
            item = ImportedStream(key=key, name=spec.name, type=spec.type,
                                  samples=len(stamps), clock_offsets=0 if p["reset"] else len(p["offsets"]),
                                  clock_reset=p["reset"],
                                  timestamps="synchronized" if p["reset"] else "raw")
            report.streams.append(item)
            summary[key] = {"xdf_stream_id": _first(p["info"], "stream_id"),
                            "clock_reset": item.clock_reset, "timestamps": item.timestamps,
                            "xdf_clock_offsets": len(p["offsets"])}
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
    # Per-stream import notes as one root attribute (the writer's attrs are set at creation).
    import h5py

    with h5py.File(output, "r+") as h5:
        h5.attrs["xdf_streams"] = json.dumps(summary)
    return report
