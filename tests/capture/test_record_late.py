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
from .test_record import Pusher, wait_until
from .test_record_stop import _recorded, _start

from imusic.capture.session import SessionReader, stream_key

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


def test_after_the_fast_window_the_continuous_resolver_finds_a_new_stream(tmp_path,
                                                                          unique_name):
    """Past ``resolve_fast_s`` the recorder stops its one-shot resolves (their CPU) and reads
    liblsl's continuous resolver: a stream that appears then is still found and recorded."""
    from imusic.capture.recorder import RecordLimits, Recorder

    first = Pusher(f"{unique_name}-first", rate=100.0)
    first.start()
    later = None
    rec = Recorder(tmp_path / "slow.h5", names=[f"{unique_name}-first", f"{unique_name}-later"],
                   limits=RecordLimits(resolve_fast_s=0.0))
    try:
        rec.start()
        wait_until(lambda: rec.wait_for_samples(10, 0.05), 60, "the first stream")
        later = Pusher(f"{unique_name}-later", "Blendshapes", channels=3, rate=60.0)
        later.start()
        t0 = time.monotonic()
        wait_until(lambda: any(s.name == later.name_ and s.samples for s in rec.status.values()),
                   30, "the later stream, through the continuous resolver")
        print(f"found and recording {time.monotonic() - t0:.2f} s after it appeared")
    finally:
        rec.stop()
        first.stop.set()
        if later:
            later.stop.set()
    with SessionReader(rec.path) as r:
        assert r.closed_cleanly
        assert len(r.stream(stream_key(later.name_)).time_stamps) > 0
