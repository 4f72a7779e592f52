"""Per-session IMU calibration: gyro bias and each sensor's orientation relative to the reference.

Pure functions on arrays (``acc``/``gyro``/``mag`` of shape (N, S, 3), sensor frames, SI units)
plus ``Calibration.write``/``read`` for the session's ``/calibration`` group, which also holds
the model's neutral-pose calibration (``Calibration.neutral``, capture/neutral.py: computed by
the model's own rule from ``/aligned``, not by the functions here).

Thresholds are the fields of ``CalibrationConfig`` (each with its doc and default);
capture/sync.py passes the ones of its ``SyncConfig``.

* Still segments: windows (``window_s``) in which every axis of every sensor's gyro and
  accelerometer barely varies (std below ``gyro_std`` rad/s and ``acc_std`` m/s^2): nobody moves.
* Gyro bias: a sensor's mean angular rate over the still samples (a still sensor should read 0).
* Relative orientation: on a rigid head every sensor sees the same gravity and the same head
  angular velocity, each in its own frame. The rotation ``R_i`` with ``v_ref = R_i @ v_i`` is the
  least-squares (Wahba / Kabsch) fit over two kinds of vector pairs: the mean specific force over
  the neutral segment (gravity) and bias-free gyro samples while the head turns faster than
  ``turn_rate`` (at most ``max_pairs`` of them). Gravity alone leaves the rotation about the
  vertical free; head turns pin it. Skin motion of face sensors adds noise to the gyro pairs,
  which the fit averages down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import h5py
import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.spatial.transform import Rotation

from imusic.capture.neutral import NeutralRecord, read_neutral, write_neutral

GROUP = "calibration"
MISSING = 1e3
"""What a NaN sample reads as in the still test (so much motion that it is never still)."""
MIN_NORM = 1e-9
"""Smallest norm a gyro vector is divided by when normalised (a still sensor reads about 0)."""


@dataclass(frozen=True)
class CalibrationConfig:
    """Thresholds of calibration (see the module doc)."""

    window_s: float = 0.5
    """Length of the moving window the still test measures motion over, s."""
    gyro_std: float = 0.02
    """Still: every gyro axis of every sensor varies by less than this std, rad/s."""
    acc_std: float = 0.08
    """Still: every accelerometer axis of every sensor varies by less than this std, m/s^2."""
    turn_rate: float = 0.3
    """Head turning: the reference sensor turns faster than this, rad/s (gyro vector pairs)."""
    max_pairs: int = 2000
    """At most this many turning samples (evenly subsampled) enter the rotation fit."""


DEFAULT = CalibrationConfig()


def moving_std(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving standard deviation along axis 0 over ``n`` samples (same shape as x)."""
    n = max(int(n), 1)
    m = uniform_filter1d(x, n, axis=0, mode="nearest")
    m2 = uniform_filter1d(x * x, n, axis=0, mode="nearest")
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def still_mask(acc: np.ndarray, gyro: np.ndarray, rate_hz: float,
               config: CalibrationConfig = DEFAULT) -> np.ndarray:
    """(N,) True where no sensor moves (see module doc). NaN samples are never still."""
    n = int(round(config.window_s * rate_hz))
    g = np.nan_to_num(gyro, nan=MISSING)
    a = np.nan_to_num(acc, nan=MISSING)
    sg = moving_std(g.reshape(len(g), -1), n).max(axis=1)
    sa = moving_std(a.reshape(len(a), -1), n).max(axis=1)
    return (sg < config.gyro_std) & (sa < config.acc_std)


def gyro_bias(gyro: np.ndarray, still: np.ndarray) -> np.ndarray:
    """(S, 3) mean angular rate over still samples; zeros if there are none."""
    if not still.any():
        return np.zeros(gyro.shape[1:])
    return np.nanmean(gyro[still], axis=0)


def relative_rotations(acc: np.ndarray, gyro: np.ndarray, neutral: np.ndarray, ref: int,
                       config: CalibrationConfig = DEFAULT) -> np.ndarray:
    """(S, 3, 3) rotations from each sensor frame to the reference sensor frame.

    ``gyro`` should already be bias-free. Identity for the reference itself; identity for any
    sensor with no usable vectors."""
    s = acc.shape[1]
    out = np.tile(np.eye(3), (s, 1, 1))
    g_ref = np.nanmean(acc[neutral, ref], axis=0) if neutral.any() else None
    turning = np.linalg.norm(np.nan_to_num(gyro[:, ref]), axis=1) > config.turn_rate
    idx = np.flatnonzero(turning)
    if len(idx) > config.max_pairs:  # an even subsample keeps the fit fast on long sessions
        idx = idx[np.linspace(0, len(idx) - 1, config.max_pairs).astype(int)]
    for i in range(s):
        if i == ref:
            continue
        a_vecs, b_vecs, w = [], [], []
        if g_ref is not None:
            g_i = np.nanmean(acc[neutral, i], axis=0)
            if np.all(np.isfinite(g_i)) and np.all(np.isfinite(g_ref)):
                a_vecs.append(g_ref / np.linalg.norm(g_ref))
                b_vecs.append(g_i / np.linalg.norm(g_i))
                w.append(max(len(idx), 1.0))  # gravity counts as much as all turn samples
        if len(idx):
            gr, gi = gyro[idx, ref], gyro[idx, i]
            ok = np.all(np.isfinite(gr), axis=1) & np.all(np.isfinite(gi), axis=1)
            a_vecs.extend(gr[ok] / np.linalg.norm(gr[ok], axis=1, keepdims=True))
            norm_i = np.maximum(np.linalg.norm(gi[ok], axis=1, keepdims=True), MIN_NORM)
            b_vecs.extend(gi[ok] / norm_i)
            w.extend([1.0] * int(ok.sum()))
        if len(a_vecs) >= 1:
            rot, _ = Rotation.align_vectors(np.array(a_vecs), np.array(b_vecs),
                                            weights=np.array(w))
            out[i] = rot.as_matrix()
    return out


def _segment(mask: np.ndarray, t: np.ndarray) -> list[float]:
    """[first, last] time of a mask (NaNs if empty), for the record."""
    if not mask.any():
        return [float("nan"), float("nan")]
    idx = np.flatnonzero(mask)
    return [float(t[idx[0]]), float(t[idx[-1]])]


@dataclass
class Calibration:
    """What calibration found for one session."""

    sites: list[str]
    reference: str
    gyro_bias: np.ndarray                 # (S, 3) rad/s, sensor frames
    relative_rotation: np.ndarray         # (S, 3, 3) sensor frame -> reference frame
    gravity_ref: np.ndarray               # (3,) reference sensor, neutral segment, m/s^2
    still_segment: list[float] = field(default_factory=lambda: [np.nan, np.nan])
    neutral_segment: list[float] = field(default_factory=lambda: [np.nan, np.nan])
    still_fraction: float = 0.0
    neutral: NeutralRecord | None = None
    """The model's neutral-pose calibration (``/calibration/neutral``, capture/neutral.py);
    None for a session synced before it was stored."""

    def write(self, h5: h5py.File) -> None:
        """Write (replace) ``/calibration`` in an open, writable session file."""
        if GROUP in h5:
            del h5[GROUP]
        g = h5.create_group(GROUP)
        g.attrs["sites"] = json.dumps(self.sites)
        g.attrs["reference"] = self.reference
        g.attrs["still_segment"] = json.dumps(self.still_segment)
        g.attrs["neutral_segment"] = json.dumps(self.neutral_segment)
        g.attrs["still_fraction"] = float(self.still_fraction)
        g.create_dataset("gyro_bias", data=np.asarray(self.gyro_bias, np.float64))
        g.create_dataset("relative_rotation", data=np.asarray(self.relative_rotation, np.float64))
        g.create_dataset("gravity_ref", data=np.asarray(self.gravity_ref, np.float64))
        if self.neutral is not None:
            write_neutral(g, self.neutral)

    @classmethod
    def read(cls, h5: h5py.File) -> "Calibration":
        """Read ``/calibration`` (KeyError if the session has none; ``NeutralError``, one line,
        if its ``neutral`` subgroup is malformed)."""
        g = h5[GROUP]
        return cls(
            sites=json.loads(g.attrs["sites"]), reference=str(g.attrs["reference"]),
            gyro_bias=g["gyro_bias"][()], relative_rotation=g["relative_rotation"][()],
            gravity_ref=g["gravity_ref"][()],
            still_segment=json.loads(g.attrs["still_segment"]),
            neutral_segment=json.loads(g.attrs["neutral_segment"]),
            still_fraction=float(g.attrs["still_fraction"]),
            neutral=read_neutral(g, h5.filename),
        )


def calibrate(t: np.ndarray, acc: np.ndarray, gyro: np.ndarray, rate_hz: float,
              sites: list[str], reference: str,
              neutral: np.ndarray | None = None,
              config: CalibrationConfig = DEFAULT) -> Calibration:
    """Calibrate from IMU arrays on their own timeline ``t`` (N,).

    ``neutral`` marks neutral-face samples (e.g. from the blendshapes); by default the still
    samples are taken as neutral."""
    ref = sites.index(reference)
    still = still_mask(acc, gyro, rate_hz, config)
    bias = gyro_bias(gyro, still)
    neutral_m = still if neutral is None else (neutral & still if (neutral & still).any()
                                               else still)
    rel = relative_rotations(acc, gyro - bias, neutral_m, ref, config)
    g_ref = (np.nanmean(acc[neutral_m, ref], axis=0) if neutral_m.any()
             else np.full(3, np.nan))
    return Calibration(sites=list(sites), reference=reference, gyro_bias=bias,
                       relative_rotation=rel, gravity_ref=g_ref,
                       still_segment=_segment(still, t), neutral_segment=_segment(neutral_m, t),
                       still_fraction=float(still.mean()) if len(still) else 0.0)
