"""The IMUSIC release reader: exact layout facts, one-line errors for bad folders, fuzzed CSV."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.imusic_release import (IMU_COLUMNS, ReleaseError, find_takes, parse_imu_csv,
                                    parse_take_name, read_take)
from imusic.model.release_twin import make_release

HEADER = ",".join(IMU_COLUMNS)


@pytest.fixture(scope="module")
def take(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("rel"), subjects=1, takes=1, seconds=3)[0]


def _copy(take: Path, tmp: Path) -> Path:
    dst = tmp / "data" / take.name
    shutil.copytree(take, dst)
    return dst


def test_layout_facts_of_a_generated_take(take: Path) -> None:
    raw = (take / "IMU_data/raw/000.csv").read_text().splitlines()
    calib = (take / "IMU_data/calib/020.csv").read_text().splitlines()
    assert raw[0] == HEADER and raw[0].startswith(",Position_X") and "Quaterion_0" in raw[0]
    assert raw[1].split(",")[0] == "90" and calib[1].split(",")[0] == "90.0"
    arkit = (take / "Arkit/arkit_params.csv").read_text().splitlines()
    assert arkit[0].startswith("Timecode,BlendshapeCount,")
    assert len(arkit) == len(raw) == len(calib)
    t = read_take(take)
    assert (t.subject, t.take, t.source) == ("participant_1", "testcase_1", "twin")
    np.testing.assert_allclose(t.quat_ref[:, 0], [[1, 0, 0, 0]] * t.n_frames, atol=1e-6)
    assert find_takes(take.parent.parent) == [take]


def test_take_names() -> None:
    assert parse_take_name("participant_1_testcase_2") == ("participant_1", "testcase_2")
    with pytest.raises(ReleaseError, match="not named like"):
        parse_take_name("take_1")


@pytest.mark.parametrize("damage, expect", [
    (lambda d: (d / "IMU_data/raw/013.csv").unlink(), "missing 013"),
    (lambda d: (d / "IMU_data/calib/099.csv").write_text(HEADER + "\n"), "not in rig"),
    (lambda d: (d / "Arkit/arkit_params.csv").unlink(), "arkit_params.csv: missing"),
    (lambda d: _truncate(d / "IMU_data/calib/005.csv"), "rows, but"),
    (lambda d: _spoil(d / "IMU_data/raw/001.csv"), "raw/001.csv: row 3"),
])
def test_bad_folders_fail_in_one_line_and_leave_no_session(take, tmp_path, damage, expect):
    d = _copy(take, tmp_path)
    damage(d)
    out = tmp_path / "s.h5"
    r = subprocess.run([sys.executable, "-m", "imusic", "import", str(d), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def _truncate(p: Path) -> None:
    p.write_text("\n".join(p.read_text().splitlines()[:-3]) + "\n")


def _spoil(p: Path) -> None:
    lines = p.read_text().splitlines()
    lines[3] = lines[3].replace("0.00000000", "zero", 1)
    p.write_text("\n".join(lines) + "\n")


def test_a_folder_of_takes_needs_an_output_folder(take: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "imusic", "import", str(take.parent.parent / "x")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr


_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
                  st.text(alphabet="0123456789.-eE,x ", max_size=6))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_cell, min_size=12, max_size=16), max_size=5),
       st.booleans())
def test_fuzzed_imu_csv_parses_or_fails_in_one_line(rows, good_header):
    head = HEADER if good_header else HEADER.replace("Quaterion", "Quaternion")
    text = "\n".join([head] + [",".join(r) for r in rows])
    try:
        f = parse_imu_csv(text, "fuzz.csv")
    except ReleaseError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.csv")
        return
    assert good_header and f.quat.shape == (len(rows), 4)
    np.testing.assert_allclose(np.linalg.norm(f.quat, axis=1), 1.0, atol=1e-9)
    assert np.all(np.isfinite(f.acc_g)) and np.all(np.diff(f.frame) == 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-4, 4), st.floats(-4, 4), st.floats(-4, 4),
                          st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1),
                          st.floats(-1, 1)), min_size=1, max_size=6), st.integers(0, 10 ** 6))
def test_valid_rows_round_trip(rows, first):
    q = np.array([r[3:] for r in rows])
    lines = [HEADER]
    for k, r in enumerate(rows):
        lines.append(",".join([str(first + k)] + ["0"] * 6 + [repr(v) for v in r]))
    try:
        f = parse_imu_csv("\n".join(lines), "ok.csv")
    except ReleaseError as e:
        assert "quaternion norm" in str(e)
        assert np.any(np.abs(np.linalg.norm(q, axis=1) - 1) > 0.05)
        return
    np.testing.assert_allclose(f.acc_g, [r[:3] for r in rows])
    assert f.frame[0] == first
