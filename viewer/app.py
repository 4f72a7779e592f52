"""The viewer's loops: live from LSL, replay of tracks, and the comparison hook for models.

Each loop owns a ``FaceWindow`` in the calling (main) thread; data arrives from ``LslSource``
threads or from a ``Player`` clock. Every pass draws the newest frame only, so the picture
never lags behind its source.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from imusic.viewer.face_view import CAMERAS, FaceWindow
from imusic.viewer.player import Player
from imusic.viewer.sources import Track, pair_frames

GLFW = {"space": 32, "right": 262, "left": 263, "down": 264, "up": 265, "page_up": 266,
        "page_down": 267, "home": 268, "end": 269}
"""GLFW key codes of the non-character keys used."""

COMMON_KEYS = {"1/2/3": "front/three-quarter/profile", "M": "sensors", "Q": "quit"}
REPLAY_KEYS = {"Space": "play/pause", "Left/Right": "step", "Up/Down": "seek 1 s",
               "PgUp/PgDn": "seek 10 s", "Home/End": "start/end", "[ ]": "speed",
               "L": "loop", **COMMON_KEYS}
LIVE_KEYS = dict(COMMON_KEYS)

FrameCallback = Callable[[int, FaceWindow], None]
"""Called after each new frame is put on the faces: (frame index or live sample number, window)."""


def keys_help(keys: dict[str, str]) -> str:
    """One line listing key bindings, for the console."""
    return "keys: " + ", ".join(f"{k} {v}" for k, v in keys.items())


def bind_common(window: FaceWindow, quit_flag: list[bool]) -> None:
    """Camera presets, marker toggle and quit."""
    for key, name in zip("123", CAMERAS):
        window.bind(key, lambda n=name: window.set_camera(n))
    window.bind("M", window.toggle_markers)
    window.bind("Q", lambda: quit_flag.__setitem__(0, True))


def bind_player(window: FaceWindow, player: Player, dirty: list[bool]) -> None:
    """Replay keys acting on ``player``; ``dirty[0]`` is set so the loop redraws."""
    def act(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            fn()
            dirty[0] = True
        return run

    window.bind(GLFW["space"], act(player.toggle))
    window.bind(GLFW["right"], act(lambda: player.step(1)))
    window.bind(GLFW["left"], act(lambda: player.step(-1)))
    window.bind(GLFW["up"], act(lambda: player.seek_seconds(1.0)))
    window.bind(GLFW["down"], act(lambda: player.seek_seconds(-1.0)))
    window.bind(GLFW["page_up"], act(lambda: player.seek_seconds(10.0)))
    window.bind(GLFW["page_down"], act(lambda: player.seek_seconds(-10.0)))
    window.bind(GLFW["home"], act(lambda: player.seek_frame(0)))
    window.bind(GLFW["end"], act(lambda: player.seek_frame(player.n_frames - 1)))
    window.bind("]", act(player.faster))
    window.bind("[", act(player.slower))
    window.bind("L", act(player.toggle_loop))


def run_replay(window: FaceWindow, track: Track, second: Track | None = None,
               player: Player | None = None, on_frame: FrameCallback | None = None,
               max_seconds: float | None = None, stop_at_end: bool = False) -> Player:
    """Replay ``track`` (and ``second`` beside it) until the window closes, Q, ``max_seconds``
    or (with ``stop_at_end``) the end of a non-looping replay. Returns the player."""
    player = player or Player(track.n_frames, track.rate_hz)
    pairs = pair_frames(track, second) if second is not None else None
    quit_flag, dirty = [False], [True]
    bind_common(window, quit_flag)
    bind_player(window, player, dirty)
    shown = -1
    start = last = time.perf_counter()
    period = 1.0 / track.rate_hz
    while not quit_flag[0]:
        now = time.perf_counter()
        index = player.advance(now - last)
        last = now
        if index != shown or dirty[0]:
            b = second.frame(pairs[index]) if second is not None else None
            window.set_frame(track.frame(index), b)
            shown, dirty[0] = index, False
            if on_frame is not None:
                on_frame(index, window)
        if not window.render():
            break
        if max_seconds is not None and now - start >= max_seconds:
            break
        if stop_at_end and player.at_end:
            break
        if not player.playing:
            # Paused: keep the window responsive without spinning a core.
            time.sleep(min(period, 0.02))
    return player


STATUS_EVERY_S = 0.5
"""How often the live status line is redrawn (s)."""


def source_label(source: Any) -> str:
    """A face's label: the stream's ``desc/source`` (arkit, twin, imusic-model, ...) and name."""
    kind = source.kind or "stream"
    return f"{kind}: {source.name}"


class StatusLine:
    """The live status text: frames drawn per second, latency of the newest frame (LSL clock
    now minus its timestamp) and the sources."""

    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources
        self._t0 = time.perf_counter()
        self._drawn0 = 0
        self._fps = 0.0
        self._next = self._t0

    def due(self) -> bool:
        """True every ``STATUS_EVERY_S``."""
        return time.perf_counter() >= self._next

    def text(self, drawn: int, frames: list[Any] | None = None) -> str:
        """The line for now, having drawn ``drawn`` frames; ``frames`` the newest per source."""
        import pylsl

        now = time.perf_counter()
        if now > self._t0:
            self._fps = (drawn - self._drawn0) / (now - self._t0)
        self._t0, self._drawn0, self._next = now, drawn, now + STATUS_EVERY_S
        lat = [f"{(pylsl.local_clock() - f.timestamp) * 1000:.0f} ms" for f in frames or []
               if f is not None]
        kinds = "+".join(s.kind or "stream" for s in self.sources)
        return (f"{self._fps:.0f} fps  latency {' / '.join(lat) or '-'}  source {kinds}")


def run_live(window: FaceWindow, sources: list[Any], on_frame: FrameCallback | None = None,
             max_seconds: float | None = None, max_frames: int | None = None,
             until: Callable[[], bool] | None = None) -> int:
    """Show the newest frame of each ``LslSource`` (one, or two side by side) until the window
    closes, Q, ``max_seconds``, ``max_frames`` new frames or ``until()`` is true; returns
    frames drawn."""
    from imusic.viewer.live import wait_any_newer

    quit_flag = [False]
    bind_common(window, quit_flag)
    seqs = [0] * len(sources)
    drawn = 0
    start = time.perf_counter()
    window.set_labels([source_label(s) for s in sources])
    if len(sources) == 2:
        window.show_error_bar()      # what the right face's colours mean, as in snapshots
    status = StatusLine(sources)
    window.set_status(status.text(drawn))
    while not quit_flag[0]:
        frames = [s.latest.get() for s in sources]
        if any(f is not None and f.seq > q for f, q in zip(frames, seqs)):
            values = [f.values if f is not None else np.zeros(52, np.float32) for f in frames]
            window.set_frame(values[0], values[1] if len(values) > 1 else None)
            seqs = [f.seq if f is not None else 0 for f in frames]
            drawn += 1
            if status.due():
                window.set_status(status.text(drawn, frames))
            if on_frame is not None:
                on_frame(seqs[0], window)
        if not window.render():
            break
        if max_frames is not None and drawn >= max_frames:
            break
        if until is not None and until():
            break
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        # Sleep until something new arrives (or a 120 Hz tick to handle window events).
        wait_any_newer(sources, seqs, 1.0 / 120.0)
    return drawn


def compare(truth: np.ndarray, prediction: np.ndarray, rate_hz: float = 60.0,
            max_seconds: float | None = None, on_frame: FrameCallback | None = None,
            **window_options: Any) -> Player:
    """Replay ground truth (T, 52) and a prediction (T, 52) side by side, the prediction
    coloured by per-vertex error. The hook for model evaluation scripts.

    Opens a window (starting Xvfb when there is no display); returns when it is closed (or
    after ``max_seconds``). ``on_frame(index, window)`` sees each drawn frame, e.g. to read
    ``window.last_error_m`` (per-vertex error in metres).
    Window options: ``identity``, ``camera``, ``full_head``, ``error_scale_mm``, ...
    """
    from imusic.viewer.display import ensure_display

    a = Track.from_array(truth, rate_hz, "truth")
    b = Track.from_array(prediction, rate_hz, "prediction")
    if a.n_frames != b.n_frames:
        raise ValueError(f"truth has {a.n_frames} frames, prediction {b.n_frames}: "
                         "compare frame-aligned arrays")
    with ensure_display(), FaceWindow(n_faces=2, keys=REPLAY_KEYS, **window_options) as win:
        print(keys_help(REPLAY_KEYS))
        return run_replay(win, a, b, on_frame=on_frame, max_seconds=max_seconds)
