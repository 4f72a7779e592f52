"""Single keys on the terminal for the long-running commands (``imusic live`` and ``imusic
hybrid``: ``c`` takes the neutral pose again).

:class:`KeyWatch` is started by :class:`imusic.runner.Runner` inside its run (``Runner(keys=
{"c": callback})``) and stopped when the run ends, however it ends. It acts only when its stream
(stdin) is a terminal this process may use: not a pipe, a file or ``/dev/null`` (then nothing
changes), and not a terminal whose foreground is another process group (a command started with
``&``: changing the terminal's mode would stop it with SIGTTOU). It puts the terminal in cbreak
mode (each key arrives at once and is not echoed; Ctrl-C still sends SIGINT, which the runner
handles), reads it on the event loop (``loop.add_reader``), calls the callback of each key it
knows (other keys are ignored) and, at stop, removes the reader and restores the terminal's
settings exactly as they were.
"""

from __future__ import annotations

import os
import sys
import termios
import tty
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

RECALIBRATE_KEY = "c"
"""The key ``imusic live`` and ``imusic hybrid`` recalibrate on (README, model/MODEL.md)."""


def usable_terminal(stream: IO[Any] | None = None) -> bool:
    """True when ``stream`` (stdin by default) is a terminal whose keys this process may read
    (see the module docstring)."""
    stream = sys.stdin if stream is None else stream
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False     # closed, or not backed by a file descriptor
    if not os.isatty(fd):
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return True      # a terminal that is not our controlling one: no job control applies


class KeyWatch:
    """Calls ``keys[k]()`` when key ``k`` is pressed on a usable terminal (module docstring)."""

    def __init__(self, keys: Mapping[str, Callable[[], None]],
                 stream: IO[Any] | None = None) -> None:
        self.keys = dict(keys)
        self.stream = sys.stdin if stream is None else stream
        self.active = False
        """True while the terminal is in cbreak mode and being read."""
        self.pressed = 0
        """Known keys pressed so far."""
        self._fd = -1
        self._saved: list[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start reading on ``loop`` if the stream is a usable terminal; whether it did."""
        if not self.keys or not usable_terminal(self.stream):
            return False
        self._fd = self.stream.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd, termios.TCSANOW)
        self._loop = loop
        loop.add_reader(self._fd, self._read)
        self.active = True
        return True

    def stop(self) -> None:
        """Stop reading and restore the terminal (safe to call twice, or without start)."""
        if not self.active:
            return
        self.active = False
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None
        if self._saved is not None:
            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass     # the terminal went away (its window closed): nothing to restore
            self._saved = None

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64)
        except OSError:
            data = b""
        if not data:             # the terminal closed: stop reading it
            self.stop()
            return
        for ch in data.decode("utf-8", "replace"):
            action = self.keys.get(ch) or self.keys.get(ch.lower())
            if action is not None:
                self.pressed += 1
                action()
