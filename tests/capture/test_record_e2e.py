"""End to end with real LSL: the device emulator (a virtual wearable on a pty, driven by the twin
from a real Live Link Face take) -> ``imusic stream`` (IMU outlet) and the ARKit replay of the
same take (``capture.arkit_bridge.replay_take``) stamped 137 ms late -> ``imusic record`` (a
subprocess) -> ``imusic sync`` recovers the 137 ms within one 60 Hz frame."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from imusic.capture.aligned import read_aligned
from imusic.capture.arkit_bridge import blendshapes_info, replay_take
from imusic.capture.livelink_csv import read_take
from imusic.capture.session import SessionReader
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.commands import stream as stream_cmd

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
LAG = 0.137
SECONDS = 22.0


class ShiftedOutlet:
    """Forwards to a real pylsl outlet, adding ``shift`` seconds to every timestamp: this is
    how the test injects the ARKit lag. ``shift`` is fixed at the first sample so that the
    replay's frame ``i`` is stamped at the emulator's motion time ``t_i`` plus ``lag``."""

    def __init__(self, outlet: pylsl.StreamOutlet, motion_start: float, take_t: np.ndarray,
                 take_found: np.ndarray, lag: float) -> None:
        self.outlet, self.motion_start, self.lag = outlet, motion_start, lag
        self.first_t = float(take_t[np.argmax(take_found)])
        self.shift: float | None = None
        self.pushed = 0

    def push_sample(self, values, timestamp: float) -> None:
        if self.shift is None:
            self.shift = self.motion_start + self.first_t + self.lag - timestamp
        self.outlet.push_sample(values, timestamp + self.shift)
        self.pushed += 1


def _stream_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stream_cmd.add_arguments(parser)
    return parser.parse_args(list(argv) + ["--quiet"])


async def test_emulator_and_replay_recorded_then_lag_recovered(tmp_path, unique_name,
                                                              shared_data):
    take_path = shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv"
    full = read_take(take_path)
    n = int(np.searchsorted(full.t, SECONDS))
    take = dataclasses.replace(full, t=full.t[:n], values=full.values[:n],
                               face_found=full.face_found[:n])
    imu_name, bs_name, truth_name = (f"{unique_name}-imu", f"{unique_name}-arkit",
                                     f"{unique_name}-truth")
    serial = (0x494D5553 << 32) | int(unique_name[-8:], 16)
    cfg = EmulatorConfig(serial=serial, transport="serial", rig="imusic11", rate_hz=100,
                         motion=str(take_path), seconds=SECONDS, seed=7, publish_truth=True,
                         truth_name=truth_name)
    path = tmp_path / "e2e.h5"
    rec = subprocess.Popen([sys.executable, "-m", "imusic", "record", "-o", str(path),
                            "--streams-by", imu_name, bs_name, "--subject", "e2e",
                            "--quiet"], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    stop = asyncio.Event()
    try:
        async with Emulator(cfg) as emu:
            # The twin's truth stream tells when motion time 0 happens on the LSL clock:
            # connect before streaming starts, so that its first sample is motion time 0.
            found = await asyncio.to_thread(pylsl.resolve_byprop, "name", truth_name, 1, 20)
            assert found, "the emulator's truth stream did not appear"
            truth = pylsl.StreamInlet(found[0])
            truth.open_stream(timeout=10)
            task = asyncio.create_task(stream_cmd.stream(
                _stream_args("--serial", emu.serial_path, "--rig", "imusic11",
                             "--name", imu_name), stop))
            _, ts0 = await asyncio.to_thread(truth.pull_sample, 30.0)
            assert ts0 is not None, "no truth sample: the emulator did not start streaming"
            outlet = ShiftedOutlet(pylsl.StreamOutlet(blendshapes_info(bs_name, "arkit",
                                                                       f"{bs_name}-src")),
                                   ts0, take.t, take.face_found, LAG)
            stats = await replay_take(take, outlet=outlet)
            assert stats.frames == int(take.face_found.sum())
            await asyncio.to_thread(emu_wait, emu)
            log = emu.truth()
            stop.set()
            assert await asyncio.wait_for(task, 20) == 0
        time.sleep(1.0)      # the recorder pulls what is buffered
    finally:
        rec.send_signal(2)  # Ctrl-C: clean stop
        out, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    # The first truth sample is motion time 0 (checked against the emulator's own log).
    motion_start = float(log.blendshape_lsl[0] - log.blendshape_t[0])
    assert abs(motion_start - ts0) < 1e-6

    with SessionReader(path) as r:
        assert r.closed_cleanly and set(r.keys_of_type("IMU")) == {imu_name}
        assert r.keys_of_type("Blendshapes") == [bs_name]
        imu = r.stream(imu_name)
        assert imu.spec.labels[0] == "frontalis_r.acc.x" and imu.health["samples"] > 1500
        assert len(imu.clock_offsets) >= 1
        bs = r.stream(bs_name)
        assert len(bs.time_stamps) >= 0.9 * stats.frames

    out = subprocess.run([sys.executable, "-m", "imusic", "sync", str(path), "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    print("sync:", {k: res[k] for k in ("lag_s", "lag_confidence", "frames", "valid_arkit")})
    assert abs(res["lag_s"] - LAG) < 1 / 60, res
    a = read_aligned(path)
    assert a.rig_id == "imusic11" and a.reference == "nasal_bridge" and len(a.sites) == 12
    assert a.valid_imu.mean() > 0.95
    # S88 loses the face in places: those frames are marked, not invented.
    assert 0.5 < a.valid_arkit.mean() < 1.0
    info = subprocess.run([sys.executable, "-m", "imusic", "info", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "lag 1" in info.stdout


def emu_wait(emu: Emulator) -> None:
    """Block until the emulator has streamed its seconds (it runs on the test's loop)."""
    deadline = time.monotonic() + SECONDS + 30
    while emu.stats.instants < SECONDS * 100 - 1 and time.monotonic() < deadline:
        time.sleep(0.1)
