"""A stream that joins a recording while another process reads the file (``imusic info``, a
live view) is added once the reader lets go: the writer's reopen waits out HDF5's file lock
(``WriteLimits.reopen_wait_s``) instead of failing the recording."""

import subprocess
import sys

import numpy as np

from imusic.capture.session import SessionReader, SessionWriter, StreamSpec


def _spec(name: str) -> StreamSpec:
    return StreamSpec(name=name, type="IMU", channel_count=2, nominal_srate=100.0,
                      channel_format="float32", source_id=name, labels=["a", "b"])


def test_late_stream_waits_for_a_reader_in_another_process(tmp_path):
    path = tmp_path / "late.h5"
    with SessionWriter(path, subject="p01") as w:
        first = w.add_stream(_spec("first"), "first")
        w.append(first, np.zeros((50, 2)), np.arange(50) / 100.0)
        w.flush()                                    # SWMR is on from here
        reader = subprocess.Popen(
            [sys.executable, "-c",
             "import h5py, sys, time\n"
             f"f = h5py.File({str(path)!r}, 'r', swmr=True)\n"
             "print('open', flush=True)\n"
             "time.sleep(0.5)\n"
             "f.close()\n"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert reader.stdout.readline().strip() == "open", reader.stderr.read()
        late = w.add_stream(_spec("late"), "late")   # the reader still holds the file
        w.append(late, np.ones((20, 2)), 1.0 + np.arange(20) / 100.0)
        w.append(first, np.zeros((50, 2)), 0.5 + np.arange(50) / 100.0)
        assert reader.wait(10) == 0, reader.stderr.read()
    with SessionReader(path) as r:
        assert r.closed_cleanly
        assert len(r.stream("first").time_stamps) == 100
        assert len(r.stream("late").time_stamps) == 20
