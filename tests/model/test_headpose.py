"""model.headpose: head yaw/pitch/roll from the reference sensor, on twin data and on exact
orientations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from imusic.model.headpose import HeadPose, HeadPoseConfig, twin_error


def test_twin_take_error_is_bounded_with_and_without_magnetometer():
    with_mag = twin_error(60.0, seed=0, use_magnetometer=True)
    without = twin_error(60.0, seed=0, use_magnetometer=False)
    assert with_mag["magnetometer"] and not without["magnetometer"]
    assert with_mag["calibrated_after_s"] <= 5.0       # inside the 5 s neutral start
    assert with_mag["truth_rms_deg"] > 3.0              # the take does move the head
    assert with_mag["angle_rms_deg"] < 1.5, with_mag
    assert without["angle_rms_deg"] < 3.0, without
    for r in (with_mag, without):
        assert r["pitch_rms_deg"] < 1.0 and r["roll_rms_deg"] < 1.0, r


def _sensor_quats(head_ypr: np.ndarray, mounting: Rotation, earth: Rotation) -> np.ndarray:
    """Sensor-to-earth quaternions (w first) of a sensor ``mounting`` on a head turning by
    ``head_ypr`` in a world that is ``earth`` rotated."""
    q = (earth * Rotation.from_euler("YXZ", head_ypr) * mounting).as_quat()
    return q[:, [3, 0, 1, 2]]


def test_reported_quaternions_give_the_head_angles_after_a_still_start():
    n, still = 600, 200
    t = np.arange(n) / 60.0
    ypr = np.zeros((n, 3))
    ypr[still:, 0] = 0.4 * np.sin(t[still:] - t[still])
    ypr[still:, 1] = -0.2 * np.sin(2 * (t[still:] - t[still]))
    ypr[still:, 2] = 0.1 * np.sin(3 * (t[still:] - t[still]))
    # the world's up is earth +z (the AHRS's NWU): head +y maps onto it
    earth = Rotation.from_euler("x", 90, degrees=True) * Rotation.from_euler("y", 30, degrees=True)
    mount = Rotation.from_euler("x", -20, degrees=True)   # board tilted on the nasal bridge
    q = _sensor_quats(ypr, mount, earth)
    cfg = HeadPoseConfig(forward_axis=tuple(mount.inv().apply([0.0, 0.0, 1.0])))
    hp = HeadPose(cfg)
    out = np.stack([hp.update_quat(q[k], has_magnetometer=True) for k in range(n)])
    assert hp.calibrated and hp.calibrated_at == int(cfg.calibration_s * cfg.rate_hz)
    assert np.all(out[:hp.calibrated_at - 1] == 0.0)    # zeros until calibrated
    np.testing.assert_allclose(out[still:], ypr[still:], atol=1e-6)


def test_without_magnetometer_a_held_yaw_returns_towards_forward():
    n = 60 * 60
    ypr = np.zeros((n, 3))
    ypr[300:, 0] = 0.5                                   # turn and stay turned
    earth = Rotation.from_euler("x", 90, degrees=True)
    q = _sensor_quats(ypr, Rotation.identity(), earth)
    hp = HeadPose(HeadPoseConfig(return_tau_s=20.0))
    out = np.stack([hp.update_quat(row) for row in q])
    assert out[301, 0] > 0.49                            # the turn itself comes through
    # after 59 s (about 3 time constants) most of the held yaw has been taken as drift
    assert 0.0 < out[-1, 0] < 0.5 * np.exp(-2.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                         min_size=9, max_size=9), min_size=1, max_size=40))
def test_arbitrary_signals_never_raise_and_give_finite_angles(rows):
    hp = HeadPose(HeadPoseConfig(calibration_s=0.05))
    for r in rows:
        a = np.asarray(r, np.float64)
        with np.errstate(all="ignore"):
            out = hp.update(a[:3], a[3:6], a[6:])
        assert out.shape == (3,) and np.all(np.isfinite(out))
