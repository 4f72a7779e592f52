"""Displays (Xvfb on demand, clear error without one), key bindings, the child-process viewer,
and two live streams side by side."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pylsl
import pytest

from imusic.hardware.vocabulary import ARKIT_NAMES
from imusic.viewer.app import GLFW, bind_common, bind_player, run_live
from imusic.viewer.display import DisplayError, ensure_display
from imusic.viewer.face_view import FaceWindow
from imusic.viewer.launch import launch_view
from imusic.viewer.live import LslSource, resolve_blendshapes
from imusic.viewer.player import Player


def test_ensure_display_starts_xvfb_when_unset(monkeypatch):
    monkeypatch.delenv("DISPLAY")
    with ensure_display() as display:
        assert display.startswith(":") and os.environ["DISPLAY"] == display
        assert Path(f"/tmp/.X11-unix/X{display[1:]}").exists()
    assert "DISPLAY" not in os.environ
    assert not Path(f"/tmp/.X11-unix/X{display[1:]}").exists()   # stopped again


def test_no_display_and_no_xvfb_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DisplayError, match="apt-get install xvfb.*DISPLAY"):
        with ensure_display():
            pass


class KeyRecorder:
    """Stands in for FaceWindow.bind only: records which action each key runs."""

    def __init__(self) -> None:
        self.keys: dict = {}
        self.camera = None
        self.markers = 0

    def bind(self, key, action) -> None:
        self.keys[ord(key.upper()) if isinstance(key, str) else key] = action

    def set_camera(self, name) -> None:
        self.camera = name

    def toggle_markers(self) -> bool:
        self.markers += 1
        return True


def test_keys_drive_the_player_and_scene():
    rec, player, dirty, quit_flag = KeyRecorder(), Player(600, 60.0), [False], [False]
    bind_common(rec, quit_flag)
    bind_player(rec, player, dirty)
    rec.keys[GLFW["space"]]()
    assert not player.playing and dirty[0]
    rec.keys[GLFW["right"]]()
    rec.keys[GLFW["right"]]()
    assert player.frame == 2
    rec.keys[GLFW["up"]]()
    assert player.frame == 62
    rec.keys[GLFW["end"]]()
    assert player.frame == 599
    rec.keys[ord("]")]()
    assert player.speed == 2.0
    rec.keys[ord("L")]()
    assert player.loop is False
    rec.keys[ord("3")]()
    assert rec.camera == "profile"
    rec.keys[ord("M")]()
    assert rec.markers == 1
    rec.keys[ord("Q")]()
    assert quit_flag[0]


def test_viewer_runs_as_a_child_process(tmp_path):
    out = tmp_path / "child.png"
    proc = launch_view(["--blendshapes", "mouthSmileLeft=1", "--snapshot", str(out),
                        "--rig", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=Path(__file__).resolve().parents[2])
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert out.stat().st_size > 10_000 and b"wrote" in stdout


def _outlet(name: str) -> pylsl.StreamOutlet:
    return pylsl.StreamOutlet(pylsl.StreamInfo(name, "Blendshapes", 61, 60.0,
                                               pylsl.cf_float32, name))


def test_two_live_streams_side_by_side(unique_name):
    names = [unique_name + "-truth", unique_name + "-pred"]
    outlets = [_outlet(n) for n in names]
    infos = [resolve_blendshapes(n, 10.0) for n in names]
    truth = np.zeros(61, np.float32)
    truth[ARKIT_NAMES.index("jawOpen")] = 1.0
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            outlets[0].push_sample(truth.tolist())
            outlets[1].push_sample(np.zeros(61).tolist())
            stop.wait(1 / 60)

    errors = []
    producer = threading.Thread(target=produce, daemon=True)
    sources = [LslSource(i) for i in infos]
    with FaceWindow(n_faces=2) as win:
        for s in sources:
            s.start()
        producer.start()
        try:
            # Draw until both faces have had data: the error is then the open jaw.
            run_live(win, sources, max_seconds=20,
                     on_frame=lambda i, w: errors.append(float(w.last_error_m.max())),
                     until=lambda: bool(errors) and errors[-1] > 0.01)
        finally:
            stop.set()
            producer.join(5.0)
            for s in sources:
                s.stop()
    assert errors and max(errors) > 0.01


def test_cli_live_in_a_child_process(unique_name):
    outlet = _outlet(unique_name)
    sample = np.zeros(61, np.float32)
    sample[ARKIT_NAMES.index("jawOpen")] = 1.0
    proc = launch_view(["--lsl", unique_name, "--duration", "2", "--timeout", "20"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=Path(__file__).resolve().parents[2])
    # Feed it until it exits (it closes itself after --duration seconds of display).
    while proc.poll() is None:
        outlet.push_sample(sample.tolist())
        try:
            proc.wait(1 / 30)
        except subprocess.TimeoutExpired:
            pass
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr.decode()
    assert f"showing LSL {unique_name}".encode() in stdout


def test_cli_live_missing_stream(unique_name, capsys):
    from imusic.cli import main

    assert main(["view", "--lsl", unique_name, "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err
    assert unique_name in err and "Blendshapes" in err
