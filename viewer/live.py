"""Live source: the newest frame of an LSL ``Blendshapes`` stream, pulled in a thread.

The inlet thread drains the stream as fast as it arrives and keeps only the newest sample in
a ``LatestFrame`` slot; the render loop takes whatever is newest when it is ready to draw. A
slow renderer therefore skips frames instead of lagging, and never back-pressures the
producer (an LSL outlet never waits for its inlets anyway).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from imusic.firmware_bridge.streams import BLENDSHAPES_TYPE
from imusic.hardware.vocabulary import N_BLENDSHAPES

STREAM_TYPE = BLENDSHAPES_TYPE


class StreamNotFound(LookupError):
    """No matching LSL stream appeared within the timeout."""


@dataclass(frozen=True)
class Frame:
    """One received sample: its arrival number, LSL timestamp and the values."""

    seq: int
    timestamp: float
    values: np.ndarray


class LatestFrame:
    """A one-slot mailbox: writers replace the frame, readers get the newest (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._seq = 0

    def put(self, values: np.ndarray, timestamp: float) -> None:
        """Store a new newest frame and wake waiters."""
        with self._cond:
            self._seq += 1
            self._frame = Frame(self._seq, float(timestamp), np.asarray(values, np.float32))
            self._cond.notify_all()

    def get(self) -> Frame | None:
        """The newest frame, or None before the first."""
        with self._cond:
            return self._frame

    def wait_newer(self, seq: int, timeout_s: float) -> Frame | None:
        """Wait up to ``timeout_s`` for a frame newer than ``seq``; the newest frame or None."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None and self._frame.seq > seq,
                                timeout=timeout_s)
            return self._frame


def resolve_blendshapes(name: str | None = None, timeout_s: float = 5.0) -> Any:
    """The ``pylsl.StreamInfo`` of a Blendshapes stream: the one named (or with that
    source_id) ``name``, or the first one found. Raises ``StreamNotFound`` naming the fix."""
    from imusic.firmware_bridge.streams import predicate, resolve

    found = resolve(predicate(STREAM_TYPE, name), 1, timeout_s)
    if not found:
        what = f"named {name!r}" if name else "of any name"
        raise StreamNotFound(
            f"no LSL stream of type '{STREAM_TYPE}' {what} found within {timeout_s:g} s: "
            "start one ('imusic arkit', 'imusic emulate' or 'imusic live'), check that it runs "
            "on this network, or raise --timeout")
    info = found[0]
    if info.channel_count() < N_BLENDSHAPES:
        raise StreamNotFound(
            f"LSL stream {info.name()!r} ({info.source_id()}) has {info.channel_count()} "
            f"channels; a Blendshapes stream carries 52 blendshapes (+9 pose values)")
    return info


class LslSource:
    """Pulls a Blendshapes stream in a background thread into ``self.latest``.

    >>> with LslSource(resolve_blendshapes("arkit")) as src:    # doctest: +SKIP
    ...     frame = src.latest.wait_newer(0, 1.0)
    """

    def __init__(self, info: Any):
        self.info = info
        self.name = info.name()
        self.latest = LatestFrame()
        self.received = 0
        self.kind = ""
        """The stream's ``desc/source`` (arkit, twin, imusic-model, ...; read once opened)."""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lsl-{self.name}", daemon=True)
        self._opened = threading.Event()

    def start(self) -> "LslSource":
        """Open the inlet and start pulling (returns once the inlet is open)."""
        self._thread.start()
        self._opened.wait(10.0)
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        from imusic.firmware_bridge.streams import StreamContractError, open_inlet, parse_blendshapes

        try:
            # The "view" settings: a short buffer, the viewer only ever wants the newest sample.
            inlet = open_inlet(self.info, "view")
            inlet.open_stream(timeout=5.0)
            layout = parse_blendshapes(inlet.info(timeout=5.0))
            self.kind = layout.source
        except StreamContractError as err:   # the stream is not a Blendshapes stream
            self.error = StreamNotFound(str(err))
            self._opened.set()
            return
        except Exception as err:  # noqa: BLE001 - reported to the caller by start()
            self.error = err
            self._opened.set()
            return
        self._opened.set()
        try:
            while not self._stop.is_set():
                samples, stamps = inlet.pull_chunk(timeout=0.05)
                if samples:
                    self.received += len(samples)
                    self.latest.put(layout.to_contract(samples[-1]), stamps[-1])
        finally:
            inlet.close_stream()

    def stop(self) -> None:
        """Stop pulling and join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> "LslSource":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_any_newer(sources: list[LslSource], seqs: list[int], timeout_s: float) -> bool:
    """Wait until any source has a frame newer than its ``seqs`` entry; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        for src, seq in zip(sources, seqs):
            f = src.latest.get()
            if f is not None and f.seq > seq:
                return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        # Block on the first source; others are checked again when it wakes or times out.
        sources[0].latest.wait_newer(seqs[0], min(left, 1.0 / 120.0))
