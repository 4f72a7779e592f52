"""imusic info: summary numbers, validation errors, and robustness on damaged files."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.capture.session import SessionWriter, StreamSpec
from imusic.capture.session_check import CheckConfig, check_session, format_report


def small_session(path, n=500, rate=100.0):
    with SessionWriter(path, subject="p7") as w:
        k = w.add_stream(StreamSpec("imu", "IMU", 3, rate, "double64",
                                    labels=["a.acc.x", "a.acc.y", "a.acc.z"]))
        t = 10 + np.arange(n) / rate
        w.append(k, np.random.default_rng(0).normal(size=(n, 3)), t)
        w.add_clock_offset(k, 11.0, 0.002)
        w.add_clock_offset(k, 14.0, 0.004)
        w.add_gap(k, 12.0, 12.5)
        w.add_event(10.5, "tap")
    return path


def test_summary_of_a_valid_session(tmp_path):
    rep = check_session(small_session(tmp_path / "ok.h5"))
    assert rep.valid and not rep.warnings, rep.errors + rep.warnings
    (s,) = rep.streams
    assert s.samples == 500 and s.channels == 3 and s.gaps == 1 and s.offsets == 2
    assert s.measured_rate == pytest.approx(100.0) and s.gap_s == pytest.approx(0.5)
    assert s.offset_mean_ms == pytest.approx(3.0) and rep.events == 1
    text = format_report(rep)
    assert "imu" in text and "valid" in text and "p7" in text


def test_rate_tolerance_is_a_threshold(tmp_path):
    """A stream stamped 5% fast: within the default 10%, a warning at 1%."""
    path = tmp_path / "fast.h5"
    with SessionWriter(path) as w:
        k = w.add_stream(StreamSpec("imu", "IMU", 1, 100.0, "double64"))
        w.append(k, np.zeros((300, 1)), 10 + np.arange(300) / 105.0)
    assert not check_session(path).warnings
    (warning,) = check_session(path, CheckConfig(rate_tolerance=0.01)).warnings
    assert "105.0 Hz differs from the nominal 100 Hz by more than 1%" in warning


def test_invalid_files_say_why(tmp_path):
    p = small_session(tmp_path / "back.h5")
    with h5py.File(p, "r+") as h5:
        h5["streams/imu/time_stamps"][100] = 0.0           # goes backwards
        del h5["streams/imu/channel_labels"]
        h5["streams/imu/channel_labels"] = np.array(["x"], dtype=object).astype("S")
    rep = check_session(p)
    assert not rep.valid
    assert any("backwards" in e for e in rep.errors)
    assert any("1 channel labels for 3 channels" in e for e in rep.errors)
    out = subprocess.run([sys.executable, "-m", "imusic", "info", str(p)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "back.h5 is invalid" in out.stderr

    q = tmp_path / "nots.h5"
    with h5py.File(q, "w") as h5:
        h5["x"] = 1
    rep = check_session(q)
    assert not rep.valid and "not an imusic session" in rep.errors[0]
    rep = check_session(tmp_path / "missing.h5")
    assert "no such session file" in rep.errors[0]


def test_unfinished_file_is_a_warning_not_an_error(tmp_path):
    p = tmp_path / "open.h5"
    w = SessionWriter(p)
    k = w.add_stream(StreamSpec("bs", "Blendshapes", 61, 60.0))
    w.append(k, np.zeros((60, 61)), np.arange(60) / 60)
    w.flush()
    rep = check_session(p)
    w.close()
    # Still being written (the writer is open and has just flushed): said as such.
    assert rep.valid and rep.live and any("being recorded" in x for x in rep.warnings)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return small_session(tmp_path_factory.mktemp("fuzz") / "pristine.h5").read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_never_crash_info(tmp_path, pristine, data):
    """Flipped bytes or truncation anywhere: a report (valid or not), never an exception."""
    buf = bytearray(pristine)
    if data.draw(st.booleans(), label="truncate"):
        buf = buf[: data.draw(st.integers(0, len(buf) - 1), label="length")]
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        if buf:
            i = data.draw(st.integers(0, len(buf) - 1), label="at")
            buf[i] = data.draw(st.integers(0, 255), label="byte")
    p = tmp_path / f"dmg-{data.draw(st.integers(0, 10**9), label='name')}.h5"
    p.write_bytes(bytes(buf))
    rep = check_session(p)
    format_report(rep)
    if not rep.valid:
        assert rep.errors[0]
