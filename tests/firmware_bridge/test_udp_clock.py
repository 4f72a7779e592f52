"""The Wi-Fi/UDP clock against the emulator's truth, over a real UDP socket, with the host
busy for a while: once just after the handshake's DEVICE_INFO (as when the rig is loaded
while a UDP wearable already streams) and once mid-stream (as when a model runs).

The emulator runs in its own thread (its own event loop), so it goes on sending while the
host's loop is blocked; the datagrams wait in the kernel. Arrival times must be when they
reached the host (the kernel's receive time), not when the host got round to them: then every
timestamp is right from the first sample and the fit residual reads the link's jitter (well
under a millisecond here), not the host's busy spell (hundreds of ms, for a minute, before)."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pylsl
import pytest

from imusic.firmware_bridge.device import DeviceSession, SessionConfig
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.firmware_bridge.transports.udp import UdpTransport

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

BUSY_AFTER_INFO_S = 1.0
BUSY_MID_STREAM_S = 0.6


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_udp_timestamps_and_residual_survive_a_busy_host(unique_name: str) -> None:
    port = _free_port()
    link = UdpTransport(port, "127.0.0.1")
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    arrivals: list[tuple[int, int, float]] = []
    session = DeviceSession(lambda: link, SessionConfig(publish=False),
                            on_samples=lambda r, t: rows.append((r[:, -1].copy(), np.array(t))),
                            on_arrival=lambda q, t, a: arrivals.append((q, t, a)))
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    cfg = EmulatorConfig(serial=(0x494D5553 << 32) | int(unique_name[-8:], 16), transport="udp",
                         rig="imusic6", rate_hz=200, seconds=None, seed=9,
                         udp_target=("127.0.0.1", port), publish_truth=True,
                         truth_name=unique_name + "-truth")
    with Emulator.run_in_thread(cfg) as th:
        try:
            deadline = time.monotonic() + 30
            while session.info is None:            # the handshake has the DEVICE_INFO
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.002)
            busy = [pylsl.local_clock()]
            time.sleep(BUSY_AFTER_INFO_S)          # the host is busy; the device streams on
            busy.append(pylsl.local_clock())
            while not (rows and rows[-1][0][-1] > 200 * 4):
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.05)
            time.sleep(BUSY_MID_STREAM_S)          # busy again, mid-stream
            while not (rows and rows[-1][0][-1] > 200 * 8):
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    log = th.emulator.truth()
    lsl_minus_t = float(np.median(log.blendshape_lsl - log.blendshape_t))
    seq = np.concatenate([r[0] for r in rows]).astype(np.int64)
    ts = np.concatenate([r[1] for r in rows])
    true = lsl_minus_t + log.t[np.searchsorted(log.seq, seq)]
    a = np.asarray(arrivals)
    delay = a[:, 2] - (lsl_minus_t + log.t[np.searchsorted(log.seq, a[:, 0].astype(np.int64))])
    floor = float(delay.min())
    err = ts - true - floor
    rms, worst = float(np.sqrt(np.mean(err ** 2))), float(np.abs(err).max())
    residual = session.clock.fit.residual_ms
    print(f"\n{len(seq)} samples; link floor {floor * 1e3:.3f} ms; timestamp error beyond it: "
          f"RMS {rms * 1e3:.3f} ms, worst {worst * 1e3:.3f} ms; fit residual {residual:.3f} ms")
    during = ((true > busy[0]) & (true < busy[1])).sum()
    assert len(seq) > 200 * 6 and during > 0.8 * 200 * BUSY_AFTER_INFO_S   # the busy spell's too
    assert rms < 1e-3 and worst < 5e-3
    assert residual < 3.0
    assert session.health.rate_hz < 300     # not a burst's thousands of Hz
