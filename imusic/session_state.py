"""What the two screens of ``imusic session`` show, as one JSON-able dict.

``ScreenState(runner, health, faces)()`` joins ``ProtocolRunner.snapshot()``
(capture/protocol_session.py: prompt, step, takes with their quality verdicts, the recorder's
streams) with what only the command knows: the seconds left in the step, the device's health
(``health()``: the emulated device session's ``DeviceHealth.as_dict()``; without one, rates
and loss measured from the recorder's counts) and the target face picture's state
(imusic/session_faces.py). The web pages (imusic/session_web.py) poll it as ``/state``; the
terminal panel (imusic/session_screen.py) draws it. Non-finite numbers become ``null`` (JSON
has no NaN).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class StateConfig:
    """How the recorder-based health is measured."""

    rate_window_s: float = 2.0
    """Seconds over which a stream's sample rate is measured from the recorder's counts."""


def clean(value: Any) -> Any:
    """``value`` with numpy scalars as numbers and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


NO_FACE_KINDS = ("tap", "rest")
"""Step kinds whose prompt shows no target face."""


class ScreenState:
    """See the module doc; call it (from any thread) for the current state."""

    def __init__(self, runner: Any, health: Callable[[], dict | None] | None = None,
                 faces: Any = None, config: StateConfig | None = None) -> None:
        self.runner = runner
        self.health = health
        self.faces = faces
        self.config = config or StateConfig()
        self.counts: dict[str, list[tuple[float, int]]] = {}
        """Per stream key: recent (monotonic time, samples) for the measured rate."""

    def _rate(self, key: str, samples: int) -> float | None:
        now = time.monotonic()
        hist = self.counts.setdefault(key, [])
        hist.append((now, samples))
        while len(hist) > 2 and now - hist[1][0] >= self.config.rate_window_s:
            hist.pop(0)
        (t0, n0), (t1, n1) = hist[0], hist[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 > 0.2 and n1 >= n0 else None

    def __call__(self) -> dict[str, Any]:
        import pylsl

        st = self.runner.snapshot()
        ends = st.get("step_ends_at")
        st["remaining_s"] = max(0.0, ends - pylsl.local_clock()) if ends is not None else None
        for s in st.get("streams", []):
            s["rate_hz"] = self._rate(s["key"], s["samples"])
        dev = self.health() if self.health is not None else None
        imu = [s for s in st.get("streams", []) if s["type"] == "IMU"]
        if dev:
            h = {"source": "device", "device": dev.get("device"), "state": dev.get("state"),
                 "rate_hz": dev.get("rate_hz"), "nominal_hz": dev.get("nominal_hz"),
                 "loss": dev.get("loss"), "lost": dev.get("lost"),
                 "battery_pct": (None if dev.get("battery_pct") in (None, 255)
                                 else dev.get("battery_pct"))}
        elif imu:
            s = imu[0]
            total = s["samples"] + s["lost"]
            h = {"source": "recorder", "device": s["name"], "state": "receiving",
                 "rate_hz": s["rate_hz"], "nominal_hz": None,
                 "loss": s["lost"] / total if total else 0.0, "lost": s["lost"],
                 "battery_pct": None}
        else:
            h = {"source": "none", "device": None, "state": "no IMU stream yet",
                 "rate_hz": None, "nominal_hz": None, "loss": None, "lost": None,
                 "battery_pct": None}
        h["imu_samples"] = imu[0]["samples"] if imu else 0
        st["health"] = h
        if (self.faces is not None and st.get("phase") == "recording"
                and st.get("kind") not in NO_FACE_KINDS):
            st["face"] = self.faces.status(st.get("target") or {})
        else:
            st["face"] = {"key": None, "state": "none", "reason": ""}
        return clean(st)
