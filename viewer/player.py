"""Replay control: play, pause, step, seek, speed and loop over a recorded timeline.

``Player`` is plain state driven by wall-clock time (no window, no threads), so the render loop
can ask "which frame now?" after each frame it draws: when rendering is slower than the
recording, frames are skipped instead of the replay falling behind.
"""

from __future__ import annotations

from dataclasses import dataclass

SPEEDS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Playback speeds the speed keys step through."""


@dataclass
class Player:
    """Position on a timeline of ``n_frames`` frames at ``rate_hz``."""

    n_frames: int
    rate_hz: float
    playing: bool = True
    speed: float = 1.0
    loop: bool = True
    position: float = 0.0          # fractional frame index

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise ValueError("nothing to replay: the timeline has no frames")
        if self.rate_hz <= 0:
            raise ValueError(f"replay rate must be > 0 Hz, got {self.rate_hz}")

    @property
    def frame(self) -> int:
        """The current frame index (0 .. n_frames-1)."""
        return min(int(self.position), self.n_frames - 1)

    @property
    def at_end(self) -> bool:
        """True when playback has reached the last frame and does not loop."""
        return not self.loop and self.position >= self.n_frames - 1

    def advance(self, dt_s: float) -> int:
        """Move on by ``dt_s`` seconds of wall time (if playing); returns the frame to show."""
        if self.playing:
            self.position += dt_s * self.rate_hz * self.speed
            if self.position >= self.n_frames:
                if self.loop:
                    self.position %= self.n_frames
                else:
                    self.position = float(self.n_frames - 1)
                    self.playing = False
        return self.frame

    def toggle(self) -> bool:
        """Play/pause; returns whether it is now playing. Playing at the end restarts."""
        if not self.playing and self.at_end:
            self.position = 0.0
        self.playing = not self.playing
        return self.playing

    def step(self, frames: int) -> int:
        """Pause and move by a whole number of frames (clamped, or wrapped when looping)."""
        self.playing = False
        return self.seek_frame(self.frame + frames)

    def seek_frame(self, index: int) -> int:
        """Jump to a frame (wrapped when looping, clamped otherwise)."""
        if self.loop:
            index %= self.n_frames
        self.position = float(min(max(index, 0), self.n_frames - 1))
        return self.frame

    def seek_seconds(self, delta_s: float) -> int:
        """Jump forwards or backwards by ``delta_s`` seconds of recording."""
        return self.seek_frame(self.frame + round(delta_s * self.rate_hz))

    def faster(self) -> float:
        """Next speed up (see ``SPEEDS``); returns the new speed."""
        higher = [s for s in SPEEDS if s > self.speed]
        self.speed = higher[0] if higher else self.speed
        return self.speed

    def slower(self) -> float:
        """Next speed down; returns the new speed."""
        lower = [s for s in SPEEDS if s < self.speed]
        self.speed = lower[-1] if lower else self.speed
        return self.speed

    def toggle_loop(self) -> bool:
        """Loop on/off; returns the new setting."""
        self.loop = not self.loop
        return self.loop
