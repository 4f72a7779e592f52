"""Summarise and validate a session file (what ``imusic info`` prints).

``check_session(path)`` never raises on a bad file: it returns a ``SessionReport`` whose
``errors`` say why the file is invalid (each naming the file, the stream and the fix where
there is one) and whose ``warnings`` list what is odd but usable.

Besides the layout it checks that the data can be read back (``check_readable``): HDF5 has no
checksum on raw data chunks, but a damaged compressed chunk fails to decompress, so every
dataset is read whole up to ``ReadLimits.check_whole_bytes`` and, above that, its first, last
and ``ReadLimits.check_chunks`` chunks in between. Its own thresholds are ``CheckConfig``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imusic.capture.session import (
    HEALTH_FIELDS,
    READ_LIMITS,
    SCHEMA,
    SCHEMA_VERSION,
    ReadLimits,
    SessionError,
    SessionReader,
)

_REQUIRED = ("info_xml", "channel_labels", "time_series", "time_stamps", "clock_offsets")


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of ``check_session``."""

    rate_tolerance: float = 0.1
    """Warn when a gap-free regular stream's measured rate is off its nominal by more (0.1: 10%)."""


@dataclass
class StreamSummary:
    """One stream, summarised."""

    key: str
    name: str = ""
    type: str = ""
    source_id: str = ""
    channels: int = 0
    samples: int = 0
    duration_s: float = 0.0
    nominal_rate: float = 0.0
    measured_rate: float = 0.0
    gaps: int = 0
    gap_s: float = 0.0
    offsets: int = 0
    offset_mean_ms: float = float("nan")
    offset_std_ms: float = float("nan")
    health: dict[str, int] = field(default_factory=dict)


@dataclass
class SessionReport:
    """Summary plus validation of one session file."""

    path: Path
    attrs: dict[str, Any] = field(default_factory=dict)
    streams: list[StreamSummary] = field(default_factory=list)
    events: int = 0
    aligned: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    live: bool = False
    """A recorder was writing the file while it was checked (what was on disk then)."""

    @property
    def valid(self) -> bool:
        """No errors."""
        return not self.errors


def _check_stream(r: SessionReader, key: str, rep: SessionReport, clean: bool,
                  config: CheckConfig) -> None:
    g = r.h5["streams"][key]
    where = f"{rep.path}: stream {key!r}"
    missing = [d for d in _REQUIRED if d not in g]
    if missing:
        rep.errors.append(f"{where} lacks {', '.join(missing)} (not written by imusic?)")
        return
    s = StreamSummary(key=key)
    spec = r.spec(key)
    s.name, s.type, s.source_id = spec.name, spec.type, spec.source_id
    ts_ds, x_ds = g["time_series"], g["time_stamps"]
    if ts_ds.ndim != 2:
        rep.errors.append(f"{where}: time_series has {ts_ds.ndim} dimensions, expected 2")
        return
    s.channels = int(ts_ds.shape[1])
    if len(spec.labels) != s.channels:
        rep.errors.append(f"{where}: {len(spec.labels)} channel labels for "
                          f"{s.channels} channels")
    if "channel_count" in g.attrs and int(g.attrs["channel_count"]) != s.channels:
        rep.errors.append(f"{where}: channel_count attribute {int(g.attrs['channel_count'])} "
                          f"but time_series has {s.channels} columns")
    if x_ds.ndim != 1:
        rep.errors.append(f"{where}: time_stamps has shape {x_ds.shape}, expected (N,)")
        return
    n_x, n_t = ts_ds.shape[0], x_ds.shape[0]
    if n_x != n_t:
        msg = f"{where}: {n_x} samples but {n_t} timestamps"
        # A killed writer may have appended one of the pair and not the other.
        (rep.warnings if not clean else rep.errors).append(
            msg + (" (interrupted write; the common length is used)" if not clean else ""))
    t = x_ds[: min(n_x, n_t)]
    s.samples = len(t)
    if len(t):
        if not np.all(np.isfinite(t)):
            rep.errors.append(f"{where}: {int((~np.isfinite(t)).sum())} timestamps are not "
                              "finite")
        else:
            d = np.diff(t)
            if np.any(d < 0):
                back = (f"{where}: timestamps go backwards {int((d < 0).sum())} "
                        f"times (first at sample {int(np.argmax(d < 0)) + 1})")
                # LSL lets an irregular stream (markers) stamp samples in any order; only a
                # regular stream's clock must not go back.
                if float(g.attrs.get("nominal_srate", spec.nominal_srate)) > 0:
                    rep.errors.append(back)
                else:
                    rep.warnings.append(back + ", allowed in an irregular stream")
            s.duration_s = float(t[-1] - t[0])
            if s.duration_s > 0:
                s.measured_rate = (len(t) - 1) / s.duration_s
    s.nominal_rate = float(g.attrs.get("nominal_srate", spec.nominal_srate))
    co = g["clock_offsets"]
    if co.ndim != 2 or co.shape[1] != 2:
        rep.errors.append(f"{where}: clock_offsets has shape {co.shape}, expected (M, 2)")
    else:
        c = co[()]
        s.offsets = len(c)
        if len(c) and not np.all(np.isfinite(c)):
            rep.errors.append(f"{where}: clock_offsets holds non-finite values")
        elif len(c):
            s.offset_mean_ms = float(np.mean(c[:, 1]) * 1e3)
            s.offset_std_ms = float(np.std(c[:, 1]) * 1e3)
    if "gaps" in g:
        gp = g["gaps"]
        if gp.ndim != 2 or gp.shape[1] != 2:
            rep.errors.append(f"{where}: gaps has shape {gp.shape}, expected (G, 2)")
        else:
            gv = gp[()]
            s.gaps = len(gv)
            s.gap_s = float(np.sum(gv[:, 1] - gv[:, 0])) if len(gv) else 0.0
    if "health" in g and g["health"].shape == (len(HEALTH_FIELDS),):
        s.health = dict(zip(HEALTH_FIELDS, (int(v) for v in g["health"][()])))
    if s.samples == 0:
        rep.warnings.append(f"{where}: no samples")
    elif s.nominal_rate > 0 and s.measured_rate > 0 and s.gaps == 0 \
            and abs(s.measured_rate / s.nominal_rate - 1) > config.rate_tolerance:
        rep.warnings.append(f"{where}: measured rate {s.measured_rate:.1f} Hz differs from the "
                            f"nominal {s.nominal_rate:g} Hz by more than "
                            f"{100 * config.rate_tolerance:g}%")
    rep.streams.append(s)


def _selections(ds: h5py.Dataset, limits: ReadLimits) -> list[tuple[slice, ...] | tuple[()]]:
    """What ``check_readable`` reads of ``ds``: all of it, or a few whole chunks."""
    if ds.shape is None or ds.size == 0:
        return []
    if ds.chunks is None or ds.size * ds.dtype.itemsize <= limits.check_whole_bytes:
        return [()]
    rows = ds.chunks[0]
    n_chunks = -(-ds.shape[0] // rows)
    picks = np.unique(np.linspace(0, n_chunks - 1, limits.check_chunks + 2).round().astype(int))
    return [(slice(int(k) * rows, min(ds.shape[0], (int(k) + 1) * rows)),) for k in picks]


def check_readable(h5: h5py.File, path: Path, limits: ReadLimits = READ_LIMITS) -> list[str]:
    """One error per dataset (or group) of ``h5`` that cannot be read back; [] if all can."""
    errors: list[str] = []

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        try:
            for sel in _selections(obj, limits):
                obj[sel]
        except (OSError, RuntimeError) as err:
            errors.append(f"{path}: /{name} cannot be read ({str(err).splitlines()[0]}): the "
                          "file is damaged; restore it from a copy")

    try:
        h5.visititems(visit)
    except (OSError, RuntimeError, KeyError) as err:
        errors.append(f"{path}: the file's structure cannot be walked ({err}): the file is "
                      "damaged; restore it from a copy")
    return errors


def _check_aligned(r: SessionReader, rep: SessionReport) -> None:
    from imusic.capture.aligned import read_aligned

    try:
        a = read_aligned(r.h5)
    except Exception as err:  # noqa: BLE001 - any failure means the group is bad
        rep.errors.append(f"{rep.path}: the aligned group is invalid ({err}); "
                          f"run 'imusic sync {rep.path}' again")
        return
    n = a.n_frames
    if n > 1 and np.any(np.diff(a.t) <= 0):
        rep.errors.append(f"{rep.path}: aligned.t is not strictly increasing")
    if not a.rate_hz > 0:
        rep.errors.append(f"{rep.path}: aligned rate_hz is {a.rate_hz}")
    rep.aligned = {
        "frames": n, "seconds": n / a.rate_hz if a.rate_hz > 0 else 0.0,
        "rate_hz": a.rate_hz, "sites": len(a.sites), "reference": a.reference,
        "rig_id": a.rig_id, "valid_imu": float(a.valid_imu.mean()) if n else 0.0,
        "valid_arkit": float(a.valid_arkit.mean()) if n else 0.0,
        "lag_ms": float(a.attrs.get("lag_s", float("nan"))) * 1e3,
        "lag_confidence": float(a.attrs.get("lag_confidence", float("nan"))),
        "source": a.attrs.get("source", ""),
    }


def _import_losses(attrs: dict[str, Any]) -> list[str]:
    """What an XDF import lost (root attribute ``xdf_problems``, capture/xdf.py)."""
    import json

    try:
        lines = json.loads(attrs.get("xdf_problems") or "[]")
    except (TypeError, ValueError):
        return ["its import notes (xdf_problems) do not parse"]
    return [str(x) for x in lines] if isinstance(lines, list) else []


def check_session(path: str | Path, config: CheckConfig | None = None) -> SessionReport:
    """Summarise and validate ``path`` (see module doc); ``config``: thresholds."""
    config = config or CheckConfig()
    rep = SessionReport(path=Path(path))
    try:
        r = SessionReader(path)
    except SessionError as err:
        rep.errors.append(str(err))
        return rep
    except Exception as err:  # noqa: BLE001 - a damaged file must not crash info
        rep.errors.append(f"{path} cannot be read: {err}")
        return rep
    with r:
        try:
            rep.attrs = r.attrs
            for a in ("schema", "schema_version", "created"):
                if a not in rep.attrs:
                    rep.errors.append(f"{path}: root attribute {a!r} missing")
            if rep.attrs.get("schema") != SCHEMA:
                rep.errors.append(f"{path}: schema {rep.attrs.get('schema')!r} != {SCHEMA!r}")
            if int(rep.attrs.get("schema_version", 0) or 0) not in range(1, SCHEMA_VERSION + 1):
                rep.errors.append(f"{path}: unsupported schema_version "
                                  f"{rep.attrs.get('schema_version')!r}")
            if rep.attrs.get("write_error"):
                rep.warnings.append(f"{path}: a write failed while recording "
                                    f"({rep.attrs['write_error']}); the recording stopped there "
                                    "and its streams end at the last successful flush")
            for line in _import_losses(rep.attrs):
                rep.warnings.append(f"{path} was imported from a damaged XDF file: {line}")
            clean = r.closed_cleanly
            rep.live = r.live and not clean
            if rep.live:
                rep.warnings.append(f"{path} is being recorded: this is what is on disk so far "
                                    "(the last second may be missing); run 'imusic info' again "
                                    "once the recording has stopped")
            elif not clean:
                rep.warnings.append(f"{path} was not closed cleanly (recorder killed, or still "
                                    "recording); data up to the last flush is there. Clear the "
                                    f"HDF5 flag with 'h5clear -s {path}' before 'imusic sync'")
            if "streams" not in r.h5:
                rep.errors.append(f"{path}: no /streams group")
                return rep
            for key in r.keys:
                try:
                    _check_stream(r, key, rep, clean, config)
                except Exception as err:  # noqa: BLE001 - damaged stream: say which
                    rep.errors.append(f"{path}: stream {key!r} cannot be read: {err}")
            try:
                rep.events = len(r.events())
            except Exception as err:  # noqa: BLE001
                rep.errors.append(f"{path}: /events cannot be read: {err}")
            rep.errors.extend(check_readable(r.h5, rep.path))
            if r.has_aligned:
                _check_aligned(r, rep)
            if r.has_calibration:
                from imusic.capture.calibration import Calibration
                from imusic.capture.neutral import NeutralError
                try:
                    c = Calibration.read(r.h5)
                    rep.calibration = {
                        "sites": len(c.sites), "reference": c.reference,
                        "gyro_bias_max_dps": float(np.degrees(np.abs(c.gyro_bias).max())),
                        "still_fraction": c.still_fraction,
                        "neutral": None if c.neutral is None else c.neutral.summary(),
                        "neutral_line": "none stored (synced before it was; run 'imusic "
                                        f"sync {path}' again)" if c.neutral is None
                                        else c.neutral.describe()}
                except NeutralError as err:
                    rep.errors.append(str(err))
                except Exception as err:  # noqa: BLE001
                    rep.errors.append(f"{path}: /calibration cannot be read: {err}")
        except Exception as err:  # noqa: BLE001 - damaged metadata anywhere
            rep.errors.append(f"{path}: damaged file: {err}")
    return rep


def format_report(rep: SessionReport) -> str:
    """The human-readable text ``imusic info`` prints."""
    a = rep.attrs
    lines = [f"{rep.path}"]
    if a:
        lines.append(f"  schema {a.get('schema')} v{a.get('schema_version')}, created "
                     f"{a.get('created')}, subject {a.get('subject') or '-'}, host "
                     f"{a.get('host')}, "
                     + ("being recorded" if rep.live
                        else f"closed cleanly: {bool(a.get('closed_cleanly'))}"))
    if rep.streams:
        lines.append(f"  {'stream':<24} {'type':<12} {'ch':>4} {'samples':>9} {'dur s':>8} "
                     f"{'rate/nominal Hz':>16} {'gaps':>5} {'offs':>5} {'offset ms':>10}")
        for s in rep.streams:
            off = f"{s.offset_mean_ms:+.2f}" if np.isfinite(s.offset_mean_ms) else "-"
            lines.append(f"  {s.key[:24]:<24} {s.type[:12]:<12} {s.channels:>4} {s.samples:>9} "
                         f"{s.duration_s:>8.1f} {s.measured_rate:>7.1f}/{s.nominal_rate:<8g} "
                         f"{s.gaps:>5} {s.offsets:>5} {off:>10}")
    if a:
        lines.append(f"  events: {rep.events}")
    if rep.calibration:
        c = rep.calibration
        lines.append(f"  calibration: {c['sites']} sites, reference {c['reference']}, max gyro "
                     f"bias {c['gyro_bias_max_dps']:.2f} deg/s, still {c['still_fraction']:.0%}")
        lines.append(f"  neutral pose: {c['neutral_line']}")
    if rep.aligned:
        al = rep.aligned
        lines.append(f"  aligned: {al['frames']} frames ({al['seconds']:.1f} s at "
                     f"{al['rate_hz']:g} Hz), {al['sites']} sites, ref {al['reference']}, "
                     f"valid imu {al['valid_imu']:.0%} arkit {al['valid_arkit']:.0%}, lag "
                     f"{al['lag_ms']:.1f} ms (confidence {al['lag_confidence']:.2f})")
    elif a:
        lines.append("  aligned: none (run 'imusic sync')")
    for w in rep.warnings:
        lines.append(f"  warning: {w}")
    for e in rep.errors:
        lines.append(f"  ERROR: {e}")
    lines.append("  valid" if rep.valid else "  INVALID")
    return "\n".join(lines)
