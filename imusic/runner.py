"""One runner for the long-running commands (``stream``, ``record``, ``arkit``, ``live``,
``hybrid``, ``demo``): signals, ``--seconds``, the status line and a clean stop, in one place.

A command makes a :class:`Runner` and awaits ``runner.run(work)``, where ``work`` is the
command's coroutine, written to end soon after ``runner.stop`` (an ``asyncio.Event``) is set:

* **signals**: Ctrl-C (SIGINT) and SIGTERM set ``stop``, through the event loop's own signal
  handlers, installed for the run and removed after it (only on the main thread: a command run
  in a test's thread is stopped through ``stop``);
* **``--seconds``**: ``stop`` is set that long after the run starts or, with
  ``count_from_start=False``, after the work calls :meth:`begin` (``record`` counts from when
  its required streams are there);
* **the status line**: ``status()`` every ``every_s``, through :class:`StatusLine`: on a
  terminal redrawn in place (cut to its width), otherwise a new line every ``plain_every_s``;
  :meth:`Runner.say` prints a line of its own above it;
* **keys**: with ``keys={"c": callback}``, a key pressed on the terminal (stdin) calls its
  callback, through :class:`imusic.keys.KeyWatch` (only when stdin is a terminal in the
  foreground; the terminal's mode is restored at the end). ``live`` and ``hybrid`` recalibrate
  on ``c``;
* **a clean stop**: however the run ends (``stop``, the work ending or failing), ``stop`` is
  set, the work is awaited to its end (its error is raised from ``run``), the signal handlers
  are restored and an in-place status line is ended, so what a command prints next starts on a
  line of its own.

``Runner.run`` returns what the work returned.

:class:`BlockingRunner` keeps the same contract for a command whose work is a plain function on
the main thread (``record``): no event loop, so the recorder's process never loads asyncio and
the ssl it imports (6 MB of resident memory, capture/FORMAT.md "Recorder memory"). Its work
sleeps in :meth:`BlockingRunner.wait`, which shows the status line and returns True once the
run is stopped; a signal wakes it at once (``signal.set_wakeup_fd``).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import IO, TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncio

from imusic.keys import KeyWatch

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a run."""


class StatusLine:
    """A live status line on stderr: in place on a terminal, else one line per
    ``plain_every_s`` (``quiet``: nothing but :meth:`say`)."""

    def __init__(self, quiet: bool = False, in_place: bool | None = None,
                 plain_every_s: float = 1.0, out: IO[str] | None = None) -> None:
        self.out = out or sys.stderr
        self.quiet = quiet
        self.in_place = self.out.isatty() if in_place is None else in_place
        """Redraw one line (a terminal) rather than print new ones (a log, a pipe)."""
        self.plain_every_s = plain_every_s
        self._last_plain = float("-inf")
        self._drawn = False   # an in-place line is on screen, not ended yet
        self._lock = threading.Lock()
        """``say`` may come from another thread (the model's) than ``show``."""

    def show(self, line: str) -> None:
        """Show the current status."""
        if self.quiet:
            return
        with self._lock:
            if self.in_place:
                width = max(20, shutil.get_terminal_size().columns - 1)
                print(f"\r{line[:width]}\033[K", end="", file=self.out, flush=True)
                self._drawn = True
                return
            now = time.monotonic()
            if now - self._last_plain >= self.plain_every_s:
                self._last_plain = now
                print(line, file=self.out, flush=True)

    def say(self, line: str) -> None:
        """Print ``line`` on a line of its own (even when quiet; any thread)."""
        with self._lock:
            self._end_line()
            print(line, file=self.out, flush=True)

    def finish(self) -> None:
        """End an in-place line, so that what follows starts on a new line."""
        with self._lock:
            self._end_line()

    def _end_line(self) -> None:
        if self._drawn:
            print(file=self.out, flush=True)
            self._drawn = False


class _RunBase:
    """What both runners share: the ``--seconds`` count, the status line and ``say``."""

    def __init__(self, seconds: float | None, status: Callable[[], str | None] | None,
                 every_s: float, quiet: bool, in_place: bool | None,
                 plain_every_s: float | None, count_from_start: bool) -> None:
        self.seconds = seconds
        self.count_from_start = count_from_start
        """False: the ``--seconds`` count starts when the work calls ``begin``."""
        self.status = status
        """The status line now (None or '': nothing to show this time)."""
        self.every_s = every_s
        self.line = StatusLine(quiet=quiet, in_place=in_place,
                               plain_every_s=every_s if plain_every_s is None else plain_every_s)
        self.started = time.monotonic()
        """When the run (or the ``--seconds`` count, see ``begin``) started."""

    @property
    def elapsed(self) -> float:
        """Seconds since the run (or ``begin``) started."""
        return time.monotonic() - self.started

    def say(self, line: str) -> None:
        """Print a line of its own to stderr, above the status line."""
        self.line.say(line)


class Runner(_RunBase):
    """Runs one command's work until it ends or is stopped (see the module docstring)."""

    def __init__(self, seconds: float | None = None,
                 status: Callable[[], str | None] | None = None, every_s: float = 1.0,
                 quiet: bool = False, in_place: bool | None = None,
                 plain_every_s: float | None = None,
                 stop: asyncio.Event | None = None, count_from_start: bool = True,
                 keys: Mapping[str, Callable[[], None]] | None = None) -> None:
        import asyncio   # here, not at import: BlockingRunner's commands never load it

        super().__init__(seconds, status, every_s, quiet, in_place, plain_every_s,
                         count_from_start)
        self.stop = stop if stop is not None else asyncio.Event()
        """Set to end the run (by a signal, ``--seconds``, the caller or the work)."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals: list[signal.Signals] = []
        self.keys = KeyWatch(keys or {})
        """The terminal keys read during the run (``keys.active`` while they are)."""

    def begin(self) -> None:
        """Start the ``--seconds`` count (and ``elapsed``) now."""
        self.started = time.monotonic()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.seconds is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, self.seconds), self.stop.set)

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` until it ends (its result, or its error raised here) or ``stop`` is
        set (then it is awaited to its end), showing the status line meanwhile."""
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._install_signals()
        self.started = time.monotonic()
        if self.count_from_start:
            self.begin()
        task = asyncio.ensure_future(work)
        try:
            self.keys.start(self._loop)
            while not task.done():
                await asyncio.wait({task}, timeout=self.every_s)
                if not task.done() and self.status is not None:
                    text = self.status()
                    if text:
                        self.line.show(text)
            return task.result()
        finally:
            self.stop.set()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not task.done():
                with contextlib.suppress(BaseException):
                    await task
            self._remove_signals()
            self.keys.stop()
            self.line.finish()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        assert self._loop is not None
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self.stop.set)
            self._signals.append(sig)

    def _remove_signals(self) -> None:
        if self._loop is not None:
            for sig in self._signals:
                self._loop.remove_signal_handler(sig)
        self._signals = []


class BlockingRunner(_RunBase):
    """Runs one command's work, a plain function on this thread, until it ends or is stopped
    (the module docstring says how it matches :class:`Runner`)."""

    def __init__(self, seconds: float | None = None,
                 status: Callable[[], str | None] | None = None, every_s: float = 1.0,
                 quiet: bool = False, in_place: bool | None = None,
                 plain_every_s: float | None = None, count_from_start: bool = True,
                 poll_s: float = 0.5) -> None:
        super().__init__(seconds, status, every_s, quiet, in_place, plain_every_s,
                         count_from_start)
        self.stop = threading.Event()
        """Set to end the run (by a signal, ``--seconds``, the caller, another thread)."""
        self.poll_s = poll_s
        """Longest sleep in :meth:`wait`: how soon ``stop`` set by another thread is seen."""
        self._deadline = float("inf")       # --seconds ends the run here (monotonic)
        self._next_status = 0.0
        self._signalled = False             # set by the signal handler, read by wait()
        self._wake: tuple[int, int] | None = None   # the signal wake-up pipe (read, write)
        self._old_wakeup = -1
        self._old_handlers: dict[signal.Signals, object] = {}

    def begin(self) -> None:
        """Start the ``--seconds`` count (and ``elapsed``) now."""
        self.started = time.monotonic()
        self._deadline = (self.started + max(0.0, self.seconds) if self.seconds is not None
                          else float("inf"))

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s, showing the status line, less once the run is stopped;
        True if it is stopped."""
        end = time.monotonic() + timeout
        while True:
            if self._signalled or time.monotonic() >= self._deadline:
                self.stop.set()
            if self.stop.is_set():
                return True
            now = time.monotonic()
            if self.status is not None and now >= self._next_status:
                self._next_status = now + self.every_s
                text = self.status()
                if text:
                    self.line.show(text)
            if now >= end:
                return False
            wake = min(end, self._deadline, self._next_status if self.status else end)
            self._sleep(min(max(0.0, wake - now), self.poll_s))

    def run(self, work: Callable[[], T]) -> T:
        """Call ``work`` (it sleeps in :meth:`wait`) and return its result (its error is
        raised here); ``stop`` is set, the signal handlers restored and the status line ended,
        however it ends."""
        self._install_signals()
        self.started = time.monotonic()
        self._next_status = self.started + self.every_s
        if self.count_from_start:
            self.begin()
        try:
            return work()
        finally:
            self.stop.set()
            self._remove_signals()
            self.line.finish()

    def _sleep(self, s: float) -> None:
        if self._wake is None:
            time.sleep(s)
            return
        if select.select([self._wake[0]], [], [], s)[0]:
            with contextlib.suppress(OSError):
                os.read(self._wake[0], 512)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only a flag: wait() sets ``stop`` (an Event is not safe to set from a handler).
        self._signalled = True

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake = (r, w)
        # Python's C handler writes the signal to ``w``: a sleeping wait() wakes at once.
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _remove_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old_handlers = {}
        if self._wake is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            for fd in self._wake:
                os.close(fd)
            self._wake = None
