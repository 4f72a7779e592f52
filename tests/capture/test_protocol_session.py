"""A whole guided session on the emulator: markers, files, quality.json, sync, redo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imusic.capture.protocol import parse_protocol
from imusic.capture.protocol_session import (ProtocolRunner, parse_marker, read_protocol_steps,
                                      take_file_name)
from imusic.capture.session import SessionReader

THREE_STEPS = """
name = "t3"
[[take]]
task = "mini"
  [[take.step]]
  marker = "neutral"
  kind = "neutral"
  prompt = "Relax"
  seconds = 2.5
  [[take.step]]
  marker = "tap"
  kind = "tap"
  prompt = "Tap your chin"
  seconds = 2
  [[take.step]]
  marker = "smile"
  kind = "expression"
  prompt = "Smile"
  until = "continue"
  seconds = 3
  target = { mouthSmileLeft = 0.9, mouthSmileRight = 0.9 }
"""
ROOT = Path(__file__).resolve().parents[2]


def _imusic(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "imusic", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_file_names_are_bids_like() -> None:
    assert take_file_name("p-01", 2, "read_native", 3) == "sub-p01_ses-2_task-readnative_run-3.h5"


def test_a_three_step_protocol_runs_headless_end_to_end(tmp_path) -> None:
    proto = tmp_path / "t3.toml"
    proto.write_text(THREE_STEPS)
    out = tmp_path / "p01"
    r = _imusic("session", str(proto), "--participant", "p01", "-o", str(out), "--emulate",
                "--headless")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[mini run 1 3/3] Smile" in r.stderr
    take = out / "sub-p01_ses-1_task-mini_run-1.h5"
    assert take.is_file()
    # markers: every step's start and end, on the LSL Markers stream recorded in the file
    with SessionReader(take) as reader:
        marks = [parse_marker(e.text) for e in reader.events()]
        kinds = set(reader.keys_of_type("IMU")) and reader.keys_of_type("Blendshapes")
    marks = [m for m in marks if m]
    assert [(m["step"], m["edge"]) for m in marks] == [
        ("neutral", "start"), ("neutral", "end"), ("tap", "start"), ("tap", "end"),
        ("smile", "start"), ("smile", "end")]
    assert kinds
    steps = read_protocol_steps(take)
    assert [s["marker"] for s in steps] == ["neutral", "tap", "smile"]
    assert all(s["end"] > s["start"] for s in steps)
    assert abs((steps[2]["end"] - steps[2]["start"]) - 3.0) < 0.5  # headless: planned seconds
    q = json.loads((out / "quality.json").read_text())
    (t,) = q["takes"]
    assert t["ok"] and q["redo"] == [], t
    assert t["tap_found"] and t["imu_lost_share"] < 0.02 and t["face_lost_share"] < 0.1
    assert t["neutral_s"] >= 1.0 and t["saturated"] == []
    # imusic sync finds the tap, inside the tap step
    s = _imusic("sync", str(take), "--json", timeout=60)
    assert s.returncode == 0, s.stderr
    d = json.loads(s.stdout)
    assert steps[1]["start"] <= d["tap_imu_s"] <= steps[1]["end"]


def test_a_required_stream_that_never_appears_exits_3(tmp_path) -> None:
    proto = tmp_path / "t3.toml"
    proto.write_text(THREE_STEPS)
    r = _imusic("session", str(proto), "--participant", "p01", "-o", str(tmp_path / "x"),
                "--headless", "--wait", "1", "--streams-by", "no-such-stream-9f2", timeout=60)
    assert r.returncode == 3
    assert "no IMU, Blendshapes stream on LSL" in r.stderr and "Traceback" not in r.stderr


def test_redo_is_one_call_and_makes_the_next_run(tmp_path) -> None:
    from imusic.session_actor import EmulatedParticipant

    proto = parse_protocol(THREE_STEPS.replace("seconds = 2.5", "seconds = 2"), "t3")
    actor = EmulatedParticipant(seed=2)
    runner = ProtocolRunner(proto, "p02", tmp_path, actor=actor)
    asked = []

    def ask(rec):
        asked.append(rec.run)
        if rec.run == 1:
            assert runner.request_redo("mini")
        return "next"

    try:
        runner.run(ask=ask)
    finally:
        actor.close()
    assert asked == [1, 2]
    assert (tmp_path / "sub-p02_ses-1_task-mini_run-2.h5").is_file()
    q = json.loads((tmp_path / "quality.json").read_text())
    assert [(t["run"], t["status"]) for t in q["takes"]] == [(1, "redone"), (2, "ok")]
    assert not runner.request_redo("nope")


def test_saturation_leaves_out_the_chin_tap_but_not_other_samples() -> None:
    import numpy as np

    from imusic.capture.take_quality import QualityConfig, saturated_sites

    t = np.arange(0, 10, 0.01)
    acc = np.zeros((len(t), 2, 3))
    acc[int(5.0 / 0.01), 1, 2] = 39.0           # the knock of the tap on site b
    cfg = QualityConfig()
    ranges = {"acc": 39.2}
    assert saturated_sites(t, {"acc": acc}, ["a", "b"], ranges, 5.05, cfg) == []
    assert saturated_sites(t, {"acc": acc}, ["a", "b"], ranges, None, cfg) == ["b.acc"]
    acc[int(8.0 / 0.01), 0, 0] = -39.1           # far from the tap: saturation
    assert saturated_sites(t, {"acc": acc}, ["a", "b"], ranges, 5.05, cfg) == ["a.acc"]


def test_acted_speech_moves_the_jaw_smoothly_enough_for_the_accelerometers() -> None:
    """The twin differentiates the motion twice (a cubic spline): a clipped-sine syllable
    and on/off pauses made the mentalis accelerometer hit its range in every reading take."""
    import numpy as np
    from scipy.interpolate import CubicSpline

    from imusic.hardware.acted import act
    from imusic.hardware.vocabulary import ARKIT_NAMES

    j = ARKIT_NAMES.index("jawOpen")
    for seed in range(4):
        m = act([(1, 3, "neutral", {}), (3, 5, "tap", {}), (5, 15, "speech", {})], seed=seed)
        jaw = m.blendshapes[:, j]
        inside = m.t >= 5.5
        assert jaw[inside].max() > 0.1                      # it does talk
        d2 = CubicSpline(m.t, jaw)(m.t, 2)
        assert np.abs(d2[inside]).max() < 800, seed         # was 1000-5500 /s^2
