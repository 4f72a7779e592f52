"""``imusic.runner``: the one runner of the long-running commands (signals, ``--seconds``, the
status line, a clean stop)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time

import pytest

from imusic.runner import BlockingRunner, Runner, StatusLine


async def _until_stopped(stop: asyncio.Event, log: list[str]) -> str:
    await stop.wait()
    log.append("work saw stop")
    return "done"


def test_seconds_stop_the_work_and_its_result_comes_back():
    log: list[str] = []
    runner = Runner(0.3, every_s=0.05)
    t0 = time.monotonic()
    assert asyncio.run(runner.run(_until_stopped(runner.stop, log))) == "done"
    assert 0.25 <= time.monotonic() - t0 < 5.0 and log == ["work saw stop"]


def test_begin_restarts_the_count():
    """``record`` starts counting ``--seconds`` once its streams are there (``begin``)."""
    async def work(runner: Runner) -> float:
        await asyncio.sleep(0.4)          # longer than --seconds: the count starts after this
        runner.begin()
        t0 = time.monotonic()
        await runner.stop.wait()
        return time.monotonic() - t0

    runner = Runner(0.3, every_s=0.05, count_from_start=False)
    assert asyncio.run(runner.run(work(runner))) >= 0.25


def test_sigterm_and_sigint_stop_the_run_and_the_handlers_are_restored():
    """On the main thread (pytest's), a real signal to this process sets ``stop``; after the
    run the previous handlers are back."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in (signal.SIGTERM, signal.SIGINT):
        log: list[str] = []
        runner = Runner(every_s=0.05)

        async def main() -> str:
            asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), sig)
            return await runner.run(_until_stopped(runner.stop, log))

        assert asyncio.run(main()) == "done" and log == ["work saw stop"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_works_error_is_raised_after_a_clean_stop():
    async def fails() -> None:
        await asyncio.sleep(0.05)
        raise LookupError("no IMU LSL stream found")

    out = io.StringIO()
    runner = Runner(status=lambda: "status", every_s=0.01)
    runner.line = StatusLine(in_place=True, out=out)
    with pytest.raises(LookupError, match="no IMU"):
        asyncio.run(runner.run(fails()))
    assert runner.stop.is_set()
    assert out.getvalue().endswith("\n")    # the in-place line was ended


def test_status_line_in_place_on_a_terminal_and_plain_lines_in_a_log():
    term = io.StringIO()
    line = StatusLine(in_place=True, out=term)
    line.show("a")
    line.show("b")
    line.say("a line of its own")
    assert term.getvalue() == "\ra\033[K\rb\033[K\na line of its own\n"
    log = io.StringIO()
    line = StatusLine(in_place=False, plain_every_s=60.0, out=log)
    line.show("first")
    line.show("too soon")      # within plain_every_s: not printed
    line.finish()              # nothing in place to end
    assert log.getvalue() == "first\n"
    quiet = io.StringIO()
    line = StatusLine(quiet=True, in_place=True, out=quiet)
    line.show("hidden")
    line.say("said")
    assert quiet.getvalue() == "said\n"


# ---------------------------------------------------------------- BlockingRunner (record)
def test_blocking_runner_seconds_count_from_begin_and_the_result_comes_back():
    """``record``'s runner: the work sleeps in ``wait``, which returns True once
    ``--seconds`` (counted from ``begin``) have passed."""
    def work() -> float:
        assert not runner.wait(0.4)       # longer than --seconds: the count starts after this
        runner.begin()
        t0 = time.monotonic()
        while not runner.wait(10.0):
            pass
        return time.monotonic() - t0

    runner = BlockingRunner(0.3, count_from_start=False, poll_s=0.05)
    assert runner.run(work) >= 0.25 and runner.stop.is_set()


def test_blocking_runner_wakes_at_once_on_a_signal_and_restores_the_handlers():
    """A real SIGTERM / SIGINT to this process ends a ``wait`` at once, far sooner than its
    poll interval (the signal wake-up pipe); afterwards the previous handlers and wake-up fd
    are back."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in (signal.SIGTERM, signal.SIGINT):
        runner = BlockingRunner(poll_s=30.0)
        timer = threading.Timer(0.2, os.kill, (os.getpid(), sig))

        def work() -> float:
            t0 = time.monotonic()
            timer.start()
            assert runner.wait(60.0)
            return time.monotonic() - t0

        took = runner.run(work)
        timer.join()
        assert 0.15 <= took < 5.0, took
    assert {s: signal.getsignal(s) for s in before} == before
    assert signal.set_wakeup_fd(-1) == -1     # none was left behind


def test_blocking_runner_shows_the_status_and_raises_the_works_error_after_a_clean_stop():
    out = io.StringIO()
    runner = BlockingRunner(status=lambda: "status", every_s=0.01, poll_s=0.01)
    runner.line = StatusLine(in_place=True, out=out)

    def fails() -> None:
        runner.wait(0.1)
        raise LookupError("no IMU LSL stream found")

    with pytest.raises(LookupError, match="no IMU"):
        runner.run(fails)
    assert runner.stop.is_set()
    assert "\rstatus\033[K" in out.getvalue() and out.getvalue().endswith("\n")


def test_blocking_runner_sees_stop_set_by_another_thread_within_its_poll():
    runner = BlockingRunner(poll_s=0.05)
    threading.Timer(0.1, runner.stop.set).start()
    t0 = time.monotonic()
    assert runner.run(lambda: runner.wait(30.0))
    assert time.monotonic() - t0 < 5.0


def test_a_line_said_from_another_thread_never_lands_inside_the_status_line():
    """The model thread's calibration line (``LiveLoop.say`` = the runner's ``say``) and the
    status line redrawn in place: every said line is whole and on a line of its own."""
    import threading

    term = io.StringIO()
    line = StatusLine(in_place=True, out=term)
    done = threading.Event()

    def redraw() -> None:
        while not done.is_set():
            line.show("frames 123 | 60.0/s | newest->out 7.1 ms")

    th = threading.Thread(target=redraw)
    th.start()
    try:
        for i in range(200):
            line.say(f"imusic: neutral pose calibrated ({i})")
    finally:
        done.set()
        th.join()
    said = [seg for seg in term.getvalue().split("\n") if "calibrated" in seg]
    assert said == [f"imusic: neutral pose calibrated ({i})" for i in range(200)]
