"""Sync step 6: the common timeline and everything resampled onto it.

``overlap_grid`` is the one definition of the aligned timeline: ``t0 + k / rate`` over the
time both streams cover. ``resample_segments`` puts any (N, ...) array onto such a grid
segment by segment (``capture.sync_clock.segments``: never across a gap), optionally after a
zero-phase anti-alias ``lowpass``; rows holding NaN make their neighbouring frames invalid.
``resample_imu`` does that for every IMU quantity of an ``ImuSeries`` (capture/sync_streams.py):
acc and gyro low-passed, magnetometer where the device has one, quaternions sign-continuous and
renormalised without low-pass. capture/sync.py builds the lag-estimate grid (the streams as
recorded; only when it estimates the lag) and the output grid (blendshapes shifted by the lag)
with ``overlap_grid``, and resamples onto both with these functions, as ``neutral_mask``
(capture/sync_events.py) does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import butter, sosfiltfilt

from imusic.capture.orientation import normalise
from imusic.capture.sync_config import DEFAULT, SyncConfig

if TYPE_CHECKING:
    from imusic.capture.sync_streams import ImuSeries


def overlap_grid(ta: np.ndarray, tb: np.ndarray, rate: float) -> np.ndarray:
    """``t0 + k / rate`` from the later start to the earlier end of two sorted timelines
    (empty when they do not overlap)."""
    t0, t1 = max(ta[0], tb[0]), min(ta[-1], tb[-1])
    return t0 + np.arange(max(int(np.floor((t1 - t0) * rate)) + 1, 0)) / rate


def lowpass(x: np.ndarray, rate_in: float, cutoff: float,
            config: SyncConfig = DEFAULT) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0 (unchanged if too short or no need)."""
    if cutoff >= 0.5 * rate_in or len(x) < config.lowpass_min_samples:
        return x
    sos = butter(config.lowpass_order, cutoff, fs=rate_in, output="sos")
    return sosfiltfilt(sos, x, axis=0, padlen=min(len(x) - 1, config.lowpass_padlen))


def resample_segments(t_src: np.ndarray, x: np.ndarray, t_dst: np.ndarray, segs: list,
                      rate_in: float = 0.0, cutoff: float = 0.0,
                      config: SyncConfig = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``x`` (N, ...) at ``t_dst`` segment by segment (never across gaps).

    With ``rate_in`` and ``cutoff`` a segment free of NaN is low-passed first. Rows of ``x``
    holding NaN make the destination frames next to them invalid. Returns (values (M, ...)
    with 0 where invalid, valid (M,))."""
    shape = x.shape[1:]
    flat = x.reshape(len(x), -1)
    out = np.zeros((len(t_dst), flat.shape[1]))
    valid = np.zeros(len(t_dst), bool)
    for a, b in segs:
        ts, xs = t_src[a:b], flat[a:b]
        if b - a < 2:
            continue
        lo = np.searchsorted(t_dst, ts[0], side="left")
        hi = np.searchsorted(t_dst, ts[-1], side="right")
        if hi <= lo:
            continue
        td = t_dst[lo:hi]
        finite = np.all(np.isfinite(xs), axis=1)
        if cutoff and rate_in and finite.all():
            xs = lowpass(xs, rate_in, cutoff, config)
        right = np.clip(np.searchsorted(ts, td, side="left"), 1, len(ts) - 1)
        ok = finite[right] & finite[right - 1]
        for c in range(flat.shape[1]):
            col = xs[:, c]
            fin = np.isfinite(col)
            if fin.sum() >= 2:
                out[lo:hi, c] = np.interp(td, ts[fin], col[fin])
            elif fin.sum() == 1:
                out[lo:hi, c] = col[fin][0]
        valid[lo:hi] = ok
    out[~valid] = 0.0
    return out.reshape((len(t_dst), *shape)), valid


def resample_imu(imu: ImuSeries, gyro: np.ndarray, grid: np.ndarray, segs: list,
                 config: SyncConfig = DEFAULT) -> dict[str, np.ndarray | None]:
    """Every IMU quantity of ``imu`` (an ``ImuSeries``) on ``grid``, float64.

    ``gyro`` is the bias-free angular rate (N, S, 3) to resample (NaN kept for sites without a
    gyroscope); acc, gyro and mag are low-passed at ``lowpass_ratio`` of the grid's rate.
    Returns ``acc``, ``gyro``, ``mag`` (NaN without magnetometers), ``quat`` (None when no site
    reports one; 0 on invalid frames) and ``valid`` (acc, gyro and quaternions present)."""
    cutoff = config.lowpass_ratio * config.rate_hz
    acc_g, v1 = resample_segments(imu.t, imu.acc, grid, segs, imu.rate_hz, cutoff, config)
    gyr_g, v2 = resample_segments(imu.t, gyro, grid, segs, imu.rate_hz, cutoff, config)
    gyr_g[:, ~np.isfinite(imu.gyro).any(axis=(0, 2))] = np.nan   # quat-only: no gyroscope
    quat_g = None
    if imu.quat is not None:
        has_q = np.isfinite(imu.quat).all(axis=(0, 2))
        quat_g = np.full(gyr_g.shape[:2] + (4,), np.nan)
        if has_q.any():
            qg, vq = resample_segments(imu.t, imu.quat[:, has_q], grid, segs, config=config)
            quat_g[:, has_q] = normalise(np.where(vq[:, None, None], qg, 1.0))
            quat_g[~vq] = 0.0
            v2 = v2 & vq
    if np.isfinite(imu.mag).any():
        mag_g, _ = resample_segments(imu.t, np.nan_to_num(imu.mag), grid, segs, imu.rate_hz,
                                     cutoff, config)
        mag_g[:, ~np.isfinite(imu.mag).all(axis=(0, 2))] = np.nan  # sites without mag
    else:
        mag_g = np.full_like(acc_g, np.nan)
    return {"acc": acc_g, "gyro": gyr_g, "mag": mag_g, "quat": quat_g, "valid": v1 & v2}
