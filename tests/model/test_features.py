"""Features relative to the reference sensor: head motion cancels, incremental = batch."""

import numpy as np
import pytest

from .imu_synth import head_rotvec, signals
from imusic.model.features import FeatureExtractor, FeatureSpec, compute_features, quat_to_matrix

RATE = 60.0


def _skin(n):
    t = np.arange(n) / RATE
    skin = np.zeros((n, 3, 3))
    skin[:, 1, 0] = 0.08 * np.sin(2 * np.pi * 0.7 * t)
    skin[:, 2, 1] = 0.05 * np.sin(2 * np.pi * 1.3 * t)
    return skin


MOUNT = np.array([[0.1, 0.2, 0.3], [1.0, -0.5, 0.2], [-0.3, 0.4, 2.0]])
SPEC = FeatureSpec(sites=("ref", "a", "b"), reference="ref", detrend_s=0.0)
SPEC_D = FeatureSpec(sites=("ref", "a", "b"), reference="ref")  # detrended (the default)


def test_pure_head_rotation_cancels_analytic():
    """The same skin motion under two different head motions gives the same features (after
    the AHRS has settled), while the skin motion itself moves them a lot."""
    n = 1500
    f = [compute_features(SPEC, *signals(head_rotvec(n, RATE, seed, 0.5), _skin(n), MOUNT, RATE))
         for seed in (0, 1)]
    still = compute_features(SPEC, *signals(np.zeros((n, 3)), np.zeros((n, 3, 3)), MOUNT, RATE))
    s = slice(400, None)
    orient = np.r_[0:6, 12:18]
    diff = np.abs(f[0][s] - f[1][s])
    assert diff[:, orient].max() < 0.01
    assert np.abs(f[0][s] - still[s])[:, orient].max() > 0.05     # skin motion is visible
    gyro = np.r_[6:9, 18:21]
    assert diff[:, gyro].max() < 0.02
    assert np.abs(f[0][s] - still[s])[:, gyro].max() > 0.1


def test_pure_head_rotation_cancels_on_the_twin():
    """Same face motion, two head motions, the twin's physics (ideal sensors): relative
    orientation and angular velocity agree within a small fraction of their range."""
    from imusic.hardware.motion import Motion, procedural
    from imusic.hardware.physics import simulate
    from imusic.hardware.rig import load_rig

    rig = load_rig("imusic6")
    face = procedural(12.0, fps=RATE, seed=3)
    spec = FeatureSpec(tuple(rig.site_names), rig.reference, detrend_s=0.0)
    feats = []
    for seed in (11, 12):
        head = procedural(12.0, fps=RATE, seed=seed)
        m = Motion(fps=RATE, blendshapes=face.blendshapes, head_rotvec=head.head_rotvec * 2,
                   head_position=head.head_position)
        sig = simulate(m, rig, rate_hz=RATE, identity=2, seed=5, errors=False)
        feats.append(compute_features(spec, sig.acc, sig.gyro, sig.mag))
    n_face = len(spec.face_sites)
    a, b = (f[300:].reshape(-1, n_face, 12) for f in feats)
    d_or = np.abs(a[..., :6] - b[..., :6])
    range_or = np.ptp(a[..., :6], axis=0).max()
    assert np.percentile(d_or, 99) < 0.25 * range_or
    d_w = np.abs(a[..., 6:9] - b[..., 6:9])
    assert np.percentile(d_w, 99) < 0.25 * np.ptp(a[..., 6:9], axis=0).max()


def test_incremental_equals_batch_and_shapes():
    n = 200
    acc, gyro, mag = signals(head_rotvec(n, RATE, 0), _skin(n), MOUNT, RATE)
    batch = compute_features(SPEC, acc, gyro, mag)
    ex = FeatureExtractor(SPEC)
    inc = np.stack([ex.update(acc[k], gyro[k], mag[k]) for k in range(n)])
    assert batch.shape == (n, SPEC.n_features) == (n, 24)
    np.testing.assert_array_equal(batch, inc)


def test_invalid_frames_are_zero_and_hold_the_filter():
    n = 100
    acc, gyro, mag = signals(head_rotvec(n, RATE, 0), _skin(n), MOUNT, RATE)
    valid = np.ones(n, bool)
    valid[40:50] = False
    acc[45] = np.nan
    f = compute_features(SPEC, acc, gyro, mag, valid)
    assert np.all(f[40:50] == 0) and np.all(np.isfinite(f))


def test_sites_picked_by_name_and_missing_named():
    n = 50
    acc, gyro, mag = signals(head_rotvec(n, RATE, 0), _skin(n), MOUNT, RATE)
    order = [2, 0, 1]
    shuffled = compute_features(SPEC, acc[:, order], gyro[:, order], mag[:, order],
                                sites=["b", "ref", "a"])
    np.testing.assert_allclose(shuffled, compute_features(SPEC, acc, gyro, mag), atol=1e-6)
    with pytest.raises(ValueError, match="lacks sites"):
        compute_features(SPEC, acc[:, :2], gyro[:, :2], mag[:, :2], sites=["ref", "a"])


def test_spec_round_trip_and_reference_check():
    assert FeatureSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="reference"):
        FeatureSpec(sites=("a", "b"), reference="c")


def test_quat_to_matrix_is_a_rotation():
    q = np.random.default_rng(0).normal(size=(10, 4))
    r = quat_to_matrix(q)
    np.testing.assert_allclose(r @ r.swapaxes(-1, -2), np.tile(np.eye(3), (10, 1, 1)),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)


def test_detrending_removes_a_constant_mounting_offset():
    """Two sessions that differ only by how the face sensors sit on the skin give different raw
    features but the same detrended features once the trend has settled."""
    n = 1500
    head = head_rotvec(n, RATE, 0, 0.3)
    other = MOUNT.copy()
    other[1:] += [[0.05, -0.04, 0.03], [-0.03, 0.05, 0.04]]   # ~3 degrees off
    fa = compute_features(SPEC_D, *signals(head, _skin(n), MOUNT, RATE))
    fb = compute_features(SPEC_D, *signals(head, _skin(n), other, RATE))
    assert fa.shape == (n, SPEC_D.n_features) == (n, 36)
    per_a, per_b = fa.reshape(n, 2, 18), fb.reshape(n, 2, 18)
    s = slice(1000, None)
    raw_gap = np.abs(per_a[s, :, 12:] - per_b[s, :, 12:]).mean()
    det_gap = np.abs(per_a[s, :, :6] - per_b[s, :, :6]).mean()
    assert raw_gap > 0.02
    assert det_gap < 0.2 * raw_gap
