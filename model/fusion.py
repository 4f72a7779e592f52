"""Hybrid tracking: ARKit when the face is visible, the IMU estimate when it is not.

Per face region (hardware.vocabulary.REGIONS) the fuser decides each 60 Hz tick whether ARKit
can be trusted, from what a camera tracker does when it fails:

* **lost**: no ARKit frame for ``lost_timeout_s``, or a face-lost packet;
* **jump**: the region moves more in one frame than a face can (``jump_per_frame``) while the
  IMU estimate stays put;
* **frozen**: the region's values stay still for ``frozen_frames`` while the IMU estimate moves
  on by more than ``imu_motion_for_frozen`` and the two differ by more than ``frozen_ratio``
  times their usual difference (ARKit holds its last guess under a hand);
* **disagreement**: the region differs from the adapted IMU estimate (mean absolute) by more
  than ``disagreement`` and more than ``disagreement_ratio`` times its usual difference while
  trusted (so a weak IMU model in one region does not make ARKit look wrong there), for
  ``disagreement_frames`` frames.

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
never jumps. The IMU side is ARKit's last good frame carried forward by the IMU estimate's change
since then (its change is more accurate than its absolute value: a wearer's bias cancels), relaxing
to the absolute IMU estimate with half-life ``carry_halflife_s`` so that drift cannot pile up.
While a region is trusted, the IMU estimate's per-blendshape gain and offset are fitted online to
ARKit (exponentially weighted least squares with a prior of gain 1).

Pure computation: no I/O, no clocks. ``imusic hybrid`` feeds it from LSL / Live Link.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from imusic.hardware.vocabulary import IMU_BLIND_REGIONS, N_BLENDSHAPES, REGION_INDEX

REGION_NAMES: tuple[str, ...] = tuple(REGION_INDEX)
"""Region order of the per-region outputs (weights, confidence, reasons)."""


@dataclass(frozen=True)
class FusionConfig:
    """Thresholds of the fuser (blendshape units are the 0..1 ARKit scale)."""

    rate_hz: float = 60.0
    lost_timeout_s: float = 0.05
    jump_per_frame: float = 0.5
    frozen_frames: int = 4
    frozen_eps: float = 0.004
    imu_motion_for_frozen: float = 0.04
    frozen_ratio: float = 2.0
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
    recover_frames: int = 2
    transition_s: float = 0.034
    adapt_halflife_s: float = 4.0
    adapt_prior: float = 0.002
    gain_bounds: tuple[float, float] = (0.0, 2.0)
    carry_halflife_s: float = 3.0
    delta_horizon_s: float = 0.5
    delta_prior: float = 0.01


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
        self._arkit_hist: deque[np.ndarray] = deque(maxlen=c.frozen_frames + 1)
        self._imu_hist: deque[np.ndarray] = deque(maxlen=c.frozen_frames + 1)
        self._last_arkit: np.ndarray | None = None
        self._anchor_arkit: np.ndarray | None = None   # ARKit's last good values
        self._anchor_imu: np.ndarray | None = None     # the adapted IMU estimate then
        self._since_good = np.zeros(N_BLENDSHAPES)     # seconds since each was good
        # How far the IMU estimate's changes predict ARKit's (per blendshape, while trusted):
        # EW sums of dI*dA and dI*dI over `delta_horizon_s`.
        self._pairs: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(
            maxlen=max(int(round(c.delta_horizon_s * c.rate_hz)), 1) + 1)
        self._sxy = np.zeros(N_BLENDSHAPES)
        self._sxx = np.zeros(N_BLENDSHAPES)
        self._usual = np.full(n, c.usual_initial)  # typical |ARKit - IMU| while trusted
        self._camera_only = np.zeros(N_BLENDSHAPES, bool)   # blendshapes of `camera_only`
        for r, idx in enumerate(REGION_INDEX.values()):
            self._camera_only[idx] = REGION_NAMES[r] in c.camera_only
        self._arkit_mean: np.ndarray | None = None   # EW mean of ARKit's good frames
        self._usual_decay = 0.5 ** (1.0 / (c.adapt_halflife_s * c.rate_hz))

    def _learn_delta_gain(self, adapted: np.ndarray, arkit: np.ndarray | None,
                          good: np.ndarray) -> None:
        """Regress ARKit's change over ``delta_horizon_s`` on the IMU estimate's, where both
        ends were good: how much of the IMU's change to trust when carrying ARKit forward."""
        c = self.config
        now = (adapted.copy(), arkit.copy() if arkit is not None else adapted * np.nan,
               good.copy())
        self._pairs.append(now)
        if len(self._pairs) < self._pairs.maxlen:
            return
        i0, a0, g0 = self._pairs[0]
        ok = g0 & good
        d_i, d_a = adapted - i0, now[1] - a0
        decay = 0.5 ** (1.0 / (c.adapt_halflife_s * c.rate_hz))
        self._sxy = np.where(ok, decay * self._sxy + d_i * d_a, self._sxy)
        self._sxx = np.where(ok, decay * self._sxx + d_i * d_i, self._sxx)

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
        else:
            self._arkit_hist.append(arkit)
            self._imu_hist.append(imu)
            prev_a = self._arkit_hist[-2] if len(self._arkit_hist) > 1 else None
            prev_i = self._imu_hist[-2] if len(self._imu_hist) > 1 else None
            full = len(self._arkit_hist) > c.frozen_frames
            a_hist = np.stack(self._arkit_hist) if full else None
            i_hist = np.stack(self._imu_hist) if full else None
            for r, idx in enumerate(REGION_INDEX.values()):
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
                if full:
                    a, i = a_hist[:, idx], i_hist[:, idx]
                    # Still ARKit alone is no evidence (faces rest); still ARKit while the IMU
                    # moves on (net change, not its frame-to-frame noise) and the two drift
                    # apart beyond their usual difference is a tracker holding its guess.
                    if (np.ptp(a, axis=0).max() < c.frozen_eps
                            and np.abs(i[-1] - i[0]).max() > c.imu_motion_for_frozen
                            and diff > c.frozen_ratio * self._usual[r]):
                        bad_now[r], reasons[r] = True, "frozen"
                        continue
                if diff > max(c.disagreement, c.disagreement_ratio * self._usual[r]):
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
        self._why = np.where(distrust, np.array(reasons, dtype=object), self._why)
        self._trusted = np.where(distrust, False, np.where(regain, True, self._trusted))

        step = 1.0 / max(c.transition_s * c.rate_hz, 1.0)
        target = self._trusted.astype(float)
        self._weight = np.clip(self._weight + np.clip(target - self._weight, -step, step), 0, 1)

        if arkit is not None and not lost:
            mask = np.zeros(N_BLENDSHAPES, bool)
            for r, idx in enumerate(REGION_INDEX.values()):
                if self._trusted[r] and not bad_now[r]:
                    mask[idx] = True
            self._adapter.update(imu, arkit, mask)

        if not lost:
            self._last_arkit = arkit
        w = np.empty(N_BLENDSHAPES)
        good = np.zeros(N_BLENDSHAPES, bool)
        for r, idx in enumerate(REGION_INDEX.values()):
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
        self._learn_delta_gain(adapted, arkit, good)
        gain = self._sxy / (self._sxx + c.delta_prior)   # prior: no evidence, hold ARKit
        relax = 0.5 ** (self._since_good / c.carry_halflife_s)
        carried = (relax * (self._anchor_arkit + np.clip(gain, 0.0, 1.5)
                            * (adapted - self._anchor_imu)) + (1 - relax) * adapted)
        # Camera-only regions: ARKit's last good frame relaxing to ARKit's own mean (0, the
        # neutral face, before ARKit was ever seen); nothing of the IMU estimate.
        cam = self._camera_only
        mean = np.zeros(N_BLENDSHAPES) if self._arkit_mean is None else self._arkit_mean
        held = self._anchor_arkit if self._arkit_mean is not None else mean
        carried[cam] = relax[cam] * held[cam] + (1 - relax[cam]) * mean[cam]
        # When ARKit is gone its share fades from the last frame it gave, never from nothing.
        shown = carried if self._last_arkit is None else self._last_arkit
        values = w * shown + (1.0 - w) * carried
        return FusedFrame(values=values, arkit_weight=self._weight.copy(),
                          trusted=self._trusted.copy(), reasons=reasons, imu_adapted=adapted)
