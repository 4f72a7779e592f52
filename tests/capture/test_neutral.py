"""The model's neutral-pose calibration stored in the session (``/calibration/neutral``,
capture/neutral.py): what ``imusic sync`` writes is what the feature extractor computes, a
session without a still window says so, older files still read, and a malformed group is one
clear line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_sync import write_session
from .twin_session import TAKE_START, TwinTake, twin_take

from imusic.capture.aligned import Aligned, read_aligned
from imusic.capture.calibration import Calibration
from imusic.capture.neutral import CONFIG_KEYS, NeutralError, neutral_of, read_neutral
from imusic.capture.session_check import check_session, format_report
from imusic.capture.sync import sync_session
from imusic.model.calibration import CalibrationConfig
from imusic.model.features import compute_features, spec_of


def _stored(path: Path):
    with h5py.File(path, "r") as h5:
        return Calibration.read(h5).neutral


def _extractor_state(path: Path):
    """What the model's features compute on the session (FeatureExtractor, default config)."""
    al = read_aligned(path)
    _, ok, state = compute_features(spec_of(al, calibration=CalibrationConfig()), al.acc,
                                    al.gyro, al.mag, al.valid_imu, sites=al.sites, quat=al.quat,
                                    with_valid=True)
    return al, ok, state


def _info(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imusic", "info", str(path)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def still_session(tmp_path_factory) -> Path:
    """A synced twin take that starts with 2.5 s of still neutral face (no tap)."""
    take = twin_take(12.0, imu_rate=100.0, seed=5, tap=False)
    path = write_session(tmp_path_factory.mktemp("neutral") / "still.h5", take, 0.1)
    sync_session(path)
    return path


def _moving_from_the_start(take: TwinTake) -> TwinTake:
    """The take without its still start: the face moves from the first sample."""
    i, b = take.imu_t >= TAKE_START + 0.5, take.bs_t >= TAKE_START + 0.5
    return TwinTake(imu_t=take.imu_t[i], imu_rows=take.imu_rows[i], imu_labels=take.imu_labels,
                    bs_t=take.bs_t[b], bs_rows=take.bs_rows[b], sites=take.sites,
                    reference=take.reference, rig_id=take.rig_id, imu_rate=take.imu_rate)


def test_stored_neutral_is_what_the_feature_extractor_computes(still_session):
    rec = _stored(still_session)
    al, ok, state = _extractor_state(still_session)
    assert rec is not None and rec.done and state.done and rec.still and state.still
    assert rec.at_frame == state.at_frame and rec.window_frames == state.window
    np.testing.assert_allclose(rec.gyro_bias, state.gyro_bias, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rec.neutral, state.neutral, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rec.acc_offset, state.acc_offset, rtol=0, atol=1e-12)
    # the window lies in the still start, and the features are valid from the frame after it
    a, b = rec.window_frames
    assert b - a + 1 == round(CalibrationConfig().window_s * al.rate_hz)
    assert rec.window_time == (pytest.approx(al.t[a]), pytest.approx(al.t[b]))
    assert al.t[b] - al.t[0] < TAKE_START
    assert not ok[:rec.at_frame].any() and ok[rec.at_frame]
    assert rec.sites == al.sites and rec.face_sites == [s for s in al.sites if s != al.reference]
    assert {k: rec.config[k] for k in CalibrationConfig().to_dict()} == \
        CalibrationConfig().to_dict()
    assert set(CONFIG_KEYS) == set(rec.config)


def test_info_prints_one_line_for_the_neutral_pose(still_session):
    out = _info(still_session)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "neutral pose" in ln]
    assert len(lines) == 1
    assert "calibrated at t=2.00 s (frame 120), still, window 0.00..2.00 s" in lines[0]
    assert "max gyro bias" in lines[0] and "deg/s" in lines[0]


def test_a_take_with_no_still_window_says_so(tmp_path):
    take = _moving_from_the_start(twin_take(14.0, imu_rate=100.0, seed=3, tap=False))
    path = write_session(tmp_path / "moving.h5", take, 0.1)
    res = sync_session(path)
    rec = _stored(path)
    _, _, state = _extractor_state(path)
    assert res.calibration.neutral.still is False and rec.still is False and not state.still
    assert rec.at_frame == state.at_frame == round(CalibrationConfig().max_wait_s * 60)
    np.testing.assert_allclose(rec.neutral, state.neutral, rtol=0, atol=1e-12)
    line = check_session(path).calibration["neutral_line"]
    assert "forced (no still window within 5.0 s: the stillest)" in line
    assert "forced" in _info(path).stdout


def test_too_short_for_a_window_is_not_calibrated_and_says_why(tmp_path):
    n, s = 90, 3   # 1.5 s at 60 Hz: shorter than the 2 s window
    rng = np.random.default_rng(0)
    acc = np.tile([0.0, 0.0, 9.81], (n, s, 1)) + rng.normal(0, 0.01, (n, s, 3))
    al = Aligned(rate_hz=60.0, t=np.arange(n) / 60.0, blendshapes=np.zeros((n, 52), np.float32),
                 pose=np.zeros((n, 9), np.float32), acc=acc.astype(np.float32),
                 gyro=np.zeros((n, s, 3), np.float32), mag=np.full((n, s, 3), np.nan, np.float32),
                 valid_imu=np.ones(n, bool), valid_arkit=np.ones(n, bool),
                 sites=["a", "b", "ref"], reference="ref", rig_id="test")
    rec = neutral_of(al)
    assert not rec.done and "no window of 2 s of valid IMU frames in the 1.5 s" in rec.reason
    path = tmp_path / "short.h5"
    with h5py.File(path, "w") as h5:
        Calibration(sites=al.sites, reference="ref", gyro_bias=np.zeros((s, 3)),
                    relative_rotation=np.tile(np.eye(3), (s, 1, 1)), gravity_ref=np.zeros(3),
                    neutral=rec).write(h5)
    back = _stored(path)
    assert back is not None and not back.done and back.reason == rec.reason
    assert back.describe().startswith("not calibrated: no window of 2 s")


def test_a_session_synced_before_it_was_stored_still_reads(tmp_path, still_session):
    path = tmp_path / "old.h5"
    shutil.copy(still_session, path)
    with h5py.File(path, "r+") as h5:
        del h5["calibration/neutral"]
    assert _stored(path) is None
    rep = check_session(path)
    assert rep.valid and "neutral pose: none stored" in format_report(rep)


# ------------------------------------------------------------------ malformed groups

_ATTRS = ("done", "still", "reason", "sites", "face_sites", "reference", "at_frame", "at_time",
          "window_frames", "window_time") + CONFIG_KEYS
_DATASETS = ("gyro_bias", "neutral_quat", "acc_offset")
_values = st.one_of(
    st.text(max_size=30), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.booleans(), st.sampled_from(['["a", "b"]', "[1, 2]", "[0, 9999]", "[3.5, 1]", "{}",
                                    '["nasal_bridge"]', "[]", "null", "[1]"]))
_arrays = st.tuples(
    st.lists(st.integers(0, 13), min_size=0, max_size=3),
    st.sampled_from([0.0, np.nan, np.inf, 1.0, 0.5])).map(
        lambda x: np.full(tuple(x[0]), x[1]))
_mutations = st.one_of(
    st.tuples(st.just("drop_attr"), st.sampled_from(_ATTRS), st.none()),
    st.tuples(st.just("set_attr"), st.sampled_from(_ATTRS), _values),
    st.tuples(st.just("drop_data"), st.sampled_from(_DATASETS), st.none()),
    st.tuples(st.just("set_data"), st.sampled_from(_DATASETS), _arrays),
    st.tuples(st.just("not_a_group"), st.none(), st.none()))


def _mutate(path: Path, mutation) -> None:
    kind, name, value = mutation
    with h5py.File(path, "r+") as h5:
        g = h5["calibration/neutral"]
        if not isinstance(g, h5py.Group):
            return          # an earlier mutation made it a dataset
        if kind == "drop_attr":
            g.attrs.pop(name, None)
        elif kind == "set_attr":
            g.attrs[name] = value
        elif kind == "drop_data":
            g.pop(name, None)
        elif kind == "set_data":
            g.pop(name, None)
            g.create_dataset(name, data=value)
        else:
            del h5["calibration/neutral"]
            h5["calibration"].create_dataset("neutral", data=np.zeros(3))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutations, min_size=1, max_size=3))
def test_a_malformed_neutral_group_is_one_line_naming_the_file_and_the_fix(still_session,
                                                                          mutations):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad.h5"
        shutil.copy(still_session, path)
        for m in mutations:
            _mutate(path, m)
        with h5py.File(path, "r") as h5:
            try:
                rec = read_neutral(h5["calibration"], path)
            except NeutralError as err:
                msg = str(err)
                assert "\n" not in msg and str(path) in msg
                assert f"run 'imusic sync {path}' again" in msg
                rep = check_session(path)
                assert not rep.valid and msg in rep.errors
                return
        # what is read back is usable: the fields it promises hold what they say
        assert rec is not None and rec.reference in rec.sites
        if rec.done:
            assert rec.gyro_bias.shape == (len(rec.sites), 3)
            assert rec.neutral.shape == (len(rec.face_sites), 3, 3)
            assert np.all(np.isfinite(rec.acc_offset))
        rec.describe()


def test_imusic_info_on_a_malformed_neutral_group(tmp_path, still_session):
    path = tmp_path / "bad.h5"
    shutil.copy(still_session, path)
    faces = len(_stored(path).face_sites)
    _mutate(path, ("set_data", "neutral_quat", np.full((faces, 4), np.nan)))
    out = _info(path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"imusic info: {path} is invalid: {path}: /calibration/neutral is malformed (dataset "
        f"'neutral_quat' holds NaN or infinite values); run 'imusic sync {path}' again to "
        "rewrite it"]
