"""Hybrid tracking: ARKit when the face is visible, the IMU estimate when it is not.

Per face region (hardware.vocabulary.REGIONS) the fuser decides each 60 Hz tick whether ARKit
can be trusted, from what a camera tracker does when it fails:

* **lost**: no ARKit frame for ``lost_timeout_s``, or a face-lost packet;
* **jump**: the region moves more in one frame than a face can (``jump_per_frame``) while the
  IMU estimate stays put;
* **frozen**: the region has stayed within ``frozen_eps`` of where it settled for at least
  ``frozen_frames`` while the adapted IMU estimate has moved on since then by more than
  ``imu_motion_for_frozen`` and the two differ by more than ``frozen_ratio`` times their usual
  difference (ARKit holds its last guess under a hand); the hand-over then starts from where
  ARKit settled, not from when the evidence was complete;
* **disagreement**: the region differs from the adapted IMU estimate (mean absolute) by more
  than ``disagreement`` and more than ``disagreement_ratio`` times its usual difference while
  trusted, for ``disagreement_frames`` frames, and only where the IMU has shown it predicts
  this wearer (``witness_trust``): a weak IMU model in one region, or on one wearer, does not
  make ARKit look wrong there.

Gaze and tongue, which face-skin IMUs hardly see (``camera_only``, by default
``hardware.vocabulary.IMU_BLIND_REGIONS``), come from the camera only: the IMU estimate is
neither evidence against ARKit there (no jump, frozen or disagreement checks: a saccade is a
real jump) nor a stand-in for it; while the face is lost they hold ARKit's last good frame,
relaxing with ``carry_halflife_s`` to ARKit's own running mean (``adapt_halflife_s``), never to
the IMU estimate. The IMU is no witness for the eyes either (``no_witness``: the bundled model
is little better than the mean face there); those are handed over only when ARKit is lost or
jumps.

A distrusted region hands over along a linear ramp of ``transition_s`` to the IMU side, and
comes back the same way once ARKit has looked right for ``recover_frames`` frames, so the output
never jumps. While a region is trusted, the IMU estimate's per-blendshape gain and offset are
fitted online to ARKit (exponentially weighted least squares with a prior of gain 1: the
"adapted" estimate).

The IMU side is :class:`CarryModel`: ARKit's last good frame carried forward by what this
wearer's data says the IMU estimate is worth. Every trusted stretch is a set of virtual
occlusions of each length in ``carry_horizons_s``, so the fuser learns, per blendshape and per
occlusion length, how far the IMU estimate's change, its absolute value and ARKit's mean each
predict where ARKit went; it uses that only as far as it predicted occlusions it had not yet
learnt from better than holding ARKit did. A wearer on whom the model is weak is held, one on
whom it is good is followed, and the data of each says which.

Pure computation: no I/O, no clocks. ``imusic hybrid`` feeds it from LSL / Live Link.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from imusic.hardware.vocabulary import IMU_BLIND_REGIONS, N_BLENDSHAPES, REGION_INDEX

REGION_NAMES: tuple[str, ...] = tuple(REGION_INDEX)
"""Region order of the per-region outputs (weights, confidence, reasons)."""
REGION_IDX: tuple[np.ndarray, ...] = tuple(np.asarray(i) for i in REGION_INDEX.values())
"""The blendshape indices of each region, in ``REGION_NAMES`` order."""


@dataclass(frozen=True)
class FusionConfig:
    """Thresholds of the fuser (blendshape units are the 0..1 ARKit scale)."""

    rate_hz: float = 60.0
    lost_timeout_s: float = 0.05
    jump_per_frame: float = 0.5
    frozen_frames: int = 4
    frozen_eps: float = 0.004
    imu_motion_for_frozen: float = 0.02
    frozen_ratio: float = 1.0
    usual_initial: float = 0.02
    camera_only: tuple[str, ...] = IMU_BLIND_REGIONS
    """Regions taken from ARKit only (held, then relaxed to ARKit's mean, while it is lost)."""
    no_witness: tuple[str, ...] = ("eyes",)
    """Regions where the IMU estimate is no evidence against ARKit (handed over when lost or
    jumping)."""
    disagreement: float = 0.15
    """Mean absolute difference from the adapted IMU estimate above which a region is suspect.
    Lower hands over sooner: 0.08 (with ratio 2) is far better on a performer the model has
    seen and far worse on one it has not (model/MODEL.md, "Hybrid"), so the default stays here."""
    disagreement_ratio: float = 3.0
    """... and more than this many times the region's usual difference."""
    disagreement_frames: int = 2
    witness_trust: float = 0.5
    """The IMU estimate is evidence of disagreement in a region only where its
    learnt carry (``CarryModel.trust`` at ``witness_horizon_s``, the region's mean) is at least
    this: an IMU estimate that does not predict this wearer's changes cannot call ARKit wrong."""
    witness_horizon_s: float = 0.5
    recover_frames: int = 2
    transition_s: float = 0.034
    adapt_halflife_s: float = 4.0
    adapt_prior: float = 0.002
    gain_bounds: tuple[float, float] = (0.0, 2.0)
    carry_halflife_s: float = 3.0
    """Camera-only regions: half-life of ARKit's held frame relaxing to ARKit's mean, s."""
    carry_horizons_s: tuple[float, ...] = (
        tuple(round(0.1 * k, 1) for k in range(1, 11)) + tuple(1.0 + 0.25 * k for k in range(1, 13)))
    """Occlusion lengths the carry is learnt for (interpolated between, the last held beyond);
    dense, because a face's motion can make the IMU's change over one length useless and over
    the next one essential (a periodic movement)."""
    carry_learn_halflife_s: float = 30.0
    """Memory of the carry's least squares, s of trusted frames."""
    carry_prior: float = 0.01
    """Ridge weight towards holding ARKit (no evidence yet: hold)."""
    carry_full_trust: float = 0.5
    """The learnt carry is used in full where its out-of-sample error is at most this share of
    the hold's, not at all where it is no better, linearly between."""


@dataclass
class FusedFrame:
    """One fused output frame."""

    values: np.ndarray                  # (52,) fused blendshapes
    arkit_weight: np.ndarray            # (regions,) share of the live ARKit frame, 0..1 (a
                                        # camera-only region's other side is ARKit held)
    trusted: np.ndarray                 # (regions,) bool: ARKit trusted this tick
    reasons: list[str]                  # per region: "", "lost", "jump", "frozen", "disagreement"
    imu_adapted: np.ndarray             # (52,) the IMU estimate after gain/offset adaptation


@dataclass
class _Adapter:
    """Exponentially weighted least squares y ~ gain * x + offset, per blendshape."""

    decay: float
    prior: float
    n: np.ndarray = field(default_factory=lambda: np.zeros(N_BLENDSHAPES))
    sx: np.ndarray = field(default_factory=lambda: np.zeros(N_BLENDSHAPES))
    sy: np.ndarray = field(default_factory=lambda: np.zeros(N_BLENDSHAPES))
    sxx: np.ndarray = field(default_factory=lambda: np.zeros(N_BLENDSHAPES))
    sxy: np.ndarray = field(default_factory=lambda: np.zeros(N_BLENDSHAPES))

    def update(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        d = np.where(mask, self.decay, 1.0)
        m = mask.astype(float)
        self.n = self.n * d + m
        self.sx = self.sx * d + m * x
        self.sy = self.sy * d + m * y
        self.sxx = self.sxx * d + m * x * x
        self.sxy = self.sxy * d + m * x * y

    def apply(self, x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
        n = np.maximum(self.n, 1e-9)
        mx, my = self.sx / n, self.sy / n
        var = self.sxx / n - mx * mx
        cov = self.sxy / n - mx * my
        # The prior pulls the gain to 1 where x barely varies (a shape that never moved).
        gain = np.clip((cov + self.prior * 1.0) / (var + self.prior), *bounds)
        offset = np.where(self.n > 1e-6, my - gain * mx, 0.0)
        return gain * x + offset


def _trust(err: np.ndarray, err_baseline: np.ndarray, full: float) -> np.ndarray:
    """1 where ``err`` is at most ``full`` times ``err_baseline``, 0 where it is no smaller,
    linear between."""
    ratio = err / np.maximum(err_baseline, 1e-12)
    return np.clip((1.0 - ratio) / max(1.0 - full, 1e-9), 0.0, 1.0)


class CarryModel:
    """What to show while ARKit is not trusted, learnt for this wearer while it is.

    Each trusted frame is the end of a virtual occlusion of every length ``h`` in
    ``carry_horizons_s`` that began at a trusted frame ``h`` earlier (its anchor). For each
    length and blendshape, ARKit's change since the anchor, ``y = A_t - A_0``, is regressed
    (exponentially weighted least squares with a ridge towards 0) on

    * ``x1 = I_t - I_0``: the adapted IMU estimate's change since the anchor;
    * ``x2 = I_0 - A_0``: the IMU estimate's error at the anchor (with ``x1``: the absolute
      estimate, ``A_0 + x1 + x2 = I_t``);
    * ``x3 = m - A_0``: the way back to ARKit's running mean ``m``.

    While ARKit is not trusted, the shown value is ``A_0 + k(tau) . x`` with ``tau`` the time
    since the last good frame and ``k`` interpolated between the learnt lengths. The
    coefficients 0 are holding ARKit; (1, 0, 0) is the IMU's change carried from ARKit's last
    frame; (1, 1, 0) is the IMU alone. Least squares picks, per wearer, per blendshape and per
    occlusion length, how much of each the data supports, so a weak IMU estimate for this
    wearer falls back to the hold by itself and a good one takes over; the ridge holds ARKit
    until there is evidence.
    """

    def __init__(self, config: FusionConfig):
        c = config
        self.horizons = np.array([max(int(round(h * c.rate_hz)), 1) for h in c.carry_horizons_s])
        self.decay = 0.5 ** (1.0 / (c.carry_learn_halflife_s * c.rate_hz))
        self.prior = c.carry_prior
        self.full_trust = c.carry_full_trust
        self.rate_hz = c.rate_hz
        n_h, span = len(self.horizons), int(self.horizons.max()) + 1
        # the last `span` frames: the adapted IMU estimate, ARKit (NaN when lost), trusted
        self._imu = np.zeros((span, N_BLENDSHAPES))
        self._arkit = np.full((span, N_BLENDSHAPES), np.nan)
        self._good = np.zeros((span, N_BLENDSHAPES), bool)
        self._frames = 0                          # frames seen (the ring's write position)
        self._sxx = np.zeros((n_h, N_BLENDSHAPES, 3, 3))
        self._sxy = np.zeros((n_h, N_BLENDSHAPES, 3))
        self._coef = np.zeros((n_h, N_BLENDSHAPES, 3))
        self._stale = False   # sums changed since the coefficients were solved
        # Each virtual occlusion is first predicted with the coefficients learnt before it
        # (out of sample): EW sums of the absolute error of that prediction and of the hold.
        self._err_fit = np.zeros((n_h, N_BLENDSHAPES))
        self._err_hold = np.zeros((n_h, N_BLENDSHAPES))
        # Beyond the longest length ARKit's last frame says little: the stationary estimate
        # m + g (I_t - m), g fitted on every trusted frame, with its out-of-sample error
        # against the mean's.
        self._long_sxx = np.zeros(N_BLENDSHAPES)
        self._long_sxy = np.zeros(N_BLENDSHAPES)
        self._long_err_fit = np.zeros(N_BLENDSHAPES)
        self._long_err_mean = np.zeros(N_BLENDSHAPES)
        self._n = np.zeros((n_h, N_BLENDSHAPES))      # EW counts of the two kinds of pairs
        self._long_n = np.zeros(N_BLENDSHAPES)

    def learn(self, adapted: np.ndarray, arkit: np.ndarray | None, good: np.ndarray,
              mean: np.ndarray) -> None:
        """Add this frame (``arkit`` None when lost; ``good``: trusted blendshapes)."""
        span = len(self._imu)
        at = self._frames % span
        self._imu[at] = adapted
        self._arkit[at] = np.nan if arkit is None else arkit
        self._good[at] = good & (arkit is not None)
        self._frames += 1
        if arkit is None:
            return
        xl, yl = np.where(good, adapted - mean, 0.0), np.where(good, arkit - mean, 0.0)
        dl = np.where(good, self.decay, 1.0)
        raw = self._long_sxy / (self._long_sxx + self.prior)
        self._long_err_fit = dl * self._long_err_fit + np.abs(yl - raw * xl)
        self._long_err_mean = dl * self._long_err_mean + np.abs(yl)
        self._long_n = dl * self._long_n + good
        self._long_sxx = dl * self._long_sxx + xl * xl
        self._long_sxy = dl * self._long_sxy + xl * yl
        rows = (at - self.horizons) % span
        i0, a0 = self._imu[rows], self._arkit[rows]                      # (H, 52)
        ok = self._good[rows] & good & (self.horizons < self._frames)[:, None]
        a0 = np.where(ok, a0, 0.0)
        x = np.stack([adapted - i0, i0 - a0, mean - a0], axis=-1)        # (H, 52, 3)
        x = np.where(ok[..., None], x, 0.0)
        y = np.where(ok, arkit - a0, 0.0)
        fit = np.sum(self.coefficients() * x, axis=-1)
        d = np.where(ok, self.decay, 1.0)
        self._err_fit = d * self._err_fit + np.abs(y - fit)
        self._err_hold = d * self._err_hold + np.abs(y)
        self._n = d * self._n + ok
        self._sxx = d[..., None, None] * self._sxx + x[..., :, None] * x[..., None, :]
        self._sxy = d[..., None] * self._sxy + x * y[..., None]
        self._stale = True

    def coefficients(self) -> np.ndarray:
        """(horizons, 52, 3): the learnt weights of (x1, x2, x3) per length and blendshape."""
        if self._stale:
            eye = np.eye(3) * self.prior
            self._coef = np.linalg.solve(self._sxx + eye, self._sxy[..., None])[..., 0]
            self._stale = False
        return self._coef

    def _long_gain(self) -> np.ndarray:
        gain = self._long_sxy / (self._long_sxx + self.prior)
        return gain * _trust(self._long_err_fit, self._long_err_mean, self.full_trust)

    def trust(self) -> np.ndarray:
        """(horizons, 52): how much of the learnt carry to use, 0 (hold) .. 1, from how much
        better than the hold it predicted the virtual occlusions it had not yet learnt from."""
        return _trust(self._err_fit, self._err_hold, self.full_trust)

    def region_trust(self, horizon_s: float) -> np.ndarray:
        """(regions,): the mean ``trust`` over each region's blendshapes, at the learnt length
        nearest ``horizon_s``."""
        j = int(np.argmin(np.abs(self.horizons - horizon_s * self.rate_hz)))
        t = self.trust()[j]
        return np.array([t[idx].mean() for idx in REGION_IDX])

    def predict(self, since_s: np.ndarray, anchor_arkit: np.ndarray, anchor_imu: np.ndarray,
                adapted: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """The carried estimate (52,), ``since_s`` seconds after each anchor."""
        k = self.coefficients() * self.trust()[..., None]
        frames = np.clip(since_s * self.rate_hz, self.horizons[0], self.horizons[-1])
        j = np.clip(np.searchsorted(self.horizons, frames) - 1, 0, len(self.horizons) - 2)
        lo, hi = self.horizons[j], self.horizons[j + 1]
        w = ((frames - lo) / np.maximum(hi - lo, 1))[:, None]
        cols = np.arange(N_BLENDSHAPES)
        coef = (1 - w) * k[j, cols] + w * k[j + 1, cols]
        x = np.stack([adapted - anchor_imu, anchor_imu - anchor_arkit, mean - anchor_arkit],
                     axis=1)
        carried = anchor_arkit + np.sum(coef * x, axis=1)
        stationary = mean + self._long_gain() * (adapted - mean)
        # The two, weighted by the inverse square of their mean out-of-sample errors at this
        # length; past the longest length, over half of it again, the stationary one alone.
        err = self._err_fit / np.maximum(self._n, 1e-9)
        err_here = (1 - w[:, 0]) * err[j, cols] + w[:, 0] * err[j + 1, cols]
        err_long = self._long_err_fit / np.maximum(self._long_n, 1e-9)
        share = err_long ** 2 / np.maximum(err_here ** 2 + err_long ** 2, 1e-18)
        share = np.where((self._n[j, cols] > 0) & (self._long_n > 0), share, 1.0)
        longest = self.horizons[-1]
        beyond = np.clip((since_s * self.rate_hz - longest) / (0.5 * longest), 0.0, 1.0)
        share = (1 - beyond) * share
        return share * carried + (1 - share) * stationary


class _Stillness:
    """Per region: for how many frames ARKit has stayed within ``eps`` of where it settled, and
    the adapted IMU estimate at that moment (how far the IMU has moved on since)."""

    def __init__(self, n_regions: int):
        self.frames = np.zeros(n_regions, int)
        self.arkit_ref: np.ndarray | None = None   # (52,) ARKit where each region settled
        self.imu_ref: np.ndarray | None = None     # (52,) the adapted IMU estimate then

    def update(self, arkit: np.ndarray, imu: np.ndarray, eps: float) -> None:
        if self.arkit_ref is None or self.imu_ref is None:
            self.arkit_ref, self.imu_ref = arkit.copy(), imu.copy()
            self.frames[:] = 0
            return
        for r, idx in enumerate(REGION_IDX):
            if np.max(np.abs(arkit[idx] - self.arkit_ref[idx])) < eps:
                self.frames[r] += 1
            else:
                self.frames[r] = 0
                self.arkit_ref[idx], self.imu_ref[idx] = arkit[idx], imu[idx]

    def imu_moved(self, imu: np.ndarray, idx: np.ndarray) -> float:
        assert self.imu_ref is not None
        return float(np.max(np.abs(imu[idx] - self.imu_ref[idx])))

    def settled(self, region: int, rate_hz: float) -> tuple[np.ndarray, np.ndarray, float]:
        """For a region: the IMU estimate and ARKit where it settled, and seconds since."""
        assert self.arkit_ref is not None and self.imu_ref is not None
        idx = REGION_IDX[region]
        return self.imu_ref[idx], self.arkit_ref[idx], self.frames[region] / rate_hz

    def forget(self) -> None:
        """The face was lost: stillness starts over from the next frame."""
        self.arkit_ref = self.imu_ref = None
        self.frames[:] = 0


class HybridFusion:
    """Fuse ARKit frames with IMU estimates, per region, one 60 Hz tick at a time.

    >>> fuser = HybridFusion()
    >>> frame = fuser.step(t=0.0, imu=np.zeros(52), arkit=np.zeros(52))
    """

    def __init__(self, config: FusionConfig | None = None):
        self.config = c = config or FusionConfig()
        self._adapter = _Adapter(decay=0.5 ** (1.0 / (c.adapt_halflife_s * c.rate_hz)),
                                 prior=c.adapt_prior)
        n = len(REGION_NAMES)
        self._weight = np.ones(n)            # ARKit share
        self._trusted = np.ones(n, bool)
        self._bad = np.zeros(n, int)
        self._good = np.zeros(n, int)
        self._why = np.array([""] * n, dtype=object)   # why each region was last distrusted
        self._last_arkit_t: float | None = None
        self._arkit_hist: deque[np.ndarray] = deque(maxlen=2)   # this frame and the last
        self._imu_hist: deque[np.ndarray] = deque(maxlen=2)
        self._still = _Stillness(len(REGION_NAMES))
        self._last_arkit: np.ndarray | None = None
        self._anchor_arkit: np.ndarray | None = None   # ARKit's last good values
        self._anchor_imu: np.ndarray | None = None     # the adapted IMU estimate then
        self._since_good = np.zeros(N_BLENDSHAPES)     # seconds since each was good
        self._carry = CarryModel(c)
        self._usual = np.full(n, c.usual_initial)  # typical |ARKit - IMU| while trusted
        self._camera_only = np.zeros(N_BLENDSHAPES, bool)   # blendshapes of `camera_only`
        for r, idx in enumerate(REGION_IDX):
            self._camera_only[idx] = REGION_NAMES[r] in c.camera_only
        self._arkit_mean: np.ndarray | None = None   # EW mean of ARKit's good frames
        self._usual_decay = 0.5 ** (1.0 / (c.adapt_halflife_s * c.rate_hz))

    def step(self, t: float, imu: np.ndarray, arkit: np.ndarray | None,
             arkit_t: float | None = None) -> FusedFrame:
        """Fuse one tick.

        ``imu``: the IMU estimate (52,). ``arkit``: the newest ARKit frame (52,), or None when
        the face is lost (a face-lost packet) or nothing new arrived; ``arkit_t``: when that
        frame was captured (defaults to ``t``).
        """
        c = self.config
        imu = np.asarray(imu, dtype=np.float64)[:N_BLENDSHAPES]
        if arkit is not None:
            arkit = np.asarray(arkit, dtype=np.float64)[:N_BLENDSHAPES]
            if not np.all(np.isfinite(arkit)):
                arkit = None
        if arkit is not None:
            self._last_arkit_t = t if arkit_t is None else arkit_t
        lost = (self._last_arkit_t is None or arkit is None
                or t - self._last_arkit_t > c.lost_timeout_s)

        adapted = self._adapter.apply(imu, c.gain_bounds)
        reasons = [""] * len(REGION_NAMES)
        bad_now = np.zeros(len(REGION_NAMES), bool)
        if lost:
            bad_now[:] = True
            reasons = ["lost"] * len(REGION_NAMES)
            self._still.forget()
        else:
            self._arkit_hist.append(arkit)
            self._imu_hist.append(imu)
            prev_a = self._arkit_hist[-2] if len(self._arkit_hist) > 1 else None
            prev_i = self._imu_hist[-2] if len(self._imu_hist) > 1 else None
            self._still.update(arkit, adapted, c.frozen_eps)
            witness = self._carry.region_trust(c.witness_horizon_s)
            for r, idx in enumerate(REGION_IDX):
                if REGION_NAMES[r] in c.camera_only:
                    continue   # the IMU sees nothing here to judge ARKit by
                if prev_a is not None:
                    jump = np.max(np.abs(arkit[idx] - prev_a[idx]))
                    imu_step = np.max(np.abs(imu[idx] - prev_i[idx]))
                    if jump > c.jump_per_frame and imu_step < jump / 3:
                        bad_now[r], reasons[r] = True, "jump"
                        continue
                if REGION_NAMES[r] in c.no_witness:
                    continue   # the IMU estimate is too weak here to contradict ARKit
                diff = float(np.mean(np.abs(arkit[idx] - adapted[idx])))
                # Still ARKit alone is no evidence (faces rest); ARKit staying put while the
                # IMU estimate moves on since it settled (net change, not the estimate's
                # frame-to-frame noise) and the two drift apart beyond their usual difference
                # is a tracker holding its guess.
                if (self._still.frames[r] >= c.frozen_frames
                        and self._still.imu_moved(adapted, idx) > c.imu_motion_for_frozen
                        and diff > c.frozen_ratio * self._usual[r]):
                    bad_now[r], reasons[r] = True, "frozen"
                    continue
                if (witness[r] >= c.witness_trust
                        and diff > max(c.disagreement, c.disagreement_ratio * self._usual[r])):
                    bad_now[r], reasons[r] = True, "disagreement"
                elif self._trusted[r]:
                    d = self._usual_decay
                    self._usual[r] = d * self._usual[r] + (1 - d) * diff

        # Debounce: distrust after `disagreement_frames` bad ticks (at once when lost, jumping
        # or frozen), trust again after `recover_frames` good ticks.
        immediate = np.array([reason in ("lost", "jump", "frozen") for reason in reasons])
        self._bad = np.where(bad_now, self._bad + 1, 0)
        self._good = np.where(bad_now, 0, self._good + 1)
        distrust = bad_now & (immediate | (self._bad >= c.disagreement_frames))
        # After a plain loss (face out of view) the first frame back is good evidence; after a
        # hand, a jump or a disagreement ARKit must look right for `recover_frames` first.
        needed = np.where(self._why == "lost", 1, c.recover_frames)
        regain = ~bad_now & (self._good >= needed)
        # A tracker found frozen has been holding since it settled: the hand-over starts there.
        newly_frozen = distrust & self._trusted & (np.array(reasons, dtype=object) == "frozen")
        self._why = np.where(distrust, np.array(reasons, dtype=object), self._why)
        self._trusted = np.where(distrust, False, np.where(regain, True, self._trusted))

        step = 1.0 / max(c.transition_s * c.rate_hz, 1.0)
        target = self._trusted.astype(float)
        self._weight = np.clip(self._weight + np.clip(target - self._weight, -step, step), 0, 1)

        if arkit is not None and not lost:
            mask = np.zeros(N_BLENDSHAPES, bool)
            for r, idx in enumerate(REGION_IDX):
                if self._trusted[r] and not bad_now[r]:
                    mask[idx] = True
            self._adapter.update(imu, arkit, mask)

        if not lost:
            self._last_arkit = arkit
        w = np.empty(N_BLENDSHAPES)
        good = np.zeros(N_BLENDSHAPES, bool)
        for r, idx in enumerate(REGION_IDX):
            w[idx] = self._weight[r]
            good[idx] = self._trusted[r] and not bad_now[r] and not lost
        # The IMU side carries ARKit's last good frame forward by the IMU's own change since
        # then: its change is far more accurate than its absolute value (a per-wearer bias
        # cancels), and the hand-over starts exactly where ARKit was. Over a long occlusion
        # the carried estimate relaxes to the absolute one, so drift cannot pile up.
        if self._anchor_arkit is None:
            self._anchor_arkit, self._anchor_imu = adapted.copy(), adapted.copy()
        if arkit is not None and not lost:
            self._anchor_arkit[good] = arkit[good]
            self._anchor_imu[good] = adapted[good]
            self._since_good[good] = 0.0
            if self._arkit_mean is None:
                self._arkit_mean = np.array(arkit, dtype=np.float64)
            d = self._usual_decay
            self._arkit_mean[good] = d * self._arkit_mean[good] + (1 - d) * arkit[good]
        self._since_good[~good] += 1.0 / c.rate_hz
        for r in np.flatnonzero(newly_frozen):
            self._anchor_imu[REGION_IDX[r]], self._anchor_arkit[REGION_IDX[r]], \
                self._since_good[REGION_IDX[r]] = self._still.settled(r, c.rate_hz)
        mean = np.zeros(N_BLENDSHAPES) if self._arkit_mean is None else self._arkit_mean
        self._carry.learn(adapted, arkit if arkit is not None and not lost else None, good, mean)
        carried = self._carry.predict(self._since_good, self._anchor_arkit, self._anchor_imu,
                                      adapted, mean)
        relax = 0.5 ** (self._since_good / c.carry_halflife_s)
        # Camera-only regions: ARKit's last good frame relaxing to ARKit's own mean (0, the
        # neutral face, before ARKit was ever seen); nothing of the IMU estimate.
        cam = self._camera_only
        held = self._anchor_arkit if self._arkit_mean is not None else mean
        carried[cam] = relax[cam] * held[cam] + (1 - relax[cam]) * mean[cam]
        # When ARKit is gone its share fades from the last frame it gave, never from nothing.
        shown = carried if self._last_arkit is None else self._last_arkit
        values = w * shown + (1.0 - w) * carried
        return FusedFrame(values=values, arkit_weight=self._weight.copy(),
                          trusted=self._trusted.copy(), reasons=reasons, imu_adapted=adapted)
