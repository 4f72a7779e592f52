"""Neutral-pose calibration from the keyboard: ``imusic live`` and ``imusic hybrid``, run on a
terminal, take the neutral pose again when ``c`` is pressed (imusic/keys.py, the runner's
``keys``); on anything but a terminal nothing changes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import termios
import time

import pytest

from imusic.keys import RECALIBRATE_KEY, KeyWatch, usable_terminal
from imusic.runner import Runner

from .test_recalibrate import _Lines

CTTY = ("import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'imusic'] + sys.argv[1:])")
"""Run ``python -m imusic ARGS`` in a session of its own whose controlling terminal is its
stdin, as a shell in a terminal window starts it (Ctrl-C, job control and all)."""


def _lflag(fd: int) -> int:
    return termios.tcgetattr(fd)[3]


async def _until(cond, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_key_on_a_terminal_calls_its_action_and_the_terminal_is_restored():
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        got: list[str] = []

        async def main() -> None:
            watch = KeyWatch({"c": lambda: got.append("c")}, stream=os.fdopen(slave, closefd=False))
            assert watch.start(asyncio.get_running_loop())
            assert not _lflag(slave) & (termios.ICANON | termios.ECHO)   # cbreak: key by key
            os.write(master, b"xyC")      # other keys are ignored; C is c
            await _until(lambda: got, 5.0)
            os.write(master, b"c")
            await _until(lambda: len(got) == 2, 5.0)
            watch.stop()
            watch.stop()
            assert watch.pressed == 2

        asyncio.run(main())
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_not_a_terminal_means_no_key_handling():
    r, w = os.pipe()
    try:
        with os.fdopen(r, closefd=False) as pipe_in:
            assert not usable_terminal(pipe_in)
            watch = KeyWatch({"c": lambda: None}, stream=pipe_in)

            async def main() -> bool:
                return watch.start(asyncio.get_running_loop())

            assert asyncio.run(main()) is False and not watch.active
    finally:
        os.close(r)
        os.close(w)
    with open(os.devnull) as null:
        assert not usable_terminal(null)


def test_the_runner_reads_keys_only_during_its_run():
    master, slave = os.openpty()
    try:
        got: list[int] = []

        async def main() -> None:
            runner = Runner(None, quiet=True, keys={"c": lambda: got.append(1)})
            runner.keys.stream = os.fdopen(slave, closefd=False)

            async def work() -> None:
                await _until(lambda: runner.keys.active, 5.0)
                os.write(master, b"c")
                await _until(lambda: got, 5.0)

            await runner.run(work())
            assert not runner.keys.active

        before = termios.tcgetattr(slave)
        asyncio.run(main())
        assert got == [1] and termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["live", "hybrid"])
def test_pressing_c_recalibrates_live_and_hybrid_on_a_terminal(emulator, unique_name, command):
    extra = ["--arkit-listen", str(_free_port())] if command == "hybrid" else []
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        [sys.executable, "-c", CTTY, command, *extra, "--serial",
         emulator.emulator.serial_path, "--seconds", "90", "--quiet", "--name", unique_name],
        stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = _Lines(proc)
    try:
        banner = lines.wait("Ctrl-C stops", 60.0)
        assert f"'{RECALIBRATE_KEY}' recalibrates the neutral pose" in lines.lines[banner]
        first = lines.wait("neutral pose calibrated", 90.0)
        said = lines.lines[first]
        assert ("(still," in said or "(forced:" in said) and "max gyro bias" in said \
            and "deg/s" in said and "max acc offset" in said
        assert not _lflag(slave) & termios.ICANON     # imusic is reading keys
        os.write(master, RECALIBRATE_KEY.encode())
        asked = lines.wait("recalibrating the neutral pose (key 'c')", 20.0, after=first)
        lines.wait("neutral pose calibrated", 60.0, after=asked + 1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert after == before, "the terminal's settings were not restored"


def test_without_a_terminal_live_says_nothing_of_keys(emulator, unique_name):
    proc = subprocess.Popen(
        [sys.executable, "-m", "imusic", "live", "--serial", emulator.emulator.serial_path,
         "--seconds", "60", "--quiet", "--name", unique_name],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = _Lines(proc)
    try:
        banner = lines.lines[lines.wait("Ctrl-C stops", 60.0)]
        assert banner.rstrip().endswith("Ctrl-C stops.") and "recalibrates" not in banner
    finally:
        proc.terminate()
        proc.wait(timeout=30)
