"""A stream that joins while another process has the session file open is held back, not lost.

HDF5 refuses the writer's reopen (needed to add a stream) while any reader holds the file. The
recorder then leaves the new stream's samples in its LSL inlet's buffer and adds it once the
reader lets go, however long that takes within the buffer; the other streams are recorded
meanwhile (``capture.recorder``, "Late streams"). Before, the reopen gave up after
``WriteLimits.reopen_wait_s`` (5 s) and the whole recording ended.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pylsl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.recorder import RecordLimits, Recorder
from imusic.capture.session import SessionReader, stream_key
from imusic.capture.session_h5 import lock_pids

from .test_record import Pusher, wait_until

pytestmark = pytest.mark.timeout(180)

HELD_S = 7.0
"""How long the reader keeps the file while the late stream streams: past the writer's 5 s
reopen wait, which is what used to end the recording."""


def _reader(path) -> subprocess.Popen:
    """A SWMR reader in another process that holds ``path`` open until a line comes on stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import h5py, sys\n"
         f"f = h5py.File({str(path)!r}, 'r', swmr=True)\n"
         "print('open', flush=True)\n"
         "sys.stdin.readline()\n"
         "f.close()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open", proc.stderr.read()
    return proc


def _connected_pusher(name: str) -> Pusher:
    """A 100 Hz stream that pushes its sample 0 once the recorder's inlet is connected (an
    outlet sends an inlet only what is pushed after it connects)."""
    p = Pusher(name, "Blendshapes", channels=3, rate=100.0)
    wait_until(p.outlet.have_consumers, 30, f"the recorder's inlet on {name}")
    p.t0 = pylsl.local_clock()
    p.start()
    return p


def _recorder(path, names, **limits) -> tuple[Recorder, list[str], list[str]]:
    warnings: list[str] = []
    errors: list[str] = []
    rec = Recorder(path, names=names, limits=RecordLimits(**limits),
                   on_warning=warnings.append, on_error=errors.append)
    return rec, warnings, errors


def test_a_late_stream_waits_for_the_reader_and_loses_nothing(tmp_path, unique_name):
    early = Pusher(f"{unique_name}-early", rate=200.0)
    late = None
    path = tmp_path / "held.h5"
    rec, warnings, errors = _recorder(path, [early.name_, f"{unique_name}-late"])
    reader = None
    try:
        early.start()
        rec.start()
        wait_until(lambda: rec.wait_for_samples(50, 0.05), 60, "the early stream")
        wait_until(lambda: rec._writer.structure_blocked_by() == [] and rec._writer.n_flushes,
                   30, "SWMR on")
        reader = _reader(path)
        late = _connected_pusher(f"{unique_name}-late")
        wait_until(lambda: any("held in its LSL buffer" in w for w in warnings), 30,
                   "the warning that the late stream is held")
        assert f"process {reader.pid}" in next(w for w in warnings if "held" in w), warnings
        assert "WAITING" in rec.status_line()
        time.sleep(HELD_S)   # the reader keeps the file: the condition under test lasts
        assert not rec.writer_failed, rec.failure
        reader.stdin.write("close\n")
        reader.stdin.flush()
        assert reader.wait(10) == 0, reader.stderr.read()
        wait_until(lambda: not rec.wait_for_types(["Blendshapes"], 0.0), 30,
                   "the late stream added once the reader let go")
        late.stop.set()
        late.join()
        wait_until(lambda: rec.wait_for_samples(late.pushed, 0.05, "Blendshapes"), 30,
                   "the late stream's held samples")
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        early.stop.set()
        if late is not None:
            late.stop.set()
            late.join()
        early.join()
        rec.stop()
    assert not errors and not rec.writer_failed, (errors, rec.failure)
    with SessionReader(path) as r:
        assert r.closed_cleanly
        vals = r.stream(stream_key(late.name_)).time_series[:, 0].astype(np.int64)
        # the inlet connected before the first push: every sample from the first is there
        assert np.array_equal(vals, np.arange(late.pushed)), (len(vals), late.pushed)
        early_vals = r.stream(stream_key(early.name_)).time_series[:, 0].astype(np.int64)
        assert np.array_equal(early_vals, np.arange(early_vals[0], early_vals[0] + len(early_vals)))
        assert len(early_vals) >= 200 * HELD_S   # recorded all the while
        events = [e.text for e in r.events()]
        assert f"stream added: {stream_key(late.name_)}" in events


def test_a_reader_that_never_lets_go_costs_only_the_late_stream(tmp_path, unique_name):
    """A reader still holding the file at stop: the recorder stops within ``stop()``'s own
    bound with the other streams whole on disk; one error names the late stream and the
    process, and ``failure`` says the file could not be marked closed (it then reads as an
    interrupted recording) and who held it."""
    early = Pusher(f"{unique_name}-early", rate=200.0)
    late = None
    path = tmp_path / "never.h5"
    rec, warnings, errors = _recorder(path, [early.name_, f"{unique_name}-late"],
                                      late_close_wait_s=1.0)
    reader = None
    try:
        early.start()
        rec.start()
        wait_until(lambda: rec.wait_for_samples(50, 0.05), 60, "the early stream")
        wait_until(lambda: rec._writer.n_flushes > 0, 30, "a flush")
        reader = _reader(path)
        late = _connected_pusher(f"{unique_name}-late")
        wait_until(lambda: any("held in its LSL buffer" in w for w in warnings), 30,
                   "the warning that the late stream is held")
        early.stop.set()
        early.join()
        rec.stop()
        assert rec._writer_done.is_set()
        recorded = rec.status[next(i for i in rec.status if i.startswith(early.name_))].samples
    finally:
        early.stop.set()
        if late is not None:
            late.stop.set()
        rec.stop()
        if reader is not None:
            reader.kill()
            reader.wait(10)
    assert len(errors) == 1 and "was not recorded" in errors[0], errors
    assert f"process {reader.pid}" in errors[0] and late.name_ in errors[0], errors
    assert "closed cleanly" in rec.failure and f"process {reader.pid}" in rec.failure, rec.failure
    with SessionReader(path) as r:
        assert not r.closed_cleanly
        assert stream_key(late.name_) not in r.keys
        vals = r.stream(stream_key(early.name_)).time_series[:, 0].astype(np.int64)
        assert len(vals) == recorded and np.array_equal(vals, np.arange(vals[0], vals[0] + len(vals)))


def test_lock_pids_reads_the_kernels_lines():
    text = ("1: FLOCK  ADVISORY  READ 6952 fe:00:2146507 0 EOF\n"
            "1: -> FLOCK  ADVISORY  WRITE 7000 fe:00:2146507 0 EOF\n"
            "2: POSIX  ADVISORY  WRITE 812 fe:00:99 0 EOF\n"
            "3: FLOCK  ADVISORY  READ 6953 fe:00:2146507 0 EOF\n"
            "3: FLOCK  ADVISORY  READ 6953 fe:00:2146507 0 EOF\n")
    assert lock_pids(text, "fe:00:2146507") == [6952, 6953]
    assert lock_pids(text, "fe:00:99") == [812]
    assert lock_pids("", "fe:00:99") == []


@settings(max_examples=300, deadline=None)
@given(text=st.text(), file_id=st.text(max_size=20))
def test_fuzz_lock_pids_never_raises(text, file_id):
    pids = lock_pids(text, file_id)
    assert all(isinstance(p, int) and p >= 0 for p in pids) and len(set(pids)) == len(pids)
