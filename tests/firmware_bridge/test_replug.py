"""Serial re-plugs: every instant the wearable sent while the host's port was open reaches
LSL. The emulator on a real pty is pulled and plugged back 3 times (a new pty at the same
path, streaming at once, as a USB wearable does); a real DeviceSession publishes to LSL and
a plain pylsl inlet receives. What the emulator's truth says was sent (sequence numbers) is
compared, re-plug by re-plug, with what the inlet got. Instants taken while the cable was
out are lost and must stay lost (counted by the session, never invented)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from imusic.firmware_bridge.device import DeviceSession, SessionConfig
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.firmware_bridge.transports.serial import SerialTransport
from .test_stream_emulator import Inlet, _check_values, unique_serial

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

REPLUGS = 3


async def _until(cond, seconds: float, what: str, task: asyncio.Task) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert not task.done(), task.result()
        assert time.monotonic() < deadline, f"{what}: not reached in {seconds} s"
        await asyncio.sleep(0.05)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


async def test_every_instant_sent_around_three_replugs_reaches_lsl(unique_name: str) -> None:
    # Down 0.5 s: long enough that the host's exponential backoff (0.1, 0.2, 0.4 s ...) used
    # to come back well after the port did, and that pyserial's open then flushed the frames
    # the device had already sent to the new port.
    cfg = EmulatorConfig(serial=unique_serial(unique_name), transport="serial", rate_hz=100,
                         seconds=None, seed=21, disconnect_every=1.2, disconnect_for=0.5)
    async with Emulator(cfg) as emu:
        session = DeviceSession(lambda: SerialTransport(emu.serial_path),
                                SessionConfig(name=unique_name))
        stop = asyncio.Event()
        task = asyncio.create_task(session.run(stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            # count from the inlet's first sample: LSL gives an inlet what comes after it
            await _until(lambda: inlet.n > 0, 30, "first sample on LSL", task)
            first = int(inlet.rows[0][0, -1])
            pulls = emu.stats.disconnects
            # 3 more pulls, each plugged back, and streaming for a while after the last (up
            # 0.7 s between pulls)
            await _until(lambda: emu.stats.disconnects >= pulls + REPLUGS and emu.link._up,
                         30, f"{REPLUGS} re-plugs", task)
            back = emu.seq
            await _until(lambda: emu.seq >= back + 30, 10, "streaming after", task)
            await emu.stop()   # the device stops sampling; the link stays up
            log = emu.truth()
            last = int(log.seq[log.sent][-1])
            await _until(lambda: inlet.n and any(r[-1, -1] >= last for r in inlet.rows[-3:]),
                         10, "the last instant sent on LSL", task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)

    assert emu.stats.disconnects >= pulls + REPLUGS
    rows, ts = inlet.arrays()
    got = _check_values(emu, rows)   # the twin's exact values for their seq
    window = log.seq >= first
    sent = log.seq[window & log.sent]
    down = log.seq[window & log.tx_dropped]
    assert np.all(np.diff(got) > 0), "no instant twice, none out of order"
    assert np.intersect1d(got, down).size == 0, "nothing taken while unplugged is invented"
    # per re-plug: the instants sent from one pull to the next, and how many arrived
    pulled = _runs(log.tx_dropped & window)
    assert len(pulled) >= REPLUGS
    bounds = [int(log.seq[window][0])] + [int(log.seq[e]) for _, e in pulled] + [last + 1]
    per = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        want = sent[(sent >= lo) & (sent < hi)]
        per.append((len(want), int(np.isin(want, got).sum())))
    assert all(w == g for w, g in per), f"(sent, received) between re-plugs: {per}"
    assert np.array_equal(got, sent)
    # frames read late (sent before the host reopened the port) are stamped by their device
    # time, not by when they were read: every timestamp lies on one line of device time
    # (measured: within 0.5 ms; 0.05-0.3 s off had they been stamped on arrival)
    dev = rows[:, -2] * 1e-6
    line = np.polyval(np.polyfit(dev, ts, 1), dev)
    assert np.abs(ts - line).max() < 0.02 and np.all(np.diff(ts) > 0)
    # the instants lost while unplugged are counted as lost, not hidden
    assert session.health.lost == int(log.tx_dropped.sum())
    assert session.health.reconnects >= REPLUGS
