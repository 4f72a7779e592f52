"""The firmware's own logic (imd_device, imd_packer, imd_tap and the C codec, run by
``imp_tool wearable``: the main loop of esp32s3/main/main.c on a POSIX host) against the real
host stack: firmware_bridge's DeviceSession over a real pseudo-terminal, to LSL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tty

import numpy as np
import pylsl

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.device import DeviceSession, SessionConfig
from imusic.firmware_bridge.transports.serial import SerialTransport


def sim_counts(seq: np.ndarray, sensors: int) -> np.ndarray:
    """(N, S, 9) counts imp_tool wearable sends (see wearable_sim.c)."""
    s = np.arange(sensors)[None, :, None]
    k = np.arange(9)[None, None, :]
    return ((seq[:, None, None] * 31 + s * 97 + k * 13) % 4001) - 2000


async def test_c_wearable_streams_to_the_host_session(imp_tool, unique_name):
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    proc = subprocess.Popen([str(imp_tool.path), "wearable", "12", "100"], stdin=master,
                            stdout=master, stderr=subprocess.PIPE,
                            env=imp_tool.env)
    rows: list[np.ndarray] = []
    enough = asyncio.Event()

    def collect(r: np.ndarray, ts: np.ndarray) -> None:
        rows.append(r.copy())
        if sum(len(x) for x in rows) >= 200 * 2:
            enough.set()

    stop = asyncio.Event()
    session = DeviceSession(lambda: SerialTransport(path),
                            SessionConfig(rate_hz=200, rig="auto", name=unique_name),
                            on_samples=collect)
    task = asyncio.create_task(session.run(stop))
    try:
        found = await asyncio.to_thread(pylsl.resolve_byprop, "name", unique_name, 1, 10)
        assert found, "no LSL stream from the session"
        await asyncio.wait_for(enough.wait(), 20)
    finally:
        stop.set()
        health = await asyncio.wait_for(task, 10)
        os.close(slave)
        os.close(master)
        proc.wait(timeout=10)
    stderr = proc.stderr.read().decode(errors="replace")
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr

    info = session.info
    assert info.rig_id == "imusic11" and info.sensor_count == 12 and info.rate_hz == 200
    data = np.concatenate(rows)
    seq = data[:, -1].astype(np.int64)
    assert np.array_equal(seq, np.arange(seq[0], seq[0] + len(seq)))   # nothing lost
    c = sim_counts(seq, 12)
    tap = (seq - seq[0] == 50) | (seq - seq[0] == 51)
    c[tap, 10, 2] = 30000
    per_site = data[:, :-2].reshape(len(data), 12, 9)
    assert np.array_equal(per_site[:, :, 0:3], c[:, :, 0:3] * np.float64(info.accel_scale))
    assert np.array_equal(per_site[:, :, 3:6], c[:, :, 3:6] * np.float64(info.gyro_scale))
    assert np.array_equal(per_site[:, :, 6:9], c[:, :, 6:9] * np.float64(info.mag_scale))
    dt = np.diff(data[:, -2])
    assert np.all(np.abs(dt - 5000) <= 1), "device time steps of 1/200 s"
    assert health.nominal_hz == 200 and health.lost == 0 and health.crc_errors == 0
    taps = [e for e in session.event_log if e.get("event") == "tap"]
    assert len(taps) == 1 and taps[0]["sensor"] == 10
    assert taps[0]["device_time_us"] in data[tap][:, -2]   # at the peak, one of the two
    assert taps[0]["value"] > 30000 * info.accel_scale * 1000 * 0.9
