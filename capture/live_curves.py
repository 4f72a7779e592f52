"""The live blendshape curves of ``imusic session``: the last seconds of the Blendshapes stream.

Where the values come from: the recorder's ``on_data`` hook (capture/recorder.py), which hands
over every chunk it writes, so the curves show exactly what goes into the take file, with no
second LSL inlet. ``ProtocolRunner`` (capture/protocol_session.py) owns one ``LiveCurves`` for
the whole session and passes ``feed`` to each take's recorder; the web server
(imusic/session_web.py) serves ``as_dict`` as ``GET /curves`` and the experimenter page
(imusic/session_pages.py) draws it on a canvas.

Bounded: frames are decimated to ``CurvesConfig.rate_hz`` (one kept per period, in the sender's
timestamps) and a deque keeps the last ``window_s`` of them, all channels, so the page can
switch to any channel without waiting. ``CURVE_SHAPES`` is the one place naming the shapes
shown by default; ``parse_shapes`` checks a requested list against the stream's channel names.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from imusic.firmware_bridge.streams import BLENDSHAPES_TYPE
from imusic.hardware.vocabulary import STREAM_NAMES

CURVE_SHAPES: tuple[str, ...] = ("jawOpen", "mouthSmileLeft", "mouthSmileRight",
                                 "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp")
"""The blendshapes the experimenter page shows unless asked for others."""

STREAM_TYPE = BLENDSHAPES_TYPE


class ShapesError(ValueError):
    """A requested curve is not a channel of the Blendshapes stream (the message names it)."""


@dataclass
class CurvesConfig:
    """How much of the Blendshapes stream the live curves keep."""

    window_s: float = 10.0
    """Seconds of curve kept (and drawn)."""
    rate_hz: float = 20.0
    """Frames per second kept (the stream's ~60 Hz decimated to this)."""
    max_shapes: int = 12
    """Most curves one request may ask for."""

    @property
    def max_frames(self) -> int:
        """Frames the buffer holds at most."""
        return int(math.ceil(self.window_s * self.rate_hz)) + 1


def parse_shapes(text: str | None, max_shapes: int = CurvesConfig.max_shapes) -> list[str]:
    """``"jawOpen,browInnerUp"`` as a list of channel names; None or "" gives ``CURVE_SHAPES``.
    Raises ``ShapesError`` naming an unknown channel (or too many)."""
    if text is None or not text.strip():
        return list(CURVE_SHAPES)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for n in names:
        if n not in STREAM_NAMES:
            raise ShapesError(f"shapes: {n[:40]!r} is not a Blendshapes channel (ARKit names "
                              "such as jawOpen, or the pose channels headYaw ...)")
    if len(names) > max_shapes:
        raise ShapesError(f"shapes: {len(names)} asked, at most {max_shapes} at once")
    return names


class LiveCurves:
    """See the module doc. ``feed`` from the recorder's writer thread, ``as_dict`` from any."""

    def __init__(self, config: CurvesConfig | None = None) -> None:
        self.config = config or CurvesConfig()
        self.lock = threading.Lock()
        self.frames: deque[tuple[float, np.ndarray]] = deque(maxlen=self.config.max_frames)
        """(timestamp, all channel values) of the kept frames, oldest first."""
        self.labels: list[str] = []
        """Channel names of the stream being fed."""
        self.stream = ""
        """Name of the stream being fed."""
        self.received = 0
        """Frames fed in all (before decimation)."""
        self.kept = 0
        """Frames kept in all (after decimation): what the page watches move."""
        self.next_t = -math.inf
        """Timestamp from which the next frame is kept."""

    def feed(self, spec: Any, samples: np.ndarray, ts: np.ndarray) -> None:
        """A chunk the recorder wrote; only the Blendshapes stream's are kept."""
        if spec.type != STREAM_TYPE or len(ts) == 0:
            return
        period = 1.0 / self.config.rate_hz
        with self.lock:
            if spec.name != self.stream or list(spec.labels) != self.labels:
                self.frames.clear()           # another phone (or a replay restarted)
                self.stream, self.labels = spec.name, list(spec.labels)
                self.next_t = -math.inf
            if ts[0] < self.next_t - self.config.window_s:
                self.frames.clear()           # the clock went back: a new replay
                self.next_t = -math.inf
            self.received += len(ts)
            for i in range(len(ts)):
                t = float(ts[i])
                if t >= self.next_t:
                    self.frames.append((t, np.asarray(samples[i], np.float32).copy()))
                    self.kept += 1
                    # stay on the grid (no drift at 60 -> 20 Hz), restart it after a gap
                    self.next_t = (self.next_t + period if t - self.next_t < period
                                   else t + period)

    def as_dict(self, shapes: Sequence[str] = CURVE_SHAPES) -> dict[str, Any]:
        """The curves for the page as strict-JSON-able data: ``t`` (seconds before the newest
        frame, <= 0), ``values`` per shape (None where the value is not finite), ``shapes``
        asked, ``available`` channels, ``received``/``kept`` counters, ``window_s``."""
        with self.lock:
            frames = list(self.frames)
            labels, stream = list(self.labels), self.stream
            received, kept = self.received, self.kept
        t_end = frames[-1][0] if frames else 0.0
        values: dict[str, list[float | None]] = {}
        for name in shapes:
            if name in labels:
                j = labels.index(name)
                values[name] = [round(float(v[j]), 4) if math.isfinite(v[j]) else None
                                for _, v in frames]
            else:
                values[name] = []
        return {"stream": stream, "window_s": self.config.window_s,
                "rate_hz": self.config.rate_hz, "shapes": list(shapes),
                "available": labels, "t": [round(t - t_end, 4) for t, _ in frames],
                "values": values, "received": received, "kept": kept}
