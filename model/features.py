"""IMU features relative to the rigid reference sensor, so that head motion cancels.

For every face sensor ``i`` and the reference sensor ``r`` (a rigid spot such as the nasal
bridge), with ``R_i`` the orientation of sensor ``i`` (earth-from-sensor): either estimated by
the imufusion AHRS from its own gyroscope, accelerometer and magnetometer
(``FeatureSpec.orientation = "ahrs"``), or as the device reported it (``"reported"``: the
``site.quat`` channels of a wearable with on-device fusion, such as the IMUSIC authors'
device). Both feed the same code below. Where a site has no gyroscope, its angular rate is
the one its orientations imply (the rotation from the previous frame to this one, causal, so
offline and live agree):

* relative orientation ``R_r^T R_i`` as its first two columns (the continuous "6D" form);
* relative angular velocity ``R_r^T R_i w_i - w_r`` in the reference frame (rad/s);
* acceleration in the reference frame ``R_r^T R_i a_i - a_r`` (m/s^2; gravity and the head's
  own linear acceleration cancel, skin motion and lever-arm terms remain).

A rigid rotation of the whole head multiplies every ``R`` on the left by the same matrix, so
``R_r^T R_i`` does not change: only skin motion moves the features. The neutral pose is taken
out by the neutral-pose calibration (``FeatureSpec.calibration``, model/calibration.py: the
rotation since the first still window's pose), or, in checkpoints without it, by the detrend
(``detrend_s``: each channel minus its slow causal average). The same
:class:`FeatureExtractor` runs on recorded sessions (real or twin) and in the live runtime,
one 60 Hz frame at a time, so training and inference see identical numbers;
:func:`calibrate_recording` runs it until it is calibrated (what ``imusic sync`` stores in the
session, capture/neutral.py), and :func:`spec_of` is the spec of a session's rig.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from imusic.capture.orientation import quat_multiply, quat_conjugate, quat_to_matrix
from imusic.model.calibration import (CalibrationConfig, CalibrationState, StillDetector,
                               relative)

G = 9.80665  # m/s^2 per g: imufusion wants g and deg/s
PER_SENSOR = 12  # 6 (orientation) + 3 (angular velocity) + 3 (acceleration)
ORIENTATIONS = ("ahrs", "reported")
"""Where the orientation comes from: the AHRS on raw signals, or the device's quaternions."""


@dataclass(frozen=True)
class FeatureSpec:
    """What the features are made of; stored in every checkpoint's config."""

    sites: tuple[str, ...]
    reference: str
    rate_hz: float = 60.0
    ahrs_gain: float = 0.5
    use_magnetometer: bool = True
    detrend_s: float = 4.0        # time constant of the slow trend removed (0: none)
    orientation: str = "ahrs"     # "ahrs" (estimated from acc/gyro/mag) or "reported" (quat)
    calibration: CalibrationConfig | None = None  # neutral-pose calibration (None: detrend)

    @property
    def face_sites(self) -> tuple[str, ...]:
        """The sensors that produce features (every site but the reference)."""
        return tuple(s for s in self.sites if s != self.reference)

    @property
    def n_features(self) -> int:
        """Feature channels per frame: per face sensor the 12 channels (relative to the
        neutral pose when calibrated), plus the 6 raw orientation channels when detrending."""
        per = PER_SENSOR + (6 if self.detrend_s > 0 and self.calibration is None else 0)
        return per * len(self.face_sites)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["sites"] = list(self.sites)
        if self.calibration is None:
            del d["calibration"]      # older readers know no such field
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["sites"] = tuple(d["sites"])
        if isinstance(d.get("calibration"), dict):
            d["calibration"] = CalibrationConfig(**d["calibration"])
        return cls(**d)

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got "
                             f"{self.orientation!r}")
        if self.reference not in self.sites:
            raise ValueError(f"reference site {self.reference!r} is not among {list(self.sites)}")


def relative_features(rot: np.ndarray, gyro: np.ndarray, acc: np.ndarray,
                      ref: int, face: np.ndarray, neutral: np.ndarray | None = None,
                      acc_offset: np.ndarray | None = None) -> np.ndarray:
    """Features of one or more frames from orientations and raw signals (pure function).

    ``rot`` (..., S, 3, 3) earth-from-sensor; ``gyro`` (..., S, 3) rad/s; ``acc`` (..., S, 3)
    m/s^2; ``ref`` the reference sensor's index; ``face`` the face sensors' indices.
    ``neutral`` (F, 3, 3), the relative orientations at the neutral pose: the orientation
    channels are then the rotation since neutral, ``R_r^T R_i N_i^T`` (expressed in the
    reference frame, so a constant mounting of sensor ``i`` cancels); ``acc_offset`` (F, 3)
    is subtracted from the acceleration channels. Returns (..., 12 * len(face)).
    """
    r_ref = rot[..., ref, :, :]                                   # (..., 3, 3)
    rel = np.einsum("...ji,...fjk->...fik", r_ref, rot[..., face, :, :])  # R_r^T R_i
    w = np.einsum("...fij,...fj->...fi", rel, gyro[..., face, :]) - gyro[..., ref, None, :]
    a = np.einsum("...fij,...fj->...fi", rel, acc[..., face, :]) - acc[..., ref, None, :]
    if acc_offset is not None:
        a = a - acc_offset
    if neutral is not None:
        rel = np.einsum("...fij,fkj->...fik", rel, neutral)      # R_r^T R_i N_i^T
    six = rel[..., :, :, :2].swapaxes(-1, -2).reshape(rel.shape[:-2] + (6,))
    out = np.concatenate([six, w, a], axis=-1)                    # (..., F, 12)
    return out.reshape(out.shape[:-2] + (-1,)).astype(np.float32)


class FeatureExtractor:
    """Incremental features, one frame at a time (the AHRS keeps its state between calls).

    Use it identically offline (:func:`compute_features`) and online (the runtime). With
    ``spec.calibration`` the first still window is the neutral pose (:mod:`model.calibration`):
    until it is found every frame returns zeros and :attr:`ok` is False (such frames are not
    valid for training or scoring); :meth:`recalibrate` starts over.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        import imufusion  # imported here so that the pure functions above stay light

        self.spec = spec
        self._imufusion = imufusion
        self._ref = spec.sites.index(spec.reference)
        self._face = np.array([spec.sites.index(s) for s in spec.face_sites], dtype=np.intp)
        self._ahrs: list[Any] = []
        self._new_filters()
        self._last_rot = np.tile(np.eye(3), (len(spec.sites), 1, 1))
        self._prev_q: np.ndarray | None = None     # last valid frame's orientation (S, 4)
        # the slow trend (a causal exponential average) of the 12 channels per sensor: mounting
        # offsets, AHRS heading drift and the gravity they leak into the accelerations move
        # slowly, skin motion moves fast; removing the trend removes most of the former
        self._trend: np.ndarray | None = None
        self._alpha = (1.0 - np.exp(-1.0 / (spec.detrend_s * spec.rate_hz))
                       if spec.detrend_s > 0 else 0.0)
        cal = spec.calibration
        self._detector = StillDetector(cal, spec.rate_hz) if cal is not None else None
        self.calibration = CalibrationState(
            done=cal is None, frames_needed=self._detector.n_window if self._detector else 1)
        """Where the neutral-pose calibration stands (done at once without calibration)."""
        self.ok = False
        """True when the last frame's features are valid (calibrated, not a gap)."""
        self.frames = 0
        """Frames seen (valid or not)."""

    def _new_filters(self) -> None:
        imufusion, spec = self._imufusion, self.spec
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

    @property
    def n_features(self) -> int:
        """Feature channels per frame."""
        return self.spec.n_features

    def recalibrate(self) -> None:
        """Forget the neutral pose and look for a new still window (fresh filters)."""
        if self._detector is None:
            return
        self._detector.reset()
        self._new_filters()
        self._prev_q = None
        self.calibration = CalibrationState(frames_needed=self._detector.n_window)

    def update(self, acc: np.ndarray, gyro: np.ndarray | None, mag: np.ndarray | None,
               valid: bool = True, quat: np.ndarray | None = None) -> np.ndarray:
        """Advance by one frame and return that frame's features (F,).

        ``acc``/``gyro``/``mag`` are (S, 3) in SI units in each sensor's frame (gyro and mag
        may be NaN or None where the device has none); ``quat`` (S, 4) the device's reported
        orientation (w, x, y, z, sensor-to-earth), which ``orientation = "reported"`` uses
        instead of the AHRS. An invalid frame (a gap) leaves the state where it was and
        returns zeros; the dataset masks such frames (and the implied rate restarts after it).
        """
        reported = self.spec.orientation == "reported"
        n_s = len(self.spec.sites)
        self.frames += 1
        self.ok = False
        gyro = np.full((n_s, 3), np.nan) if gyro is None else np.asarray(gyro, np.float64)
        ok = valid and bool(np.all(np.isfinite(acc)))
        if reported:
            ok = ok and quat is not None and bool(np.all(np.isfinite(quat)))
        else:
            ok = ok and bool(np.all(np.isfinite(gyro)))
        if not ok:
            self._prev_q = None
            if self._detector is not None and not self.calibration.done:
                self._detector.reset()          # a gap breaks the still window
            return np.zeros(self.spec.n_features, np.float32)
        acc = np.asarray(acc, np.float64)
        mag = None if mag is None else np.asarray(mag, np.float64)
        if not self.calibration.done:
            self._collect(acc, gyro, mag, quat)
            return np.zeros(self.spec.n_features, np.float32)
        cal = self.calibration
        if cal.gyro_bias is not None:
            gyro = gyro - cal.gyro_bias
        q = self._orientation(acc, gyro, mag, quat)
        no_gyro = ~np.all(np.isfinite(gyro), axis=1)
        if no_gyro.any():
            gyro = gyro.copy()
            gyro[no_gyro] = self._implied_rate(q)[no_gyro]
        self._prev_q = q
        self._last_rot = quat_to_matrix(q)
        f = relative_features(self._last_rot, gyro, acc, self._ref, self._face,
                              cal.neutral, cal.acc_offset)
        self.ok = True
        if self.spec.detrend_s <= 0 or self.spec.calibration is not None:
            return f
        f64 = f.astype(np.float64)
        if self._trend is None:
            self._trend = f64.copy()
        else:
            self._trend += self._alpha * (f64 - self._trend)
        per = f64.reshape(-1, PER_SENSOR)
        detr = (f64 - self._trend).reshape(-1, PER_SENSOR)
        return np.concatenate([detr, per[:, :6]], axis=1).reshape(-1).astype(np.float32)

    def _orientation(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None,
                     quat: np.ndarray | None) -> np.ndarray:
        """(S, 4) this frame's orientations: the device's, or one AHRS step per site."""
        if self.spec.orientation == "reported":
            q = np.asarray(quat, np.float64)
            return q / np.linalg.norm(q, axis=-1, keepdims=True)
        acc_g, gyro_d = acc / G, np.degrees(gyro)
        use_mag = self.spec.use_magnetometer and mag is not None
        for s, ahrs in enumerate(self._ahrs):
            if use_mag and np.all(np.isfinite(mag[s])) and np.any(mag[s] != 0):
                ahrs.update(gyro_d[s], acc_g[s], mag[s])
            else:
                ahrs.update_no_magnetometer(gyro_d[s], acc_g[s])
        return np.array([a.get_quaternion() for a in self._ahrs])  # (S, 4) w, x, y, z

    def _collect(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None,
                 quat: np.ndarray | None) -> None:
        """One frame towards the still window; calibrates when it is complete."""
        det = self._detector
        assert det is not None
        if self.spec.orientation == "reported":
            q = np.asarray(quat, np.float64)
            q = q / np.linalg.norm(q, axis=-1, keepdims=True)
            rate = self._implied_rate(q)
            self._prev_q = q
        else:
            rate = gyro
        still = det.push((acc, gyro, mag, quat, self.frames - 1), rate)
        self.calibration.frames_still = det.n_still
        if still:
            self._calibrate(list(det.frames), True)
        elif det.timed_out():
            self._calibrate(det.stillest(), False)

    def _calibrate(self, frames: list[tuple[Any, ...]], still: bool) -> None:
        """The neutral pose from a still window of ``(acc, gyro, mag, quat, frame index)``:
        gyro bias, settled AHRS, relative orientation and acceleration offset
        (:mod:`model.calibration`)."""
        cfg = self.spec.calibration
        assert cfg is not None
        gy = np.stack([f[1] for f in frames])
        bias = np.where(np.isfinite(gy), gy, 0.0).mean(axis=0)
        if not cfg.remove_bias:
            bias = np.zeros_like(bias)
        self._new_filters()
        self._prev_q = None
        passes = 1 if self.spec.orientation == "reported" else max(1, cfg.passes)
        rels, accs = [], []
        for p in range(passes):
            for acc, g, mag, quat, _ in frames:
                q = self._orientation(acc, g - bias, mag, quat)
                if p == passes - 1:
                    rot = quat_to_matrix(q)
                    rels.append(relative(rot, self._ref, self._face))
                    a = np.einsum("fij,fj->fi", rels[-1], acc[self._face]) - acc[self._ref]
                    accs.append(a)
        self._prev_q = q
        self._last_rot = rot
        rel = np.mean(rels, axis=0)
        u, _, vt = np.linalg.svd(rel)                   # the mean rotation (nearest rotation)
        neutral = u @ vt
        self.calibration = CalibrationState(
            done=True, frames_still=len(frames), frames_needed=len(frames),
            at_frame=self.frames, still=still, gyro_bias=bias, neutral=neutral,
            acc_offset=np.mean(accs, axis=0), window=(int(frames[0][4]), int(frames[-1][4])))

    def _implied_rate(self, q: np.ndarray) -> np.ndarray:
        """(S, 3) sensor-frame angular rate from the previous frame's orientation to ``q``
        (zero on the first frame and after a gap)."""
        if self._prev_q is None:
            return np.zeros((len(q), 3))
        d = quat_multiply(quat_conjugate(self._prev_q), q)
        d = np.where(d[:, :1] < 0, -d, d)
        s = np.linalg.norm(d[:, 1:], axis=1, keepdims=True)
        ang = 2.0 * np.arctan2(s[:, 0], d[:, 0])[:, None]
        axis = np.divide(d[:, 1:], s, out=np.zeros_like(d[:, 1:]), where=s > 1e-12)
        return axis * ang * self.spec.rate_hz

    @property
    def orientations(self) -> np.ndarray:
        """The latest earth-from-sensor rotation matrices (S, 3, 3)."""
        return self._last_rot.copy()


def orientation_of(aligned: Any) -> str:
    """``"reported"`` when a session (an ``Aligned``) carries the device's orientation and no
    gyroscope to run the AHRS on (an orientation device), else ``"ahrs"``."""
    return "reported" if aligned.has_quat and not aligned.has_gyro else "ahrs"


def spec_of(aligned: Any, **kw: Any) -> FeatureSpec:
    """The feature spec that matches a session's rig (and its orientation source, unless
    ``orientation`` is given); ``kw``: other :class:`FeatureSpec` fields."""
    kw.setdefault("orientation", orientation_of(aligned))
    return FeatureSpec(sites=tuple(aligned.sites), reference=aligned.reference,
                       rate_hz=float(aligned.rate_hz), **kw)


def _recording_inputs(spec: FeatureSpec, acc: np.ndarray, gyro: np.ndarray | None,
                      mag: np.ndarray | None, valid: np.ndarray | None,
                      sites: Sequence[str] | None, quat: np.ndarray | None,
                      source: str) -> tuple[Any, ...]:
    """(acc, gyro, mag, valid, quat) in ``spec.sites`` order, checked against the spec
    (``compute_features`` says what is raised)."""
    if sites is not None and tuple(sites) != spec.sites:
        missing = [s for s in spec.sites if s not in sites]
        if missing:
            raise ValueError(f"{source} lacks sites {missing} that the model needs "
                             f"(it has {list(sites)}): use a checkpoint trained for this rig")
        idx = [list(sites).index(s) for s in spec.sites]
        acc = acc[:, idx]
        gyro = None if gyro is None else gyro[:, idx]
        mag = None if mag is None else mag[:, idx]
        quat = None if quat is None else quat[:, idx]
    valid = np.ones(len(acc), bool) if valid is None else np.asarray(valid, bool)
    if spec.orientation == "reported" and (quat is None or not
                                           np.isfinite(quat[valid]).all()):
        raise ValueError(f"{source} has no reported orientation (site.quat) for every site, "
                         "and the model's features need it (orientation 'reported'): use a "
                         "checkpoint trained with orientation 'ahrs'")
    if spec.orientation == "ahrs" and (gyro is None or not np.isfinite(gyro[valid]).all()):
        raise ValueError(f"{source} has no gyroscope for every site (an orientation-only "
                         "device?), and the model's features run the AHRS on acc/gyro/mag "
                         "(orientation 'ahrs'): train with --orientation reported")
    return acc, gyro, mag, valid, quat


def compute_features(spec: FeatureSpec, acc: np.ndarray, gyro: np.ndarray | None,
                     mag: np.ndarray | None, valid: np.ndarray | None = None,
                     sites: Sequence[str] | None = None,
                     quat: np.ndarray | None = None, source: str = "the recording",
                     with_valid: bool = False) -> Any:
    """Features (N, F) of a whole recording at ``spec.rate_hz``.

    ``with_valid`` returns (features, valid (N,), :class:`CalibrationState`): a frame is valid
    when it is not a gap and the neutral pose had been found before it.

    ``sites`` names the columns of the arrays when they are not already in ``spec.sites`` order
    (a session's rig may list more sites; they are picked by name, never by position).
    ``quat`` (N, S, 4) is the reported orientation (needed when ``spec.orientation`` is
    ``"reported"``). Raises ``ValueError`` saying what the recording lacks for this spec.
    """
    return _run(spec, acc, gyro, mag, valid, sites, quat, source, with_valid,
                until_calibrated=False)


def calibrate_recording(spec: FeatureSpec, acc: np.ndarray, gyro: np.ndarray | None,
                        mag: np.ndarray | None, valid: np.ndarray | None = None,
                        sites: Sequence[str] | None = None, quat: np.ndarray | None = None,
                        source: str = "the recording") -> CalibrationState:
    """The neutral-pose calibration :func:`compute_features` finds on the same recording
    (the same extractor, fed the same frames, stopped once it is calibrated): what
    ``imusic sync`` stores in the session (capture/neutral.py). ``spec.calibration`` must be set;
    arguments and errors as :func:`compute_features`'."""
    if spec.calibration is None:
        raise ValueError("calibrate_recording needs a spec with a CalibrationConfig")
    return _run(spec, acc, gyro, mag, valid, sites, quat, source, False, until_calibrated=True)


def _run(spec: FeatureSpec, acc: np.ndarray, gyro: np.ndarray | None, mag: np.ndarray | None,
         valid: np.ndarray | None, sites: Sequence[str] | None, quat: np.ndarray | None,
         source: str, with_valid: bool, until_calibrated: bool) -> Any:
    """The extractor over a recording's frames (all, or until it is calibrated)."""
    acc, gyro, mag, valid, quat = _recording_inputs(spec, acc, gyro, mag, valid, sites, quat,
                                                    source)
    n = len(acc)
    ex = FeatureExtractor(spec)
    out = np.zeros((0 if until_calibrated else n, spec.n_features), np.float32)
    ok = np.zeros(n, bool)
    for k in range(n):
        f = ex.update(acc[k], None if gyro is None else gyro[k],
                      None if mag is None else mag[k], bool(valid[k]),
                      None if quat is None else quat[k])
        if until_calibrated:
            if ex.calibration.done:
                break
            continue
        out[k] = f
        ok[k] = ex.ok
    if until_calibrated:
        return ex.calibration
    if with_valid:
        return out, ok, ex.calibration
    return out
