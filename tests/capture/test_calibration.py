"""Calibration: gyro bias from still segments, sensor orientation relative to the reference."""

from __future__ import annotations

import h5py
import numpy as np
from scipy.spatial.transform import Rotation

from imusic.capture.calibration import Calibration, calibrate, gyro_bias, still_mask

RATE = 100.0


def rig_signals(seed: int = 0, n_sensors: int = 4, seconds: float = 20.0):
    """A rigid rig: the head is still for 3 s, then turns; each sensor is mounted with a known
    rotation, has its own gyro bias and noise. Returns t, acc, gyro, true rotations, biases."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, seconds, 1 / RATE)
    n = len(t)
    # Head angular velocity in the reference frame: zero, then smooth turns about all axes.
    w = np.stack([np.sin(2 * np.pi * f * t + p) for f, p in ((0.3, 0), (0.5, 1), (0.7, 2))],
                 axis=1) * 1.2
    w[t < 3.0] = 0.0
    # Gravity in the reference frame: tilted a bit, constant (small turns; the test is on the
    # rotation between sensors, which does not depend on the head's attitude).
    g_ref = np.array([0.5, -9.7, 1.2])
    rots = [np.eye(3)] + [Rotation.from_rotvec(rng.normal(0, 0.6, 3)).as_matrix()
                          for _ in range(n_sensors - 1)]          # sensor -> reference
    bias = rng.normal(0, 0.02, (n_sensors, 3))
    acc = np.empty((n, n_sensors, 3))
    gyro = np.empty_like(acc)
    for i, r in enumerate(rots):
        gyro[:, i] = w @ r + bias[i] + rng.normal(0, 0.003, (n, 3))     # R^T w, row form
        acc[:, i] = g_ref @ r + rng.normal(0, 0.02, (n, 3))
        acc[t >= 3.0, i] += rng.normal(0, 0.5, (int((t >= 3.0).sum()), 3))  # motion
    return t, acc, gyro, np.array(rots), bias


def test_still_segment_and_gyro_bias():
    t, acc, gyro, _, bias = rig_signals()
    still = still_mask(acc, gyro, RATE)
    assert still[(t > 0.3) & (t < 2.7)].all()
    assert not still[t > 3.5].any()
    np.testing.assert_allclose(gyro_bias(gyro, still), bias, atol=1e-3)
    assert np.all(gyro_bias(gyro, np.zeros(len(t), bool)) == 0)


def test_relative_orientation_recovered():
    t, acc, gyro, rots, bias = rig_signals(seed=4)
    sites = ["ref", "a", "b", "c"]
    cal = calibrate(t, acc, gyro, RATE, sites, "ref")
    for i in range(1, 4):
        err = Rotation.from_matrix(cal.relative_rotation[i].T @ rots[i]).magnitude()
        assert np.degrees(err) < 1.0, (i, np.degrees(err))
    np.testing.assert_allclose(cal.relative_rotation[0], np.eye(3))
    assert 0.1 < cal.still_fraction < 0.2
    assert cal.still_segment[0] < 0.5 and 2.5 < cal.still_segment[1] < 3.1


def test_gravity_only_leaves_the_vertical_free_but_aligns_gravity():
    """Without head turns only gravity is known: the fit still maps gravity onto gravity."""
    t, acc, gyro, rots, _ = rig_signals(seed=2)
    keep = t < 3.0
    cal = calibrate(t[keep], acc[keep], gyro[keep], RATE, ["r", "a", "b", "c"], "r")
    g_ref = acc[keep, 0].mean(axis=0)
    for i in range(1, 4):
        g_i = acc[keep, i].mean(axis=0)
        mapped = cal.relative_rotation[i] @ g_i
        cos = np.dot(mapped, g_ref) / (np.linalg.norm(mapped) * np.linalg.norm(g_ref))
        assert np.degrees(np.arccos(min(cos, 1.0))) < 0.5


def test_calibration_round_trip(tmp_path):
    t, acc, gyro, _, _ = rig_signals(seed=1)
    cal = calibrate(t, acc, gyro, RATE, ["r", "a", "b", "c"], "r")
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        cal.write(h5)
        cal.write(h5)                       # replacing is fine
    with h5py.File(tmp_path / "c.h5", "r") as h5:
        back = Calibration.read(h5)
    np.testing.assert_array_equal(back.gyro_bias, cal.gyro_bias)
    np.testing.assert_array_equal(back.relative_rotation, cal.relative_rotation)
    assert back.sites == cal.sites and back.reference == "r"
    assert back.still_segment == cal.still_segment
