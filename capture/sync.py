"""Synchronisation: from a recorded session to the ``aligned`` group (one 60 Hz timeline).

Steps (``sync_session``), each a pure function below:

1. **Clock offsets.** Every stream's sender timestamps get the recorder's measured offset
   (``clock_offsets``, linearly interpolated over time; constant outside; 0 if none).
2. **Dejitter.** A regular stream is split at its gaps (jumps over ``gap_threshold``); in each
   segment sample ``i`` gets the time of a least-squares line ``a + b k_i`` where ``k_i`` counts
   nominal periods (so a few dropped samples inside a segment do not bend the line). Never
   across a gap.
3. **Calibration** (capture/calibration.py) on the IMU stream: gyro bias from still moments
   (subtracted from here on) and each sensor's rotation to the reference sensor, fitted on
   samples that are still and where the blendshapes say the face is neutral (every
   non-gaze blendshape below 0.15; ``neutral_mask``), falling back to still samples.
4. **Start-of-take tap.** The participant taps the mentalis sensor. On the IMU: the first
   acceleration spike of the mentalis site (or the site with the largest jerk) over 2 g above
   its 0.1 s running median, far above the session's robust level and several times what the
   other sensors feel at that instant (``detect_tap_imu``). In the blendshapes: the peak of jaw and
   mouth motion energy (sum of |d/dt| of the jaw and mouth blendshapes: the brief twitch a tap
   on the chin causes) near that time. When both are found their difference is a coarse lag
   that narrows the search of step 5. A ``{"event": "tap"}`` marker (the device's own tap
   detector, via firmware_bridge's events stream) is recorded too and stands in for the IMU
   spike when none is found.
5. **Residual lag.** IMU motion energy (per face sensor, |angular rate relative to the
   reference sensor|, summed) and blendshape motion energy (sum of |d/dt| of the 52 values),
   both on a 60 Hz grid and band-passed (0.2..8 Hz) so that slow drifts do not dominate, are
   cross-correlated (normalised, valid frames only) over ``±max_lag``; the peak, refined by a
   parabola, is the lag (positive: ARKit timestamps are late) and its height the confidence.
6. **Resample** onto ``t0 + k / 60``: IMU by zero-phase low-pass (Butterworth, 0.4 x 60 Hz)
   then linear interpolation, per segment; blendshapes (shifted by ``-lag``) by linear
   interpolation per segment, invalid where a neighbour row is face-lost or in a gap.
   Invalid frames hold 0 (masks say which); ``mag`` is NaN when the device has none.

Orientation. A stream with ``site.quat.w|x|y|z`` channels (a device with on-device fusion)
gets its quaternions resampled too (signs made continuous, linear interpolation, renormalised;
no low-pass) into ``aligned.quat``. A site with quaternions but no gyroscope (the IMUSIC
device sends only orientation and acceleration) gets the angular rate its quaternions imply
(capture/orientation.py) for calibration and the lag estimate; its ``aligned.gyro`` stays NaN.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy.signal import butter, sosfiltfilt

from capture.aligned import Aligned, write_aligned
from capture.calibration import Calibration, calibrate
from capture.orientation import angular_rate, continuous, normalise
from capture.recorder import gap_threshold
from capture.session import SessionError, SessionReader, StreamData
from hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES, REGIONS, STREAM_NAMES

RATE_HZ = 60.0


class SyncError(SessionError):
    """A session that cannot be synchronised (the message says what is missing)."""


# ------------------------------------------------------------------ timestamps

def apply_clock_offsets(ts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sender timestamps -> recorder clock, with offsets ``[[local_time, offset], ...]``."""
    ts = np.asarray(ts, np.float64)
    off = np.asarray(offsets, np.float64).reshape(-1, 2)
    off = off[np.all(np.isfinite(off), axis=1)]
    if not len(off):
        return ts.copy()
    sender_t = off[:, 0] - off[:, 1]       # when each measurement was made, sender clock
    order = np.argsort(sender_t)
    return ts + np.interp(ts, sender_t[order], off[order, 1])


def segments(ts: np.ndarray, srate: float) -> list[tuple[int, int]]:
    """Index ranges ``[start, stop)`` of ``ts`` split where timestamps jump by a gap."""
    n = len(ts)
    if n == 0:
        return []
    cuts = np.flatnonzero(np.diff(ts) > gap_threshold(srate)) + 1 if srate > 0 else []
    bounds = [0, *map(int, cuts), n]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _sample_counts(ts: np.ndarray, period: float, block: int = 256) -> np.ndarray:
    """Nominal-period counts ``k_i`` of a gap-free run of timestamps, robust to jitter.

    Block by block, every timestamp is read off the line fitted to all samples before it
    (``k = round((t - a) / b)``, kept strictly increasing), then the line is refitted. A dropped
    sample shows as a skipped count and keeps its slot; a sample jittered by more than half a
    period is misplaced by one slot, alone: errors never add up, unlike a running count of
    rounded differences, and drops are not smeared, unlike a plain ``k = index`` fit."""
    n = len(ts)
    x = ts - ts[0]
    span = x[-1] - x[0] if n > 1 else 0.0
    if n > 1 and abs(span / period - (n - 1)) < 0.5 * max(1.0, 0.001 * n):
        # As many samples as the span holds: nothing was dropped, so k is the index, whatever
        # the jitter (the tolerance allows 1000 ppm of clock drift).
        return np.arange(n, dtype=np.float64)
    head = min(n, 21)
    a = float(np.median(x[:head] - np.arange(head) * period))
    b = period
    k = np.empty(n)
    last = -np.inf   # the first block may start below 0 (its median anchor is one guess)
    sk = st = skk = skt = 0.0
    for lo in range(0, n, block):
        xs = x[lo:lo + block]
        kk = np.round((xs - a) / b)
        ar = np.arange(len(kk))
        # Strictly increasing, and after the previous block: kk - ar non-decreasing, > last.
        kk = np.maximum.accumulate(np.maximum(kk - ar, last + 1)) + ar
        k[lo:lo + len(kk)] = kk
        last = float(kk[-1])
        sk, st = sk + kk.sum(), st + xs.sum()
        skk, skt = skk + (kk * kk).sum(), skt + (kk * xs).sum()
        m = lo + len(kk)
        den = m * skk - sk * sk
        if m >= 3 and den > 0:
            b_new = (m * skt - sk * st) / den
            if b_new > 0:
                b, a = b_new, (st - b_new * sk) / m
    return k - k[0]


def dejitter(ts: np.ndarray, srate: float, device_time: np.ndarray | None = None) -> np.ndarray:
    """Least-squares line through each gap-free segment of a regular stream (see module doc).

    With ``device_time`` (the IMU's ``device.time_us``), the line is fitted against it: the
    device's own sample clock is regular up to its drift, which the line absorbs."""
    ts = np.asarray(ts, np.float64)
    if srate <= 0:
        return ts.copy()
    out = ts.copy()
    for a, b in segments(ts, srate):
        if b - a < 3:
            continue
        if device_time is not None and np.all(np.isfinite(device_time[a:b])) \
                and np.all(np.diff(device_time[a:b]) > 0):
            x = np.asarray(device_time[a:b], np.float64)
            x = x - x[0]
        else:
            x = _sample_counts(ts[a:b], 1.0 / srate)
        slope, icpt = np.polyfit(x, ts[a:b], 1)
        out[a:b] = icpt + slope * x
    return out


# ------------------------------------------------------------------ parsing streams

@dataclass
class ImuSeries:
    """The IMU stream, parsed by channel label."""

    t: np.ndarray                 # (N,) recorder clock, dejittered
    acc: np.ndarray               # (N, S, 3)
    gyro: np.ndarray              # (N, S, 3)
    mag: np.ndarray               # (N, S, 3), NaN without magnetometers
    sites: list[str]
    reference: str
    rig_id: str
    rate_hz: float
    key: str = ""
    muscles: dict[str, str] = field(default_factory=dict)
    quat: np.ndarray | None = None  # (N, S, 4) w, x, y, z sensor-to-earth; None: no site has it

    def rates(self) -> np.ndarray:
        """(N, S, 3) angular rate: the gyroscope where a site has one, else what its
        quaternions imply."""
        g = self.gyro.copy()
        if self.quat is not None:
            no_gyro = np.isnan(g).all(axis=(0, 2))
            if no_gyro.any():
                g[:, no_gyro] = angular_rate(self.quat[:, no_gyro], self.rate_hz)
        return g


def _desc(xml: str) -> ET.Element | None:
    try:
        return ET.fromstring(xml).find("desc")
    except ET.ParseError:
        return None


def parse_imu(stream: StreamData) -> ImuSeries:
    """Split an IMU stream into (N, S, 3) arrays by its ``site.quantity.axis`` labels."""
    from firmware_bridge.streams import parse_label

    labels = stream.spec.labels
    sites: list[str] = []
    col: dict[tuple[str, str, str], int] = {}
    for i, lab in enumerate(labels):
        parts = parse_label(lab)          # the IMU contract's one label reader
        if parts is not None:
            if parts[0] not in sites:
                sites.append(parts[0])
            col[parts] = i
    if not sites:
        raise SyncError(f"IMU stream {stream.spec.name!r} has no 'site.acc.x'-style channel "
                        f"labels (got {labels[:4]}...): record it from an imusic outlet")
    x = stream.time_series
    n = len(x)
    arrays = {}
    for q in ("acc", "gyro", "mag"):
        a = np.full((n, len(sites), 3), np.nan)
        for si, s in enumerate(sites):
            for ai, ax in enumerate("xyz"):
                if (s, q, ax) in col:
                    a[:, si, ai] = x[:, col[(s, q, ax)]]
        arrays[q] = a
    quat = None
    if any(k[1] == "quat" for k in col):
        quat = np.full((n, len(sites), 4), np.nan)
        for si, s in enumerate(sites):
            if all((s, "quat", ax) in col for ax in "wxyz"):
                quat[:, si] = x[:, [col[(s, "quat", ax)] for ax in "wxyz"]]
        quat = continuous(normalise(quat))
    no_acc = [s for si, s in enumerate(sites) if np.isnan(arrays["acc"][:, si]).all()]
    if no_acc:
        raise SyncError(f"IMU stream {stream.spec.name!r}: site(s) {', '.join(no_acc)} lack "
                        "acc channels")
    no_rate = [s for si, s in enumerate(sites) if np.isnan(arrays["gyro"][:, si]).all()
               and (quat is None or np.isnan(quat[:, si]).all())]
    if no_rate:
        raise SyncError(f"IMU stream {stream.spec.name!r}: site(s) {', '.join(no_rate)} have "
                        "neither gyro nor quat channels")
    desc = _desc(stream.spec.info_xml)
    reference, rig_id, muscles = "", "", {}
    if desc is not None:
        reference = (desc.findtext("rig/reference") or "").strip()
        rig_id = (desc.findtext("rig/id") or "").strip()
        for site in desc.findall("rig/sites/site"):
            name = (site.findtext("name") or "").strip()
            if (site.findtext("reference") or "").strip().lower() in ("true", "1", "yes"):
                reference = reference or name
            if site.findtext("muscle"):
                muscles[name] = site.findtext("muscle").strip()
    if reference not in sites:
        reference = next((s for s in sites if any(k in s.lower() for k in
                                                  ("ref", "nasal", "nose", "temple"))), sites[0])
    srate = stream.spec.nominal_srate
    dev_t = (x[:, labels.index("device.time_us")].astype(np.float64)
             if "device.time_us" in labels else None)
    t = dejitter(apply_clock_offsets(stream.time_stamps, stream.clock_offsets), srate, dev_t)
    if srate <= 0 and n > 1:
        srate = float(1.0 / np.median(np.diff(t)))
    return ImuSeries(t=t, acc=arrays["acc"], gyro=arrays["gyro"], mag=arrays["mag"],
                     sites=sites, reference=reference, rig_id=rig_id or "unknown",
                     rate_hz=srate, key=stream.key, muscles=muscles, quat=quat)


def blendshape_rows(stream: StreamData) -> np.ndarray:
    """(N, 61) float64 in STREAM order from a Blendshapes stream, found by label when labelled."""
    x = np.asarray(stream.time_series, np.float64)
    labels = [lab.lower() for lab in stream.spec.labels]
    want = [n.lower() for n in STREAM_NAMES]
    out = np.full((len(x), len(STREAM_NAMES)), np.nan)
    found = 0
    for j, name in enumerate(want):
        if name in labels:
            out[:, j] = x[:, labels.index(name)]
            found += 1
    if found >= N_BLENDSHAPES:
        return out
    if x.shape[1] in (N_BLENDSHAPES, len(STREAM_NAMES)):  # unlabelled: the contract's order
        out[:, :x.shape[1]] = x
        return out
    raise SyncError(f"Blendshapes stream {stream.spec.name!r} has {x.shape[1]} channels and "
                    "no ARKit channel labels: expected 61 channels (52 blendshapes + 9 pose)")


def _source(stream: StreamData) -> str:
    desc = _desc(stream.spec.info_xml)
    return (desc.findtext("source") or "").strip().lower() if desc is not None else ""


def pick_streams(reader: SessionReader, imu_key: str | None = None,
                 bs_key: str | None = None) -> tuple[str, str]:
    """The IMU and ground-truth Blendshapes streams to align (first of each, predictions last)."""
    imus = [imu_key] if imu_key else reader.keys_of_type("IMU")
    bss = [bs_key] if bs_key else reader.keys_of_type("Blendshapes")
    if not imus:
        raise SyncError(f"{reader.path} has no IMU stream (streams: {reader.keys})")
    if not bss:
        raise SyncError(f"{reader.path} has no Blendshapes stream (streams: {reader.keys}): "
                        "record ARKit ('imusic arkit') together with the IMU")
    if not bs_key and len(bss) > 1:
        bss.sort(key=lambda k: _source(reader.stream(k)) == "imusic-model")
    return imus[0], bss[0]


def device_taps(reader: SessionReader) -> list[float]:
    """Times (recorder clock) of ``{"event": "tap"}`` markers: the EVENT tap a wearable with a
    tap detector sends, which firmware_bridge's events stream carries as JSON."""
    taps: list[float] = []
    for key in reader.keys_of_type("Markers"):
        d = reader.stream(key)
        if not len(d.time_stamps):
            continue
        t = apply_clock_offsets(d.time_stamps, d.clock_offsets)
        for row, ti in zip(d.time_series, t):
            try:
                rec = json.loads(str(row[0]))
            except (json.JSONDecodeError, TypeError):
                continue
            if isinstance(rec, dict) and rec.get("event") == "tap":
                taps.append(float(ti))
    return sorted(taps)


# ------------------------------------------------------------------ resampling

def lowpass(x: np.ndarray, rate_in: float, cutoff: float) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0 (unchanged if too short or no need)."""
    if cutoff >= 0.5 * rate_in or len(x) < 40:
        return x
    sos = butter(8, cutoff, fs=rate_in, output="sos")
    return sosfiltfilt(sos, x, axis=0, padlen=min(len(x) - 1, 3 * 17))


def resample_segments(t_src: np.ndarray, x: np.ndarray, t_dst: np.ndarray, segs: list,
                      rate_in: float = 0.0, cutoff: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``x`` (N, ...) at ``t_dst`` segment by segment (never across gaps).

    Rows of ``x`` holding NaN make the destination frames next to them invalid. Returns
    (values (M, ...) with 0 where invalid, valid (M,))."""
    shape = x.shape[1:]
    flat = x.reshape(len(x), -1)
    out = np.zeros((len(t_dst), flat.shape[1]))
    valid = np.zeros(len(t_dst), bool)
    for a, b in segs:
        ts, xs = t_src[a:b], flat[a:b]
        if b - a < 2:
            continue
        lo, hi = np.searchsorted(t_dst, [ts[0], ts[-1]], side="left")
        hi = np.searchsorted(t_dst, ts[-1], side="right")
        if hi <= lo:
            continue
        td = t_dst[lo:hi]
        finite = np.all(np.isfinite(xs), axis=1)
        if cutoff and rate_in and finite.all():
            xs = lowpass(xs, rate_in, cutoff)
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


# ------------------------------------------------------------------ motion energy and lag

def bandpass(x: np.ndarray, rate: float, lo: float = 0.2, hi: float = 8.0) -> np.ndarray:
    """Zero-phase band-pass of a 1-D signal (returns it unchanged if too short)."""
    if len(x) < 60:
        return x - np.mean(x)
    sos = butter(2, [lo, min(hi, 0.45 * rate)], btype="band", fs=rate, output="sos")
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
    d = np.abs(np.gradient(x, axis=0)) * rate
    return np.nansum(d, axis=1)


def _normalise(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    y = np.where(valid, x, 0.0)
    if valid.sum() > 1:
        m, s = y[valid].mean(), y[valid].std()
        y = np.where(valid, (y - m) / (s if s > 0 else 1.0), 0.0)
    return y


def estimate_lag(e_imu: np.ndarray, e_bs: np.ndarray, valid_imu: np.ndarray,
                 valid_bs: np.ndarray, rate: float, max_lag: float = 1.0,
                 center: float = 0.0) -> tuple[float, float]:
    """Lag (s) of the blendshape energy behind the IMU energy, and a 0..1 confidence.

    Normalised cross-correlation over lags ``center ± max_lag`` on frames valid in both;
    the peak is refined with a parabola through its neighbours."""
    x = _normalise(bandpass(np.where(valid_imu, e_imu, 0.0), rate), valid_imu)
    y = _normalise(bandpass(np.where(valid_bs, e_bs, 0.0), rate), valid_bs)
    n = len(x)
    c0 = int(round(center * rate))
    m = int(round(max_lag * rate))
    lags = np.arange(c0 - m, c0 + m + 1)
    corr = np.full(len(lags), -1.0)
    for j, lag in enumerate(lags):
        if abs(lag) >= n - 10:
            continue
        xs = x[max(0, -lag): n - max(0, lag)]
        ys = y[max(0, lag): n - max(0, -lag)]
        ok = valid_imu[max(0, -lag): n - max(0, lag)] & valid_bs[max(0, lag): n - max(0, -lag)]
        if ok.sum() < 30:
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


def _robust_threshold(x: np.ndarray, k: float) -> float:
    med = np.nanmedian(x)
    mad = np.nanmedian(np.abs(x - med)) * 1.4826
    return float(med + k * max(mad, 1e-9))


def detect_tap_imu(t: np.ndarray, acc: np.ndarray, site: int, rate: float, k: float = 25.0,
                   search_s: float = 30.0, min_spike: float = 20.0, near: float | None = None,
                   dominance: float = 3.0) -> float:
    """Time of the first tap spike on sensor ``site`` of ``acc`` (N, S, 3): NaN if none.

    The spike is the deviation of the acceleration from its 0.1 s running median (m/s^2):
    on the tapped sensor it must exceed ``min_spike`` (2 g: a fingertip tap gives several g
    for a few ms, facial movement about 1 g at most), median + ``k`` MAD of the session, and
    ``dominance`` times the median spike of the other sensors at that instant (a tap shakes
    one sensor; head motion shakes them all). Searched in the first ``search_s`` seconds, or
    within 0.5 s of ``near`` (e.g. the device's own tap event)."""
    from scipy.ndimage import median_filter

    if len(t) < 10:
        return float("nan")
    a = np.nan_to_num(acc)
    width = max(3, int(0.1 * rate) | 1)
    spike = np.linalg.norm(a - median_filter(a, size=(width, 1, 1), mode="nearest"), axis=2)
    own = spike[:, site]
    others = np.delete(spike, site, axis=1)
    rest = np.median(others, axis=1) if others.shape[1] else np.zeros(len(own))
    thr = max(_robust_threshold(own, k), min_spike)
    window = (np.abs(t - near) <= 0.5) if near is not None else (t - t[0]) <= search_s
    hits = np.flatnonzero((own > thr) & (own > dominance * rest) & window)
    if not len(hits):
        return float("nan")
    i = hits[0]
    j = i + int(np.argmax(own[i: i + max(2, int(0.05 * rate))]))   # the spike's own peak
    return float(t[j])


def detect_tap_blendshapes(t: np.ndarray, b: np.ndarray, near: float, window: float,
                           rate: float, k: float = 6.0) -> float:
    """Time of the jaw/mouth twitch peak within ``near ± window``; NaN if none stands out."""
    cols = [ARKIT_NAMES.index(n) for r in ("jaw", "mouth") for n in REGIONS[r]]
    e = blendshape_energy(np.nan_to_num(b), rate, cols)
    sel = np.flatnonzero(np.abs(t - near) <= window)
    if not len(sel):
        return float("nan")
    hits = sel[e[sel] > _robust_threshold(e, k)]
    if not len(hits):
        return float("nan")
    # The first burst above threshold (the twitch comes first; the take follows), at its peak.
    i = hits[0]
    j = i + int(np.argmax(e[i: i + max(2, int(0.2 * rate))]))
    return float(t[j])


def neutral_mask(t: np.ndarray, bs_t: np.ndarray, b: np.ndarray, bs_rate: float,
                 max_weight: float = 0.15) -> np.ndarray:
    """(len(t),) True where the face is neutral: every blendshape below ``max_weight`` (eye
    gaze excepted: looking around is neutral for the sensors) and tracked, at times ``t``.

    Timestamps are the raw ones (before the lag estimate), which is fine for a mask of
    seconds-long neutral stretches."""
    gaze = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith("eyeLook")]
    keep = [i for i in range(N_BLENDSHAPES) if i not in gaze]
    level = np.max(b[:, keep], axis=1)                 # NaN where the face was lost
    segs = segments(bs_t, bs_rate)
    lv, valid = resample_segments(bs_t, level[:, None], t, segs)
    return valid & (lv[:, 0] < max_weight)


# ------------------------------------------------------------------ the whole step

@dataclass
class SyncResult:
    """What ``sync_session`` found (also stored as attrs of the aligned group)."""

    aligned: Aligned
    calibration: Calibration
    lag_s: float
    lag_confidence: float
    tap_imu: float
    tap_blendshapes: float
    imu_key: str
    blendshapes_key: str


def _tap_site(imu: ImuSeries) -> int:
    for i, s in enumerate(imu.sites):
        if "mentalis" in s.lower() or "mentalis" in imu.muscles.get(s, "").lower() \
                or "chin" in s.lower():
            return i
    jerk = np.nanmax(np.linalg.norm(np.diff(np.nan_to_num(imu.acc), axis=0), axis=2), axis=0)
    return int(np.argmax(jerk))


def sync_session(path: str | Path, *, imu_key: str | None = None, bs_key: str | None = None,
                 rate_hz: float = RATE_HZ, max_lag: float = 1.0, lag: float | None = None,
                 write: bool = True) -> SyncResult:
    """Synchronise a recorded session and (by default) write /calibration and /aligned.

    ``lag`` forces the IMU/ARKit lag (s) instead of estimating it."""
    path = Path(path)
    with SessionReader(path) as reader:
        ik, bk = pick_streams(reader, imu_key, bs_key)
        imu_stream, bs_stream = reader.stream(ik), reader.stream(bk)
        marker_taps = device_taps(reader)
        root = reader.attrs
    if len(imu_stream.time_stamps) < 10 or len(bs_stream.time_stamps) < 10:
        raise SyncError(f"{path}: too little data to synchronise ({ik}: "
                        f"{len(imu_stream.time_stamps)} samples, {bk}: "
                        f"{len(bs_stream.time_stamps)} samples)")
    imu = parse_imu(imu_stream)
    ref = imu.sites.index(imu.reference)
    bs_rate = bs_stream.spec.nominal_srate or RATE_HZ
    bs_t = dejitter(apply_clock_offsets(bs_stream.time_stamps, bs_stream.clock_offsets), bs_rate)
    bs = blendshape_rows(bs_stream)
    bs[~np.all(np.isfinite(bs[:, :N_BLENDSHAPES]), axis=1)] = np.nan   # face lost: whole row

    rates = imu.rates()
    has_gyro = np.isfinite(imu.gyro).any(axis=(0, 2))          # (S,) sites with a gyroscope
    calib = calibrate(imu.t, imu.acc, rates, imu.rate_hz, imu.sites, imu.reference,
                      neutral=neutral_mask(imu.t, bs_t, bs[:, :N_BLENDSHAPES], bs_rate))
    gyro = rates - calib.gyro_bias

    # Common grid: the overlap of both streams (before the lag shift, widened after).
    t0, t1 = max(imu.t[0], bs_t[0]), min(imu.t[-1], bs_t[-1])
    if t1 - t0 < 1.0:
        raise SyncError(f"{path}: the IMU ({imu.t[0]:.1f}..{imu.t[-1]:.1f} s) and blendshape "
                        f"({bs_t[0]:.1f}..{bs_t[-1]:.1f} s) streams overlap by less than 1 s")
    grid = t0 + np.arange(int(np.floor((t1 - t0) * rate_hz)) + 1) / rate_hz
    imu_segs = segments(imu.t, imu.rate_hz)
    cutoff = 0.4 * rate_hz
    g_grid, v_imu = resample_segments(imu.t, gyro, grid, imu_segs, imu.rate_hz, cutoff)

    # Tap: IMU spike, then the blendshape twitch near it.
    in_range = [t for t in marker_taps if imu.t[0] <= t <= imu.t[-1]]
    tap_marker = in_range[0] if in_range else float("nan")
    tap_i = detect_tap_imu(imu.t, imu.acc, _tap_site(imu), imu.rate_hz,
                           near=tap_marker if np.isfinite(tap_marker) else None)
    if not np.isfinite(tap_i) and np.isfinite(tap_marker):
        tap_i = tap_marker      # no spike found: the device's own tap event stands in
    tap_b = float("nan")
    bs_segs = segments(bs_t, bs_rate)
    if np.isfinite(tap_i):
        tap_b = detect_tap_blendshapes(bs_t, bs[:, :N_BLENDSHAPES], tap_i, max_lag + 0.25,
                                       bs_rate)

    if lag is None:
        b_grid, v_bs = resample_segments(bs_t, bs[:, :N_BLENDSHAPES], grid, bs_segs)
        e_i = imu_energy(g_grid, ref, calib.relative_rotation)
        e_b = blendshape_energy(b_grid, rate_hz)
        v_e = v_bs & np.roll(v_bs, 1) & np.roll(v_bs, -1)
        lag_s, conf = estimate_lag(e_i, e_b, v_imu, v_e, rate_hz, max_lag)
        if conf < 0.1 and np.isfinite(tap_i) and np.isfinite(tap_b):
            # A weak, ambiguous correlation: search only near the lag the tap suggests.
            lag_s, conf = estimate_lag(e_i, e_b, v_imu, v_e, rate_hz, 0.1,
                                       center=float(np.clip(tap_b - tap_i, -max_lag, max_lag)))
        if not np.isfinite(lag_s):
            lag_s, conf = 0.0, 0.0
    else:
        lag_s, conf = float(lag), 1.0

    # Final grid with ARKit shifted by -lag.
    bs_t_shift = bs_t - lag_s
    t0, t1 = max(imu.t[0], bs_t_shift[0]), min(imu.t[-1], bs_t_shift[-1])
    grid = t0 + np.arange(int(np.floor((t1 - t0) * rate_hz)) + 1) / rate_hz
    acc_g, v1 = resample_segments(imu.t, imu.acc, grid, imu_segs, imu.rate_hz, cutoff)
    gyr_g, v2 = resample_segments(imu.t, gyro, grid, imu_segs, imu.rate_hz, cutoff)
    gyr_g[:, ~has_gyro] = np.nan          # a quat-only site has no gyroscope to report
    quat_g = None
    if imu.quat is not None:
        has_q = np.isfinite(imu.quat).all(axis=(0, 2))
        quat_g = np.full(gyr_g.shape[:2] + (4,), np.nan)
        if has_q.any():
            qg, vq = resample_segments(imu.t, imu.quat[:, has_q], grid, imu_segs)
            quat_g[:, has_q] = normalise(np.where(vq[:, None, None], qg, 1.0))
            quat_g[~vq] = 0.0
            v2 = v2 & vq
    has_mag = np.isfinite(imu.mag).any()
    if has_mag:
        mag_g, _ = resample_segments(imu.t, np.nan_to_num(imu.mag), grid, imu_segs,
                                     imu.rate_hz, cutoff)
        mag_g[:, ~np.isfinite(imu.mag).all(axis=(0, 2))] = np.nan  # sites without mag
    else:
        mag_g = np.full_like(acc_g, np.nan)
    b_all, v_b = resample_segments(bs_t_shift, bs, grid, bs_segs)
    aligned = Aligned(
        rate_hz=rate_hz, t=grid, blendshapes=b_all[:, :N_BLENDSHAPES].astype(np.float32),
        pose=np.nan_to_num(b_all[:, N_BLENDSHAPES:]).astype(np.float32),
        acc=acc_g.astype(np.float32), gyro=gyr_g.astype(np.float32),
        mag=mag_g.astype(np.float32), valid_imu=v1 & v2, valid_arkit=v_b,
        sites=imu.sites, reference=imu.reference, rig_id=imu.rig_id,
        quat=None if quat_g is None else quat_g.astype(np.float32),
        attrs={**{k: str(root[k]) for k in ("subject", "take") if root.get(k)},
               "lag_s": float(lag_s), "lag_confidence": float(conf),
               "source": str(root.get("source")) if root.get("source") in ("real", "twin")
               else "recording",
               "tap_time": float(tap_i) if np.isfinite(tap_i) else float("nan"),
               "tap_blendshapes_time": float(tap_b - lag_s) if np.isfinite(tap_b)
               else float("nan"),
               "tap_marker_time": float(tap_marker),
               "tap_detected_in": [k for k, v in (("imu", tap_i), ("blendshapes", tap_b),
                                                  ("marker", tap_marker)) if np.isfinite(v)],
               "gyro_bias_removed": True, "imu_stream": ik, "blendshapes_stream": bk},
    )
    if write:
        try:
            h5 = h5py.File(path, "r+")
        except OSError as err:
            raise SyncError(f"cannot write to {path}: {err}. If the recorder was killed, clear "
                            f"the HDF5 open flag first: h5clear -s {path}") from err
        try:
            with h5:
                calib.write(h5)
                write_aligned(h5, aligned)
        except (OSError, RuntimeError) as err:
            raise SyncError(f"{path}: writing the calibration and aligned groups failed "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                            "the file may be damaged or the disk full") from err
    return SyncResult(aligned=aligned, calibration=calib, lag_s=float(lag_s),
                      lag_confidence=float(conf), tap_imu=tap_i, tap_blendshapes=tap_b,
                      imu_key=ik, blendshapes_key=bk)


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
    }


__all__ = ["SyncError", "SyncResult", "sync_session", "describe", "apply_clock_offsets",
           "dejitter", "segments", "parse_imu", "blendshape_rows", "estimate_lag",
           "imu_energy", "blendshape_energy", "detect_tap_imu", "detect_tap_blendshapes",
           "resample_segments"]
