"""Neutral-pose calibration on demand: ``imusic live --recalibrate-on-marker`` takes the
neutral pose again when a Markers stream asks (model/MODEL.md, "Neutral-pose calibration")."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time

import pylsl
from hypothesis import given
from hypothesis import strategies as st

from imusic.capture.protocol_session import marker_text
from imusic.firmware_bridge.streams import markers_info
from imusic.sources import MarkerWatch, is_calibration_marker


def test_which_markers_ask_for_a_new_neutral_pose():
    assert is_calibration_marker("neutral") and is_calibration_marker(" Calibrate ")
    assert is_calibration_marker(marker_text("imusic-paper", "reading", 1, "neutral", "start"))
    assert not is_calibration_marker(marker_text("imusic-paper", "reading", 1, "neutral", "end"))
    assert not is_calibration_marker(marker_text("imusic-paper", "reading", 1, "tap", "start"))
    assert not is_calibration_marker("smile")


@given(st.text(max_size=200))
def test_any_marker_text_is_read_without_raising(text):
    assert is_calibration_marker(text) in (True, False)


def test_marker_watch_reads_a_markers_stream_that_appears_after_it_started(unique_name):
    got: queue.Queue[tuple[str, str]] = queue.Queue()
    watch = MarkerWatch(lambda text, name: got.put((text, name)))
    watch.start()
    try:
        outlet = pylsl.StreamOutlet(markers_info(unique_name, unique_name))
        deadline = time.monotonic() + 30.0
        seen: list[tuple[str, str]] = []
        while time.monotonic() < deadline and (unique_name, "neutral") not in [
                (n, t) for t, n in seen]:
            outlet.push_sample(["neutral"])
            try:
                seen.append(got.get(timeout=0.2))
            except queue.Empty:
                pass
        assert ("neutral", unique_name) in seen
    finally:
        watch.stop()


class _Lines:
    """A process's stderr, line by line, on a thread: ``wait(text)`` until a line holds it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self._q.put(line)

    def wait(self, text: str, timeout_s: float, after: int = 0) -> int:
        """Index of the first line at or after ``after`` holding ``text``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i
            left = deadline - time.monotonic()
            assert left > 0, f"no line with {text!r} in {timeout_s} s: {self.lines[-8:]}"
            try:
                self.lines.append(self._q.get(timeout=min(left, 0.2)))
            except queue.Empty:
                pass


def test_live_recalibrates_when_a_neutral_marker_comes(emulator, unique_name):
    proc = subprocess.Popen(
        [sys.executable, "-m", "imusic", "live", "--serial", emulator.emulator.serial_path,
         "--seconds", "45", "--quiet", "--recalibrate-on-marker", "--name", unique_name],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = _Lines(proc)
    outlet = pylsl.StreamOutlet(markers_info(f"{unique_name}-markers", f"{unique_name}-m"))
    try:
        first = lines.wait("neutral pose calibrated", 60.0)
        # (another run's "neutral" marker may come too: it reads every Markers stream, as it
        # should; so wait for the line that names this test's stream)
        asked = None
        deadline = time.monotonic() + 20.0
        while asked is None:   # the watch finds the new stream within its rescan
            outlet.push_sample(["neutral"])
            try:
                asked = lines.wait(f"on '{unique_name}-markers'", 1.0, after=first)
            except AssertionError:
                assert time.monotonic() < deadline, "the marker never reached imusic live"
        assert "recalibrating the neutral pose" in lines.lines[asked]
        lines.wait("neutral pose calibrated", 30.0, after=asked)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
