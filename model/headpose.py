"""Head yaw/pitch/roll from the reference sensor, relative to the performer's own neutral pose.

The reference IMU (a rigid spot such as the nasal bridge) turns with the head. Its orientation
comes from one of two places, both reused, never re-implemented here:

* the imufusion AHRS of :class:`model.features.FeatureExtractor` run on the reference site alone
  (acc, gyro minus the bias measured at calibration, and the magnetometer where the rig has one);
* the device's reported quaternion (``site.quat.*``, sensor-to-earth as capture/orientation.py
  defines it) for a wearable with on-device fusion.

Calibration: the first still window (``HeadPoseConfig.calibration_s`` in which the reference's
angular rate barely varies) is the neutral pose. Its mean gyro is the bias; its samples are run
through the AHRS so that it converges there; the orientation at its end is "straight ahead".
The head's axes in the sensor frame are then: up = the measured gravity direction, forward =
the sensor's skin normal (``forward_axis``, +z on a board mounted as the rigs' mounting says)
made horizontal, left = up x forward. So pitch and roll are zero at calibration and yaw is zero
in the direction the performer faced, whatever the mounting.

Every frame after, ``R_rel = H0^T R(t) S`` (``S`` sensor-from-head, ``H0`` the head at
calibration) is written as intrinsic yaw about +y, pitch about +x, roll about +z (radians; +x the
performer's left, +y up, +z forward), the convention of the Blendshapes stream's ``headYaw,
headPitch, headRoll`` that the twin's ground truth and the glTF export use
(firmware_bridge/emulator_twin.py ``pose_from_rotvec``, capture/gltf.py ``head_quaternions``).

Drift: pitch and roll are held by gravity. Yaw is held by the magnetometer where there is one;
without one, a residual gyro bias turns the AHRS heading about the vertical, which is a change
of yaw alone (the calibrated frame's y is the vertical), so the yaw is pulled back towards the
calibrated forward with time constant ``return_tau_s`` (a first-order high-pass on yaw): a
performer who faces forward on average keeps a bounded yaw error, and a turn held for a few
seconds loses only a few percent of its angle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from imusic.capture.orientation import quat_to_matrix
from imusic.model.calibration import CalibrationConfig, StillDetector, implied_rates
from imusic.model.features import FeatureExtractor, FeatureSpec

EARTH_UP = np.array([0.0, 0.0, 1.0])
"""Up in the AHRS's earth frame (imufusion NWU; the device quaternions use the same)."""


@dataclass(frozen=True)
class HeadPoseConfig:
    """How the head pose is estimated (defaults used by ``imusic live`` and the benchmark)."""

    rate_hz: float = 60.0                    # frames per second fed to ``update``
    calibration_s: float = 3.0               # length of the still neutral-pose window (s)
    still_gyro_std: float = 0.03             # rad/s: a window is still when every gyro axis varies less
    use_magnetometer: bool = True            # use the reference's magnetometer where it has one
    return_tau_s: float = 60.0               # without a magnetometer: yaw's return to forward (s)
    ahrs_gain: float = 0.5                   # imufusion AHRS gain (as FeatureSpec's)
    forward_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)  # head forward in the sensor frame, before levelling

    @property
    def calibration(self) -> CalibrationConfig:
        """The still-window rule (model.calibration, shared with the features)."""
        return CalibrationConfig(window_s=self.calibration_s, still_gyro_std=self.still_gyro_std,
                                 passes=1)


def forward_from_mounting(mounting: np.ndarray) -> tuple[float, float, float]:
    """The skin normal (the head's forward, before levelling) in the sensor frame of a site whose
    rig ``mounting`` is sensor -> skin (hardware/rig.py)."""
    m = np.asarray(mounting, np.float64)
    return tuple(float(v) for v in m.T @ np.array([0.0, 0.0, 1.0]))  # type: ignore[return-value]


def angles_from_matrix(rel: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) rad of head-frame rotations (..., 3, 3), intrinsic Y then X then Z."""
    from scipy.spatial.transform import Rotation

    flat = np.asarray(rel, np.float64).reshape(-1, 3, 3)
    out = Rotation.from_matrix(flat).as_euler("YXZ")
    return out.reshape(np.shape(rel)[:-2] + (3,))


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


class HeadPose:
    """The reference sensor's head pose, one frame at a time (see the module docstring).

    ``update(acc, gyro, mag)`` for raw signals or ``update_quat(quat)`` for a device's reported
    orientation; each returns (yaw, pitch, roll) radians, zeros until calibrated.
    """

    def __init__(self, config: HeadPoseConfig = HeadPoseConfig()) -> None:
        self.config = config
        self.calibrated = False
        """True once the neutral pose has been found."""
        self.bias = np.zeros(3)
        """The reference gyro's bias measured at calibration (rad/s)."""
        self.magnetometer = False
        """True when the calibrated orientation used a magnetometer (no yaw return then)."""
        self.calibrated_at = -1
        """The frame index at which calibration ended (-1: not yet)."""
        self._still_window = StillDetector(config.calibration, config.rate_hz)
        self._window = self._still_window.frames
        self._prev_rot: np.ndarray | None = None
        self._frames = 0
        self._extractor: FeatureExtractor | None = None
        self._sensor_from_head = np.eye(3)
        self._head0_t = np.eye(3)             # H0^T: earth -> calibrated head frame
        self._yaw_offset = 0.0
        self._alpha = 1.0 - np.exp(-1.0 / (config.return_tau_s * config.rate_hz))
        self._last = np.zeros(3)

    # ------------------------------------------------------------------ feeding
    def update(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None = None
               ) -> np.ndarray:
        """Advance by one frame of the reference's raw signals ((3,) each, SI, sensor frame;
        ``mag`` None or NaN where there is none)."""
        acc, gyro = np.asarray(acc, np.float64), np.asarray(gyro, np.float64)
        m = None if mag is None else np.asarray(mag, np.float64)
        if m is not None and (not self.config.use_magnetometer or not np.all(np.isfinite(m))
                              or not np.any(m != 0)):
            m = None
        if not (np.all(np.isfinite(acc)) and np.all(np.isfinite(gyro))):
            return self._held()
        self._frames += 1
        if not self.calibrated:
            if self._still_window.push((acc, gyro, m, None), gyro[None]):
                self._calibrate_imu()
            return self._last
        return self._output(self._ahrs_step(acc, gyro, m))

    def update_quat(self, quat: np.ndarray, has_magnetometer: bool = False) -> np.ndarray:
        """Advance by one frame of the device's reported orientation ((4,) w, x, y, z,
        sensor-to-earth). ``has_magnetometer``: the device's fusion holds heading itself."""
        q = np.asarray(quat, np.float64)
        if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
            return self._held()
        rot = quat_to_matrix(q)
        self._frames += 1
        if not self.calibrated:
            prev = rot if self._prev_rot is None else self._prev_rot
            self._prev_rot = rot
            rate = implied_rates(np.stack([prev, rot])[:, None], self.config.rate_hz)[0]
            if self._still_window.push((np.zeros(3), None, None, rot), rate):
                self.magnetometer = bool(has_magnetometer)
                self._set_neutral(rot)
            return self._last
        return self._output(rot)

    # ------------------------------------------------------------------ calibration
    def _calibrate_imu(self) -> None:
        gyro = np.stack([w[1] for w in self._window])
        self.bias = gyro.mean(axis=0)
        self.magnetometer = all(w[2] is not None for w in self._window)
        spec = FeatureSpec(sites=("reference",), reference="reference",
                           rate_hz=self.config.rate_hz, ahrs_gain=self.config.ahrs_gain,
                           use_magnetometer=self.magnetometer, detrend_s=0.0)
        self._extractor = FeatureExtractor(spec)
        rot = np.eye(3)
        for acc, g, m, _ in self._window:          # the still window lets the AHRS converge
            rot = self._ahrs_step(acc, g, m)
        self._set_neutral(rot)

    def _ahrs_step(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None) -> np.ndarray:
        assert self._extractor is not None
        use = mag if self.magnetometer else None
        self._extractor.update(acc[None], (gyro - self.bias)[None],
                               None if use is None else use[None])
        return self._extractor.orientations[0]

    def _set_neutral(self, rot: np.ndarray) -> None:
        """Fix the head's axes in the sensor frame and "straight ahead" from the neutral
        orientation ``rot`` (earth-from-sensor)."""
        up = rot.T @ EARTH_UP                                   # up in the sensor frame
        fwd = np.asarray(self.config.forward_axis, np.float64)
        fwd = fwd - (fwd @ up) * up
        if np.linalg.norm(fwd) < 1e-6:                          # forward axis vertical: any
            fwd = np.array([1.0, 0.0, 0.0]) - up[0] * up
        fwd /= np.linalg.norm(fwd)
        left = np.cross(up, fwd)
        self._sensor_from_head = np.stack([left, up, fwd], axis=1)
        self._head0_t = (rot @ self._sensor_from_head).T
        self.calibrated = True
        self.calibrated_at = self._frames
        self._yaw_offset = 0.0
        self._still_window.reset()

    # ------------------------------------------------------------------ output
    def _output(self, rot: np.ndarray) -> np.ndarray:
        rel = self._head0_t @ rot @ self._sensor_from_head
        yaw, pitch, roll = angles_from_matrix(rel)
        if not self.magnetometer:
            # heading drift is a rotation about the calibrated vertical: only yaw moves
            self._yaw_offset = _wrap(self._yaw_offset
                                     + self._alpha * _wrap(yaw - self._yaw_offset))
            yaw = _wrap(yaw - self._yaw_offset)
        self._last = np.array([yaw, pitch, roll])
        return self._last

    def _held(self) -> np.ndarray:
        """A gap: the last pose is held (the AHRS state is left where it was)."""
        return self._last


class HeadTrack:
    """Head poses stamped with their tick times, for a consumer whose frames describe an
    earlier instant (the live model's look-ahead): ``add(t, pose)`` per tick, ``at(t)`` the
    newest pose stamped no later than ``t``."""

    def __init__(self, span: int = 256) -> None:
        self._times: deque[float] = deque(maxlen=span)
        self._poses: deque[np.ndarray] = deque(maxlen=span)

    def add(self, t: float, pose: np.ndarray) -> None:
        """Record the pose of the tick at ``t``."""
        self._times.append(float(t))
        self._poses.append(np.asarray(pose, np.float64))

    def at(self, t: float) -> np.ndarray:
        """The pose at ``t`` (zeros before the first)."""
        if not self._times:
            return np.zeros(3)
        times = np.fromiter(self._times, float, len(self._times))
        k = int(np.searchsorted(times, t + 1e-6, side="right")) - 1
        return self._poses[max(k, 0)].copy()


def head_pose_series(acc: np.ndarray, gyro: np.ndarray | None, mag: np.ndarray | None,
                     quat: np.ndarray | None = None,
                     config: HeadPoseConfig = HeadPoseConfig()) -> np.ndarray:
    """(N, 3) yaw/pitch/roll of a recording of the reference sensor at ``config.rate_hz``:
    ``acc``/``gyro``/``mag`` (N, 3) (mag may be None), or ``quat`` (N, 4) instead of the AHRS."""
    hp = HeadPose(config)
    n = len(acc)
    out = np.zeros((n, 3))
    for k in range(n):
        if quat is not None:
            out[k] = hp.update_quat(quat[k], has_magnetometer=mag is not None)
        else:
            out[k] = hp.update(acc[k], gyro[k], None if mag is None else mag[k])
    return out


def twin_error(seconds: float, seed: int = 0, use_magnetometer: bool = True,
               rig: str = "imusic11", neutral_s: float = 5.0,
               config: HeadPoseConfig | None = None) -> dict[str, float]:
    """Head-pose error on a twin take: procedural motion (``seed``) of ``seconds`` with a
    neutral start of ``neutral_s``, the rig simulated at 60 Hz with its full error model, the
    estimate against the twin's true head rotation (as the truth stream states it). Returns
    RMS and max degrees per angle and of the whole rotation (the geodesic angle), after
    calibration."""
    from scipy.spatial.transform import Rotation

    from imusic.hardware.motion import procedural, with_neutral_start
    from imusic.hardware.physics import simulate
    from imusic.hardware.rig import load_rig

    r = load_rig(rig)
    cfg = config or HeadPoseConfig(use_magnetometer=use_magnetometer,
                                   forward_axis=forward_from_mounting(
                                       r.site(r.reference).mounting))
    motion = with_neutral_start(procedural(seconds, cfg.rate_hz, seed=seed), neutral_s)
    sig = simulate(motion, r, rate_hz=cfg.rate_hz, seed=seed)
    ref = r.reference_index
    true_rot = Rotation.from_rotvec(np.stack(
        [np.interp(sig.t, motion.t, motion.head_rotvec[:, k]) for k in range(3)], axis=1))
    truth = true_rot.as_euler("YXZ")
    hp = HeadPose(cfg)
    est = np.stack([hp.update(sig.acc[k, ref], sig.gyro[k, ref], sig.mag[k, ref])
                    for k in range(len(sig.t))])
    ok = slice(max(hp.calibrated_at, 0), None)
    err = np.degrees(est[ok] - truth[ok])
    geo = np.degrees((Rotation.from_euler("YXZ", est[ok]) * true_rot[ok].inv()).magnitude())
    out = {"seconds": float(seconds), "seed": int(seed), "magnetometer": bool(hp.magnetometer),
           "calibrated_after_s": hp.calibrated_at / cfg.rate_hz,
           "truth_rms_deg": float(np.degrees(np.sqrt((truth[ok] ** 2).mean()))),
           "truth_max_deg": float(np.degrees(np.abs(truth[ok]).max()))}
    for k, name in enumerate(("yaw", "pitch", "roll")):
        out[f"{name}_rms_deg"] = float(np.sqrt((err[:, k] ** 2).mean()))
        out[f"{name}_max_deg"] = float(np.abs(err[:, k]).max())
    out["angle_rms_deg"] = float(np.sqrt((geo ** 2).mean()))
    out["angle_max_deg"] = float(geo.max())
    return out
