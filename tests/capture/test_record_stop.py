"""``imusic record`` stops within a second of the request while its sources keep streaming
(``--seconds``, SIGINT, SIGTERM), with everything received until then in the file.

Real pylsl outlets push continuously (they never pause, so the recorder's inlets always have
data waiting) and a real ``python -m imusic record`` subprocess records them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
import pytest
from .test_record import REPO, Pusher, rows_on_disk, wait_until

from imusic.capture.session import SessionReader, stream_key

pytestmark = pytest.mark.timeout(180)

STOP_WITHIN_S = 1.0      # the promise: from the request to the process' exit


class Stderr(threading.Thread):
    """Reads a subprocess' stderr line by line, noting when each line came."""

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[tuple[float, str]] = []

    def run(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def when(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def _start(path, names, *extra) -> tuple[subprocess.Popen, Stderr]:
    proc = subprocess.Popen([sys.executable, "-m", "imusic", "record", "-o", str(path),
                             "--streams-by", *names, "--require", "IMU", "--wait", "30",
                             "--quiet", *extra],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    err = Stderr(proc)
    err.start()
    return proc, err


def _recorded(path, keys) -> bool:
    return all(rows_on_disk(path, k) > 100 for k in keys)


def _wait_recorded(path, pushers, proc, err: Stderr, timeout: float = 60) -> None:
    """Wait until every pusher's stream has rows on disk; on a timeout say what was there,
    whether the recorder still ran, and what it printed (one stall of 60 s was seen once in
    a quiet clean-clone run and could not be told apart afterwards)."""
    keys = [stream_key(p.name_) for p in pushers]
    try:
        wait_until(lambda: _recorded(path, keys), timeout, "all streams recorded")
    except AssertionError as e:
        rows = {k: rows_on_disk(path, k) for k in keys}
        raise AssertionError(f"{e}: rows on disk {rows}, recorder exit code {proc.poll()}, "
                             f"its stderr:\n{err.text}") from None


def _check_file(path, pushers: list[Pusher], t_request: float) -> None:
    """Closed cleanly; every stream contiguous (nothing dropped) up to the stop request."""
    with SessionReader(path) as r:
        assert r.closed_cleanly
        texts = [e.text for e in r.events()]
        assert texts[-1] == "recording stopped"
        for p in pushers:
            d = r.stream(stream_key(p.name_))
            vals = d.time_series[:, 0].astype(np.int64)
            assert len(vals) > 100
            assert np.array_equal(vals, np.arange(vals[0], vals[0] + len(vals))), \
                f"{p.name_}: samples missing inside the recording"
            # Everything the outlet had pushed a little before the request reached the file.
            assert d.time_stamps[-1] >= t_request - 0.25, (d.time_stamps[-1], t_request)
            assert d.health["samples"] == len(vals) and len(d.gaps) == 0


@pytest.mark.parametrize("how,n_streams", [("SIGINT", 3), ("SIGTERM", 1)])
def test_signal_stops_within_a_second_while_streaming(tmp_path, unique_name, how, n_streams):
    pushers = [Pusher(f"{unique_name}-{i}", rate=500.0) for i in range(n_streams)]
    for p in pushers:
        p.start()
    path = tmp_path / "sig.h5"
    proc, err = _start(path, [p.name_ for p in pushers])
    try:
        _wait_recorded(path, pushers, proc, err)
        t_request = pylsl.local_clock()
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, how))
        rc = proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
        for p in pushers:
            p.stop.set()
    err.join(5)
    print(f"{how} with {n_streams} streams: exited {took:.2f} s after the signal")
    assert rc == 0, err.text
    assert took < STOP_WITHIN_S, f"{how}: took {took:.2f} s to stop ({err.text})"
    assert f"saved {path}" in err.text
    _check_file(path, pushers, t_request)


def test_seconds_stops_on_time_while_streaming(tmp_path, unique_name):
    pushers = [Pusher(f"{unique_name}-{i}", rate=500.0) for i in range(3)]
    for p in pushers:
        p.start()
    path = tmp_path / "secs.h5"
    seconds = 3.0
    proc, err = _start(path, [p.name_ for p in pushers], "--seconds", str(seconds))
    try:
        rc = proc.wait(timeout=90)
        t_exit = time.monotonic()
    finally:
        proc.kill()
        for p in pushers:
            p.stop.set()
    err.join(5)
    t_started = err.when("recording to")
    assert rc == 0, err.text
    assert t_started is not None, err.text
    took = t_exit - t_started
    print(f"--seconds {seconds}: ran {took:.2f} s from 'recording to'")
    assert seconds - 0.2 < took < seconds + STOP_WITHIN_S, err.text
    with SessionReader(path) as r:
        assert r.closed_cleanly
        for p in pushers:
            d = r.stream(stream_key(p.name_))
            vals = d.time_series[:, 0].astype(np.int64)
            assert np.array_equal(vals, np.arange(vals[0], vals[0] + len(vals)))
            assert d.time_stamps[-1] - d.time_stamps[0] > seconds - 1.0
