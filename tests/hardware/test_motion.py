"""Procedural facial motion and the Motion container."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from imusic.hardware.motion import EXPRESSIONS, Motion, envelope, minimum_jerk, procedural
from imusic.hardware.vocabulary import ARKIT_NAMES

IDX = {n: i for i, n in enumerate(ARKIT_NAMES)}


@pytest.fixture(scope="module")
def five_minutes() -> Motion:
    return procedural(300.0, fps=60, seed=4)


def test_values_stay_in_range_and_shapes_match(five_minutes):
    m = five_minutes
    assert m.blendshapes.shape == (300 * 60 + 1, 52)
    assert m.blendshapes.min() >= 0.0 and m.blendshapes.max() <= 1.0
    assert m.head_rotvec.shape == m.head_position.shape == (m.n_frames, 3)
    assert m.duration == pytest.approx(300.0)


def test_deterministic_per_seed():
    a, b, c = procedural(20, seed=9), procedural(20, seed=9), procedural(20, seed=10)
    assert a.blendshapes.tobytes() == b.blendshapes.tobytes()
    assert a.head_rotvec.tobytes() == b.head_rotvec.tobytes()
    assert a.blendshapes.tobytes() != c.blendshapes.tobytes()


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def test_blinks_last_100_to_400_ms_at_a_human_rate(five_minutes):
    m = five_minutes
    blinks = [e for e in m.events if e.kind == "blink"]
    durations = np.array([e.end - e.start for e in blinks])
    assert np.all((durations >= 0.1) & (durations <= 0.4))
    rate_per_min = len(blinks) / 5.0
    assert 8 <= rate_per_min <= 30
    # measured from the signal itself: lids more than 10 % closed for under 400 ms
    segs = _segments(m.blendshapes[:, IDX["eyeBlinkLeft"]] > 0.1)
    seconds = np.array([(b - a) / m.fps for a, b in segs])
    assert len(segs) == pytest.approx(len(blinks), abs=2)
    assert seconds.max() <= 0.4 and seconds.min() >= 0.05
    # blinks close fully or nearly
    assert np.median([m.blendshapes[a:b, IDX["eyeBlinkLeft"]].max() for a, b in segs]) > 0.8


def test_expressions_vary_and_include_asymmetric_variants(five_minutes):
    m = five_minutes
    expr = [e for e in m.events if e.kind.startswith("expression:")]
    kinds = {e.kind.split(":")[1] for e in expr}
    assert len(kinds) >= 8 and kinds <= set(EXPRESSIONS)
    variants = {e.detail["variant"] for e in expr}
    assert {"symmetric", "left", "right"} <= variants
    # one-sided smiles really are one-sided in the weights
    for e in expr:
        if e.kind == "expression:smile" and e.detail["variant"] == "left":
            sl = slice(int(e.start * m.fps), int(e.end * m.fps))
            w = m.blendshapes[sl]
            assert w[:, IDX["mouthSmileLeft"]].max() > 1.5 * w[:, IDX["mouthSmileRight"]].max()


def test_speech_moves_jaw_at_syllable_rate(five_minutes):
    m = five_minutes
    speech = [e for e in m.events if e.kind == "speech"]
    assert speech
    e = max(speech, key=lambda e: e.end - e.start)
    sl = slice(int(e.start * m.fps), int(e.end * m.fps))
    jaw = m.blendshapes[sl, IDX["jawOpen"]] - m.blendshapes[sl, IDX["jawOpen"]].mean()
    spectrum = np.abs(np.fft.rfft(jaw * np.hanning(len(jaw))))
    freqs = np.fft.rfftfreq(len(jaw), 1 / m.fps)
    peak = freqs[np.argmax(spectrum[1:]) + 1]
    assert 2.0 <= peak <= 8.0


def test_motion_is_smooth(five_minutes):
    m = five_minutes
    # Lids and gaze may jump (blinks close in ~35-140 ms, saccades take 50 ms); the
    # expression and speech channels move by minimum-jerk profiles and never jump.
    eyes = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith("eye")]
    rest = np.setdiff1d(np.arange(52), eyes)
    assert np.abs(np.diff(m.blendshapes[:, rest], axis=0)).max() < 0.25
    assert np.abs(np.diff(m.blendshapes[:, eyes], axis=0)).max() < 0.8
    rates = np.linalg.norm((Rotation.from_rotvec(m.head_rotvec[1:])
                            * Rotation.from_rotvec(m.head_rotvec[:-1]).inv()).as_rotvec(),
                           axis=1) * m.fps
    assert rates.max() < 3.0                                      # rad/s
    angles = np.degrees(np.linalg.norm(m.head_rotvec, axis=1))
    assert angles.max() < 45 and np.percentile(angles, 50) < 15
    assert np.abs(m.head_position).max() < 0.05


def test_head_makes_nods_and_turns(five_minutes):
    kinds = {e.kind for e in five_minutes.events}
    assert {"nod", "turn", "blink", "speech", "saccade"} <= kinds


def test_minimum_jerk_profile():
    tau = np.linspace(0, 1, 1001)
    s = minimum_jerk(tau)
    assert s[0] == 0 and s[-1] == 1 and np.all(np.diff(s) >= 0)
    v = np.gradient(s, tau)
    assert abs(v[0]) < 1e-2 and abs(v[-1]) < 1e-2 and v.max() == pytest.approx(1.875, rel=1e-3)
    e = envelope(np.linspace(0, 3, 301), 0.5, 0.5, 1.0, 0.5)
    assert e[0] == 0 and e[-1] == 0 and e.max() == pytest.approx(1.0)


def test_from_blendshapes_fills_gaps_and_accepts_61_columns():
    t = np.array([0.0, 1 / 30, 2 / 30, 3 / 30, 5 / 30, 6 / 30])
    v = np.zeros((6, 61))
    v[:, IDX["jawOpen"]] = [0.0, 0.1, np.nan, 0.3, 0.5, 0.6]
    v[0, :] = np.nan
    m = Motion.from_blendshapes(t, v)
    assert m.blendshapes.shape == (6, 52)
    assert m.blendshapes[2, IDX["jawOpen"]] == pytest.approx(0.2)
    assert m.blendshapes[0, IDX["jawOpen"]] == pytest.approx(0.1)
    assert m.fps == pytest.approx(30.0)
    np.testing.assert_array_equal(m.t, t)


def test_motion_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(T, 52\)"):
        Motion.from_blendshapes(30, np.zeros((10, 50)))
    with pytest.raises(ValueError, match="NaN"):
        Motion.from_blendshapes(30, np.full((10, 52), np.nan))
    with pytest.raises(ValueError, match="increasing"):
        Motion(fps=30, blendshapes=np.zeros((5, 52)), head_rotvec=np.zeros((5, 3)),
               head_position=np.zeros((5, 3)), t=np.array([0, 1, 1, 2, 3.0]))
    with pytest.raises(ValueError, match="positive"):
        procedural(0)
