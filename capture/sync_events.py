"""Sync steps 4 and 5 (and the neutral face of step 3): the IMU and the face, event by event.

Both streams see the same face move, each through its own sensor, so the lag between them is
found by matching events:

* ``detect_tap_imu``: the start-of-take chin tap, a short acceleration spike on the tapped
  sensor (``tap_site``) well above its running median, the session's robust level and what the
  other sensors feel at that instant; ``detect_tap_blendshapes``: the jaw/mouth twitch the tap
  causes, near it. Their difference is a coarse lag.
* ``imu_energy`` (face sensors' angular rate relative to the reference) and
  ``blendshape_energy`` (sum of |d/dt| of the blendshapes) on the lag-estimate grid,
  band-passed, normalised and cross-correlated by ``estimate_lag``: the residual lag and a
  0..1 confidence.
* ``neutral_mask``: where the face is neutral, for calibration (capture/calibration.py).

capture/sync.py calls them in that order; every threshold is a ``SyncConfig`` field.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import butter, sosfiltfilt

from imusic.capture.sync_clock import segments
from imusic.capture.sync_config import DEFAULT, SyncConfig
from imusic.capture.sync_resample import resample_segments
from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES, REGIONS

MAD_SCALE = 1.4826
"""MAD to standard deviation for normally distributed data."""


# ------------------------------------------------------------------ motion energy and lag

def bandpass(x: np.ndarray, rate: float, config: SyncConfig = DEFAULT) -> np.ndarray:
    """Zero-phase band-pass of a 1-D signal (only its mean removed if too short)."""
    if len(x) < config.band_min_frames:
        return x - np.mean(x)
    sos = butter(config.band_order, [config.band_lo_hz,
                                     min(config.band_hi_hz, config.band_hi_ratio * rate)],
                 btype="band", fs=rate, output="sos")
    return sosfiltfilt(sos, x)


def imu_energy(gyro: np.ndarray, ref: int, rel_rot: np.ndarray | None = None) -> np.ndarray:
    """(N,) sum over face sensors of |angular rate relative to the reference sensor|.

    With ``rel_rot`` (sensor -> reference rotations) the reference rate is expressed in each
    sensor's frame and subtracted (head rotation cancels); without, the magnitudes are."""
    n, s, _ = gyro.shape
    e = np.zeros(n)
    for i in range(s):
        if i == ref:
            continue
        if rel_rot is not None:
            w_ref_in_i = gyro[:, ref] @ rel_rot[i]          # R^T w_ref, row-vector form
            e += np.linalg.norm(gyro[:, i] - w_ref_in_i, axis=1)
        else:
            e += np.abs(np.linalg.norm(gyro[:, i], axis=1) - np.linalg.norm(gyro[:, ref], axis=1))
    return e


def blendshape_energy(b: np.ndarray, rate: float, columns: list[int] | None = None) -> np.ndarray:
    """(N,) sum of |d/dt| of the blendshapes (or of ``columns``), per second."""
    x = b[:, :N_BLENDSHAPES] if columns is None else b[:, columns]
    d = np.abs(np.gradient(x, axis=0)) * rate if len(x) > 1 else np.zeros_like(x)
    return np.nansum(d, axis=1)


def _normalise(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    y = np.where(valid, x, 0.0)
    if valid.sum() > 1:
        m, s = y[valid].mean(), y[valid].std()
        y = np.where(valid, (y - m) / (s if s > 0 else 1.0), 0.0)
    return y


def estimate_lag(e_imu: np.ndarray, e_bs: np.ndarray, valid_imu: np.ndarray,
                 valid_bs: np.ndarray, rate: float, max_lag: float | None = None,
                 center: float = 0.0, config: SyncConfig = DEFAULT) -> tuple[float, float]:
    """Lag (s) of the blendshape energy behind the IMU energy, and a 0..1 confidence.

    Normalised cross-correlation over lags ``center ± max_lag`` (default ``config.max_lag``)
    on frames valid in both (at least ``lag_min_frames``); the peak is refined with a parabola
    through its neighbours. NaN and 0 when no lag could be scored."""
    max_lag = config.max_lag if max_lag is None else max_lag
    x = _normalise(bandpass(np.where(valid_imu, e_imu, 0.0), rate, config), valid_imu)
    y = _normalise(bandpass(np.where(valid_bs, e_bs, 0.0), rate, config), valid_bs)
    n = len(x)
    c0 = int(round(center * rate))
    m = int(round(max_lag * rate))
    lags = np.arange(c0 - m, c0 + m + 1)
    corr = np.full(len(lags), -1.0)
    for j, lag in enumerate(lags):
        if abs(lag) >= n - config.lag_edge_frames:
            continue
        xs = x[max(0, -lag): n - max(0, lag)]
        ys = y[max(0, lag): n - max(0, -lag)]
        ok = valid_imu[max(0, -lag): n - max(0, lag)] & valid_bs[max(0, lag): n - max(0, -lag)]
        if ok.sum() < config.lag_min_frames:
            continue
        a, b = xs[ok], ys[ok]
        den = np.sqrt((a * a).sum() * (b * b).sum())
        corr[j] = (a * b).sum() / den if den > 0 else -1.0
    k = int(np.argmax(corr))
    if corr[k] <= -1.0:
        return float("nan"), 0.0
    frac = 0.0
    if 0 < k < len(lags) - 1:
        y0, y1, y2 = corr[k - 1], corr[k], corr[k + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            frac = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return float((lags[k] + frac) / rate), float(max(corr[k], 0.0))


# ------------------------------------------------------------------ the start-of-take tap

def _robust_threshold(x: np.ndarray, k: float, config: SyncConfig = DEFAULT) -> float:
    med = np.nanmedian(x)
    mad = np.nanmedian(np.abs(x - med)) * MAD_SCALE
    return float(med + k * max(mad, config.mad_floor))


def tap_site(sites: list[str], muscles: dict[str, str], acc: np.ndarray) -> int:
    """Index of the tapped sensor: the mentalis (chin) site, else the one with the most jerk."""
    for i, s in enumerate(sites):
        if "mentalis" in s.lower() or "mentalis" in muscles.get(s, "").lower() \
                or "chin" in s.lower():
            return i
    jerk = np.nanmax(np.linalg.norm(np.diff(np.nan_to_num(acc), axis=0), axis=2), axis=0)
    return int(np.argmax(jerk))


def detect_tap_imu(t: np.ndarray, acc: np.ndarray, site: int, rate: float,
                   near: float | None = None, config: SyncConfig = DEFAULT) -> float:
    """Time of the first tap spike on sensor ``site`` of ``acc`` (N, S, 3): NaN if none.

    The spike is the deviation of the acceleration from its ``tap_median_s`` running median
    (m/s^2): on the tapped sensor it must exceed ``tap_min_spike`` (2 g: a fingertip tap gives
    several g for a few ms, facial movement about 1 g at most), median + ``tap_mad_k`` MAD of
    the session, and ``tap_dominance`` times the median spike of the other sensors at that
    instant (a tap shakes one sensor; head motion shakes them all). Searched in the first
    ``tap_search_s`` seconds, or within ``tap_near_s`` of ``near`` (the device's tap event)."""
    if len(t) < config.tap_min_imu_samples:
        return float("nan")
    a = np.nan_to_num(acc)
    width = max(3, int(config.tap_median_s * rate) | 1)
    spike = np.linalg.norm(a - median_filter(a, size=(width, 1, 1), mode="nearest"), axis=2)
    own = spike[:, site]
    others = np.delete(spike, site, axis=1)
    rest = np.median(others, axis=1) if others.shape[1] else np.zeros(len(own))
    thr = max(_robust_threshold(own, config.tap_mad_k, config), config.tap_min_spike)
    window = ((np.abs(t - near) <= config.tap_near_s) if near is not None
              else (t - t[0]) <= config.tap_search_s)
    hits = np.flatnonzero((own > thr) & (own > config.tap_dominance * rest) & window)
    if not len(hits):
        return float("nan")
    i = hits[0]
    j = i + int(np.argmax(own[i: i + max(2, int(config.tap_peak_s * rate))]))  # its peak
    return float(t[j])


def detect_tap_blendshapes(t: np.ndarray, b: np.ndarray, near: float, window: float,
                           rate: float, config: SyncConfig = DEFAULT) -> float:
    """Time of the jaw/mouth twitch peak within ``near ± window``; NaN if none stands out
    (energy over median + ``twitch_mad_k`` MAD)."""
    cols = [ARKIT_NAMES.index(n) for r in ("jaw", "mouth") for n in REGIONS[r]]
    e = blendshape_energy(np.nan_to_num(b), rate, cols)
    sel = np.flatnonzero(np.abs(t - near) <= window)
    if not len(sel):
        return float("nan")
    hits = sel[e[sel] > _robust_threshold(e, config.twitch_mad_k, config)]
    if not len(hits):
        return float("nan")
    # The first burst above threshold (the twitch comes first; the take follows), at its peak.
    i = hits[0]
    j = i + int(np.argmax(e[i: i + max(2, int(config.twitch_peak_s * rate))]))
    return float(t[j])


def neutral_mask(t: np.ndarray, bs_t: np.ndarray, b: np.ndarray, bs_rate: float,
                 config: SyncConfig = DEFAULT) -> np.ndarray:
    """(len(t),) True where the face is neutral: every blendshape below
    ``neutral_max_weight`` (eye gaze excepted: looking around is neutral for the sensors) and
    tracked, at times ``t``.

    Timestamps are the raw ones (before the lag estimate), which is fine for a mask of
    seconds-long neutral stretches."""
    gaze = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith("eyeLook")]
    keep = [i for i in range(N_BLENDSHAPES) if i not in gaze]
    level = np.max(b[:, keep], axis=1)                 # NaN where the face was lost
    segs = segments(bs_t, bs_rate)
    lv, valid = resample_segments(bs_t, level[:, None], t, segs, config=config)
    return valid & (lv[:, 0] < config.neutral_max_weight)
