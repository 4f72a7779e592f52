"""Loading what the viewer replays: aligned sessions, recorded streams, predictions, takes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imusic.capture.aligned import Aligned, write_aligned
from imusic.capture.session import SessionWriter, StreamSpec
from imusic.hardware.vocabulary import ARKIT_NAMES, STREAM_NAMES
from imusic.viewer.colors import error_colors, vertex_error
from imusic.viewer.snapshot import parse_blendshapes
from imusic.viewer.sources import SourceError, Track, load_track, pair_frames


def ramp(n: int) -> np.ndarray:
    """Frames told apart by jawOpen = i / (n - 1)."""
    b = np.zeros((n, 52), np.float32)
    b[:, ARKIT_NAMES.index("jawOpen")] = np.linspace(0, 1, n)
    return b


def aligned_session(path, n=30, rate=60.0):
    """A session file with only an aligned group (as 'imusic simulate' writes)."""
    data = Aligned(rate_hz=rate, t=np.arange(n) / rate, blendshapes=ramp(n),
                   pose=np.zeros((n, 9), np.float32), acc=np.zeros((n, 1, 3)),
                   gyro=np.zeros((n, 1, 3)), mag=np.zeros((n, 1, 3)),
                   valid_imu=np.ones(n, bool), valid_arkit=np.ones(n, bool),
                   sites=["nasion"], reference="nasion", rig_id="test-rig")
    with h5py.File(path, "w") as h5:
        write_aligned(h5, data)
    return path


def recorded_session(path, n=40):
    """A session recorded by capture.session with a Blendshapes stream and no aligned group."""
    spec = StreamSpec(name="arkit-test", type="Blendshapes", channel_count=61,
                      nominal_srate=60.0, labels=list(STREAM_NAMES))
    values = np.zeros((n, 61), np.float32)
    values[:, :52] = ramp(n)
    with SessionWriter(path) as w:
        key = w.add_stream(spec)
        w.append(key, values, 100.0 + np.arange(n) / 60.0)
    return path


def test_aligned_session(tmp_path):
    track = load_track(aligned_session(tmp_path / "s.h5"))
    assert track.n_frames == 30 and track.rate_hz == 60.0
    assert np.allclose(track.blendshapes, ramp(30))


def test_recorded_stream_when_not_aligned(tmp_path):
    track = load_track(recorded_session(tmp_path / "rec.h5"))
    assert track.n_frames == 40
    assert track.blendshapes.shape == (40, 52)
    assert np.allclose(track.blendshapes, ramp(40))
    assert "arkit-test" in track.name


def test_session_without_blendshapes_names_the_fix(tmp_path):
    path = tmp_path / "imu-only.h5"
    with SessionWriter(path) as w:
        w.add_stream(StreamSpec(name="imu", type="IMU", channel_count=3, nominal_srate=100.0))
    with pytest.raises(SourceError, match="imusic sync"):
        load_track(path)


def test_predictions_npy_and_h5(tmp_path):
    np.save(tmp_path / "p.npy", ramp(12))
    t = load_track(tmp_path / "p.npy", rate_hz=30.0)
    assert t.rate_hz == 30.0 and t.n_frames == 12 and t.t[-1] == pytest.approx(11 / 30)
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        ds = h5.create_dataset("predictions", data=np.hstack([ramp(9), np.zeros((9, 9))]))
        ds.attrs["rate_hz"] = 50.0
    t = load_track(tmp_path / "p.h5")
    assert t.rate_hz == 50.0 and t.blendshapes.shape == (9, 52)
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("x", data=np.zeros(3))
    with pytest.raises(SourceError, match="predictions"):
        load_track(tmp_path / "other.h5")


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        load_track(tmp_path / "missing.h5")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SourceError, match="unknown file type"):
        load_track(tmp_path / "x.txt")
    np.save(tmp_path / "bad.npy", np.zeros((5, 7)))
    with pytest.raises(SourceError, match="bad.npy"):
        load_track(tmp_path / "bad.npy")


def test_real_live_link_face_take(shared_data):
    take = sorted((shared_data / "arkit").rglob("*.csv"))[0]
    track = load_track(take)
    assert track.n_frames > 10 and track.blendshapes.shape[1] == 52
    assert np.nanmax(track.blendshapes) > 0.1            # a real take has expressions
    assert np.all(np.diff(track.t) >= 0)


def test_pair_frames_by_index_and_time():
    a = Track.from_array(ramp(10), 60.0)
    assert np.array_equal(pair_frames(a, Track.from_array(ramp(10), 60.0)), np.arange(10))
    half = Track.from_array(ramp(5), 30.0)
    assert np.array_equal(pair_frames(a, half), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])


@given(na=st.integers(1, 60), nb=st.integers(1, 60), ra=st.floats(1, 200), rb=st.floats(1, 200))
def test_pair_frames_in_range(na, nb, ra, rb):
    idx = pair_frames(Track.from_array(ramp(na), ra), Track.from_array(ramp(nb), rb))
    assert len(idx) == na and idx.min() >= 0 and idx.max() < nb
    assert np.all(np.diff(idx) >= 0)


def test_parse_blendshapes():
    w = parse_blendshapes("jawOpen=0.5, mouthSmileLeft")
    assert w[ARKIT_NAMES.index("jawOpen")] == 0.5
    assert w[ARKIT_NAMES.index("mouthSmileLeft")] == 1.0 and w.sum() == 1.5
    with pytest.raises(ValueError, match="did you mean 'jawOpen'"):
        parse_blendshapes("JawOpen=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_blendshapes("jawOpen=wide")


@given(st.text(max_size=40))
def test_parse_blendshapes_fuzz(text):
    try:
        w = parse_blendshapes(text)
    except ValueError:
        return
    assert w.shape == (52,)


def test_error_colors_scale():
    d = np.array([0.0, 0.0025, 0.005, 0.05])
    c = error_colors(d, scale_mm=5.0)
    assert c.shape == (4, 3) and np.all((c >= 0) & (c <= 1))
    assert np.allclose(c[2], c[3])                      # saturates at the scale
    assert c[0].sum() > c[1].sum() > c[2].sum()         # pale -> dark
    assert vertex_error(np.zeros((2, 3)), np.array([[3, 4, 0], [0, 0, 0]])).tolist() == [5, 0]
    with pytest.raises(ValueError):
        error_colors(d, scale_mm=0)
