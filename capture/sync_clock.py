"""Sync steps 1 and 2: sender timestamps onto the recorder's clock, then dejittered.

``apply_clock_offsets`` maps a stream's sender timestamps onto the recorder clock with the
offsets the recorder measured; ``segments`` cuts a regular stream where it has gaps (the
recorder's own ``gap_threshold``, so a gap means the same thing in the file and here);
``dejitter`` fits a line through each segment, against nominal-period counts
(``sample_counts``) or the device's own sample clock. capture/sync.py calls them for every
stream before anything is resampled; thresholds come from ``SyncConfig`` (capture/sync_config.py).
"""

from __future__ import annotations

import numpy as np

from imusic.capture.recorder import gap_threshold
from imusic.capture.sync_config import DEFAULT, SyncConfig


def apply_clock_offsets(ts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sender timestamps -> recorder clock, with offsets ``[[local_time, offset], ...]``.

    Each offset was measured at ``local_time`` (recorder clock), i.e. at sender time
    ``local_time - offset``; between measurements the offset is linearly interpolated over
    sender time, outside them it is held constant, and with none it is 0."""
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


def sample_counts(ts: np.ndarray, period: float, config: SyncConfig = DEFAULT) -> np.ndarray:
    """Nominal-period counts ``k_i`` of a gap-free run of timestamps, robust to jitter.

    Block by block (``count_block`` samples), every timestamp is read off the line fitted to
    all samples before it (``k = round((t - a) / b)``, kept strictly increasing), then the line
    is refitted. A dropped sample shows as a skipped count and keeps its slot; a sample
    jittered by more than half a period is misplaced by one slot, alone: errors never add up,
    unlike a running count of rounded differences, and drops are not smeared, unlike a plain
    ``k = index`` fit."""
    n = len(ts)
    x = ts - ts[0]
    span = x[-1] - x[0] if n > 1 else 0.0
    if n > 1 and abs(span / period - (n - 1)) < 0.5 * max(1.0, config.drift_tolerance * n):
        # As many samples as the span holds: nothing was dropped, so k is the index, whatever
        # the jitter (up to ``drift_tolerance`` of clock drift).
        return np.arange(n, dtype=np.float64)
    head = min(n, config.count_head)
    a = float(np.median(x[:head] - np.arange(head) * period))
    b = period
    k = np.empty(n)
    last = -np.inf   # the first block may start below 0 (its median anchor is one guess)
    sk = st = skk = skt = 0.0
    block = config.count_block
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


def dejitter(ts: np.ndarray, srate: float, device_time: np.ndarray | None = None,
             config: SyncConfig = DEFAULT) -> np.ndarray:
    """Least-squares line through each gap-free segment of a regular stream.

    In each segment (``segments``) sample ``i`` gets the time ``a + b x_i`` of the line fitted
    to its timestamps, where ``x_i`` counts nominal periods (``sample_counts``: a few dropped
    samples do not bend the line) or, with ``device_time`` (the IMU's ``device.time_us``), is
    the device's own sample clock, regular up to its drift, which the line absorbs. Never
    across a gap; segments under ``min_segment`` samples, irregular streams and segments whose
    timestamps no line fits (counts that overflow) are kept as recorded."""
    ts = np.asarray(ts, np.float64)
    if srate <= 0:
        return ts.copy()
    out = ts.copy()
    for a, b in segments(ts, srate):
        if b - a < config.min_segment:
            continue
        if device_time is not None and np.all(np.isfinite(device_time[a:b])) \
                and np.all(np.diff(device_time[a:b]) > 0):
            x = np.asarray(device_time[a:b], np.float64)
            x = x - x[0]
        else:
            x = sample_counts(ts[a:b], 1.0 / srate, config)
        if not np.all(np.isfinite(x)):
            continue    # timestamps no line can count (not a regular stream): kept as recorded
        try:
            slope, icpt = np.polyfit(x, ts[a:b], 1)
        except np.linalg.LinAlgError:
            continue
        out[a:b] = icpt + slope * x
    return out
