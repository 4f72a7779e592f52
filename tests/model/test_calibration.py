"""Neutral-pose calibration (model/calibration.py) and the features relative to it: the still
window is found where it is, the gyro bias is measured, and the features do not move with the
head's rotation or with a constant mounting of a sensor on the skin."""

import numpy as np

from .imu_synth import head_rotvec, signals
from imusic.model.calibration import CalibrationConfig, StillDetector
from imusic.model.features import FeatureSpec, compute_features

RATE = 60.0
CAL = CalibrationConfig(window_s=2.0, still_gyro_std=0.03, passes=3, max_wait_s=0.0)
SPEC = FeatureSpec(sites=("ref", "a", "b"), reference="ref", detrend_s=0.0, calibration=CAL)
STILL_S = 3.0


def _motion(n, still, seed=0):
    """Head rotation (N, 3) and skin rotation (N, 3, 3): still for ``still`` frames, then a
    smooth start into motion."""
    t = np.arange(n) / RATE
    ramp = np.clip((np.arange(n) - still) / 30.0, 0, 1)[:, None]
    head = head_rotvec(n, RATE, seed, 0.5)
    head = head[still] + ramp * (head - head[still])
    skin = np.zeros((n, 3, 3))
    skin[:, 1, 0] = 0.08 * np.sin(2 * np.pi * 0.7 * t)
    skin[:, 2, 1] = 0.05 * np.sin(2 * np.pi * 1.3 * t) + 0.02
    return head, skin * ramp[:, :, None]


def test_still_window_is_found_where_the_face_comes_to_rest():
    """Moving rates for 2 s, then still: the detector says still exactly one window after the
    rest began, never before; progress climbs to 1 over the still frames."""
    rng = np.random.default_rng(0)
    det = StillDetector(CAL, RATE)
    n_move, n_win = 120, det.n_window
    first = None
    progress = []
    for k in range(n_move + 3 * n_win):
        moving = k < n_move
        rate = rng.normal(0, 0.5 if moving else 0.005, (3, 3))
        if det.push(k, rate) and first is None:
            first = k
        progress.append(det.n_still / det.n_window)
    assert first == n_move + n_win - 1
    assert list(det.frames)[0] >= n_move          # the window holds only still frames
    assert max(progress[:n_move]) < 0.2 and progress[n_move + n_win - 1] == 1.0


def test_gyro_bias_is_measured_on_the_still_window():
    """Turn-on biases on every gyro come back from the still window within the noise."""
    n, still = 900, int(STILL_S * RATE)
    head, skin = _motion(n, still)
    acc, gyro, mag = signals(head, skin, np.zeros((3, 3)), RATE)
    bias = np.array([[0.01, -0.02, 0.005], [-0.015, 0.004, 0.02], [0.0, 0.03, -0.01]])
    gyro = gyro + bias[None]
    gyro = gyro + np.random.default_rng(1).normal(0, 0.003, gyro.shape)
    _, ok, state = compute_features(SPEC, acc, gyro, mag, with_valid=True)
    assert state.done and state.still
    np.testing.assert_allclose(state.gyro_bias, bias, atol=0.002)
    # frames before calibration are invalid, every frame after is valid
    assert not ok[: state.at_frame].any() and ok[state.at_frame:].all()
    assert state.at_frame <= still + 1


def _calibrated(head, skin, mount, still):
    acc, gyro, mag = signals(head, skin, mount, RATE)
    f, ok, state = compute_features(SPEC, acc, gyro, mag, with_valid=True)
    assert state.done
    return f, ok


def test_features_do_not_move_with_the_head_or_a_constant_mounting():
    """The same skin motion under two head motions and two mountings of every sensor gives the
    same calibrated features (orientation since neutral, rates, accelerations), while the skin
    motion moves them a lot."""
    n, still = 1200, int(STILL_S * RATE)
    head0, skin = _motion(n, still, seed=0)
    head1, _ = _motion(n, still, seed=1)
    m0 = np.zeros((3, 3))
    m1 = np.array([[0.0, 0.0, 0.0], [0.4, -0.3, 0.2], [-0.2, 0.5, 1.0]])  # face sensors only
    f00, ok = _calibrated(head0, skin, m0, still)
    f11, _ = _calibrated(head1, skin, m1, still)
    rest, _ = _calibrated(head0, np.zeros_like(skin), m1, still)
    s = slice(still + 300, None)
    assert ok[s].all()
    orient = np.r_[0:6, 12:18]
    rates = np.r_[6:9, 18:21]
    diff = np.abs(f00[s] - f11[s])
    assert diff[:, orient].max() < 0.02
    assert np.abs(f00[s] - rest[s])[:, orient].max() > 0.05          # the skin is visible
    assert diff[:, rates].max() < 0.03
    assert np.abs(f00[s] - rest[s])[:, rates].max() > 0.1
    # at neutral the orientation channels are the identity's 6D form, whatever the mounting
    six = f11[still - 10].reshape(2, 12)[:, :6]     # calibrated, still at rest
    np.testing.assert_allclose(six, np.tile([1, 0, 0, 0, 1, 0], (2, 1)), atol=0.01)


def test_recalibrate_starts_over():
    """recalibrate() forgets the neutral pose; the next still window sets a new one."""
    from imusic.model.features import FeatureExtractor

    n, still = 600, int(STILL_S * RATE)
    head, skin = _motion(n, still)
    acc, gyro, mag = signals(head, skin, np.zeros((3, 3)), RATE)
    ex = FeatureExtractor(SPEC)
    for k in range(still + 10):
        ex.update(acc[k], gyro[k], mag[k])
    assert ex.calibration.done and ex.ok
    ex.recalibrate()
    assert not ex.calibration.done and ex.calibration.progress == 0.0
    for k in range(still):            # a still stretch again (the first frames, replayed)
        ex.update(acc[k], gyro[k], mag[k])
        if ex.calibration.done:
            break
    assert ex.calibration.done


def test_spec_round_trip_keeps_the_calibration():
    """The calibration settings survive the checkpoint's JSON form; older specs (no field)
    load as detrended features."""
    assert FeatureSpec.from_dict(SPEC.to_dict()) == SPEC
    old = FeatureSpec(sites=("ref", "a"), reference="ref").to_dict()
    assert "calibration" not in old
    assert FeatureSpec.from_dict(old).calibration is None
