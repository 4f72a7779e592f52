"""imusic export: Live Link Face CSV, OpenFace-style AU CSV and plain CSV from real sessions."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from capture.aligned import Aligned, write_aligned
from capture.export import (
    ExportError,
    au_header,
    export_session,
    fill_gaps,
    load_blendshapes,
)
from capture.livelink_csv import read_take
from capture.session import SessionWriter, StreamSpec, write_stream
from hardware.vocabulary import ACTION_UNITS, ARKIT_NAMES, STREAM_NAMES, stream_index

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


def test_au_csv_openface_layout_and_mapping(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out, series = export_session(session, "au-csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, skipinitialspace=True))
    assert list(rows[0].keys()) == au_header()
    assert "AU01_r" in rows[0] and "AU12_r" in rows[0] and "AU45_c" in rows[0]
    assert len(rows) == 600
    sl, sr = stream_index("mouthSmileLeft"), stream_index("mouthSmileRight")
    for i in range(0, 600, 37):
        r = rows[i]
        assert int(r["frame"]) == i + 1 and float(r["timestamp"]) == pytest.approx(i / 60, abs=1e-3)
        if series.face_found[i]:
            assert r["success"] == "1"
            want = 5 * (series.values[i, sl] + series.values[i, sr]) / 2
            assert float(r["AU12_r"]) == pytest.approx(min(want, 5), abs=0.006)
            assert float(r["AU45_r"]) == pytest.approx(
                5 * np.mean(series.values[i, [0, 7]]), abs=0.006)
            assert r["AU12_c"] == str(int(float(r["AU12_r"]) >= 1.0)) or abs(float(r["AU12_r"]) - 1) < 0.01
        else:
            assert r["success"] == "0" and float(r["AU12_r"]) == 0.0
    vals = np.array([[float(r[f"AU{a:02d}_r"]) for a in ACTION_UNITS] for r in rows])
    assert vals.min() >= 0 and vals.max() <= 5 and vals.max() > 1


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
