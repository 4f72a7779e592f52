"""Live sessions are not mostly dead space: the writer writes each compressed chunk once.

A session is written as the recorder writes one: small appends (a 200 Hz wearable's 4-instant
frames, 60 Hz ARKit frames one by one) with a flush between them, a stream joining late under
SWMR, a clean close. The file then holds little more than its chunks (HDF5 rewrote a part
filled compressed chunk at every flush, and the old copies stayed in the file as dead space:
84 % of a real-time session). h5dump (HDF5 1.10) still reads every row back."""

from __future__ import annotations

import shutil
import time
import subprocess

import h5py
import numpy as np
import pytest

from imusic.capture.session import STREAMS, SessionReader, SessionWriter, StreamSpec, chunk_rows

MAX_OVERHEAD = 1.15            # file bytes / chunk bytes allowed after a clean close
FIXED_BYTES = 96 << 10         # headers, info XML, events: a small session's fixed part


def _wire_like(n: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """int16 counts times a float32 scale, as the device bridge publishes IMU values."""
    counts = np.cumsum(rng.integers(-40, 41, size=(n, channels)), axis=0).clip(-32768, 32767)
    return counts * np.float64(np.float32(0.0011971))


def _write_like_the_recorder(path, frames: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    imu = _wire_like(frames * 4, 110, rng)
    bs = rng.random((frames * 60 // 50, 61)).astype(np.float32)
    with SessionWriter(path, flush_interval=0.0) as w:          # a flush after every append
        k_imu = w.add_stream(StreamSpec("imu", "IMU", 110, 200.0, "double64"))
        k_bs = None
        j = 0
        for i in range(frames):
            w.append(k_imu, imu[4 * i:4 * i + 4], 100 + np.arange(4 * i, 4 * i + 4) / 200)
            if i == frames // 10:
                k_bs = w.add_stream(StreamSpec("arkit", "Blendshapes", 61, 60.0, "float32"))
            while k_bs and j < len(bs) and j * 50 <= i * 60:
                w.append(k_bs, bs[j:j + 1], [100 + j / 60])
                j += 1
    return {"imu": imu, "arkit": bs[:j]}


def _chunk_bytes(path) -> int:
    with h5py.File(path, "r") as h5:
        return sum(h5[f"{STREAMS}/{k}/{d}"].id.get_storage_size()
                   for k in h5[STREAMS] for d in ("time_series", "time_stamps"))


def test_a_closed_session_is_its_chunks_and_little_else(tmp_path):
    path = tmp_path / "live.h5"
    sent = _write_like_the_recorder(path, frames=3000)          # 60 s of a 200 Hz wearable
    size, chunks = path.stat().st_size, _chunk_bytes(path)
    print(f"file {size} bytes, chunks {chunks} bytes ({size / chunks:.2f}x)")
    assert size <= MAX_OVERHEAD * chunks + FIXED_BYTES
    with SessionReader(path) as r:
        assert r.closed_cleanly
        for key, rows in sent.items():
            d = r.stream(key)
            assert np.array_equal(d.time_series, rows)
            assert np.all(np.diff(d.time_stamps) > 0)


def test_chunks_fill_a_quarter_second_and_compress(tmp_path):
    path = tmp_path / "live.h5"
    _write_like_the_recorder(path, frames=500)
    with h5py.File(path, "r") as h5:
        ts = h5[f"{STREAMS}/imu/time_series"]
        assert ts.chunks == (50, 110) and h5[f"{STREAMS}/imu/time_stamps"].chunks == (50,)
        assert ts.compression == "gzip" and ts.shuffle
        # The wire's values (16-bit counts times a float32 scale) keep their zero low bits.
        assert ts.id.get_storage_size() < 0.7 * ts.size * 8
    assert chunk_rows(StreamSpec("a", "Blendshapes", 61, 60.0, "float32")) == 16
    assert chunk_rows(StreamSpec("m", "Markers", 1, 0.0, "string")) == 64


def test_h5dump_reads_every_row_of_a_live_written_session(tmp_path):
    exe = shutil.which("h5dump")
    if exe is None:
        pytest.fail("h5dump not found: install the apt package hdf5-tools (scripts/setup.sh)")
    path = tmp_path / "live.h5"
    sent = _write_like_the_recorder(path, frames=200)
    out = subprocess.run([exe, "-d", f"/{STREAMS}/imu/time_series", "-m", "%.17g", "-y",
                          "-w", "0", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "error" not in out.stderr.lower(), out.stderr
    body = out.stdout.split("DATA {", 1)[1]
    body = body[:body.index("}")]
    values = np.array([float(v) for v in body.replace(",", " ").split()])
    assert np.array_equal(values, sent["imu"].ravel())


def test_in_real_time_chunks_are_written_whole(tmp_path):
    """Rows coming as the recorder's pulls bring them (every 0.1 s) at the recorder's flush
    interval: every chunk is written whole, once; only the close writes part-filled ones."""
    rng = np.random.default_rng(5)
    rows = _wire_like(800, 110, rng)
    w = SessionWriter(tmp_path / "rt.h5")
    key = w.add_stream(StreamSpec("imu", "IMU", 110, 200.0, "double64"))
    t0, sent = time.monotonic(), 0
    while sent < len(rows):                     # 4 s of a 200 Hz stream, paced by the clock
        due = min(len(rows), int((time.monotonic() - t0) * 200))
        if due > sent:
            w.append(key, rows[sent:due], 100 + np.arange(sent, due) / 200)
            sent = due
        w.maybe_flush()
        time.sleep(0.1)
    assert w.part_chunk_writes == 0, f"{w.part_chunk_writes} part-filled chunk writes"
    w.close()
    assert w.part_chunk_writes <= 2            # the last chunk of time_series and time_stamps


def test_rows_of_a_paused_stream_reach_the_disk(tmp_path):
    """A stream that stops mid-chunk: its rows are written part filled after hold_s, so a
    kill then loses nothing of them."""
    w = SessionWriter(tmp_path / "pause.h5")
    key = w.add_stream(StreamSpec("imu", "IMU", 4, 200.0, "double64"))
    w.append(key, np.ones((7, 4)), 100 + np.arange(7) / 200)
    w.maybe_flush()
    deadline = time.monotonic() + 10
    while w.durable_rows(key) < 7 and time.monotonic() < deadline:
        w.maybe_flush()
        time.sleep(0.02)
    assert w.durable_rows(key) == 7 and w.pending_rows(key) == 0
    assert time.monotonic() < deadline
    w.close()
