"""Session files open in HDF5 1.10+: Debian's ``h5dump`` (hdf5-tools, HDF5 1.10) reads a
session written by ``SessionWriter`` under the bundled HDF5, including a stream added while
SWMR was on (the late-stream reopen) and the gzip+shuffle compressed datasets."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from imusic.capture.session import SessionWriter, StreamSpec


def _h5dump() -> str:
    exe = shutil.which("h5dump")
    if exe is None:
        pytest.fail("h5dump not found: install the apt package hdf5-tools (scripts/setup.sh)")
    return exe


def _dump(*args: str) -> str:
    out = subprocess.run([_h5dump(), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "error" not in out.stderr.lower(), out.stderr
    return out.stdout


def _session(path):
    with SessionWriter(path, subject="p1", attrs={"note": {"a": 1}}) as w:
        imu = w.add_stream(StreamSpec("imu", "IMU", 3, 100.0, "double64",
                                      labels=["s.acc.x", "s.acc.y", "s.acc.z"]))
        mk = w.add_stream(StreamSpec("mk", "Markers", 1, 0.0, "string"))
        t = 100 + np.arange(300) / 100.0
        w.append(imu, np.arange(900, dtype=float).reshape(300, 3), t)
        w.append(mk, [["tap"], ["start"]], [100.5, 101.0])
        w.add_clock_offset(imu, 101.0, 0.002)
        w.add_gap(imu, 101.2, 101.6)
        w.add_event(100.5, "tap", source=mk)
        w.flush()
        # Joins while SWMR is on: the writer closes, reopens and creates it.
        late = w.add_stream(StreamSpec("late", "Blendshapes", 2, 60.0, "float32"))
        w.append(late, np.full((120, 2), 0.25, np.float32), 102 + np.arange(120) / 60.0)
    return path


def test_h5dump_reads_a_session(tmp_path):
    path = _session(tmp_path / "s.h5")
    header = _dump("-H", str(path))
    for name in ("/streams/imu/time_series", "/streams/late/time_stamps", "closed_cleanly",
                 "/events/text"):
        assert name in header or name.split("/")[-1] in header, name
    props = _dump("-p", "-H", "-d", "/streams/imu/time_series", str(path))
    assert "COMPRESSION DEFLATE" in props and "SHUFFLE" in props
    data = _dump("-d", "/streams/imu/time_series", "-s", "299,0", "-c", "1,3", str(path))
    assert "897, 898, 899" in data
    late = _dump("-d", "/streams/late/time_series", "-s", "119,0", "-c", "1,2", str(path))
    assert "0.25, 0.25" in late
    assert '"tap"' in _dump("-d", "/streams/mk/time_series", str(path))
    assert "TRUE" in _dump("-a", "/closed_cleanly", str(path)).upper()



def test_h5dump_reads_a_twin_session_after_sync(tmp_path):
    """The groups added after recording (``imusic simulate``'s and ``imusic sync``'s aligned
    and calibration groups, opened in append mode) keep the file readable by HDF5 1.10."""
    from imusic.capture.sync import sync_session
    from imusic.model.simulate import simulate_dataset

    (path,) = simulate_dataset(tmp_path / "twin", subjects=1, minutes=0.2, use_procedural=True,
                               seed=3)
    sync_session(path)
    header = _dump("-H", str(path))
    for name in ("aligned", "calibration", "blendshapes", "valid_imu"):
        assert name in header, name
    rows = _dump("-d", "/aligned/blendshapes", "-s", "0,0", "-c", "1,2", str(path))
    assert "DATA" in rows
