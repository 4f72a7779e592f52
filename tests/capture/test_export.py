"""imusic export: Live Link Face CSV, OpenFace-style AU CSV and plain CSV from real sessions."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.aligned import Aligned, write_aligned
from imusic.capture.export import (
    ExportError,
    au_header,
    export_session,
    fill_gaps,
    load_blendshapes,
)
from imusic.capture.livelink_csv import read_take
from imusic.capture.session import SessionWriter, StreamSpec, write_stream
from imusic.hardware.vocabulary import STREAM_NAMES, stream_index

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real_take(shared_data: Path):
    return read_take(shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv")


def _aligned_session(path: Path, take, n: int = 600) -> Path:
    """A session whose aligned group carries a real take (30 fps rows placed on 60 Hz)."""
    rng = np.random.default_rng(0)
    sites = ["nose", "brow_l"]
    vals = np.repeat(take.values[250:250 + n // 2], 2, axis=0)[:n]  # face lost from row 382
    found = np.repeat(take.face_found[250:250 + n // 2], 2)[:n]
    a = Aligned(
        rate_hz=60.0, t=1000.0 + np.arange(n) / 60.0, blendshapes=vals[:, :52], pose=vals[:, 52:],
        acc=rng.normal(size=(n, 2, 3)), gyro=rng.normal(size=(n, 2, 3)),
        mag=rng.normal(size=(n, 2, 3)), valid_imu=np.arange(n) % 100 != 7, valid_arkit=found,
        sites=sites, reference="nose", rig_id="test")
    with SessionWriter(path, swmr=False):
        pass
    with h5py.File(path, "r+") as h5:
        write_aligned(h5, a)
    return path


def _stream_session(path: Path, take, rows: slice = slice(1600, 1900)) -> Path:
    """A session with a recorded Blendshapes stream of S88 rows 1600..1899 (face lost on
    1711..1833 and 1839..1863, no missing frames)."""
    spec = StreamSpec(name="ARKit", type="Blendshapes", channel_count=61, nominal_srate=30.0,
                      channel_format="float32", source_id="x", labels=list(STREAM_NAMES))
    keep = take.face_found[rows]   # the bridge pushes nothing while the face is lost
    with SessionWriter(path, swmr=False) as w:
        write_stream(w, spec, take.values[rows][keep], 500.0 + take.t[rows][keep])
    return path


def test_livelink_csv_from_aligned_reads_back(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out, series = export_session(session, "livelink-csv")
    assert out == tmp_path / "s.livelink.csv" and series.origin == "aligned"
    back = read_take(out)
    assert back.n_frames == 600 and back.fps == 60.0
    assert (back.face_found == series.face_found).all() and (~back.face_found).sum() > 0
    np.testing.assert_array_equal(back.values[back.face_found], series.values[series.face_found])
    header = out.read_text().splitlines()[0].split(",")
    assert header[:3] == ["Timecode", "BlendshapeCount", "EyeBlinkLeft"]
    assert header.index("JawRight") < header.index("JawLeft")  # the app's column order


def test_livelink_csv_from_recorded_stream_restores_face_lost_rows(tmp_path, real_take):
    session = _stream_session(tmp_path / "s.h5", real_take)
    out, series = export_session(session, "livelink-csv", tmp_path / "x.csv")
    assert series.origin == "stream:ARKit"
    back = read_take(out)
    rows = slice(1600, 1900)
    assert back.n_frames == 300 and (~back.face_found).sum() == (~real_take.face_found[rows]).sum()
    assert (back.face_found == real_take.face_found[rows]).all()
    np.testing.assert_allclose(back.t, real_take.t[rows] - real_take.t[1600], atol=1e-3)  # filled rows sit on the nominal grid
    np.testing.assert_array_equal(back.values[back.face_found],
                                  real_take.values[rows][real_take.face_found[rows]])


# OpenFace 2.0's FeatureExtraction output with -aus, as it names its columns (written out here,
# not derived from capture.export, so that the test checks the exporter against OpenFace).
OPENFACE_AU_COLUMNS = (
    "frame, face_id, timestamp, confidence, success, "
    "AU01_r, AU02_r, AU04_r, AU05_r, AU06_r, AU07_r, AU09_r, AU10_r, AU12_r, AU14_r, AU15_r, "
    "AU17_r, AU20_r, AU23_r, AU25_r, AU26_r, AU45_r, "
    "AU01_c, AU02_c, AU04_c, AU05_c, AU06_c, AU07_c, AU09_c, AU10_c, AU12_c, AU14_c, AU15_c, "
    "AU17_c, AU20_c, AU23_c, AU25_c, AU26_c, AU28_c, AU45_c").split(", ")


def test_au_csv_has_exactly_openface_columns_and_mapping(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out, series = export_session(session, "au-csv")
    header_line = out.read_text().splitlines()[0]
    assert header_line == ", ".join(OPENFACE_AU_COLUMNS)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, skipinitialspace=True))
    assert list(rows[0].keys()) == OPENFACE_AU_COLUMNS == au_header()
    assert "AU28_r" not in rows[0] and "AU16_r" not in rows[0] and "AU61_r" not in rows[0]
    assert len(rows) == 600
    sl, sr = stream_index("mouthSmileLeft"), stream_index("mouthSmileRight")
    pl, pr = stream_index("mouthPressLeft"), stream_index("mouthPressRight")
    rl, ru = stream_index("mouthRollLower"), stream_index("mouthRollUpper")
    for i in range(0, 600, 37):
        r = rows[i]
        assert int(r["frame"]) == i + 1 and float(r["timestamp"]) == pytest.approx(i / 60, abs=1e-3)
        if series.face_found[i]:
            v = series.values[i]
            assert r["success"] == "1" and r["confidence"] == "1.00"
            assert float(r["AU12_r"]) == pytest.approx(min(5 * (v[sl] + v[sr]) / 2, 5), abs=0.006)
            assert float(r["AU45_r"]) == pytest.approx(5 * np.mean(v[[0, 7]]), abs=0.006)
            assert float(r["AU23_r"]) == pytest.approx(min(5 * (v[pl] + v[pr]) / 2, 5), abs=0.006)
            assert r["AU28_c"] == str(int(5 * (v[rl] + v[ru]) / 2 >= 1.0))
        else:
            assert r["success"] == "0" and float(r["AU12_r"]) == 0.0 and r["AU28_c"] == "0"
    intensity = np.array([[float(r[c]) for c in OPENFACE_AU_COLUMNS if c.endswith("_r")] for r in rows])
    presence = np.array([[int(r[c]) for c in OPENFACE_AU_COLUMNS if c.endswith("_c")] for r in rows])
    assert intensity.shape == (600, 17) and presence.shape == (600, 18)
    assert intensity.min() >= 0 and intensity.max() <= 5 and intensity.max() > 1
    assert set(np.unique(presence)) <= {0, 1}
    # _c agrees with _r for the 17 AUs that have both.
    both = [c[:4] for c in OPENFACE_AU_COLUMNS if c.endswith("_r")]
    for au in both:
        r_vals = np.array([float(r[au + "_r"]) for r in rows])
        c_vals = np.array([int(r[au + "_c"]) for r in rows])
        clear = np.abs(r_vals - 1.0) > 0.01              # rounding to 2 decimals near the threshold
        assert (c_vals[clear] == (r_vals[clear] >= 1.0)).all(), au


@settings(max_examples=30, deadline=None)
@given(weights=st.lists(st.lists(st.floats(-0.5, 1.5, width=32), min_size=52, max_size=52),
                        min_size=1, max_size=8),
       lost=st.lists(st.booleans(), min_size=8, max_size=8))
def test_au_csv_any_weights_parse_as_openface(tmp_path_factory, weights, lost):
    n = len(weights)
    values = np.zeros((n, 61), np.float32)
    values[:, :52] = weights
    found = ~np.array(lost[:n])
    values[~found] = np.nan
    from imusic.capture.export import BlendshapeSeries, write_au_csv
    out = tmp_path_factory.mktemp("au") / "x.au.csv"
    series = BlendshapeSeries(t=np.arange(n) / 30.0, values=values, face_found=found,
                              origin="test", path=out)
    write_au_csv(series, out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, skipinitialspace=True))
    assert len(rows) == n and list(rows[0].keys()) == OPENFACE_AU_COLUMNS
    for i, r in enumerate(rows):
        assert r["success"] == ("1" if found[i] else "0")
        for c in OPENFACE_AU_COLUMNS[5:]:
            x = float(r[c])
            assert 0.0 <= x <= 5.0 and (not c.endswith("_c") or x in (0.0, 1.0))


def test_plain_csv_has_named_columns_and_imu(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out, series = export_session(session, "csv")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[0] == "time" and header[2:2 + 61] == list(STREAM_NAMES)
    assert "brow_l.gyro.z" in header and "imu_valid" in header
    assert len(rows) == 601
    j = header.index("jawOpen")
    for i in range(600):
        cell = rows[i + 1][j]
        if series.face_found[i]:
            assert float(cell) == pytest.approx(series.values[i, stream_index("jawOpen")], rel=1e-6, abs=1e-7)
        else:
            assert cell == ""
    k = header.index("nose.acc.x")
    assert rows[1 + 7][k] == "" and rows[1 + 8][k] != ""   # IMU gap -> empty cell


def test_fill_gaps():
    t = np.array([0, 1, 2, 5, 6]) / 60.0
    v = np.ones((5, 61), np.float32)
    t2, v2, f2 = fill_gaps(t, v, np.ones(5, bool), 60.0)
    assert len(t2) == 7 and f2.tolist() == [1, 1, 1, 0, 0, 1, 1]
    np.testing.assert_allclose(np.diff(t2), 1 / 60)
    assert np.isnan(v2[3:5]).all()


def test_errors_name_the_file(tmp_path, real_take):
    with pytest.raises(ExportError, match="no such session"):
        load_blendshapes(tmp_path / "missing.h5")
    empty = tmp_path / "empty.h5"
    with SessionWriter(empty, swmr=False):
        pass
    with pytest.raises(ExportError, match="empty.h5 has no 'aligned' group and no Blendshapes"):
        load_blendshapes(empty)
    session = _aligned_session(tmp_path / "s.h5", real_take)
    export_session(session, "csv")
    with pytest.raises(ExportError, match="already exists"):
        export_session(session, "csv")
    with pytest.raises(ExportError, match="unknown export format"):
        export_session(session, "xlsx")


def test_cli_export(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out = tmp_path / "take.csv"
    p = subprocess.run([sys.executable, "-m", "imusic", "export", str(session), "--format",
                        "livelink-csv", "-o", str(out)], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "600 frames from aligned" in p.stderr
    assert read_take(out).n_frames == 600
    p = subprocess.run([sys.executable, "-m", "imusic", "export", str(tmp_path / "nope.h5"),
                        "--format", "csv"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and "nope.h5" in p.stderr
