"""An emulator for synchronous callers (tests, ``imusic demo``, the session actor): its own
event loop in a daemon thread.

    with Emulator.run_in_thread(cfg) as emu:   # = ThreadedEmulator(Emulator(cfg)).start()
        emu.link_info, emu.emulator            # the link is up, the device booted
        emu.wait_done(timeout)                 # all ``seconds`` streamed
    # leaving the block (or emu.stop()) stops and closes the emulator and joins the thread

The thread runs ``async with emulator:`` (the emulator's own start and close) around a wait
for this object's stop signal; it only uses the emulator's public async interface, so this
module does not import emulator.py (which imports it, for ``run_in_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

START_TIMEOUT_S = 60.0
"""How long ``start`` waits for the link to come up (building the twin takes seconds)."""


class ThreadedEmulator:
    """An ``Emulator`` running on its own event loop in a daemon thread (module docstring).
    ``emulator`` is anything with the Emulator's async context, ``link_info`` and
    ``wait_done``."""

    def __init__(self, emulator: Any, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.emulator = emulator
        self.start_timeout_s = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quit: asyncio.Event | None = None    # made on the thread's loop
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="imusic-emulator", daemon=True)

    def _main(self) -> None:
        asyncio.run(self._amain())

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._quit = asyncio.Event()
        try:
            async with self.emulator:
                self._ready.set()
                await self._quit.wait()
        except BaseException as err:
            if self._ready.is_set():
                raise
            self._error = err          # a start-up error: handed to the caller of start()
            self._ready.set()

    def start(self) -> "ThreadedEmulator":
        """Start the thread; return once the link is up, or raise what start-up raised
        (TimeoutError when it took more than ``start_timeout_s``)."""
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            self.stop()
            raise TimeoutError(f"the emulator did not bring its link up within "
                               f"{self.start_timeout_s:g} s")
        if self._error is not None:
            self._thread.join(10)
            raise self._error
        return self

    def __enter__(self) -> "ThreadedEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the emulator's thread is alive."""
        return self._thread.is_alive()

    @property
    def link_info(self) -> dict[str, Any]:
        """See ``Emulator.link_info``."""
        return self.emulator.link_info

    def wait_done(self, timeout: float | None = None) -> bool:
        """Block until all ``seconds`` were streamed."""
        assert self._loop is not None, "start() first"
        fut = asyncio.run_coroutine_threadsafe(self.emulator.wait_done(timeout), self._loop)
        return bool(fut.result(None if timeout is None else timeout + 5))

    def stop(self) -> None:
        """Stop and close the emulator, then join the thread."""
        loop, quit_ = self._loop, self._quit
        if loop is not None and quit_ is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):   # the loop closed meanwhile: stopped
                loop.call_soon_threadsafe(quit_.set)
        if self._thread.is_alive():
            self._thread.join(10)
