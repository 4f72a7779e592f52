"""The small pieces a device session (device.py) is made of, each with its thresholds in
``SessionConfig`` (device_config.py):

* ``CommandChannel``: a command and its answer. ``request(link, cmd, device_id, reader)``
  writes the command and waits ``command_timeout_s`` for the message that answers it
  (DEVICE_INFO for GET_INFO, the ACK naming it otherwise), ``command_retries`` times, while
  the session's read loop hands every message it reads to ``offer(msg)`` first.
* ``RateMeter``: the achieved sample rate over the last ``rate_window_s`` of *arrival* times
  (so a burst read at once after a busy spell does not read as thousands of Hz).
* ``WarmupHold``: frames held while the clock fit is young (``warmup_s``, at most
  ``warmup_max_frames``), then released to be stamped with the fit they helped make.
* ``EventLog``: the newest event records (a deque of at most ``event_log_max``) and how many
  were pushed out (``dropped``).
* ``Backoff``: the wait before reopening a failed link, doubling from ``backoff_initial_s``
  to ``backoff_max_s``, cut short (polled every ``replug_poll_s``) when a device that was
  absent is back.

Each holds only its own state; the session owns the link, the clock and the outlets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.transports.base import Transport, TransportError


class CommandChannel:
    """Commands to the device, each answered or retried (see the module docstring)."""

    def __init__(self, timeout_s: float, retries: int) -> None:
        self.timeout_s = timeout_s
        """Wait this long for an answer before writing the command again (s)."""
        self.retries = retries
        """Tries per command."""
        self.writes = 0
        """Commands written, retries included."""
        self.unanswered = 0
        """Tries that timed out without an answer."""
        self._waiting: list[tuple[P.Command, asyncio.Future]] = []

    @staticmethod
    def answers(cmd: P.Command, msg: P.Message) -> bool:
        """Whether ``msg`` answers ``cmd``: DEVICE_INFO for GET_INFO, else the ACK naming it."""
        if isinstance(cmd, P.CmdGetInfo):
            return isinstance(msg, P.DeviceInfo)
        return isinstance(msg, P.Ack) and msg.command == cmd.TYPE

    def offer(self, msg: P.Message) -> bool:
        """Hand a message from the device to the request waiting for it; True if one took it
        (the session then does nothing else with it)."""
        for cmd, fut in list(self._waiting):
            if not fut.done() and self.answers(cmd, msg):
                fut.set_result(msg)
                return True
        return False

    async def request(self, link: Transport, cmd: P.Command, device_id: int,
                      reader: asyncio.Task | None = None) -> Any:
        """Write ``cmd`` to ``device_id`` on ``link`` and return its answer, retrying; raises
        asyncio.TimeoutError naming the link after the last try, and TransportError (or what
        it raised) when the read loop ``reader`` ends meanwhile."""
        data = P.encode(cmd, device_id)
        for _ in range(self.retries):
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            entry = (cmd, fut)
            self._waiting.append(entry)
            try:
                await link.write(data)
                self.writes += 1
                waits = [fut] + ([reader] if reader is not None else [])
                done, _ = await asyncio.wait(waits, timeout=self.timeout_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if fut in done:
                    return fut.result()
                if reader is not None and reader in done:
                    reader.result()
                    raise TransportError(f"{link.name}: reader ended")
                self.unanswered += 1
            finally:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
        raise asyncio.TimeoutError(
            f"{link.name}: no answer to {type(cmd).__name__} after {self.retries} tries "
            f"(is the device on and on this link?)")


class RateMeter:
    """Sample instants per second over the last ``window_s`` of arrival times."""

    def __init__(self, window_s: float, min_span_s: float) -> None:
        self.window_s = window_s
        """Arrivals older than this (s, before the newest) leave the window."""
        self.min_span_s = min_span_s
        """No rate until the window spans this much (s)."""
        self._window: deque[tuple[float, int]] = deque()

    def add(self, arrival: float, n: int) -> float | None:
        """A frame of ``n`` instants arrived at ``arrival``: the rate now, or None while the
        window is too short to tell. The first frame of the window only marks its start."""
        w = self._window
        w.append((arrival, n))
        while w and arrival - w[0][0] > self.window_s:
            w.popleft()
        span = arrival - w[0][0]
        if len(w) > 1 and span > self.min_span_s:
            return sum(k for _, k in list(w)[1:]) / span
        return None

    def clear(self) -> None:
        """Forget every arrival (the link went down)."""
        self._window.clear()


class WarmupHold:
    """Frames held while the clock fit is young, then released all at once."""

    def __init__(self, warmup_s: float, max_frames: int) -> None:
        self.warmup_s = warmup_s
        """Hold until the clock fit spans this much device time (s)."""
        self.max_frames = max_frames
        """Hold at most this many frames."""
        self._held: list[tuple] = []

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, frame: tuple, fit_span_s: float) -> bool:
        """Add ``frame``; True while the frames should stay held (the fit spans less than
        ``warmup_s`` and fewer than ``max_frames`` are held), False: ``release`` them now."""
        self._held.append(frame)
        return fit_span_s < self.warmup_s and len(self._held) < self.max_frames

    def release(self) -> list[tuple]:
        """Every held frame, oldest first; the hold is empty after."""
        held, self._held = self._held, []
        return held


class Backoff:
    """Exponential waits between attempts to reopen a failed link, cut short when a device
    that was absent is back."""

    def __init__(self, initial_s: float, max_s: float, poll_s: float) -> None:
        self.initial_s = initial_s
        """The first wait (s); doubled per failure in a row."""
        self.max_s = max_s
        """The longest wait (s)."""
        self.poll_s = poll_s
        """How often to look whether an absent device is back (s)."""
        self.failures = 0
        """Failures in a row (0 after a good handshake)."""

    def reset(self) -> None:
        """The link works: the next failure waits ``initial_s`` again."""
        self.failures = 0

    def next_delay(self) -> float:
        """The wait after one more failure (s)."""
        delay = min(self.max_s, self.initial_s * 2 ** self.failures)
        self.failures += 1
        return delay

    async def wait(self, stop: asyncio.Event, link: Transport | None) -> None:
        """Wait ``next_delay()`` (or until ``stop``) before reopening; but where the link can
        tell whether its device is there (``present()``: a serial port's path), end the wait
        as soon as a device that was absent is back. A re-plugged wearable streams at once,
        and what it sends before the host opens the port waits in a bounded buffer: waiting
        out an exponential backoff after the port came back lost up to that long of instants."""
        present = link.present if link is not None else (lambda: None)
        end = time.monotonic() + self.next_delay()
        absent = present() is False
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            step = min(left, self.poll_s) if present() is not None else left
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), step)
            now_present = present()
            if now_present is False:
                absent = True
            elif now_present and absent:
                return


class EventLog(deque):
    """The newest ``maxlen`` event records, oldest first (a deque); ``dropped`` counts the
    records pushed out of its front."""

    def __init__(self, records: Any = (), maxlen: int | None = None) -> None:
        super().__init__(records, maxlen)
        self.dropped = 0
        """Records pushed out of the front by newer ones."""

    def append(self, record: Any) -> None:
        """Add ``record`` at the end (the oldest goes, and is counted, when full)."""
        if self.maxlen is not None and len(self) == self.maxlen:
            self.dropped += 1
        super().append(record)
