"""Hybrid IMU + ARKit fusion: hand-over timing, smoothness, adaptation, and the occlusion study."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d

from imusic.hardware.vocabulary import IMU_BLIND_REGIONS, REGION_INDEX
from imusic.model.fusion import REGION_NAMES, FusionConfig, HybridFusion
from imusic.model.occlusion import evaluate_hybrid, hold_last, run_hybrid, simulate_occlusions

RATE = 60.0
MOUTH = REGION_NAMES.index("mouth")
CAMERA_ONLY_TIE = 0.05
"""Relative margin within which a camera-only region ties ARKit's hold (the relaxation to
ARKit's mean over a loss wins on some random motion and loses on other)."""


def _motion(n: int, seed: int = 0) -> np.ndarray:
    """Smooth blendshape motion in [0, 1] with the mouth always moving (a 1 Hz sinusoid)."""
    rng = np.random.default_rng(seed)
    truth = np.clip(gaussian_filter1d(rng.normal(0, 1, (n, 52)), 20, axis=0) * 3 + 0.2, 0, 1)
    t = np.arange(n) / RATE
    truth[:, REGION_INDEX["mouth"]] = 0.4 + 0.3 * np.sin(2 * np.pi * 1.0 * t)[:, None]
    return truth


def _imu_estimate(truth: np.ndarray, seed: int = 1) -> np.ndarray:
    """A plausible IMU model output: biased (gain 0.85, offset 0.04) and noisy."""
    rng = np.random.default_rng(seed)
    noise = gaussian_filter1d(rng.normal(0, 0.05, truth.shape), 3, axis=0)
    return np.clip(truth * 0.85 + 0.04 + noise, 0, 1)


def _frames_until(weights: np.ndarray, start: int, cond) -> int:
    for k in range(start, len(weights)):
        if cond(weights[k]):
            return k - start
    raise AssertionError("condition never met")


def test_mouth_covered_switches_to_imu_and_back_within_100_ms():
    n, onset, end = 900, 400, 640
    truth = _motion(n)
    imu = _imu_estimate(truth)
    observed = truth.copy()
    idx = np.concatenate([REGION_INDEX["mouth"], REGION_INDEX["jaw"]])
    observed[onset:end, idx] = truth[onset - 1, idx]          # ARKit holds its guess under a hand
    fused, w = run_hybrid(imu, observed, RATE)

    assert np.all(w[onset - 60:onset, MOUTH] == 1.0), "ARKit trusted before the hand"
    # A held guess cannot be told from a still face until it is wrong: the clock starts when
    # ARKit's error on the covered mouth exceeds the IMU model's own error there.
    mouth = REGION_INDEX["mouth"]
    model_err = np.abs(imu - truth)[:, mouth].mean()
    arkit_err = np.abs(observed - truth)[:, mouth].mean(axis=1)
    wrong = onset + int(np.argmax(arkit_err[onset:] > model_err))
    to_imu = _frames_until(w[:, MOUTH], wrong, lambda x: x == 0.0)
    back = _frames_until(w[:, MOUTH], end, lambda x: x == 1.0)
    assert to_imu / RATE <= 0.100, f"took {to_imu / RATE * 1000:.0f} ms to switch to the IMU"
    assert back / RATE <= 0.100, f"took {back / RATE * 1000:.0f} ms to switch back to ARKit"
    # Untouched regions stay on ARKit.
    assert np.all(w[:, REGION_NAMES.index("brows")] == 1.0)

    # No jump at the hand-overs: the output never steps further than the face itself moves
    # in a frame plus the IMU model's own error.
    model_error = np.abs(imu - truth)[:, REGION_INDEX["mouth"]].mean()
    face_step = np.abs(np.diff(truth[:, REGION_INDEX["mouth"]], axis=0)).max()
    for k0 in (onset, end):
        steps = np.abs(np.diff(fused[k0 - 2:k0 + 10, REGION_INDEX["mouth"]], axis=0))
        assert steps.max() <= face_step + model_error, (k0, steps.max(), face_step, model_error)


def test_face_lost_hands_every_region_to_imu_within_100_ms():
    truth = _motion(600)
    imu = _imu_estimate(truth)
    observed = truth.copy()
    observed[300:420] = np.nan
    _, w = run_hybrid(imu, observed, RATE)
    frames = _frames_until(w, 300, lambda x: np.all(x == 0.0))
    assert frames / RATE <= 0.100
    assert _frames_until(w, 420, lambda x: np.all(x == 1.0)) / RATE <= 0.100


def test_silence_without_face_lost_packets_counts_as_lost():
    fuser = HybridFusion(FusionConfig(lost_timeout_s=0.05))
    frame = fuser.step(0.0, np.zeros(52), np.zeros(52))
    assert frame.trusted.all()
    for k in range(1, 12):   # no ARKit frames at all for 200 ms
        frame = fuser.step(k / RATE, np.zeros(52), None)
    assert not frame.trusted.any() and frame.reasons[0] == "lost"


def test_online_adaptation_removes_gain_and_offset():
    truth = _motion(60 * 20, seed=3)
    imu = np.clip(truth * 0.7 + 0.15, 0, 1)
    fuser = HybridFusion()
    for k in range(len(truth)):
        frame = fuser.step(k / RATE, imu[k], truth[k])
    raw = np.abs(imu[-1] - truth[-1]).mean()
    adapted = np.abs(frame.imu_adapted - truth[-1]).mean()
    assert adapted < raw / 5, (raw, adapted)


def test_implausible_jump_is_distrusted():
    fuser = HybridFusion()
    base = np.full(52, 0.2)
    for k in range(30):
        fuser.step(k / RATE, base, base)
    jumped = base.copy()
    jumped[REGION_INDEX["jaw"]] = 0.95
    frame = fuser.step(30 / RATE, base, jumped)
    jaw = REGION_NAMES.index("jaw")
    assert frame.reasons[jaw] == "jump" and not frame.trusted[jaw]
    assert frame.trusted[REGION_NAMES.index("brows")]


def test_occlusion_simulation_shares_and_episode_lengths():
    truth = _motion(60 * 600, seed=4)
    occ = simulate_occlusions(truth, RATE, seed=7)
    assert 0.18 <= occ.mouth_covered.mean() <= 0.25
    assert 0.04 <= occ.face_lost.mean() <= 0.08
    assert np.isnan(occ.observed[occ.face_lost]).all()
    # ARKit's brows still follow the face under a hand over the mouth.
    visible = occ.mouth_covered & ~occ.face_lost
    assert np.abs(occ.observed[visible][:, REGION_INDEX["brows"]] - truth[visible][:, REGION_INDEX["brows"]]).max() < 0.05
    assert np.isfinite(hold_last(occ.observed)).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_hybrid_beats_arkit_hold_and_imu_only_in_every_region(seed):
    truth = _motion(60 * 180, seed=seed)
    imu = _imu_estimate(truth, seed=seed + 10)
    result = evaluate_hybrid(truth, imu, RATE, seed=seed)
    for region in REGION_NAMES:
        hybrid = result["hybrid"][region]
        assert hybrid < result["imu_only"][region], (region, result)
        if region in IMU_BLIND_REGIONS:
            # camera only: ARKit held through a loss (relaxing to its own mean), a tie with
            # the hold however good this toy IMU estimate is
            assert hybrid <= result["arkit_hold"][region] * (1 + CAMERA_ONLY_TIE), (region, result)
        else:
            assert hybrid < result["arkit_hold"][region], (region, result)


def _lost_gaze_and_tongue(imu_value: float):
    """Fuse 2 s of a still face, then 1.5 s with the face lost, with the IMU estimate of gaze
    and tongue at ``imu_value``; returns the fused frames during the loss."""
    fuser = HybridFusion()
    face = np.full(52, 0.2)
    blind = np.concatenate([REGION_INDEX[r] for r in IMU_BLIND_REGIONS])
    face[blind] = 0.6
    imu = face.copy()
    imu[blind] = imu_value
    for k in range(120):
        fuser.step(k / RATE, imu, face)
    return [fuser.step(k / RATE, imu, None) for k in range(120, 210)], face, blind


def test_gaze_and_tongue_come_from_the_camera_only():
    frames, face, blind = _lost_gaze_and_tongue(imu_value=1.0)
    lost = np.stack([f.values for f in frames])
    # while the face is lost the other regions go over to the IMU side; gaze and tongue hold
    # ARKit's last frame (its own mean is the same here), whatever the IMU estimate says
    assert np.all(frames[-1].arkit_weight[[REGION_NAMES.index(r) for r in ("brows", "mouth")]] == 0)
    assert np.allclose(lost[:, blind], face[blind], atol=1e-9), lost[:, blind].max()
    other, _, _ = _lost_gaze_and_tongue(imu_value=0.0)
    assert np.allclose(np.stack([f.values for f in other])[:, blind], lost[:, blind])


def test_a_saccade_is_not_a_jump():
    fuser = HybridFusion()
    base = np.full(52, 0.1)
    for k in range(30):
        fuser.step(k / RATE, base, base)
    saccade = base.copy()
    saccade[REGION_INDEX["gaze"]] = 0.9          # the eyes turn in one frame; the skin does not
    frame = fuser.step(30 / RATE, base, saccade)
    gaze = REGION_NAMES.index("gaze")
    assert frame.trusted[gaze] and frame.reasons[gaze] == ""
    assert np.allclose(frame.values[REGION_INDEX["gaze"]], 0.9)


def test_gaze_and_tongue_are_neutral_before_arkit_is_seen():
    frame = HybridFusion().step(0.0, np.full(52, 0.7), None)
    blind = np.concatenate([REGION_INDEX[r] for r in IMU_BLIND_REGIONS])
    assert np.all(frame.values[blind] == 0.0)
    assert np.allclose(np.delete(frame.values, blind), 0.7)


def _covered_error(fused: np.ndarray, truth: np.ndarray, occ, region: str) -> float:
    """MAE x100 over the frames ARKit could not see ``region`` (hand or face lost)."""
    hidden = occ.face_lost | (occ.mouth_covered if region in ("mouth", "jaw") else False)
    idx = REGION_INDEX[region]
    return float(np.abs(fused[hidden][:, idx] - truth[hidden][:, idx]).mean() * 100)


def test_carry_holds_arkit_for_a_wearer_the_imu_does_not_predict():
    """An IMU estimate unrelated to this wearer's face (smooth noise of the face's own size):
    the learnt carry falls back to the hold (and ARKit's mean) by itself. Over the regions the
    IMU could move, taken together: per region the few face losses of one run leave the ratio
    to the hold between 0.81 and 1.13 across seeds, together 0.90 to 0.97."""
    truth = _motion(60 * 400, seed=5)
    rng = np.random.default_rng(6)
    unrelated = np.clip(gaussian_filter1d(rng.normal(0, 1, truth.shape), 20, axis=0) * 3 + 0.2,
                        0, 1)
    occ = simulate_occlusions(truth, RATE, seed=5)
    fused, _ = run_hybrid(unrelated, occ.observed, RATE)
    hold = hold_last(occ.observed)
    regions = ("mouth", "jaw", "brows", "cheeks_nose", "eyes")
    hybrid = np.mean([_covered_error(fused, truth, occ, r) for r in regions])
    held = np.mean([_covered_error(hold, truth, occ, r) for r in regions])
    assert hybrid <= held, (hybrid, held)


def test_carry_follows_a_wearer_the_imu_predicts():
    """A good IMU estimate for this wearer: while ARKit cannot see the mouth the hybrid is
    within 1.5x the IMU's own error there, far from the hold's."""
    truth = _motion(60 * 240, seed=8)
    imu = _imu_estimate(truth, seed=9)
    occ = simulate_occlusions(truth, RATE, seed=8)
    fused, _ = run_hybrid(imu, occ.observed, RATE)
    for region in ("mouth", "jaw"):
        hybrid = _covered_error(fused, truth, occ, region)
        assert hybrid <= 1.5 * _covered_error(imu, truth, occ, region), region
        assert hybrid <= 0.5 * _covered_error(hold_last(occ.observed), truth, occ, region), region


def test_frozen_hand_over_starts_where_arkit_settled():
    """ARKit holds the jaw while the face keeps opening it: the carried estimate counts the
    IMU's change from the frame ARKit froze, not from the frame the freeze was found."""
    n, onset = 1200, 900
    t = np.arange(n) / RATE
    truth = np.full((n, 52), 0.1)
    jaw = REGION_INDEX["jaw"]
    truth[:, jaw] = 0.3 + 0.2 * np.sin(2 * np.pi * 0.4 * t)[:, None]   # learnt while visible
    truth[onset:, jaw] = truth[onset - 1, jaw] + np.linspace(0, 0.3, n - onset)[:, None]
    rng = np.random.default_rng(0)
    observed = truth + rng.normal(0, 0.002, truth.shape)
    observed[onset:, jaw] = observed[onset - 1, jaw]                    # frozen under a hand
    fused, w = run_hybrid(truth, observed, RATE)                        # a perfect IMU
    region = REGION_NAMES.index("jaw")
    found = onset + _frames_until(w[:, region], onset, lambda x: x < 1.0)
    moved_before = float(np.abs(truth[found, jaw] - truth[onset - 1, jaw]).mean())
    err = np.abs(fused[found + 5:, jaw] - truth[found + 5:, jaw]).mean()
    assert moved_before > 0.005 and err < 0.3 * moved_before, (moved_before, err)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(["frame", "frame", "still", "lost", "nan", "inf"]),
                      min_size=1, max_size=150),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.0, 0.01, 1.0, 3.0]))
def test_fusion_outputs_stay_finite_on_any_input(kinds, seed, scale):
    """Any mix of moving and still frames, lost frames, NaN/inf and out-of-range values: finite
    outputs, ARKit weights in 0..1."""
    rng = np.random.default_rng(seed)
    fuser = HybridFusion(FusionConfig(carry_horizons_s=(0.05, 0.2, 0.5)))
    last = np.zeros(52)
    for k, kind in enumerate(kinds):
        imu = rng.normal(0.2, scale, 52)
        arkit = None if kind == "lost" else (last if kind == "still" else rng.normal(0.2, scale, 52))
        if kind in ("nan", "inf"):
            arkit = arkit.copy()
            arkit[rng.integers(0, 52)] = np.nan if kind == "nan" else np.inf
        if arkit is not None and kind != "still":
            last = arkit
        frame = fuser.step(k / RATE, imu, arkit)
        assert np.all(np.isfinite(frame.values)) and np.all(np.isfinite(frame.imu_adapted))
        assert np.all((frame.arkit_weight >= 0) & (frame.arkit_weight <= 1))
