"""Live Link Face CSV takes: the real takes, the writer round trip, header variants, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.livelink_csv import (
    LiveLinkCSVError,
    format_timecode,
    parse_take,
    parse_timecode,
    read_take,
    write_take,
)
from imusic.hardware.vocabulary import LIVELINK_CSV_NAMES, STREAM_NAMES, stream_index

# (file, data rows, face-lost rows) as stated in shared/data/arkit/PROVENANCE.md
REAL_TAKES = [
    ("alex_rom_3.csv", 4030, 0),
    ("S07-001.csv", 2028, 0),
    ("S88-001.csv", 1939, 277),
    ("apfel.csv", 1926, 35),
]


@pytest.mark.parametrize("name,frames,lost", REAL_TAKES)
def test_real_takes_parse_with_stated_counts(shared_data: Path, name: str, frames: int, lost: int):
    take = read_take(shared_data / "arkit" / "alexdjulin_llf" / name)
    assert take.n_frames == frames
    assert int((~take.face_found).sum()) == lost
    assert take.values.shape == (frames, 61) and take.values.dtype == np.float32
    assert take.t.dtype == np.float64 and take.t[0] == 0.0
    assert np.all(np.diff(take.t) > 0)
    assert take.fps == 30.0
    # Face-lost rows are gaps (NaN), never zeros; found rows are complete.
    assert np.isnan(take.values[~take.face_found]).all()
    assert np.isfinite(take.values[take.face_found]).all()
    bs = take.blendshapes[take.face_found]
    assert bs.min() >= 0.0 and bs.max() < 1.1
    # Head rotation is exactly 0 in these takes; eyes move (PROVENANCE.md).
    head = take.values[take.face_found][:, [stream_index(n) for n in ("headYaw", "headPitch", "headRoll")]]
    assert (head == 0.0).all()
    assert np.abs(take.values[take.face_found][:, stream_index("leftEyeYaw")]).max() > 0.01


def test_real_take_values_by_name(shared_data: Path):
    """Columns are read by name: JawRight/JawLeft swap places between CSV and stream order."""
    path = shared_data / "arkit" / "alexdjulin_llf" / "apfel.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, first = rows[0], rows[1]
    take = read_take(path)
    for name in ("JawLeft", "JawRight", "MouthLeft", "MouthRight", "TongueOut", "RightEyeRoll"):
        want = np.float32(first[header.index(name)])
        assert take.values[0, stream_index(name)] == want
    # The first row's timecode 12:21:59:06.595 -> seconds of day, FF at 60/s.
    assert take.start_timecode_s == pytest.approx(12 * 3600 + 21 * 60 + 59 + 6.595 / 60)


def test_max_values_match_provenance(shared_data: Path):
    take = read_take(shared_data / "arkit" / "alexdjulin_llf" / "apfel.csv")
    assert np.nanmax(take.blendshapes) == pytest.approx(1.076, abs=5e-4)


@pytest.mark.parametrize("name", ["apfel.csv", "S07-001.csv"])
def test_writer_reproduces_the_app_bytes(shared_data: Path, tmp_path: Path, name: str):
    """Writing a read take gives back the app's rows byte for byte (header spelling aside)."""
    src = shared_data / "arkit" / "alexdjulin_llf" / name
    take = read_take(src)
    out = write_take(tmp_path / name, take.t, take.values, take.face_found,
                     start_timecode_s=take.start_timecode_s, count_column="BlendShapeCount")
    assert out.read_bytes() == src.read_bytes()


def test_round_trip_with_gaps(tmp_path: Path):
    rng = np.random.default_rng(1)
    t = np.arange(100) / 60.0
    values = rng.uniform(0, 1, (100, 61)).astype(np.float32)
    values[10:15] = np.nan
    path = write_take(tmp_path / "take.csv", t, values, start_timecode_s=23 * 3600 + 3599.5)
    take = read_take(path)  # runs past midnight
    assert take.fps == 60.0
    np.testing.assert_allclose(take.t, t, atol=1e-4)
    assert (~take.face_found).sum() == 5 and not take.face_found[10:15].any()
    np.testing.assert_allclose(take.values[take.face_found], values[take.face_found], atol=1e-9)
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[1] == "BlendshapeCount"
    assert lines[11].endswith(",0") and lines[11].count(",") == 1


def test_header_variants_any_case_any_order(tmp_path: Path):
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 1, (3, 61)).round(4)
    order = rng.permutation(61)
    names = [LIVELINK_CSV_NAMES[i].upper() if i % 2 else LIVELINK_CSV_NAMES[i].lower() for i in order]
    stream_of_name = [stream_index(LIVELINK_CSV_NAMES[i]) for i in order]
    lines = ["timecode,BLENDSHAPECOUNT," + ",".join(names)]
    for k in range(3):
        lines.append(f"01:02:03:{k * 2:02d}.000,61," + ",".join(str(values[k, j]) for j in stream_of_name))
    take = parse_take("\r\n".join(lines) + "\r\n")
    np.testing.assert_allclose(take.values, values.astype(np.float32))
    assert take.fps == 30.0


def test_timecode_parse_and_format():
    assert parse_timecode("12:27:47:47.169") == pytest.approx(12 * 3600 + 27 * 60 + 47 + 47.169 / 60)
    assert format_timecode(parse_timecode("12:27:47:47.169")) == "12:27:47:47.169"
    assert format_timecode(59.99999999) == "00:01:00:00.000"  # never FF == 60
    for bad in ("12:27:47", "aa:bb:cc:dd", "12:27:47:60.000", "25:00:00:00.000"):
        with pytest.raises(ValueError):
            parse_timecode(bad)


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "empty file"),
        ("a,b,c\n", "no 'Timecode' column"),
        ("Timecode,BlendshapeCount,EyeBlinkLeft\n", "lacks 60"),
        ("HEADER\n00:00:00:00.000,61,0.5\n", "needs"),
        ("HEADER\nnot-a-time,0\n", ":2: timecode"),
        ("HEADER\n00:00:01:00.000,0\n00:00:00:00.000,0\n", ":3:"),
        ("HEADER\n00:00:00:00.000,x\n", "not an integer"),
        ("HEADER\n", "no frames"),
        ("HEADER\n00:00:00:00.000,61," + ",".join(["0.5"] * 60 + ["nan"]) + "\n", "RightEyeRoll is not a finite"),
    ],
)
def test_bad_input_names_file_and_line(text: str, fragment: str):
    header = "Timecode,BlendshapeCount," + ",".join(LIVELINK_CSV_NAMES)
    with pytest.raises(LiveLinkCSVError) as err:
        parse_take(text.replace("HEADER", header), path="take.csv")
    assert "take.csv" in str(err.value) and fragment in str(err.value)


def test_missing_file_is_file_not_found(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        read_take(tmp_path / "nope.csv")


def test_stream_order_constant_is_consistent():
    assert len(STREAM_NAMES) == 61 and len(LIVELINK_CSV_NAMES) == 61


_HEADER = "Timecode,BlendshapeCount," + ",".join(LIVELINK_CSV_NAMES)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789:.,-e\n\r\"abx ")), max_size=400))
def test_fuzz_body_never_crashes_with_other_errors(body: str):
    """Any body under a valid header either parses or raises LiveLinkCSVError."""
    try:
        take = parse_take(_HEADER + "\n" + body)
    except LiveLinkCSVError:
        return
    assert take.values.shape == (take.n_frames, 61)
    assert len(take.face_found) == take.n_frames


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_text(text: str):
    try:
        parse_take(text)
    except LiveLinkCSVError:
        pass


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 0.2), st.booleans()), min_size=1, max_size=30),
    st.floats(0, 86399),
)
def test_fuzz_writer_round_trip(steps, start):
    rng = np.random.default_rng(0)
    t = np.cumsum([0.0] + [round(s, 3) for s, _ in steps[1:]])
    found = np.array([f for _, f in steps])
    values = rng.uniform(-1, 1.1, (len(t), 61)).astype(np.float32)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        take = read_take(write_take(Path(d) / "x.csv", t, values, found, start_timecode_s=start))
    # Timecodes carry 1/60000 s; times come back to that resolution.
    np.testing.assert_allclose(take.t, t, atol=2e-5)
    assert (take.face_found == found).all()
    np.testing.assert_allclose(take.values[found], values[found], atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
def test_fuzz_any_bytes_file(data: bytes):
    """A binary (or any) file read as a take: a take, or LiveLinkCSVError naming the file."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "blob.csv"
        path.write_bytes(data)
        try:
            read_take(path)
        except LiveLinkCSVError as err:
            assert str(path) in str(err)
