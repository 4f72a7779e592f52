"""Device clock to LSL clock: an online robust linear fit of host arrival time against device time.

A frame leaves the device right after its last instant is sampled and reaches the host some
time later: never earlier than the link's smallest latency, often much later (BLE connection
intervals, USB frame bunching, OS scheduling). So the pairs (device time, arrival time) lie on
or *above* the true line ``arrival = offset + (1 + drift) * device_time``. The estimator's
assumption is that the *least* delay (the floor) is the same all along the window, so that the
lowest pairs trace the line.

Pairs are kept per ``bucket_s`` of device time as the one with the least apparent delay, over a
sliding ``window_s``. The fit (``robust_fit``) is then done in three steps:

1. the lower envelope: the line under all buckets that passes as close to them as possible
   (``envelope_fit``: the lower convex hull's edge over their mean device time, the solution
   of the linear programme "minimise the summed delays, no delay negative");
2. the floor: the buckets within ``floor_band_ms`` of that line. The others were late for the
   whole bucket: a loaded machine (the sender or the host waiting for a CPU for stretches of
   a second or more, every frame a few ms late) or a stall; they say nothing about the line;
3. the slope: a least-squares line through the floor buckets, each weighed by how near the
   line it lies (``floor_scale_ms``: the lowest carry the slope, the jitter still averages),
   taken only when its standard error (from their scatter and spread in time) is under
   ``max_slope_se_ppm`` and they do not bend (the |t| of a quadratic term fitted to them is
   under ``max_bend_t``: drift is a straight line, a loaded stretch that began or ended is
   not); then steps 2-3 again against the new line (``floor_passes``). When a gate refuses,
   the last slope taken stays (1 before any). The offset puts the line under all buckets.

Why not the envelope's slope itself: it rests on two hull vertices, i.e. on the two most
extreme floor buckets. When the floor jitters by a few hundred µs (a pty read by a busy event
loop), or rises for seconds while the machine is loaded and comes back down, those two can
lie 0.3 ms off over a 2-3 s lever: 100-900 ppm of false drift, and timestamps off by ms as
the fit is extrapolated to the newest frame (measured with two busy loops on a loaded two-core
machine: drift -263 ppm for a true -150 ppm, timestamp error 2.0 ms RMS). Averaging over the
floor buckets removes the jitter; the band removes the loaded stretches and the weights the
milder ones (the first seconds after START, every frame 0.5-1 ms late while the host sets up
its outlets); the two gates keep a slope that the data cannot support yet (a loaded stretch
just begun looks like drift for a while) from being used.

The fit's residual is the RMS delay above the line of the buckets within ``stall_ms`` of it
(the link's jitter); buckets further above are stalls, counted in ``ClockFit.stalled``.
Device time is unwrapped when it comes from a 32-bit microsecond counter; time running
backwards otherwise means the device rebooted and the fit starts afresh (as it does on
``reset()``, which the session calls on a boot_id change).

Everything here is pure (no clocks read): the caller passes arrival times, e.g.
``pylsl.local_clock()``. Every threshold is a field of ``ClockConfig``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

US = 1e-6
WRAP32 = 1 << 32


@dataclass(frozen=True)
class ClockConfig:
    """The clock fit's thresholds (see the module docstring for how they are used)."""

    window_s: float = 60.0
    """Buckets older than this much device time (s) leave the fit."""
    bucket_s: float = 0.25
    """Per this much device time (s), the pair with the least apparent delay is kept."""
    max_drift_ppm: float = 2000.0
    """A fitted drift beyond this (ppm) is implausible: the slope taken before stays."""
    min_span_s: float = 2.0
    """Until the buckets span this much device time (s), only the offset is fitted."""
    floor_band_ms: float = 1.0
    """Buckets more than this (ms) above the lower envelope were late throughout (a loaded
    sender or host): left out of the slope."""
    floor_scale_ms: float = 0.4
    """Floor buckets weigh less the higher they lie above the line: ``1 / (1 + (d / scale)²)``
    for a delay ``d`` (ms) above it, so the lowest carry the slope and jitter still averages."""
    floor_passes: int = 2
    """Times the floor is weighed and the slope fitted, each against the line fitted before
    (the lower envelope first)."""
    max_slope_se_ppm: float = 65.0
    """A slope is taken only when its standard error (ppm) is below this; else the last one
    taken stays (1 before any)."""
    max_bend_t: float = 2.0
    """Nor when the floor buckets bend: a quadratic term fitted to them has a t statistic
    above this (drift is a straight line; a loaded stretch that began or ended is not)."""
    stall_ms: float = 5.0
    """Buckets more than this (ms) above the fitted line are stalls: counted in
    ``ClockFit.stalled``, left out of the residual."""


@dataclass(frozen=True)
class ClockFit:
    """The current mapping ``local = intercept + slope * (device_s - ref_s)``, with stats."""

    ref_us: int
    """Device time (µs, unwrapped) the fit is anchored at."""
    intercept: float
    """Local time (s) at ``ref_us``."""
    slope: float
    """Local seconds per device second (1 + drift)."""
    residual_ms: float
    """RMS apparent delay above the fitted line of the buckets within ``stall_ms`` of it (the
    link's jitter), ms."""
    n: int
    """Pairs (buckets) the fit rests on."""
    span_s: float
    """Device time the kept pairs span, seconds."""
    offset_s: float
    """Local time minus device time at the newest pair, seconds."""
    stalled: int = 0
    """Buckets more than ``stall_ms`` above the line (a stalled sender or host)."""
    floor: int = 0
    """Buckets the slope rests on (within ``floor_band_ms`` of the lower envelope)."""

    @property
    def drift_ppm(self) -> float:
        """How much faster the host clock runs than the device's, parts per million (a device
        crystal running slow shows as positive drift)."""
        return (self.slope - 1.0) * 1e6

    def as_dict(self) -> dict[str, float]:
        """The statistics, for metadata and health lines."""
        return {"offset_s": self.offset_s, "drift_ppm": self.drift_ppm,
                "residual_ms": self.residual_ms, "n": self.n, "span_s": self.span_s,
                "stalled": self.stalled, "floor": self.floor}


class DeviceTimeUnwrapper:
    """Turns a device's microsecond timestamps into one increasing 64-bit time line.

    Handles a 32-bit counter wrapping (a jump back from near 2³² to near 0) and reports a
    reboot (any other jump back by more than ``tolerance_us``).
    """

    def __init__(self, tolerance_us: int = 1_000_000) -> None:
        self.tolerance_us = tolerance_us
        self.epoch = 0
        self.last: int | None = None
        self.wraps = 0

    def reset(self) -> None:
        """Start afresh (after a reboot)."""
        self.epoch = 0
        self.last = None

    def unwrap(self, t_us: int) -> tuple[int, bool]:
        """The unwrapped time of raw ``t_us`` and whether the device restarted its clock."""
        t = t_us + self.epoch
        if self.last is not None and t < self.last - self.tolerance_us:
            raw_last = self.last - self.epoch
            # A 32-bit micros() counter wraps every 71.6 min: last near the top, new near 0.
            if WRAP32 - (1 << 28) <= raw_last < WRAP32 and t_us < (1 << 28):
                self.epoch += WRAP32
                self.wraps += 1
                t = t_us + self.epoch
            else:
                self.reset()
                self.last = t_us
                return t_us, True
        self.last = max(t, self.last) if self.last is not None else t
        return t, False


def lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the lower convex hull of points sorted by increasing ``x`` (monotone chain)."""
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # Drop b if it is on or above the segment a -> i.
            if (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a]) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return np.asarray(hull, dtype=np.int64)


def envelope_fit(x: np.ndarray, y: np.ndarray, max_abs_drift: float = 2e-3,
                 min_span: float = 2.0) -> tuple[float, float, float]:
    """Fit ``y ≈ a + b x`` from below: the line under all points with the least summed
    residual. Returns ``(a, b, rms_residual)``.

    ``x`` must be sorted. With too short a span (< ``min_span``) or an implausible slope
    (|b - 1| > ``max_abs_drift``), the slope is taken as 1 and only the offset is fitted.
    """
    if len(x) == 0:
        raise ValueError("envelope_fit needs at least one point")
    b = 1.0
    a = float(np.min(y - x))
    if len(x) >= 2 and x[-1] - x[0] >= min_span:
        h = lower_hull(x, y)
        xm = float(np.mean(x))
        j = int(np.searchsorted(x[h], xm, side="right")) - 1
        j = min(max(j, 0), len(h) - 2)
        i0, i1 = h[j], h[j + 1]
        slope = (y[i1] - y[i0]) / (x[i1] - x[i0])
        if abs(slope - 1.0) <= max_abs_drift:
            b = float(slope)
            a = float(y[i0] - b * x[i0])
            # Floating point can leave a point a hair below the line: keep the line under all.
            a = min(a, float(np.min(y - b * x)))
    r = y - (a + b * x)
    return a, b, float(np.sqrt(np.mean(r * r)))


def _line_through(x: np.ndarray, y: np.ndarray, w: np.ndarray
                  ) -> tuple[float, float, float] | None:
    """Weighted least-squares slope of ``y`` on ``x`` (n >= 4), its standard error, and the
    |t| of a quadratic term fitted beside it (how much the points bend); None when x does not
    vary. Errors count the points by their effective number ``(Σw)² / Σw²``."""
    sw = float(w.sum())
    n_eff = sw * sw / float(np.sum(w * w))
    if n_eff <= 3:
        return None
    xm, ym = float(np.sum(w * x)) / sw, float(np.sum(w * y)) / sw
    u = x - xm
    sxx = float(np.sum(w * u * u))
    if sxx <= 0:
        return None
    slope = float(np.sum(w * u * (y - ym)) / sxx)
    r = y - ym - slope * u
    # variance of one point's residual over the spread of n_eff points: the slope's variance
    var_r = float(np.sum(w * r * r)) / sw * n_eff / (n_eff - 2)
    se = float(np.sqrt(var_r / (sxx / sw * n_eff)))
    v = u / (x[-1] - x[0])
    design = np.stack([np.ones_like(v), v, v * v], axis=1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(design, (y - ym) * np.sqrt(w), rcond=None)
    rq = (y - ym) * np.sqrt(w) - design @ coef
    var_q = (float(np.sum(rq * rq)) / sw * n_eff / (n_eff - 3)
             * float(np.linalg.pinv(design.T @ design / sw * n_eff)[2, 2]))
    bend_t = abs(float(coef[2])) / np.sqrt(var_q) if var_q > 0 else 0.0
    return slope, se, bend_t


@dataclass(frozen=True)
class RobustFit:
    """What ``robust_fit`` found: the line ``y = a + b x`` and how it was got."""

    a: float
    b: float
    residual: float
    """RMS of ``y - (a + b x)`` over the points within ``stall_ms`` of the line (s)."""
    floor: int
    """Points the slope fit rests on (0 while the span is too short to fit one)."""
    stalled: int
    """Points more than ``stall_ms`` above the line."""
    slope_taken: bool
    """Whether ``b`` is this fit's own slope (else ``prior_slope``)."""


def robust_fit(x: np.ndarray, y: np.ndarray, cfg: ClockConfig,
               prior_slope: float = 1.0) -> RobustFit:
    """Fit ``y ≈ a + b x`` from below, robust to stretches of late points (module docstring):
    the lower envelope, the floor points within ``floor_band_ms`` of it weighed by how near
    they lie (``floor_scale_ms``), a weighted least-squares slope through those, taken if its
    standard error is under ``max_slope_se_ppm`` and they bend by no more than
    ``max_bend_t`` (else ``prior_slope``), again against the new line (``floor_passes``),
    and the offset that puts the line under all points. ``x`` sorted (s)."""
    if len(x) == 0:
        raise ValueError("robust_fit needs at least one point")
    max_drift = cfg.max_drift_ppm * 1e-6
    b, taken, floor = prior_slope, False, 0
    if len(x) >= 4 and x[-1] - x[0] >= cfg.min_span_s:
        a0, b0, _ = envelope_fit(x, y, max_drift, cfg.min_span_s)
        for _ in range(cfg.floor_passes):
            above = y - (a0 + b0 * x)
            on_floor = above <= cfg.floor_band_ms * 1e-3
            floor = int(on_floor.sum())
            if floor < 4:
                break
            w = 1.0 / (1.0 + (above[on_floor] / (cfg.floor_scale_ms * 1e-3)) ** 2)
            fit = _line_through(x[on_floor], y[on_floor], w)
            if fit is None:
                break
            slope, se, bend_t = fit
            if not (abs(slope - 1.0) <= max_drift and se <= cfg.max_slope_se_ppm * 1e-6
                    and bend_t <= cfg.max_bend_t):
                break
            b, taken = slope, True
            a0, b0 = float(np.min(y - slope * x)), slope
    a = float(np.min(y - b * x))
    r = y - (a + b * x)
    kept = r <= cfg.stall_ms * 1e-3
    return RobustFit(a, float(b), float(np.sqrt(np.mean(r[kept] ** 2))), floor,
                     int(len(x) - kept.sum()), taken)


class ClockMap:
    """Online map from device microseconds to local (LSL) seconds.

    Call ``observe(device_us, arrival_s)`` for each received frame (device time of the frame's
    newest instant, host time it arrived), then ``map(t_us)`` for the frame's instants.
    """

    def __init__(self, config: ClockConfig | None = None) -> None:
        self.config = config or ClockConfig()
        """The fit's thresholds."""
        self.unwrapper = DeviceTimeUnwrapper()
        self.resets = 0
        self._reset_state()

    @property
    def window_s(self) -> float:
        """Device time (s) the fit looks back over."""
        return self.config.window_s

    @property
    def bucket_s(self) -> float:
        """Device time (s) per kept pair."""
        return self.config.bucket_s

    def _reset_state(self) -> None:
        self._ref_us: int | None = None
        # Buckets of (bucket index, x seconds since ref, y local seconds), least y - x kept.
        self._buckets: deque[list] = deque()
        self._fit: ClockFit | None = None
        self._dirty = True
        self._slope = 1.0   # the last slope robust_fit took (its prior for the next fit)

    def reset(self) -> None:
        """Forget everything (the device rebooted: a new time line)."""
        self.unwrapper.reset()
        self._reset_state()
        self.resets += 1

    def observe(self, device_us: int, arrival_s: float) -> bool:
        """Add one (device time, arrival time) pair. Returns True when the device clock restarted
        (time ran backwards beyond a 32-bit wrap), in which case the fit restarted too."""
        t, restarted = self.unwrapper.unwrap(int(device_us))
        if restarted:
            self._reset_state()
            self.resets += 1
        if self._ref_us is None:
            self._ref_us = t
        x = (t - self._ref_us) * US
        idx = int(x // self.config.bucket_s)
        b = self._buckets
        if b and b[-1][0] == idx:
            last = b[-1]
            if arrival_s - x < last[2] - last[1]:
                last[1], last[2] = x, arrival_s
                # Refit at once while the fit is young; later, when the bucket closes (a
                # refit costs a hull over the window, the fit moves little in one bucket).
                if len(b) <= 8:
                    self._dirty = True
        elif not b or idx > b[-1][0]:
            b.append([idx, x, arrival_s])
            self._dirty = True
            while b and b[0][1] < x - self.config.window_s:
                b.popleft()
        # (idx below the newest bucket: a stale frame; its arrival says nothing new.)
        return restarted

    def unwrap(self, t_us: np.ndarray | int) -> np.ndarray:
        """Device times (µs) on the unwrapped time line of the last observed pair: call after
        ``observe`` with the frame's raw times (they lie within the same wrap epoch or just
        before a wrap)."""
        t = np.asarray(t_us, dtype=np.int64) + self.unwrapper.epoch
        if self.unwrapper.last is not None:
            # Times from just before a wrap observed in this frame belong to the old epoch.
            t = np.where(t > self.unwrapper.last + (1 << 31), t - WRAP32, t)
        return t

    @property
    def ready(self) -> bool:
        """At least one pair observed."""
        return bool(self._buckets)

    @property
    def fit(self) -> ClockFit:
        """The current fit (raises RuntimeError before the first ``observe``)."""
        if not self._buckets:
            raise RuntimeError("no clock pairs observed yet")
        if self._dirty or self._fit is None:
            arr = np.asarray([(p[1], p[2]) for p in self._buckets], dtype=np.float64)
            x = arr[:, 0]
            # Subtract the first arrival so that the numbers the fit handles stay small.
            y0 = arr[0, 1]
            rf = robust_fit(x, arr[:, 1] - y0, self.config, self._slope)
            self._slope = rf.b
            a, b, newest = rf.a, rf.b, x[-1]
            self._fit = ClockFit(
                ref_us=self._ref_us, intercept=a + y0, slope=b, residual_ms=rf.residual * 1e3,
                n=len(x), span_s=float(newest - x[0]),
                offset_s=float(a + y0 + b * newest - newest - self._ref_us * US),
                stalled=rf.stalled, floor=rf.floor)
            self._dirty = False
        return self._fit

    def map(self, t_us: np.ndarray | int, unwrapped: bool = False) -> np.ndarray:
        """Local (LSL) seconds of device times ``t_us`` (raw, or already unwrapped)."""
        f = self.fit
        t = np.asarray(t_us, dtype=np.int64) if unwrapped else self.unwrap(t_us)
        return f.intercept + f.slope * ((t - f.ref_us) * US)
