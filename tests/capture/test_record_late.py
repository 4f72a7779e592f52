"""Streams that appear while ``imusic record`` runs are recorded from their first sample.

An LSL outlet sends a new inlet only what is pushed after the inlet connects (liblsl's send
buffer has no history for late consumers), so what a late stream loses is what its outlet
pushes before the recorder has found it and connected. The recorder finds new streams within
``RecordLimits.resolve_wait_s`` (0.1 s); these outlets, like ``imusic stream``'s (made at the
handshake, first samples after its clock warm-up), push their first sample 0.4 s after they
appear. Three late streams one after the other, each must be complete."""

from __future__ import annotations

import signal
import time

import numpy as np
import pylsl
import pytest
from test_record import Pusher, wait_until
from test_record_stop import _recorded, _start

from capture.session import SessionReader, stream_key

pytestmark = pytest.mark.timeout(180)

FIRST_PUSH_AFTER_S = 0.4


def test_late_streams_are_recorded_from_their_first_sample(tmp_path, unique_name):
    early = Pusher(f"{unique_name}-early", rate=200.0)
    early.start()
    late = [f"{unique_name}-late{i}" for i in range(3)]
    path = tmp_path / "late.h5"
    proc, err = _start(path, [early.name_, *late])
    pushers = []
    try:
        wait_until(lambda: _recorded(path, [stream_key(early.name_)]), 60, "recording")
        for name in late:
            p = Pusher(name, "Blendshapes", channels=3, rate=100.0)   # the outlet appears
            pushers.append(p)
            time.sleep(FIRST_PUSH_AFTER_S)
            p.t0 = pylsl.local_clock()                                # sample 0 is pushed now
            p.start()
            time.sleep(1.0)
            p.stop.set()
            p.join()
        early.stop.set()
        early.join()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, err.text
    finally:
        proc.kill()
        early.stop.set()
        for p in pushers:
            p.stop.set()
    with SessionReader(path) as r:
        assert r.closed_cleanly
        for p in pushers:
            vals = r.stream(stream_key(p.name_)).time_series[:, 0].astype(np.int64)
            lost = int(vals[0]) if len(vals) else p.pushed
            print(f"{p.name_}: {len(vals)} of {p.pushed} samples, first {lost} lost")
            assert lost == 0, f"{p.name_}: its first {lost} samples are not in the file"
            assert np.array_equal(vals, np.arange(p.pushed))
