"""Synchronisation: from a recorded session to the ``aligned`` group (one 60 Hz timeline).

``sync_session(path)`` reads the streams (``pick_streams``), hands them to ``align`` (a pure
function from streams to a ``SyncResult``: no file, so tests and take_quality can call it on
arrays) and, unless ``write=False``, writes the result (``write_result``: ``/calibration``,
with ``/calibration/neutral``, and ``/aligned``). Every threshold is a field of ``SyncConfig``
(capture/sync_config.py), passed
as ``config=`` or as keywords. The steps of ``align``, each in its own module:

1. **Clock offsets** (capture/sync_clock.py). Every stream's sender timestamps get the
   recorder's measured offset (``apply_clock_offsets``, linearly interpolated; constant
   outside; 0 if none).
2. **Dejitter** (sync_clock.py). A regular stream is split at its gaps (the recorder's
   ``gap_threshold``); in each segment sample ``i`` gets the time of a least-squares line
   ``a + b k_i`` where ``k_i`` counts nominal periods (so a few dropped samples inside a
   segment do not bend the line), or against the device's sample clock. Never across a gap.
   Parsing the streams by label (capture/sync_streams.py) applies steps 1 and 2.
3. **Calibration** (capture/calibration.py) on the IMU stream: gyro bias from still moments
   (subtracted from here on) and each sensor's rotation to the reference sensor, fitted on
   samples that are still and where the blendshapes say the face is neutral (every non-gaze
   blendshape below ``neutral_max_weight``; ``neutral_mask``), falling back to still samples.
4. **Start-of-take tap** (capture/sync_events.py). The participant taps the mentalis sensor.
   On the IMU: the first acceleration spike of the mentalis site (or the site with the largest
   jerk) over ``tap_min_spike`` (2 g) above its running median, far above the session's robust
   level and several times what the other sensors feel at that instant (``detect_tap_imu``).
   In the blendshapes: the peak of jaw and mouth motion energy (the brief twitch a tap on the
   chin causes) near that time. Their difference is a coarse lag that narrows step 5 when its
   correlation is weak. A ``{"event": "tap"}`` marker (the device's own tap detector, via
   firmware_bridge's events stream) is recorded too and stands in for a missing IMU spike.
5. **Residual lag** (sync_events.py). IMU motion energy (per face sensor, |angular rate
   relative to the reference sensor|, summed) and blendshape motion energy (sum of |d/dt| of
   the 52 values), both on the *estimate grid* (the overlap of the streams as recorded) and
   band-passed (0.2..8 Hz) so that slow drifts do not dominate, are cross-correlated
   (normalised, valid frames only) over ``±max_lag``; the peak, refined by a parabola, is the
   lag (positive: ARKit timestamps are late) and its height the confidence.
6. **Resample** (capture/sync_resample.py) onto the *output grid* ``t0 + k / rate`` over the
   overlap of the IMU and the blendshapes shifted by ``-lag``: IMU by zero-phase low-pass
   (Butterworth, 0.4 x rate) then linear interpolation, per segment; blendshapes by linear
   interpolation per segment, invalid where a neighbour row is face-lost or in a gap. Invalid
   frames hold 0 (masks say which); ``mag`` is NaN when the device has none.
7. **Neutral pose** (capture/neutral.py) on the aligned timeline: the model's own
   neutral-pose calibration (model/calibration.py's rule, run by ``model.features``), so the
   session stores what the features will use: ``/calibration/neutral``.

The two grids are one definition (``overlap_grid``) on two spans: the output grid needs the
lag, the lag needs a grid, and a fractional lag puts the output on another lattice. With
``lag=`` given, only the output grid is built.

Orientation. A stream with ``site.quat.w|x|y|z`` channels (a device with on-device fusion)
gets its quaternions resampled too (signs made continuous, linear interpolation, renormalised;
no low-pass) into ``aligned.quat``. A site with quaternions but no gyroscope (the IMUSIC
device sends only orientation and acceleration) gets the angular rate its quaternions imply
(capture/orientation.py) for calibration and the lag estimate; its ``aligned.gyro`` stays NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from imusic.capture.aligned import Aligned, write_aligned
from imusic.capture.calibration import Calibration, calibrate
from imusic.capture.neutral import neutral_of
from imusic.capture.session import SessionReader, StreamData
from imusic.capture.sync_clock import apply_clock_offsets, dejitter, segments
from imusic.capture.sync_config import DEFAULT, SyncConfig
from imusic.capture.sync_events import (blendshape_energy, detect_tap_blendshapes, detect_tap_imu,
                                 estimate_lag, imu_energy, neutral_mask, tap_site)
from imusic.capture.sync_resample import overlap_grid, resample_imu, resample_segments
from imusic.capture.sync_streams import (ImuSeries, SyncError, blendshape_rows, device_taps,
                                  parse_imu, pick_streams, tap_markers)
from imusic.hardware.vocabulary import N_BLENDSHAPES

RATE_HZ = DEFAULT.rate_hz


@dataclass
class SyncResult:
    """What ``align`` found (also stored as attrs of the aligned group)."""

    aligned: Aligned
    calibration: Calibration
    lag_s: float
    lag_confidence: float
    tap_imu: float
    tap_blendshapes: float
    imu_key: str
    blendshapes_key: str


def _lag(imu: ImuSeries, gyro: np.ndarray, imu_segs: list, calib: Calibration,
         bs_t: np.ndarray, bs: np.ndarray, bs_segs: list, tap_i: float, tap_b: float,
         config: SyncConfig) -> tuple[float, float]:
    """Step 5 on the estimate grid: (lag s, confidence); 0, 0 when nothing correlates."""
    rate = config.rate_hz
    grid = overlap_grid(imu.t, bs_t, rate)
    g_grid, v_imu = resample_segments(imu.t, gyro, grid, imu_segs, imu.rate_hz,
                                      config.lowpass_ratio * rate, config)
    b_grid, v_bs = resample_segments(bs_t, bs[:, :N_BLENDSHAPES], grid, bs_segs, config=config)
    e_i = imu_energy(g_grid, imu.sites.index(imu.reference), calib.relative_rotation)
    e_b = blendshape_energy(b_grid, rate)
    v_e = v_bs & np.roll(v_bs, 1) & np.roll(v_bs, -1)
    lag_s, conf = estimate_lag(e_i, e_b, v_imu, v_e, rate, config.max_lag, config=config)
    if conf < config.weak_confidence and np.isfinite(tap_i) and np.isfinite(tap_b):
        # A weak, ambiguous correlation: search only near the lag the tap suggests.
        center = float(np.clip(tap_b - tap_i, -config.max_lag, config.max_lag))
        lag_s, conf = estimate_lag(e_i, e_b, v_imu, v_e, rate, config.tap_lag_window,
                                   center=center, config=config)
    return (0.0, 0.0) if not np.isfinite(lag_s) else (lag_s, conf)


def _check(stream: StreamData, what: str, source: str) -> None:
    if not np.all(np.isfinite(np.asarray(stream.time_stamps, np.float64))):
        raise SyncError(f"{source}: the {what} stream {stream.key or stream.spec.name!r} has "
                        "non-finite timestamps: re-record it (or repair the file)")


def align(imu_stream: StreamData, bs_stream: StreamData, *, marker_taps: Iterable[float] = (),
          root_attrs: Mapping[str, Any] | None = None, lag: float | None = None,
          config: SyncConfig = DEFAULT, source: str = "streams") -> SyncResult:
    """Steps 1-6 (module doc) on an IMU and a Blendshapes stream in memory: the result, with
    nothing written. ``marker_taps``: device tap events (recorder clock, ``tap_markers``);
    ``root_attrs``: the session's root attrs (``subject``, ``take``, ``source`` are kept);
    ``lag`` forces the IMU/ARKit lag (s); ``source`` names the data in error messages.

    Raises ``SyncError`` (only) when the streams cannot be synchronised."""
    root = root_attrs or {}
    ik, bk = imu_stream.key, bs_stream.key
    n_i, n_b = len(imu_stream.time_stamps), len(bs_stream.time_stamps)
    if n_i < config.min_samples or n_b < config.min_samples:
        raise SyncError(f"{source}: too little data to synchronise ({ik}: {n_i} samples, "
                        f"{bk}: {n_b} samples)")
    _check(imu_stream, "IMU", source)
    _check(bs_stream, "Blendshapes", source)
    imu = parse_imu(imu_stream, config)
    bs_rate = bs_stream.spec.nominal_srate or config.blendshape_rate_hz
    bs_t = dejitter(apply_clock_offsets(bs_stream.time_stamps, bs_stream.clock_offsets), bs_rate,
                    config=config)
    bs = blendshape_rows(bs_stream)
    bs[~np.all(np.isfinite(bs[:, :N_BLENDSHAPES]), axis=1)] = np.nan   # face lost: whole row

    # Step 3: calibration on the IMU's own timeline.
    rates = imu.rates()
    calib = calibrate(imu.t, imu.acc, rates, imu.rate_hz, imu.sites, imu.reference,
                      neutral=neutral_mask(imu.t, bs_t, bs[:, :N_BLENDSHAPES], bs_rate, config),
                      config=config.calibration)
    gyro = rates - calib.gyro_bias
    t0, t1 = max(imu.t[0], bs_t[0]), min(imu.t[-1], bs_t[-1])
    if not t1 - t0 >= config.min_overlap_s:
        raise SyncError(f"{source}: the IMU ({imu.t[0]:.1f}..{imu.t[-1]:.1f} s) and blendshape "
                        f"({bs_t[0]:.1f}..{bs_t[-1]:.1f} s) streams overlap by less than "
                        f"{config.min_overlap_s:g} s")

    # Step 4: the tap, IMU spike (or the device's marker), then the blendshape twitch near it.
    in_range = [t for t in marker_taps if imu.t[0] <= t <= imu.t[-1]]
    tap_marker = in_range[0] if in_range else float("nan")
    tap_i = detect_tap_imu(imu.t, imu.acc, tap_site(imu.sites, imu.muscles, imu.acc),
                           imu.rate_hz, near=tap_marker if np.isfinite(tap_marker) else None,
                           config=config)
    if not np.isfinite(tap_i) and np.isfinite(tap_marker):
        tap_i = tap_marker      # no spike found: the device's own tap event stands in
    tap_b = float("nan")
    imu_segs, bs_segs = segments(imu.t, imu.rate_hz), segments(bs_t, bs_rate)
    if np.isfinite(tap_i):
        tap_b = detect_tap_blendshapes(bs_t, bs[:, :N_BLENDSHAPES], tap_i,
                                       config.max_lag + config.twitch_margin_s, bs_rate, config)

    # Step 5: the residual lag, unless given.
    if lag is None:
        lag_s, conf = _lag(imu, gyro, imu_segs, calib, bs_t, bs, bs_segs, tap_i, tap_b, config)
    else:
        lag_s, conf = float(lag), 1.0

    # Step 6: the output grid, ARKit shifted by -lag.
    bs_t_shift = bs_t - lag_s
    grid = overlap_grid(imu.t, bs_t_shift, config.rate_hz)
    g = resample_imu(imu, gyro, grid, imu_segs, config)
    b_all, v_b = resample_segments(bs_t_shift, bs, grid, bs_segs, config=config)
    attrs = {**{k: str(root[k]) for k in ("subject", "take") if root.get(k)},
             "lag_s": float(lag_s), "lag_confidence": float(conf),
             "source": str(root.get("source")) if root.get("source") in ("real", "twin")
             else "recording",
             "tap_time": float(tap_i) if np.isfinite(tap_i) else float("nan"),
             "tap_blendshapes_time": float(tap_b - lag_s) if np.isfinite(tap_b)
             else float("nan"),
             "tap_marker_time": float(tap_marker),
             "tap_detected_in": [k for k, v in (("imu", tap_i), ("blendshapes", tap_b),
                                                ("marker", tap_marker)) if np.isfinite(v)],
             "gyro_bias_removed": True, "imu_stream": ik, "blendshapes_stream": bk}
    aligned = Aligned(
        rate_hz=config.rate_hz, t=grid, blendshapes=b_all[:, :N_BLENDSHAPES].astype(np.float32),
        pose=np.nan_to_num(b_all[:, N_BLENDSHAPES:]).astype(np.float32),
        acc=g["acc"].astype(np.float32), gyro=g["gyro"].astype(np.float32),
        mag=g["mag"].astype(np.float32), valid_imu=g["valid"], valid_arkit=v_b,
        sites=imu.sites, reference=imu.reference, rig_id=imu.rig_id,
        quat=None if g["quat"] is None else g["quat"].astype(np.float32), attrs=attrs)
    # Step 7: the model's neutral-pose calibration of the aligned timeline (stored with it).
    calib.neutral = neutral_of(aligned, source=source)
    return SyncResult(aligned=aligned, calibration=calib, lag_s=float(lag_s),
                      lag_confidence=float(conf), tap_imu=tap_i, tap_blendshapes=tap_b,
                      imu_key=ik, blendshapes_key=bk)


def write_result(path: str | Path, result: SyncResult) -> None:
    """Write (replace) ``/calibration`` and ``/aligned`` of a closed session file."""
    try:
        h5 = h5py.File(path, "r+")
    except OSError as err:
        raise SyncError(f"cannot write to {path}: {err}. If the recorder was killed, clear "
                        f"the HDF5 open flag first: h5clear -s {path}") from err
    try:
        with h5:
            result.calibration.write(h5)
            write_aligned(h5, result.aligned)
    except (OSError, RuntimeError) as err:
        raise SyncError(f"{path}: writing the calibration and aligned groups failed "
                        f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                        "the file may be damaged or the disk full") from err


def sync_session(path: str | Path, *, imu_key: str | None = None, bs_key: str | None = None,
                 lag: float | None = None, write: bool = True, config: SyncConfig | None = None,
                 **thresholds: Any) -> SyncResult:
    """Synchronise a recorded session and (by default) write /calibration and /aligned.

    ``lag`` forces the IMU/ARKit lag (s) instead of estimating it. ``thresholds`` are
    ``SyncConfig`` fields (``rate_hz=``, ``max_lag=``, ...) replacing those of ``config``;
    an unknown name raises ``TypeError``."""
    cfg = (config or DEFAULT).with_(**thresholds)
    path = Path(path)
    with SessionReader(path) as reader:
        ik, bk = pick_streams(reader, imu_key, bs_key)
        imu_stream, bs_stream = reader.stream(ik), reader.stream(bk)
        taps = device_taps(reader)
        root = dict(reader.attrs)
    result = align(imu_stream, bs_stream, marker_taps=taps, root_attrs=root, lag=lag,
                   config=cfg, source=str(path))
    if write:
        write_result(path, result)
    return result


def describe(result: SyncResult) -> dict[str, Any]:
    """A JSON-able summary of a sync result (what ``imusic sync`` prints)."""
    a = result.aligned
    return {
        "imu_stream": result.imu_key, "blendshapes_stream": result.blendshapes_key,
        "frames": int(a.n_frames), "seconds": float(a.n_frames / a.rate_hz),
        "valid_imu": float(a.valid_imu.mean()) if a.n_frames else 0.0,
        "valid_arkit": float(a.valid_arkit.mean()) if a.n_frames else 0.0,
        "lag_s": result.lag_s, "lag_confidence": result.lag_confidence,
        "tap_imu_s": result.tap_imu, "tap_blendshapes_s": result.tap_blendshapes,
        "sites": a.sites, "reference": a.reference,
        "still_fraction": result.calibration.still_fraction,
        "gyro_bias_rad_s_max": float(np.abs(result.calibration.gyro_bias).max()),
        "neutral": (result.calibration.neutral.summary()
                    if result.calibration.neutral is not None else None),
        "neutral_line": (result.calibration.neutral.describe()
                         if result.calibration.neutral is not None else ""),
    }


__all__ = ["SyncError", "SyncResult", "SyncConfig", "sync_session", "align", "write_result",
           "describe", "apply_clock_offsets", "dejitter", "segments", "parse_imu",
           "blendshape_rows", "pick_streams", "device_taps", "tap_markers", "neutral_mask",
           "estimate_lag", "imu_energy", "blendshape_energy", "detect_tap_imu",
           "detect_tap_blendshapes", "resample_segments"]
