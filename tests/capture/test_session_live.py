"""``imusic info`` on a file that is being recorded, and on one whose recording hit a write error.

A real ``SessionWriter`` runs in its own process (HDF5 lets one process open a file once), and
steps through what a recorder does when a stream joins: SWMR appends, then the file closed and
reopened without SWMR (HDF5 holds its file lock then) to create the new stream, then SWMR
again. A reader that meets the writer in that window must wait for it, not call the file
damaged; a killed recorder's file must still be called what it is.
"""

from __future__ import annotations

import ctypes
import io
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.capture.session import READ_LIMITS, SessionWriter, StreamSpec, is_live, open_h5
from imusic.capture.session_check import check_session, format_report
from imusic.capture.session_h5 import write_flagged

REPO = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys
import numpy as np
from imusic.capture.session import SessionWriter, StreamSpec

w = SessionWriter(sys.argv[1])
key = w.add_stream(StreamSpec("imu", "IMU", 3, 100.0))
w.append(key, np.ones((100, 3)), np.arange(100) / 100.0)
w.flush()
print("swmr", flush=True)
sys.stdin.readline()
w._reopen_for_structure()        # what add_stream does first for a late stream
print("structure", flush=True)
sys.stdin.readline()
w.add_stream(StreamSpec("late", "Markers", 1, 0.0, channel_format="string"))
w.append(key, np.ones((100, 3)), 1.0 + np.arange(100) / 100.0)
w.flush()
print("swmr again", flush=True)
sys.stdin.readline()
if sys.argv[2] == "close":
    w.close()
    print("closed", flush=True)
sys.stdin.readline()
"""


class Writer:
    """The writer process; ``step()`` sends it on and returns what it says it did."""

    def __init__(self, path: Path, end: str = "close") -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), end],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.said = self.proc.stdout.readline().strip()

    def step(self) -> str:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.said = self.proc.stdout.readline().strip()
        return self.said

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def _metadata_attempts(h5: h5py.File) -> int:
    """HDF5's metadata read attempts of an open file (H5Pget_metadata_read_attempts)."""
    fn = ctypes.CDLL(h5py.h5p.__file__).H5Pget_metadata_read_attempts
    fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.POINTER(ctypes.c_uint)], ctypes.c_int
    out = ctypes.c_uint(0)
    assert fn(h5.id.get_access_plist().id, ctypes.byref(out)) >= 0
    return out.value


def test_info_waits_while_the_writer_adds_a_stream(tmp_path):
    path = tmp_path / "live.h5"
    w = Writer(path)
    try:
        assert w.said == "swmr"
        assert write_flagged(path) and is_live(path)
        assert w.step() == "structure"
        # Now HDF5's lock is held: a reader opening the file fails at once ("unable to lock
        # file"); before, info called that a damaged file.
        with pytest.raises(OSError, match="lock"):
            h5py.File(path, "r", swmr=True)
        result = {}
        reader = threading.Thread(target=lambda: result.setdefault("rep", check_session(path)))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "the reader gave up while the writer held the file"
        assert w.step() == "swmr again"
        reader.join(READ_LIMITS.live_wait_s + 30)
        rep = result["rep"]
        assert rep.valid, rep.errors
        assert rep.live
        assert [s.key for s in rep.streams] == ["imu", "late"]
        text = format_report(rep)
        assert "being recorded" in text and "closed cleanly" not in text
        assert "recorder killed" not in text
        assert w.step() == "closed"
        rep = check_session(path)
        assert rep.valid and not rep.live and rep.streams[0].samples == 200
        assert "closed cleanly: True" in format_report(rep)
    finally:
        w.kill()


def test_a_live_file_gets_the_longer_metadata_retries(tmp_path):
    path = tmp_path / "live.h5"
    w = Writer(path, end="kill")
    try:
        with open_h5(path) as h5:
            assert _metadata_attempts(h5) == READ_LIMITS.live_metadata_attempts
        w.step(), w.step()
        w.kill()
        # A killed recorder's file stops changing: once it is older than live_recent_s it is
        # read with the short bound that keeps damaged files fast.
        old = time.time() - READ_LIMITS.live_recent_s - 60
        os.utime(path, (old, old))
        assert write_flagged(path) and not is_live(path)
        with open_h5(path) as h5:
            assert _metadata_attempts(h5) == READ_LIMITS.swmr_metadata_attempts
        rep = check_session(path)
        assert rep.valid, rep.errors
        assert not rep.live
        text = format_report(rep)
        assert "closed cleanly: False" in text and "recorder killed" in text
        assert "being recorded" not in text
    finally:
        w.kill()


def test_a_killed_writer_is_not_waited_for(tmp_path):
    path = tmp_path / "killed.h5"
    w = Writer(path, end="kill")
    try:
        assert w.step() == "structure"
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait(30)
        old = time.time() - READ_LIMITS.live_recent_s - 60
        os.utime(path, (old, old))
        t0 = time.monotonic()
        rep = check_session(path)
        # Killed while it held the file without SWMR: no SWMR reader can open it; said at once.
        assert time.monotonic() - t0 < READ_LIMITS.live_wait_s
        assert not rep.valid and not rep.live
        assert "h5clear -s" in rep.errors[0], rep.errors
    finally:
        w.kill()


def test_a_recording_is_live_until_it_stops_or_its_recorder_dies(tmp_path, unique_name):
    from imusic.capture.recorder import Recorder
    from imusic.capture.session_h5 import reserve_path

    path = tmp_path / "rec.h5"
    rec = Recorder(path, names=[unique_name]).start()
    try:
        assert is_live(path)             # the recorder holds its reserve file's lock
        old = time.time() - READ_LIMITS.live_recent_s - 60
        os.utime(path, (old, old))       # however long since its last flush
        assert is_live(path)
        rep = check_session(path)
        assert rep.valid and rep.live, rep.errors
    finally:
        rec.stop()
    assert not is_live(path) and not reserve_path(path).exists()
    # A killed recorder leaves its reserve file, unlocked: not live, even just after.
    reserve_path(path).write_bytes(b"x")
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import numpy as np\n"
            "from imusic.capture.session import SessionWriter, StreamSpec\n"
            f"w = SessionWriter({str(tmp_path / 'k.h5')!r})\n"
            "w.add_stream(StreamSpec('a', 'IMU', 1, 10.0)); w.flush()\n"
            "print('ok', flush=True); sys.stdin.readline()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        killed = tmp_path / "k.h5"
        assert is_live(killed)           # no reserve file: written to just now
        reserve_path(killed).write_bytes(b"x")
        assert not is_live(killed)       # a reserve file nobody holds: its recorder is gone
    finally:
        proc.kill()
        proc.wait(30)


def test_info_prints_the_write_error(tmp_path):
    from imusic.cli import main

    path = tmp_path / "failed.h5"
    w = SessionWriter(path)
    key = w.add_stream(StreamSpec("imu", "IMU", 3, 100.0))
    w.append(key, np.ones((100, 3)), np.arange(100) / 100.0)
    w.flush()
    w.close_after_failure("write failed: No space left on device")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["info", str(path)]) == 0
    text = out.getvalue()
    assert "a write failed while recording (write failed: No space left on device)" in text
    assert "end at the last successful flush" in text
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["info", "--json", str(path)]) == 0
    assert "No space left on device" in out.getvalue()


SIGNATURE = b"\x89HDF\r\n\x1a\n"


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(max_size=64), at=st.sampled_from([0, 512, 1024, 2048]),
       version=st.integers(0, 255), flags=st.integers(0, 255), tail=st.binary(max_size=600))
def test_write_flag_parser_on_any_bytes(tmp_path, head, at, version, flags, tail):
    """``write_flagged`` reads a superblock by hand: any file gives a bool, never an error, and
    a superblock v2/v3 at any of HDF5's offsets is read right."""
    f = tmp_path / "any.bin"
    f.write_bytes(head + tail)
    assert write_flagged(f) in (True, False)
    data = bytearray(max(at, len(head)) * b"\0")
    data[:len(head)] = head
    data[at:at] = SIGNATURE + bytes([version, 8, 8, flags]) + tail
    f.write_bytes(bytes(data))
    first = bytes(data).find(SIGNATURE)
    if first == at:       # not shadowed by a signature the random head happened to contain
        assert write_flagged(f) == (version >= 2 and bool(flags & 0x05))
