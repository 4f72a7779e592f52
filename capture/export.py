"""Exports of a session's blendshapes: Live Link Face CSV, FACS action units, plain CSV, glTF.

The source is the session's ``aligned`` group when it has one (``capture.aligned``), else its
recorded ``Blendshapes`` LSL stream (``capture.session``), preferring the ground truth
(``desc/source = "arkit"``). Formats (capture/ARKIT.md has the details):

* ``livelink-csv``: what the Live Link Face app writes (header, timecode, ``BlendshapeCount``,
  61 values with 10 decimals, ``Timecode,0`` face-lost rows), read back by
  ``capture.livelink_csv.read_take`` and by third-party Live Link Face CSV tools;
* ``au-csv``: FACS action units in exactly OpenFace 2.0's columns (``frame, face_id,
  timestamp, confidence, success``, its 17 ``AUxx_r`` on 0..5, its 18 ``AUxx_c``);
* ``csv``: one plain table, ``time`` then named columns (blendshapes, pose, validity and, from
  an aligned group, every IMU channel as ``site.acc.x`` ...); missing values are empty cells;
* ``gltf``: a glTF 2.0 binary (``.glb``) of the ICT head with the 52 ARKit blendshapes as
  named morph targets and the take as an animation (``capture.gltf`` has the details).
"""

from __future__ import annotations

import datetime as _dt
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imusic.capture.livelink_csv import write_take
from imusic.hardware.vocabulary import (
    N_BLENDSHAPES,
    N_STREAM_CHANNELS,
    OPENFACE_INTENSITY_AUS,
    OPENFACE_PRESENCE_AUS,
    STREAM_NAMES,
    action_units,
)

FORMATS: tuple[str, ...] = ("livelink-csv", "au-csv", "csv", "gltf")
"""Export formats, as ``imusic export --format`` spells them."""

SUFFIXES = {"livelink-csv": ".livelink.csv", "au-csv": ".au.csv", "csv": ".csv", "gltf": ".glb"}

AU_SCALE = 5.0
"""OpenFace's AU intensity scale is 0 (absent) .. 5 (maximum); ARKit weights are 0..1."""

AU_PRESENT_THRESHOLD = 1.0
"""An ``AUxx_c`` presence flag is 1 where the intensity reaches FACS level A (1 on 0..5)."""


class ExportError(ValueError):
    """A session that cannot be exported; the message names the file and what to do."""


@dataclass
class BlendshapeSeries:
    """Blendshapes (and pose) of a session on their own timeline, ready to export."""

    t: np.ndarray                # (N,) seconds (LSL clock of the source)
    values: np.ndarray           # (N, 61) float32 stream order; NaN where not tracked
    face_found: np.ndarray       # (N,) bool
    origin: str                  # "aligned" or "stream:<key>"
    path: Path
    start_timecode_s: float = 0.0            # time of day of the first frame, for timecodes
    imu_columns: list[str] = field(default_factory=list)
    imu: np.ndarray | None = None            # (N, K) float32 (aligned only)
    valid_imu: np.ndarray | None = None      # (N,) bool (aligned only)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.t)


# ----------------------------------------------------------------------------- loading


def _time_of_day(created: object) -> float:
    """Seconds of the UTC day from an ISO time string; 0 when it cannot be read."""
    try:
        text = created.decode() if isinstance(created, bytes) else str(created)
        d = _dt.datetime.fromisoformat(text)
    except (ValueError, TypeError):
        return 0.0
    return d.hour * 3600 + d.minute * 60 + d.second + d.microsecond / 1e6


def _stream_source(xml: str) -> str:
    try:
        return (ET.fromstring(xml).findtext("./desc/source") or "").strip()
    except ET.ParseError:
        return ""


def load_blendshapes(path: str | Path, stream: str | None = None) -> BlendshapeSeries:
    """The blendshapes of a session: its aligned group, or (without one, or when ``stream``
    names a stream key) a recorded ``Blendshapes`` stream.

    Raises ``ExportError`` naming the file when there is neither.
    """
    from imusic.capture.session import SessionError, open_h5, reading

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such session file")
    try:
        with open_h5(path) as h5, reading(path, "the root group"):
            start = _time_of_day(h5.attrs.get("created", ""))
            has_aligned = "aligned" in h5
        if has_aligned and stream is None:
            return _from_aligned(path, start)
    except (SessionError, ValueError) as err:   # unreadable file, or a damaged aligned group
        raise ExportError(str(err)) from err
    return _from_stream(path, stream, start)


def _from_aligned(path: Path, start: float) -> BlendshapeSeries:
    from imusic.capture.aligned import read_aligned
    from imusic.firmware_bridge.streams import channel_label

    a = read_aligned(path)
    values = np.hstack([a.blendshapes, a.pose]).astype(np.float32)
    found = np.asarray(a.valid_arkit, bool) & np.isfinite(values).all(axis=1)
    values[~found] = np.nan
    cols, blocks = [], []
    for quantity in ("acc", "gyro", "mag"):
        arr = np.asarray(getattr(a, quantity), np.float32)
        for s, site in enumerate(a.sites):
            for k, axis in enumerate("xyz"):
                cols.append(channel_label(site, quantity, axis))
                blocks.append(arr[:, s, k])
    imu = np.stack(blocks, axis=1) if blocks else np.zeros((a.n_frames, 0), np.float32)
    valid = np.asarray(a.valid_imu, bool)
    imu[~valid] = np.nan
    return BlendshapeSeries(
        t=np.asarray(a.t, np.float64), values=values, face_found=found, origin="aligned",
        path=path, start_timecode_s=start, imu_columns=cols, imu=imu, valid_imu=valid)


def _from_stream(path: Path, key: str | None, start: float) -> BlendshapeSeries:
    from imusic.capture.session import SessionError, SessionReader

    try:
        with SessionReader(path) as s:
            keys = s.keys_of_type("Blendshapes")
            if key is None:
                if not keys:
                    raise ExportError(
                        f"{path} has no 'aligned' group and no Blendshapes stream: record one "
                        "with 'imusic record' (with 'imusic arkit' running) or run 'imusic sync'")
                # Prefer the ARKit ground truth over predictions.
                sources = {k: _stream_source(s.spec(k).info_xml) for k in keys}
                key = next((k for k in keys if sources[k] == "arkit"), keys[0])
            elif key not in s.keys:
                raise ExportError(f"{path}: no stream {key!r} (Blendshapes streams: {keys})")
            data = s.stream(key)
    except SessionError as err:
        raise ExportError(str(err)) from err
    labels = [lab.lower() for lab in data.spec.labels]
    try:
        idx = [labels.index(n.lower()) for n in STREAM_NAMES[:N_BLENDSHAPES]]
    except ValueError:
        raise ExportError(f"{path}: stream {key!r} lacks the 52 ARKit blendshape channels "
                          f"(labels start {data.spec.labels[:4]})") from None
    pose_idx = [labels.index(n.lower()) if n.lower() in labels else -1
                for n in STREAM_NAMES[N_BLENDSHAPES:]]
    ts = np.asarray(data.time_stamps, np.float64)
    x = np.asarray(data.time_series, np.float32)
    order = np.argsort(ts, kind="stable")
    ts, x = ts[order], x[order]
    values = np.zeros((len(ts), N_STREAM_CHANNELS), np.float32)
    values[:, :N_BLENDSHAPES] = x[:, idx]
    for j, i in enumerate(pose_idx):
        values[:, N_BLENDSHAPES + j] = x[:, i] if i >= 0 else 0.0
    found = np.isfinite(values).all(axis=1)
    t, values, found = fill_gaps(ts, values, found, data.spec.nominal_srate)
    return BlendshapeSeries(t=t, values=values, face_found=found, origin=f"stream:{key}",
                            path=path, start_timecode_s=start)


def fill_gaps(t: np.ndarray, values: np.ndarray, found: np.ndarray,
              rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Insert face-lost rows (NaN, not found) on the nominal frame grid where consecutive
    samples are more than 1.5 frame periods apart: the ARKit bridge pushes nothing while the
    face is lost, and a Live Link Face take writes those frames as ``Timecode,0`` rows."""
    if not rate_hz or rate_hz <= 0 or len(t) < 2:
        return t, values, found
    period = 1.0 / rate_hz
    d = np.diff(t)
    holes = np.flatnonzero(d > 1.5 * period)
    if not len(holes):
        return t, values, found
    ts, vs, fs, last = [], [], [], 0
    for h in holes:
        ts.append(t[last:h + 1]); vs.append(values[last:h + 1]); fs.append(found[last:h + 1])
        n = int(round(d[h] / period)) - 1
        ts.append(t[h] + period * np.arange(1, n + 1))
        vs.append(np.full((n, values.shape[1]), np.nan, np.float32))
        fs.append(np.zeros(n, bool))
        last = h + 1
    ts.append(t[last:]); vs.append(values[last:]); fs.append(found[last:])
    return np.concatenate(ts), np.vstack(vs), np.concatenate(fs)


# ----------------------------------------------------------------------------- formats


def au_intensities(blendshapes: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """ARKit weights ``(N, 52)`` to FACS AU intensities ``(N, A)`` on OpenFace's 0..5 scale
    (``hardware.vocabulary.action_units`` times 5, clipped to 0..5), for every AU the ARKit
    mapping reaches (``ACTION_UNITS``)."""
    aus, x = action_units(blendshapes)
    return aus, np.clip(x * AU_SCALE, 0.0, AU_SCALE)


def write_livelink_csv(series: BlendshapeSeries, out: str | Path) -> Path:
    """Write the series as a Live Link Face CSV take."""
    return write_take(out, series.t, series.values, series.face_found,
                      start_timecode_s=series.start_timecode_s)


AU_IDENTITY_COLUMNS: tuple[str, ...] = ("frame", "face_id", "timestamp", "confidence", "success")
"""The identity columns OpenFace 2.0 writes before its AUs (with ``-aus`` only)."""


def au_header() -> list[str]:
    """OpenFace 2.0's column names for an AU-only output: the identity columns, the 17
    ``AUxx_r`` intensities, then the 18 ``AUxx_c`` presences (``OPENFACE_*_AUS``)."""
    return (list(AU_IDENTITY_COLUMNS)
            + [f"AU{au:02d}_r" for au in OPENFACE_INTENSITY_AUS]
            + [f"AU{au:02d}_c" for au in OPENFACE_PRESENCE_AUS])


def write_au_csv(series: BlendshapeSeries, out: str | Path) -> Path:
    """Write FACS action units exactly in OpenFace 2.0's CSV columns (``au_header``, ", "
    separated): ``AUxx_r`` on 0..5, ``AUxx_c`` 1 where the intensity reaches
    ``AU_PRESENT_THRESHOLD`` (AU28 has a presence column only, as in OpenFace).

    Frames without a tracked face get ``success 0``, ``confidence 0`` and zero AUs, as
    OpenFace writes its failed frames."""
    out = Path(out)
    bs = np.nan_to_num(series.values[:, :N_BLENDSHAPES], nan=0.0)
    aus, x = au_intensities(bs)
    found = series.face_found
    x[~found] = 0.0
    r = x[:, [aus.index(a) for a in OPENFACE_INTENSITY_AUS]]
    c = (x[:, [aus.index(a) for a in OPENFACE_PRESENCE_AUS]] >= AU_PRESENT_THRESHOLD).astype(int)
    ts = series.t - series.t[0] if series.n_frames else series.t
    buf = io.StringIO()
    buf.write(", ".join(au_header()) + "\n")
    for i in range(series.n_frames):
        ok = bool(found[i])
        row = [str(i + 1), "0", f"{ts[i]:.3f}", "1.00" if ok else "0.00", "1" if ok else "0"]
        row += [f"{v:.2f}" for v in r[i]] + [str(v) for v in c[i]]
        buf.write(", ".join(row) + "\n")
    out.write_text(buf.getvalue(), encoding="utf-8")
    return out


def write_plain_csv(series: BlendshapeSeries, out: str | Path) -> Path:
    """Write ``time`` (s from the first frame), ``lsl_time``, the 61 named values,
    ``face_found`` and, from an aligned group, ``imu_valid`` and every IMU channel.
    Missing values (NaN) are empty cells."""
    out = Path(out)
    t0 = series.t[0] if series.n_frames else 0.0
    names = ["time", "lsl_time", *STREAM_NAMES, "face_found"]
    cols = [series.t - t0, series.t, series.values.astype(np.float64), series.face_found]
    fmts = ["%.6f", "%.6f"] + ["%.7g"] * N_STREAM_CHANNELS + ["%d"]
    if series.imu is not None:
        names += ["imu_valid", *series.imu_columns]
        cols += [np.asarray(series.valid_imu), series.imu.astype(np.float64)]
        fmts += ["%d"] + ["%.7g"] * series.imu.shape[1]
    table = np.column_stack([np.asarray(c, np.float64) for c in cols])
    row_fmt = ",".join(fmts)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(names) + "\n")
        for row in table.tolist():
            # "%g" writes NaN as "nan": a missing value is an empty cell instead.
            f.write((row_fmt % tuple(row)).replace("nan", "") + "\n")
    return out


def write_gltf(series: BlendshapeSeries, out: str | Path, identity: int | None = None) -> Path:
    """Write the series as a glTF 2.0 binary: the ICT head of ``identity`` (None: generic),
    52 named morph targets and an animation on the session's own frame times."""
    from imusic.capture.gltf import write_glb

    times = (series.t - series.t[0]).astype(np.float32)
    if series.n_frames > 1 and not (np.diff(times) > 0).all():
        raise ExportError(f"{series.path}: the {series.origin} frame times are not strictly "
                          "increasing, which glTF keyframes must be: run 'imusic sync' and "
                          "export the aligned group")
    return write_glb(out, series.t, series.values, series.face_found, identity).path


_WRITERS = {"livelink-csv": write_livelink_csv, "au-csv": write_au_csv, "csv": write_plain_csv,
            "gltf": write_gltf}


def default_output(session: str | Path, fmt: str) -> Path:
    """``SESSION.h5`` -> ``SESSION.livelink.csv`` / ``.au.csv`` / ``.csv`` / ``.glb``."""
    session = Path(session)
    return session.with_name(session.stem + SUFFIXES[fmt])


def export_session(session: str | Path, fmt: str, out: str | Path | None = None, *,
                   stream: str | None = None, overwrite: bool = False,
                   identity: int | None = None) -> tuple[Path, BlendshapeSeries]:
    """Export a session in ``fmt`` (one of ``FORMATS``); returns the file written and the data.

    ``identity`` (0..19, None for the generic head) chooses the ICT head of a ``gltf`` export.
    Refuses to overwrite an existing file unless ``overwrite``.
    """
    if fmt not in _WRITERS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out) if out is not None else default_output(session, fmt)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists: pass -o with another name or --force")
    series = load_blendshapes(session, stream)
    if series.n_frames == 0:
        raise ExportError(f"{session}: the {series.origin} data has no frames to export")
    if fmt == "gltf":
        return write_gltf(series, out, identity), series
    return _WRITERS[fmt](series, out), series
