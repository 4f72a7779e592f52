"""Neutral-pose calibration: the one still-window step every take starts with.

A take starts with a still, neutral face (README, "Recording"). :class:`StillDetector` watches
the incoming 60 Hz frames of every site and reports the first window of
``CalibrationConfig.window_s`` in which every site's angular rate (the gyro, or what its
reported orientations imply) varies less than ``still_gyro_std`` on every axis. From that one
window :func:`neutral_from_window` gives, per site:

* the gyro bias (the window's mean rate: the face and the head are still);
* the orientation at neutral, after the AHRS has been run ``passes`` times over the window
  with the bias taken out, so that it has settled (imufusion's own start-up ramp runs during the
  first pass; a cold filter with turn-on biases otherwise needs 15-20 s);
* the acceleration offset in the reference frame at neutral (what gravity leaks through the
  remaining orientation error plus accelerometer offsets; subtracted from the features).

Not estimable from one still pose, and therefore not estimated: the accelerometer's own offset
apart from gravity's direction, and the magnetometer's hard iron (both need several poses).

The users: :class:`model.features.FeatureExtractor` (features relative to the neutral pose,
``FeatureSpec.calibrate``) and :class:`model.headpose.HeadPose` (the reference sensor's
"straight ahead"). Both take their window and thresholds from a :class:`CalibrationConfig`, so
a take is calibrated once, by one rule. :class:`CalibrationState` is what the runtime shows
(``Runtime.calibration``): done, progress, the frame at which it ended, and the biases.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CalibrationConfig:
    """How the still neutral window is found and used (stored in the feature spec)."""

    window_s: float = 2.0          # length of the still window (s)
    still_gyro_std: float = 0.03   # rad/s: still when every site's rate varies less, per axis
    passes: int = 3                # AHRS passes over the still window before neutral is read
    max_wait_s: float = 5.0        # >0: after this long with no still window, use the stillest
    remove_bias: bool = True       # subtract the still window's mean gyro (False: ablation)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class CalibrationState:
    """Where calibration stands (what a pipeline shows; the session stores the result)."""

    done: bool = False
    frames_still: int = 0          # consecutive still frames so far (progress)
    frames_needed: int = 1
    at_frame: int = -1             # frames seen when it ended (= the first valid frame's index)
    still: bool = True             # False when ``max_wait_s`` forced the stillest window
    window: tuple[int, int] = (-1, -1)    # first and last frame index of the window used
    gyro_bias: np.ndarray | None = None   # (S, 3) rad/s
    acc_offset: np.ndarray | None = None  # (F, 3) m/s^2, reference frame, per face site
    neutral: np.ndarray | None = None     # (F, 3, 3) relative orientation at neutral

    @property
    def progress(self) -> float:
        """0..1 of the still window collected (1 once done)."""
        return 1.0 if self.done else min(1.0, self.frames_still / max(1, self.frames_needed))

    def summary(self) -> dict[str, Any]:
        """JSON-ready form (for the session's attributes and logs)."""
        out: dict[str, Any] = {"done": self.done, "at_frame": self.at_frame,
                               "still": self.still, "window": list(self.window)}
        for k in ("gyro_bias", "acc_offset", "neutral"):
            v = getattr(self, k)
            out[k] = None if v is None else np.asarray(v).tolist()
        return out


    def describe(self) -> str:
        """One line: still or forced, the window's frames, and the largest biases taken out
        (what ``imusic live`` prints when it has calibrated)."""
        if not self.done:
            return (f"not calibrated: no still window yet ({self.frames_still} of "
                    f"{self.frames_needed} still frames)")
        how = ("still" if self.still else
               "forced: no still window within max_wait_s, the stillest")
        a, b = self.window
        return (f"{how}, window frames {a}-{b}, ended at frame {self.at_frame}; max gyro bias "
                f"{max_abs(self.gyro_bias, np.degrees):.2f} deg/s, max acc offset "
                f"{max_abs(self.acc_offset):.3f} m/s^2")


def max_abs(x: np.ndarray | None, unit: Any = None) -> float:
    """The largest magnitude in ``x`` (NaN for None or empty), optionally converted."""
    if x is None or np.size(x) == 0:
        return float("nan")
    v = float(np.nanmax(np.abs(np.asarray(x, np.float64))))
    return float(unit(v)) if unit is not None else v


def implied_rates(rots: np.ndarray, rate_hz: float) -> np.ndarray:
    """(n - 1, S, 3) sensor-frame angular rates between consecutive orientations (n, S, 3, 3)."""
    step = np.einsum("n...ji,n...jk->n...ik", rots[:-1], rots[1:])       # R_k^T R_k+1
    vee = np.stack([step[..., 2, 1] - step[..., 1, 2], step[..., 0, 2] - step[..., 2, 0],
                    step[..., 1, 0] - step[..., 0, 1]], axis=-1) / 2.0
    return vee * rate_hz


class StillDetector:
    """The first still window of every site's frames (see the module docstring).

    ``push(frame, rate)`` with any per-frame record (kept for the caller) and that frame's
    (S, 3) angular rate; returns True when the last ``window_s`` were still.
    """

    def __init__(self, config: CalibrationConfig, rate_hz: float) -> None:
        self.config = config
        self.rate_hz = float(rate_hz)
        self.n_window = max(2, int(round(config.window_s * rate_hz)))
        self.frames: deque[Any] = deque(maxlen=self.n_window)
        self.rates: deque[np.ndarray] = deque(maxlen=self.n_window)
        self.n_seen = 0
        self.n_still = 0                 # trailing frames that are still together (progress)
        self._best: tuple[float, list[Any]] | None = None   # (spread, frames) for max_wait_s
        # running sums (O(1) per frame: the runtime calls this every 60 Hz tick)
        self._sum: np.ndarray | None = None
        self._sq: np.ndarray | None = None
        self._run: list[Any] = [0, None, None]   # trailing run: count, sum, sum of squares

    def reset(self) -> None:
        """Forget everything (recalibration)."""
        self.frames.clear()
        self.rates.clear()
        self.n_seen = self.n_still = 0
        self._best = None
        self._sum = self._sq = None
        self._run = [0, None, None]

    @staticmethod
    def _std(n: int, s: np.ndarray, sq: np.ndarray) -> float:
        return float(np.sqrt(np.maximum(sq / n - (s / n) ** 2, 0.0)).max())

    def spread(self) -> float:
        """The largest per-axis standard deviation of any site's rate over the window."""
        if len(self.rates) < 2 or self._sum is None or self._sq is None:
            return float("inf")
        return self._std(len(self.rates), self._sum, self._sq)

    def push(self, frame: Any, rate: np.ndarray) -> bool:
        """Add one frame; True when the window is full and still."""
        r = np.asarray(rate, np.float64)
        if len(self.rates) == self.n_window and self._sum is not None:
            old = self.rates[0]
            self._sum -= old
            self._sq -= old * old
        self.frames.append(frame)
        self.rates.append(r)
        self._sum = r.copy() if self._sum is None else self._sum + r
        self._sq = r * r if self._sq is None else self._sq + r * r
        self.n_seen += 1
        thr = self.config.still_gyro_std
        n, rs, rq = self._run
        n, rs, rq = n + 1, (r.copy() if rs is None else rs + r), (r * r if rq is None else rq + r * r)
        if n >= 2 and self._std(n, rs, rq) >= thr:
            n, rs, rq = 1, r.copy(), r * r           # the run starts again at this frame
        self._run = [n, rs, rq]
        self.n_still = min(self.n_window, n)
        if len(self.rates) < self.n_window:
            return False
        s = self.spread()
        if self.config.max_wait_s > 0 and (self._best is None or s < self._best[0]):
            self._best = (s, list(self.frames))
        return s < thr

    def timed_out(self) -> bool:
        """True when ``max_wait_s`` has passed without a still window."""
        w = self.config.max_wait_s
        return w > 0 and self.n_seen >= w * self.rate_hz and self._best is not None

    def stillest(self) -> list[Any]:
        """The stillest full window seen so far (for ``max_wait_s``)."""
        assert self._best is not None
        return self._best[1]


@dataclass
class NeutralPose:
    """The result of one calibration (see :func:`neutral_from_window`)."""

    gyro_bias: np.ndarray                               # (S, 3)
    neutral: np.ndarray                                 # (F, 3, 3) R_r^T R_i at neutral
    acc_offset: np.ndarray                              # (F, 3)
    extra: dict[str, Any] = field(default_factory=dict)


def relative(rot: np.ndarray, ref: int, face: np.ndarray) -> np.ndarray:
    """(F, 3, 3) face sensors' orientation in the reference frame, ``R_r^T R_i``."""
    return np.einsum("ji,fjk->fik", rot[ref], rot[face])
