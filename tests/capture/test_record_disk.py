"""A full disk: ``imusic record`` on a real 3 MiB filesystem (tmpfs) with real LSL outlets.

With the default reserve the recorder stops by itself before writes fail; with ``--min-free 0``
it writes until HDF5 reports ENOSPC. Either way: one line naming the file, what failed and
what was kept, a non-zero exit, no traceback, and a file whose datasets hold only rows that
were really written (HDF5 grows a dataset's shape before it writes the rows, so a failed flush
leaves zero rows unless the writer cuts them off)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pylsl
import pytest
from .test_record import REPO

from imusic.capture.session import SessionReader, SessionWriter, StreamSpec, stream_key
from imusic.capture.session_check import check_session

pytestmark = pytest.mark.timeout(240)

CHANNELS, RATE = 40, 1000.0


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB filesystem (tmpfs, mounted as root), unmounted afterwards."""
    d = tmp_path / "disk"
    d.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)],
                         capture_output=True, text=True)
    if out.returncode:
        pytest.fail(f"cannot mount a 3 MiB tmpfs at {d} (the test runs as root): {out.stderr}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


class NoisePusher(threading.Thread):
    """A regular stream of incompressible rows: channel 0 is the sample index, the others
    noise; real time, chunks of a few ms."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.name_ = name
        info = pylsl.StreamInfo(name, "IMU", CHANNELS, RATE, pylsl.cf_double64, f"{name}-sid")
        self.outlet = pylsl.StreamOutlet(info, 0, 60)
        self.stop = threading.Event()
        self.pushed = 0
        self.rng = np.random.default_rng(1)

    def run(self) -> None:
        t0 = pylsl.local_clock()
        while not self.stop.is_set():
            n = int((pylsl.local_clock() - t0) * RATE) - self.pushed
            if n <= 0:
                time.sleep(0.002)
                continue
            k = np.arange(self.pushed, self.pushed + n)
            rows = self.rng.normal(size=(n, CHANNELS))
            rows[:, 0] = k
            self.outlet.push_chunk(rows, (t0 + k / RATE).tolist())
            self.pushed += n


def _only_real_rows(path, key) -> int:
    """Assert that every row of the stream was really written; return the row count."""
    with h5py.File(path, "r") as h5:
        g = h5[f"streams/{key}"]
        x, t = g["time_series"][()], g["time_stamps"][()]
        health = dict(zip(["samples"], g["health"][()][:1]))
        ev_t = h5["events/time"][()]
    assert len(x) == len(t) > 100
    assert np.all(t > 0) and np.all(np.diff(t) > 0), "timestamps that were never written"
    assert np.all(x[:, 1:].any(axis=1)), "all-zero rows that were never written"
    vals = x[:, 0].astype(np.int64)
    assert np.array_equal(vals, np.arange(vals[0], vals[0] + len(vals)))
    assert health["samples"] == len(t)
    assert np.all(ev_t > 0)
    return len(t)


def _record(path, name, *extra):
    return subprocess.run([sys.executable, "-m", "imusic", "record", "-o", str(path),
                           "--streams-by", name, "--quiet", "--seconds", "120", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=180)


def _one_line(stderr: str, needle: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if needle in ln]
    assert len(lines) == 1, stderr
    return lines[0]


def test_reserve_stops_before_the_disk_is_full(small_disk, unique_name):
    p = NoisePusher(unique_name)
    p.start()
    path = small_disk / "s.h5"
    try:
        t0 = time.monotonic()
        out = _record(path, unique_name)
        took = time.monotonic() - t0
    finally:
        p.stop.set()
    print(f"stopped after {took:.1f} s: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 1, out.stderr
    # Warned at the start: far less than an hour at this rate.
    assert "warning:" in out.stderr and "free on its disk" in out.stderr, out.stderr
    line = _one_line(out.stderr, "disk almost full")
    key = stream_key(unique_name)
    assert str(path) in line and f"{key} " in line and "samples" in line
    assert "saved" not in out.stderr
    n = _only_real_rows(path, key)
    assert f"{key} {n} samples" in line
    with SessionReader(path) as r:
        assert r.closed_cleanly
    assert check_session(path).valid


def test_write_error_stops_and_keeps_only_real_rows(small_disk, unique_name):
    p = NoisePusher(unique_name)
    p.start()
    path = small_disk / "s.h5"
    try:
        out = _record(path, unique_name, "--min-free", "0")
    finally:
        p.stop.set()
    print(out.stderr.strip().splitlines()[-1])
    assert out.returncode == 1, out.stderr
    line = _one_line(out.stderr, "writing failed")
    assert str(path) in line and "No space left on device" in line and "kept" in line
    key = stream_key(unique_name)
    n = _only_real_rows(path, key)
    assert f"{key} {n} samples" in line
    with SessionReader(path) as r:
        assert r.closed_cleanly
    rep = check_session(path)
    assert rep.valid, rep.errors


def test_writer_trims_to_the_last_good_flush(small_disk):
    """SessionWriter alone: append until the disk is full; the file keeps exactly the rows
    flushed before the failure (given room to close: the recorder frees a reserve file)."""
    reserve = small_disk / "reserve"
    reserve.write_bytes(bytes(512 << 10))
    path = small_disk / "w.h5"
    w = SessionWriter(path, flush_interval=1e9)
    key = w.add_stream(StreamSpec("imu", "IMU", CHANNELS, RATE, "double64"))
    rng = np.random.default_rng(0)
    flushed, n = 0, 0
    # The writer writes whole chunks straight to the disk (no chunk cache): the failing write
    # raises (OSError); with a cache, the flush that wrote it back did (RuntimeError).
    with pytest.raises((RuntimeError, OSError), match="No space left on device"):
        while n < 10**6:
            rows = rng.normal(size=(100, CHANNELS))
            rows[:, 0] = np.arange(n, n + 100)
            w.append(key, rows, 1.0 + np.arange(n, n + 100) / RATE)
            n += 100
            if n % 1000 == 0:
                w.flush()
                flushed = n
    reserve.unlink()
    w.close_after_failure("test")
    assert 0 < flushed < n
    assert _only_real_rows(path, key) == flushed
    with h5py.File(path, "r") as h5:
        assert h5.attrs["closed_cleanly"]


def test_refuses_to_start_on_a_full_disk(small_disk, unique_name):
    (small_disk / "filler").write_bytes(bytes(2600 << 10))      # 3 MiB disk, ~0.4 MiB left
    path = small_disk / "s.h5"
    out = _record(path, unique_name)
    assert out.returncode == 1
    line = _one_line(out.stderr, "free on its disk")
    assert str(path) in line and "below the 1.0 MiB reserve" in line
    assert not path.exists() and not (small_disk / ".s.h5.reserve").exists()
