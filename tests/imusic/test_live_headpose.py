"""``imusic live`` fills the head yaw/pitch/roll channels from the reference sensor: emulator
(a take with a neutral start and head turns) on a real pty -> device session -> model ->
LSL predictions and Live Link Face packets whose pose channels follow the twin's head."""

from __future__ import annotations

import threading

import numpy as np
import pylsl

from imusic.capture.livelink import parse_packet
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.hardware.motion import procedural, with_neutral_start
from imusic.cli import main
from imusic.live_loop import HEAD_POSE_IMU
from .test_live import _collect


def test_live_head_pose_follows_the_twins_head(unique_name, livelink_catcher):
    motion = with_neutral_start(procedural(60.0, 60.0, seed=2), 5.0)
    config = EmulatorConfig(transport="serial", rig="imusic11", rate_hz=100, seconds=60.0,
                            seed=4, motion=motion, publish_truth=True,
                            truth_name=f"{unique_name}-truth")
    name = f"{unique_name}-pred"
    with Emulator.run_in_thread(config) as emu:
        result: dict = {}
        th = threading.Thread(target=lambda: result.update(code=main(
            ["live", "--serial", emu.emulator.serial_path, "--seconds", "22", "--name", name,
             "--quiet", "--livelink", livelink_catcher.target])), daemon=True)
        th.start()
        found = pylsl.resolve_byprop("name", name, 1, 30.0)
        assert found, "imusic live published no predictions stream"
        inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
        assert inlet.info(5.0).desc().child_value("head_pose") == HEAD_POSE_IMU
        rows, ts = _collect(inlet, th)
        th.join(30)
        livelink_catcher.close()
        packets = livelink_catcher.packets
        log = emu.emulator.truth()
    assert result.get("code") == 0
    bt, values = np.asarray(log.blendshape_lsl), np.asarray(log.blendshapes)
    truth = np.stack([np.interp(ts, bt, values[:, 52 + k]) for k in range(3)], axis=1)
    head = rows[:, 52:55]
    assert np.all(rows[:, 55:] == 0.0)              # eyes are not estimated
    moving = np.flatnonzero(np.any(head != 0.0, axis=1))
    assert len(moving) > 60 * 8, f"head pose non-zero on only {len(moving)} frames"
    keep = ts >= ts[moving[0]] + 0.5
    assert np.degrees(truth[keep, 0]).std() > 3.0    # the take turns the head in this window
    err = np.degrees(head[keep] - truth[keep])
    rms = np.sqrt((err ** 2).mean(axis=0))
    assert np.all(rms < 2.5), rms                    # yaw, pitch, roll (deg)
    assert np.corrcoef(head[keep, 0], truth[keep, 0])[0, 1] > 0.95

    # Live Link packets carry the same head pose
    sent = np.stack([v for v in (parse_packet(p).values for p in packets) if v is not None])
    assert np.abs(sent[:, 52:55]).max() > np.radians(3.0)
    published = {tuple(np.round(r, 5)) for r in rows[:, 52:55].astype(np.float32)}
    hits = sum(tuple(np.round(v, 5)) in published for v in sent[-50:, 52:55])
    assert hits >= 45
