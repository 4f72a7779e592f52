"""``imusic.runner``: the one runner of the long-running commands (signals, ``--seconds``, the
status line, a clean stop)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time

import pytest

from imusic.runner import Runner, StatusLine


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
