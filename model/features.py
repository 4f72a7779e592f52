"""IMU features relative to the rigid reference sensor, so that head motion cancels.

For every face sensor ``i`` and the reference sensor ``r`` (a rigid spot such as the nasal
bridge), with ``R_i`` the orientation of sensor ``i`` (earth-from-sensor, estimated by the
imufusion AHRS from its own gyroscope, accelerometer and magnetometer):

* relative orientation ``R_r^T R_i`` as its first two columns (the continuous "6D" form);
* relative angular velocity ``R_r^T R_i w_i - w_r`` in the reference frame (rad/s);
* acceleration in the reference frame ``R_r^T R_i a_i - a_r`` (m/s^2; gravity and the head's
  own linear acceleration cancel, skin motion and lever-arm terms remain).

A rigid rotation of the whole head multiplies every ``R`` on the left by the same matrix, so
``R_r^T R_i`` does not change: only skin motion moves the features. The same
:class:`FeatureExtractor` runs on recorded sessions (real or twin) and in the live runtime,
one 60 Hz frame at a time, so training and inference see identical numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

G = 9.80665  # m/s^2 per g: imufusion wants g and deg/s
PER_SENSOR = 12  # 6 (orientation) + 3 (angular velocity) + 3 (acceleration)


@dataclass(frozen=True)
class FeatureSpec:
    """What the features are made of; stored in every checkpoint's config."""

    sites: tuple[str, ...]
    reference: str
    rate_hz: float = 60.0
    ahrs_gain: float = 0.5
    use_magnetometer: bool = True
    detrend_s: float = 4.0        # time constant of the slow trend removed (0: none)

    @property
    def face_sites(self) -> tuple[str, ...]:
        """The sensors that produce features (every site but the reference)."""
        return tuple(s for s in self.sites if s != self.reference)

    @property
    def n_features(self) -> int:
        """Feature channels per frame: per face sensor the 12 detrended channels, plus the
        6 raw orientation channels when detrending is on."""
        per = PER_SENSOR + (6 if self.detrend_s > 0 else 0)
        return per * len(self.face_sites)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["sites"] = list(self.sites)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["sites"] = tuple(d["sites"])
        return cls(**d)

    def __post_init__(self) -> None:
        if self.reference not in self.sites:
            raise ValueError(f"reference site {self.reference!r} is not among {list(self.sites)}")


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from unit quaternions (..., 4) in w, x, y, z order."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def relative_features(rot: np.ndarray, gyro: np.ndarray, acc: np.ndarray,
                      ref: int, face: np.ndarray) -> np.ndarray:
    """Features of one or more frames from orientations and raw signals (pure function).

    ``rot`` (..., S, 3, 3) earth-from-sensor; ``gyro`` (..., S, 3) rad/s; ``acc`` (..., S, 3)
    m/s^2; ``ref`` the reference sensor's index; ``face`` the face sensors' indices.
    Returns (..., 12 * len(face)).
    """
    r_ref = rot[..., ref, :, :]                                   # (..., 3, 3)
    rel = np.einsum("...ji,...fjk->...fik", r_ref, rot[..., face, :, :])  # R_r^T R_i
    w = np.einsum("...fij,...fj->...fi", rel, gyro[..., face, :]) - gyro[..., ref, None, :]
    a = np.einsum("...fij,...fj->...fi", rel, acc[..., face, :]) - acc[..., ref, None, :]
    six = rel[..., :, :, :2].swapaxes(-1, -2).reshape(rel.shape[:-2] + (6,))
    out = np.concatenate([six, w, a], axis=-1)                    # (..., F, 12)
    return out.reshape(out.shape[:-2] + (-1,)).astype(np.float32)


class FeatureExtractor:
    """Incremental features, one frame at a time (the AHRS keeps its state between calls).

    Use it identically offline (:func:`compute_features`) and online (the runtime).
    """

    def __init__(self, spec: FeatureSpec) -> None:
        import imufusion  # imported here so that the pure functions above stay light

        self.spec = spec
        self._imufusion = imufusion
        self._ref = spec.sites.index(spec.reference)
        self._face = np.array([spec.sites.index(s) for s in spec.face_sites], dtype=np.intp)
        self._ahrs = []
        for _ in spec.sites:
            ahrs = imufusion.Ahrs()
            # NWU convention; gyroscope range large enough never to trigger overrange recovery
            # on a face; rejection kept at the library defaults so that skin accelerations
            # (small, brief) don't stop the gravity correction.
            ahrs.set_settings(imufusion.AhrsSettings(
                sample_rate=float(spec.rate_hz), convention=imufusion.CONVENTION_NWU,
                gain=float(spec.ahrs_gain), gyroscope_range=2000.0,
                acceleration_rejection=10.0, magnetic_rejection=10.0,
                rejection_timeout=int(5 * spec.rate_hz)))
            ahrs.set_sample_period(1.0 / spec.rate_hz)
            self._ahrs.append(ahrs)
        self._last_rot = np.tile(np.eye(3), (len(spec.sites), 1, 1))
        # the slow trend (a causal exponential average) of the 12 channels per sensor: mounting
        # offsets, AHRS heading drift and the gravity they leak into the accelerations move
        # slowly, skin motion moves fast; removing the trend removes most of the former
        self._trend: np.ndarray | None = None
        self._alpha = (1.0 - np.exp(-1.0 / (spec.detrend_s * spec.rate_hz))
                       if spec.detrend_s > 0 else 0.0)

    @property
    def n_features(self) -> int:
        """Feature channels per frame."""
        return self.spec.n_features

    def update(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None,
               valid: bool = True) -> np.ndarray:
        """Advance every sensor's AHRS by one frame and return that frame's features (F,).

        ``acc``/``gyro``/``mag`` are (S, 3) in SI units in each sensor's frame (mag may be
        NaN or None where there is no magnetometer). An invalid frame (a gap) leaves the filters
        where they were and returns zeros; the dataset masks such frames.
        """
        if not valid or not (np.all(np.isfinite(acc)) and np.all(np.isfinite(gyro))):
            return np.zeros(self.spec.n_features, np.float32)
        acc_g = np.asarray(acc, np.float64) / G
        gyro_d = np.degrees(np.asarray(gyro, np.float64))
        use_mag = self.spec.use_magnetometer and mag is not None
        for s, ahrs in enumerate(self._ahrs):
            if use_mag and np.all(np.isfinite(mag[s])) and np.any(mag[s] != 0):
                ahrs.update(gyro_d[s], acc_g[s], np.asarray(mag[s], np.float64))
            else:
                ahrs.update_no_magnetometer(gyro_d[s], acc_g[s])
        quats = np.array([a.get_quaternion() for a in self._ahrs])  # (S, 4) w, x, y, z
        self._last_rot = quat_to_matrix(quats)
        f = relative_features(self._last_rot, np.asarray(gyro, np.float64),
                              np.asarray(acc, np.float64), self._ref, self._face)
        if self.spec.detrend_s <= 0:
            return f
        f64 = f.astype(np.float64)
        if self._trend is None:
            self._trend = f64.copy()
        else:
            self._trend += self._alpha * (f64 - self._trend)
        per = f64.reshape(-1, PER_SENSOR)
        detr = (f64 - self._trend).reshape(-1, PER_SENSOR)
        return np.concatenate([detr, per[:, :6]], axis=1).reshape(-1).astype(np.float32)

    @property
    def orientations(self) -> np.ndarray:
        """The latest earth-from-sensor rotation matrices (S, 3, 3)."""
        return self._last_rot.copy()


def compute_features(spec: FeatureSpec, acc: np.ndarray, gyro: np.ndarray,
                     mag: np.ndarray | None, valid: np.ndarray | None = None,
                     sites: Sequence[str] | None = None) -> np.ndarray:
    """Features (N, F) of a whole recording at ``spec.rate_hz``.

    ``sites`` names the columns of the arrays when they are not already in ``spec.sites`` order
    (a session's rig may list more sites; they are picked by name, never by position).
    """
    if sites is not None and tuple(sites) != spec.sites:
        missing = [s for s in spec.sites if s not in sites]
        if missing:
            raise ValueError(f"the recording lacks sites {missing} that the model needs "
                             f"(it has {list(sites)}): use a checkpoint trained for this rig")
        idx = [list(sites).index(s) for s in spec.sites]
        acc, gyro = acc[:, idx], gyro[:, idx]
        mag = None if mag is None else mag[:, idx]
    n = len(acc)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    ex = FeatureExtractor(spec)
    out = np.zeros((n, spec.n_features), np.float32)
    for k in range(n):
        out[k] = ex.update(acc[k], gyro[k], None if mag is None else mag[k], bool(valid[k]))
    return out
