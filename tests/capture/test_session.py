"""The session file format: write, read back, refuse overwrites, survive a killed writer."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pylsl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.session import (HEALTH_FIELDS, SCHEMA, SessionError, SessionReader, SessionWriter,
                             StreamSpec, stream_key)


def imu_info(name: str, sites=("a", "b")) -> pylsl.StreamInfo:
    labels = [f"{s}.{q}.{ax}" for s in sites for q in ("acc", "gyro", "mag") for ax in "xyz"]
    labels += ["device.time_us", "device.seq"]
    info = pylsl.StreamInfo(name, "IMU", len(labels), 200.0, pylsl.cf_double64, f"{name}-src")
    chans = info.desc().append_child("channels")
    for lab in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", lab)
        ch.append_child_value("unit", "m/s^2" if ".acc." in lab else "")
    return info


def test_round_trip_streams_offsets_events_health(tmp_path):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20))
    with SessionWriter(path, subject="p01") as w:
        k = w.add_stream(imu_info("imu"))
        w.append(k, x[:100], np.arange(100) / 200)
        w.append(k, x[100:], np.arange(100, 300) / 200)
        w.add_clock_offset(k, 1.0, -0.25)
        w.add_clock_offset(k, 2.0, float("nan"))      # a failed measurement: counted, not written
        w.add_gap(k, 0.2, 0.4)
        w.add_event(0.7, "tap", source="markers")
    with SessionReader(path) as r:
        assert r.attrs["schema"] == SCHEMA and r.attrs["subject"] == "p01" and r.closed_cleanly
        assert r.keys == ["imu"] and r.keys_of_type("imu") == ["imu"] and not r.has_aligned
        d = r.stream("imu")
        np.testing.assert_array_equal(d.time_series, x)
        np.testing.assert_allclose(d.time_stamps, np.arange(300) / 200)
        np.testing.assert_array_equal(d.clock_offsets, [[1.0, -0.25]])
        np.testing.assert_array_equal(d.gaps, [[0.2, 0.4]])
        assert d.health["samples"] == 300 and d.health["chunks"] == 2
        assert d.health["offsets"] == 1 and d.health["offset_failures"] == 1
        assert d.spec.labels[0] == "a.acc.x" and d.spec.units[0] == "m/s^2"
        np.testing.assert_array_equal(d.channel("b.gyro.z"), x[:, 14])
        assert [(e.time, e.source, e.text) for e in r.events()] == [(0.7, "markers", "tap")]
    # Once closed cleanly, plain h5py (no SWMR flag) opens it too.
    with h5py.File(path, "r") as h5:
        assert h5["streams/imu/time_series"].shape == (300, 20)
        assert list(h5["streams/imu/health"].attrs["columns"]) is not None


def test_never_overwrites(tmp_path):
    path = tmp_path / "exists.h5"
    path.write_bytes(b"precious")
    with pytest.raises(SessionError, match="exists.h5 already exists"):
        SessionWriter(path)
    assert path.read_bytes() == b"precious"


def test_late_stream_and_markers_under_swmr(tmp_path):
    path = tmp_path / "late.h5"
    with SessionWriter(path) as w:
        a = w.add_stream(imu_info("imu"))
        w.append(a, np.zeros((5, 20)), np.arange(5.0))
        w.flush()
        # A live reader sees the data while the writer is still open.
        with SessionReader(path) as r:
            assert r.stream("imu").time_series.shape == (5, 20) and not r.closed_cleanly
        m = w.add_stream(pylsl.StreamInfo("marks", "Markers", 1, 0, pylsl.cf_string, "m1"))
        w.append(m, [["start"], ["tap é"]], [1.0, 2.0])
        w.append(a, np.ones((5, 20)), np.arange(5.0, 10.0))
        b = w.add_stream(imu_info("imu"))               # same name: a new key
    assert b == "imu-2"
    with SessionReader(path) as r:
        assert r.keys_of_type("Markers") == ["marks"]
        assert r.stream("marks").time_series[:, 0].tolist() == ["start", "tap é"]
        assert r.stream("imu").time_series.shape == (10, 20)


def test_bad_appends_name_the_stream(tmp_path):
    with SessionWriter(tmp_path / "b.h5") as w:
        k = w.add_stream(imu_info("imu"))
        with pytest.raises(SessionError, match="'imu' takes"):
            w.append(k, np.zeros((3, 7)), np.zeros(3))
        with pytest.raises(SessionError, match="no stream 'nope'"):
            w.append("nope", np.zeros((1, 20)), [0.0])


def test_reader_refuses_non_sessions(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["schema"] = "something.else"
    with pytest.raises(SessionError, match="not an imusic session"):
        SessionReader(tmp_path / "other.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SessionError, match="junk.h5 is not a readable HDF5"):
        SessionReader(tmp_path / "junk.h5")
    with pytest.raises(SessionError, match="no such session"):
        SessionReader(tmp_path / "missing.h5")


def test_killed_writer_leaves_a_readable_file(tmp_path):
    """SIGKILL mid-write: the file opens (SWMR read) with every row the writer had flushed,
    and loses at most one second of samples.

    The child appends a 1000 Hz stream in real time (10 rows each 10 ms) with the recorder's
    flush interval and prints, after every append, the rows appended and the rows on disk as
    of the last flush (``durable_rows``); the kill comes once 500 rows are on disk, however slow
    the machine is."""
    path = tmp_path / "killed.h5"
    code = textwrap.dedent(f"""
        import sys, time, numpy as np
        from imusic.capture.session import SessionWriter, StreamSpec
        w = SessionWriter({str(path)!r})
        k = w.add_stream(StreamSpec("imu", "IMU", 4, 1000.0, "double64"))
        i = 0
        while True:
            w.append(k, np.full((10, 4), i, float), i * 0.01 + np.arange(10) / 1000)
            i += 1
            if i == 20:
                w.add_stream(StreamSpec("late", "Blendshapes", 61, 60.0, "float32"))
            print(10 * i, w.durable_rows(k), flush=True)
            time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    appended = flushed = 0
    try:
        for line in proc.stdout:
            appended, flushed = (int(v) for v in line.split())
            assert appended - flushed <= 1000, "more than 1 s of samples waited for the disk"
            if flushed >= 500:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert flushed >= 500, "the writer never acknowledged 500 flushed rows"
    with SessionReader(path) as r:
        assert not r.closed_cleanly
        assert set(r.keys) == {"imu", "late"}
        d = r.stream("imu")
        assert d.time_series.shape[0] >= flushed
        assert appended - d.time_series.shape[0] <= 1000      # at most 1 s lost
        n = d.time_series.shape[0]
        assert np.array_equal(d.time_series[:, 0], np.arange(n) // 10)   # every row, in order
        assert np.all(np.diff(d.time_stamps) > 0)
        assert d.health["samples"] >= flushed
    with h5py.File(path, "r", swmr=True) as h5:
        assert h5["streams/imu/time_series"].shape[0] >= flushed


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_stream_key_is_safe_and_unique(name):
    k1 = stream_key(name)
    k2 = stream_key(name, [k1])
    assert k1 and "/" not in k1 and k1 != k2


def test_spec_from_xml_reads_channels():
    info = imu_info("x")
    spec = StreamSpec.from_xml(info.as_xml())
    assert spec.channel_count == 20 and spec.labels[-1] == "device.seq"
    assert spec.channel_format == "double64" and spec.nominal_srate == 200.0
    with pytest.raises(SessionError, match="does not parse"):
        StreamSpec.from_xml("<info><name>")
    assert len(HEALTH_FIELDS) == 7


@settings(max_examples=80, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.builds(lambda n, c, r, f, labs: (
        f"<info><name>{n}</name><type>IMU</type><channel_count>{c}</channel_count>"
        f"<nominal_srate>{r}</nominal_srate><channel_format>{f}</channel_format><desc>"
        f"<channels>{''.join(f'<channel><label>{x}</label></channel>' for x in labs)}"
        "</channels></desc></info>"),
        st.text("abc<>&", max_size=5), st.one_of(st.integers(-5, 70000), st.text(max_size=4)),
        st.one_of(st.floats(allow_nan=True), st.text(max_size=4)),
        st.sampled_from(["float32", "double64", "string", "int16", "bogus", ""]),
        st.lists(st.text("xyz.", max_size=6), max_size=5))))
def test_info_xml_parser_fuzz(xml):
    """Any header: a spec whose fields are sane, or a SessionError saying what is wrong."""
    try:
        spec = StreamSpec.from_xml(xml)
    except SessionError as err:
        assert str(err)
        return
    assert 1 <= spec.channel_count <= 65536 and len(spec.labels) == spec.channel_count
    assert spec.nominal_srate >= 0


def test_a_writer_block_that_fails_does_not_seal_the_file_as_clean(tmp_path):
    path = tmp_path / "failed.h5"
    with pytest.raises(RuntimeError, match="mid-write"):
        with SessionWriter(path) as w:
            k = w.add_stream(StreamSpec("imu", "IMU", 4, 100.0, "double64"))
            w.append(k, np.zeros((10, 4)), np.arange(10) / 100)
            raise RuntimeError("mid-write")
    with SessionReader(path) as r:
        assert not r.closed_cleanly
        assert r.stream("imu").time_series.shape[0] == 10
