"""Facial motion for the twin: a ``Motion`` container and a procedural generator.

A ``Motion`` is what the twin moves: ARKit blendshape frames plus a head pose trajectory
(world-from-head rotation vector and head position). It comes from real takes
(``Motion.from_blendshapes``; reading Live Link Face files is ``capture``'s job) or from
``procedural(seconds, fps, seed)``, which composes:

* blinks at random (gamma-distributed) intervals, 100-400 ms long, fast close and slower open,
  sometimes a little asymmetric;
* speech-like episodes: syllables at about 4-6 per second that open the jaw and shape the
  lips (visemes), with pauses between phrases;
* expression episodes (smile, frown, surprise, squint, pucker, sneer, ...) with minimum-jerk
  onsets and offsets, some one-sided (asymmetric variants);
* eye gaze saccades;
* small head motion: slow drift, nods and turns, rotating about a neck pivot.

Everything is deterministic for a given seed and every blendshape stays in [0, 1].

Head frame (as the face model's): +x the subject's left, +y up, +z forward (out of the face).
The world frame is the head frame at rest, so gravity points along -y.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES

_IDX = {n: i for i, n in enumerate(ARKIT_NAMES)}

NECK_PIVOT_M = np.array([0.0, -0.10, -0.08])
"""Head rotations turn about this point (head frame, m): roughly the upper cervical spine,
below and behind the face model's origin, so that nods and turns also translate the face."""


@dataclass
class MotionEvent:
    """One generated episode, kept so that tests and plots can see what was made."""

    kind: str          # "blink", "speech", "expression:<name>", "nod", "turn", "saccade"
    start: float       # s
    end: float         # s
    detail: dict = field(default_factory=dict)


@dataclass
class Motion:
    """Blendshape frames and head pose, the input of ``hardware.physics.simulate``.

    ``t`` holds the frame times (s); when not given frames are ``1/fps`` apart from 0.
    ``head_rotvec`` is the world-from-head rotation (rotation vector, rad) and
    ``head_position`` the head origin in the world (m).
    """

    fps: float
    blendshapes: np.ndarray                 # (T, 52) in [0, 1] (real data may exceed 1)
    head_rotvec: np.ndarray                 # (T, 3) rad, world-from-head
    head_position: np.ndarray               # (T, 3) m
    t: np.ndarray | None = None             # (T,) s, increasing
    events: list[MotionEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blendshapes = np.asarray(self.blendshapes, dtype=np.float64)
        n = len(self.blendshapes)
        if self.blendshapes.ndim != 2 or self.blendshapes.shape[1] != N_BLENDSHAPES:
            raise ValueError(f"Motion.blendshapes must be (T, 52), got {self.blendshapes.shape}")
        self.head_rotvec = np.asarray(self.head_rotvec, dtype=np.float64).reshape(n, 3)
        self.head_position = np.asarray(self.head_position, dtype=np.float64).reshape(n, 3)
        if self.t is None:
            self.t = np.arange(n) / float(self.fps)
        else:
            self.t = np.asarray(self.t, dtype=np.float64).reshape(n)
            if n > 1 and np.any(np.diff(self.t) <= 0):
                raise ValueError("Motion.t must be strictly increasing")
        if n < 4:
            raise ValueError(f"a Motion needs at least 4 frames to be interpolated, got {n}")
        for name in ("blendshapes", "head_rotvec", "head_position"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"Motion.{name} holds NaN or inf: fill gaps first "
                                 "(Motion.from_blendshapes does it)")

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.blendshapes)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return float(self.t[-1] - self.t[0])

    @classmethod
    def from_blendshapes(cls, t_or_fps: float | np.ndarray, blendshapes: np.ndarray,
                         head_rotvec: np.ndarray | None = None,
                         head_position: np.ndarray | None = None) -> "Motion":
        """A ``Motion`` from blendshape frames (e.g. a real Live Link Face take).

        ``t_or_fps`` is either a frame rate or the frame times (s, increasing). ``blendshapes``
        may be ``(T, 52)`` or a Live Link ``(T, 61)`` row set (the 9 pose values are dropped;
        head pose comes from ``head_rotvec``/``head_position``, default still at the origin).
        Rows holding NaN (face lost) are filled by linear interpolation over time from their
        neighbours, so that the twin sees a continuous face; leading/trailing NaN rows take
        the nearest valid row.
        """
        b = np.asarray(blendshapes, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] not in (N_BLENDSHAPES, N_BLENDSHAPES + 9):
            raise ValueError(f"blendshapes must be (T, 52) or (T, 61), got {b.shape}")
        b = b[:, :N_BLENDSHAPES].copy()
        n = len(b)
        if np.ndim(t_or_fps) == 0:
            fps = float(t_or_fps)
            t = np.arange(n) / fps
        else:
            t = np.asarray(t_or_fps, dtype=np.float64).reshape(n)
            fps = float(1.0 / np.median(np.diff(t))) if n > 1 else 60.0
        good = np.all(np.isfinite(b), axis=1)
        if not good.any():
            raise ValueError("every blendshape row is NaN (face never found): nothing to simulate")
        if not good.all():
            for j in range(N_BLENDSHAPES):
                b[:, j] = np.interp(t, t[good], b[good, j])
        rv = np.zeros((n, 3)) if head_rotvec is None else head_rotvec
        pos = np.zeros((n, 3)) if head_position is None else head_position
        return cls(fps=fps, blendshapes=b, head_rotvec=rv, head_position=pos, t=t)

    @classmethod
    def still(cls, seconds: float, fps: float = 60.0,
              weights: np.ndarray | None = None) -> "Motion":
        """A motionless face (neutral, or the given constant ``weights``) for tests."""
        n = max(4, int(round(seconds * fps)) + 1)
        w = np.zeros(N_BLENDSHAPES) if weights is None else np.asarray(weights, float)
        return cls(fps=fps, blendshapes=np.tile(w, (n, 1)), head_rotvec=np.zeros((n, 3)),
                   head_position=np.zeros((n, 3)))


# --- profiles -------------------------------------------------------------------------------

def minimum_jerk(tau: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile 10 s^3 - 15 s^4 + 6 s^5 on ``tau`` clipped to [0, 1]:
    zero velocity and acceleration at both ends."""
    s = np.clip(tau, 0.0, 1.0)
    return s * s * s * (10.0 + s * (-15.0 + 6.0 * s))


def envelope(t: np.ndarray, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 -> 1 -> 0 with minimum-jerk rise and fall: up over ``rise`` s from ``start``, held
    ``hold`` s, down over ``fall`` s."""
    up = minimum_jerk((t - start) / rise)
    down = minimum_jerk((t - (start + rise + hold)) / fall)
    return up - down


def _blink_profile(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Eyelid closure of one blink: the close takes about a third of the blink and the
    reopening the rest (lids open more slowly than they close)."""
    close = duration * 0.35
    return envelope(t, start, close, 0.0, duration - close)


# --- expression library ---------------------------------------------------------------------

EXPRESSIONS: dict[str, dict[str, float]] = {
    "smile": {"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9, "cheekSquintLeft": 0.5,
              "cheekSquintRight": 0.5, "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3,
              "mouthDimpleLeft": 0.2, "mouthDimpleRight": 0.2},
    "frown": {"browDownLeft": 0.8, "browDownRight": 0.8, "mouthFrownLeft": 0.6,
              "mouthFrownRight": 0.6, "mouthShrugLower": 0.3},
    "surprise": {"browInnerUp": 0.9, "browOuterUpLeft": 0.8, "browOuterUpRight": 0.8,
                 "eyeWideLeft": 0.7, "eyeWideRight": 0.7, "jawOpen": 0.35},
    "squint": {"eyeSquintLeft": 0.8, "eyeSquintRight": 0.8, "cheekSquintLeft": 0.4,
               "cheekSquintRight": 0.4, "browDownLeft": 0.3, "browDownRight": 0.3},
    "pucker": {"mouthPucker": 0.9, "mouthFunnel": 0.3},
    "sneer": {"noseSneerLeft": 0.8, "noseSneerRight": 0.8, "mouthUpperUpLeft": 0.5,
              "mouthUpperUpRight": 0.5, "browDownLeft": 0.2, "browDownRight": 0.2},
    "sad": {"browInnerUp": 0.6, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5,
            "mouthPressLeft": 0.2, "mouthPressRight": 0.2},
    "anger": {"browDownLeft": 0.9, "browDownRight": 0.9, "eyeSquintLeft": 0.4,
              "eyeSquintRight": 0.4, "mouthPressLeft": 0.5, "mouthPressRight": 0.5,
              "noseSneerLeft": 0.3, "noseSneerRight": 0.3},
    "cheek_puff": {"cheekPuff": 0.9, "mouthClose": 0.3},
    "mouth_side": {"mouthLeft": 0.7, "jawLeft": 0.3},
    "jaw_side": {"jawRight": 0.6, "jawOpen": 0.15},
    "stretch": {"mouthStretchLeft": 0.7, "mouthStretchRight": 0.7, "mouthLowerDownLeft": 0.3,
                "mouthLowerDownRight": 0.3},
}
"""Expression prototypes: ARKit weights at full intensity."""


def _mirror(name: str) -> str:
    if name.endswith("Left"):
        return name[:-4] + "Right"
    if name.endswith("Right"):
        return name[:-5] + "Left"
    return name


def _asymmetric(shape: dict[str, float], rng: np.random.Generator) -> tuple[dict[str, float], str]:
    """Return a variant of an expression: symmetric, one-sided, mirrored or lopsided."""
    kind = rng.choice(["symmetric", "symmetric", "left", "right", "lopsided"])
    if kind == "symmetric":
        return dict(shape), str(kind)
    out = {}
    weak = rng.uniform(0.0, 0.3) if kind in ("left", "right") else rng.uniform(0.4, 0.8)
    for name, w in shape.items():
        side = "Left" if name.endswith("Left") else "Right" if name.endswith("Right") else ""
        if kind in ("left", "lopsided") and side == "Right":
            w *= weak
        elif kind == "right" and side == "Left":
            w *= weak
        out[name] = w
    if "mouthLeft" in out and kind == "right":
        out = {_mirror(k): v for k, v in out.items()}
    return out, str(kind)


# --- generator ------------------------------------------------------------------------------

VISEMES: tuple[dict[str, float], ...] = (
    {"jawOpen": 0.28, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2},      # a
    {"jawOpen": 0.15, "mouthStretchLeft": 0.25, "mouthStretchRight": 0.25},        # e, i
    {"jawOpen": 0.15, "mouthFunnel": 0.35, "mouthPucker": 0.2},                    # o
    {"jawOpen": 0.08, "mouthPucker": 0.4, "mouthFunnel": 0.15},                    # u, w
    {"jawOpen": 0.03, "mouthClose": 0.2, "mouthPressLeft": 0.25,
     "mouthPressRight": 0.25},                                                     # m, b, p
    {"jawOpen": 0.08, "mouthRollLower": 0.25, "mouthUpperUpLeft": 0.15,
     "mouthUpperUpRight": 0.15},                                                   # f, v
    {"jawOpen": 0.12, "mouthShrugUpper": 0.15, "mouthUpperUpLeft": 0.1,
     "mouthUpperUpRight": 0.1},                                                    # t, s
)
"""Mouth shapes a syllable picks from (rough viseme classes)."""


def _add(weights: np.ndarray, shape: dict[str, float], profile: np.ndarray,
         sl: slice) -> None:
    for name, w in shape.items():
        weights[sl, _IDX[name]] += w * profile


def _window(t: np.ndarray, start: float, end: float) -> slice:
    """Frame slice covering [start, end] (a little wider), so that events touch few frames."""
    i0 = int(np.searchsorted(t, start - 1e-9))
    i1 = int(np.searchsorted(t, end + 1e-9)) + 1
    return slice(max(0, i0 - 1), min(len(t), i1))


def _blinks(t: np.ndarray, w: np.ndarray, rng: np.random.Generator,
            events: list[MotionEvent]) -> None:
    # Spontaneous blink rate ~15-20 per minute; gamma intervals (shape 2) avoid the very
    # short gaps an exponential would give.
    now = rng.uniform(0.3, 3.0)
    end = t[-1]
    while now < end:
        dur = float(np.clip(rng.lognormal(np.log(0.2), 0.25), 0.1, 0.4))
        depth = rng.uniform(0.85, 1.0)
        left, right = depth, depth * rng.uniform(0.9, 1.0)
        if rng.random() < 0.5:
            left, right = right, left
        sl = _window(t, now, now + dur)
        p = _blink_profile(t[sl], now, dur)
        w[sl, _IDX["eyeBlinkLeft"]] = np.maximum(w[sl, _IDX["eyeBlinkLeft"]], left * p)
        w[sl, _IDX["eyeBlinkRight"]] = np.maximum(w[sl, _IDX["eyeBlinkRight"]], right * p)
        events.append(MotionEvent("blink", now, now + dur, {"depth": depth}))
        now += dur + max(0.4, rng.gamma(2.0, 1.6))


def _speech(t: np.ndarray, w: np.ndarray, rng: np.random.Generator,
            events: list[MotionEvent]) -> None:
    now = rng.uniform(0.5, 4.0)
    end = t[-1]
    while now < end - 1.0:
        phrase = rng.uniform(1.0, 5.0)
        stop = min(now + phrase, end - 0.3)
        events.append(MotionEvent("speech", now, stop))
        s = now
        while s < stop:
            dur = rng.uniform(0.15, 0.26)              # 4-6.5 syllables per second
            shape = VISEMES[rng.integers(len(VISEMES))]
            amp = rng.uniform(0.5, 1.1)
            rise = dur * 0.45
            sl = _window(t, s, s + dur * 1.1)
            prof = envelope(t[sl], s, rise, dur * 0.1, dur * 0.55)
            _add(w, {k: v * amp for k, v in shape.items()}, prof, sl)
            s += dur
        now = stop + rng.uniform(1.0, 6.0)


def _expressions(t: np.ndarray, w: np.ndarray, rng: np.random.Generator,
                 events: list[MotionEvent]) -> None:
    names = list(EXPRESSIONS)
    now = rng.uniform(0.0, 2.0)
    end = t[-1]
    while now < end - 1.0:
        name = names[rng.integers(len(names))]
        shape, variant = _asymmetric(EXPRESSIONS[name], rng)
        intensity = rng.uniform(0.4, 1.0)
        rise, hold, fall = rng.uniform(0.3, 0.8), rng.uniform(0.4, 3.0), rng.uniform(0.3, 0.9)
        total = rise + hold + fall
        sl = _window(t, now, now + total)
        _add(w, {k: v * intensity for k, v in shape.items()}, envelope(t[sl], now, rise, hold,
                                                                       fall), sl)
        events.append(MotionEvent(f"expression:{name}", now, now + total,
                                  {"variant": variant, "intensity": intensity}))
        now += total + rng.uniform(0.3, 4.0)


def _gaze(t: np.ndarray, w: np.ndarray, rng: np.random.Generator,
          events: list[MotionEvent]) -> None:
    # Saccades (~50 ms, minimum-jerk) between fixations of 0.3-2 s; both eyes together.
    yaw = pitch = 0.0
    now = rng.uniform(0.2, 1.0)
    hx = np.zeros(len(t))
    hy = np.zeros(len(t))
    last = 0
    while now < t[-1]:
        new_yaw, new_pitch = rng.uniform(-0.8, 0.8), rng.uniform(-0.6, 0.6)
        i0 = int(np.searchsorted(t, now))
        hx[last:i0], hy[last:i0] = yaw, pitch
        sl = _window(t, now, now + 0.05)
        s = minimum_jerk((t[sl] - now) / 0.05)
        hx[sl] = yaw + (new_yaw - yaw) * s
        hy[sl] = pitch + (new_pitch - pitch) * s
        last = sl.stop
        yaw, pitch = new_yaw, new_pitch
        events.append(MotionEvent("saccade", now, now + 0.05, {"yaw": yaw, "pitch": pitch}))
        now += 0.05 + rng.uniform(0.3, 2.0)
    hx[last:], hy[last:] = yaw, pitch
    # Gaze to the subject's left: left eye looks out, right eye looks in.
    w[:, _IDX["eyeLookOutLeft"]] += np.clip(hx, 0, None)
    w[:, _IDX["eyeLookInRight"]] += np.clip(hx, 0, None)
    w[:, _IDX["eyeLookInLeft"]] += np.clip(-hx, 0, None)
    w[:, _IDX["eyeLookOutRight"]] += np.clip(-hx, 0, None)
    for side in ("Left", "Right"):
        w[:, _IDX["eyeLookUp" + side]] += np.clip(hy, 0, None)
        w[:, _IDX["eyeLookDown" + side]] += np.clip(-hy, 0, None)


def _smooth_noise(n: int, fps: float, cutoff_hz: float, rng: np.random.Generator,
                  dims: int) -> np.ndarray:
    """Unit-std noise band-limited to ``cutoff_hz`` (FFT brick-wall), for slow drift."""
    spec = rng.standard_normal((n // 2 + 1, dims)) + 1j * rng.standard_normal((n // 2 + 1, dims))
    freqs = np.fft.rfftfreq(n, 1.0 / fps)
    spec[freqs > cutoff_hz] = 0.0
    spec[0] = 0.0
    x = np.fft.irfft(spec, n=n, axis=0)
    sd = x.std(axis=0)
    return x / np.where(sd > 0, sd, 1.0)


def _head(t: np.ndarray, fps: float, rng: np.random.Generator,
          events: list[MotionEvent]) -> tuple[np.ndarray, np.ndarray]:
    """Head rotation (pitch about x, yaw about y, roll about z; rad) and position (m)."""
    n = len(t)
    # Slow drift: a few degrees, below 0.3 Hz.
    ang = _smooth_noise(n, fps, 0.3, rng, 3) * np.radians([2.0, 3.0, 1.0])
    now = rng.uniform(0.5, 3.0)
    while now < t[-1] - 1.0:
        if rng.random() < 0.5:
            kind, axis = "nod", 0
            amp = np.radians(rng.uniform(5.0, 12.0)) * rng.choice([-1, 1])
            rise, hold, fall = rng.uniform(0.2, 0.4), rng.uniform(0.0, 0.2), rng.uniform(0.25, 0.5)
        else:
            kind, axis = "turn", 1
            amp = np.radians(rng.uniform(8.0, 30.0)) * rng.choice([-1, 1])
            rise, hold, fall = rng.uniform(0.4, 0.9), rng.uniform(0.5, 3.0), rng.uniform(0.4, 0.9)
        total = rise + hold + fall
        sl = _window(t, now, now + total)
        ang[sl, axis] += amp * envelope(t[sl], now, rise, hold, fall)
        events.append(MotionEvent(kind, now, now + total, {"amplitude_rad": float(amp)}))
        now += total + rng.uniform(1.0, 6.0)
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("YXZ", ang[:, [1, 0, 2]])
    # Rotation about the neck pivot moves the head origin: x = R p0 - p0 (plus slow sway).
    pos = rot.apply(-NECK_PIVOT_M) + NECK_PIVOT_M
    pos += _smooth_noise(n, fps, 0.2, rng, 3) * 0.003
    return rot.as_rotvec(), pos


def procedural(seconds: float, fps: float = 60.0, seed: int = 0) -> Motion:
    """Procedural facial motion of ``seconds`` length at ``fps``, deterministic per ``seed``.

    The returned ``Motion.events`` lists every generated episode (blinks, speech, expressions,
    saccades, nods and turns) with its start and end time.
    """
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive, got {seconds}, {fps}")
    n = max(4, int(round(seconds * fps)) + 1)
    t = np.arange(n) / fps
    root = np.random.SeedSequence(seed)
    r_blink, r_speech, r_expr, r_gaze, r_head = (np.random.default_rng(s)
                                                 for s in root.spawn(5))
    w = np.zeros((n, N_BLENDSHAPES))
    events: list[MotionEvent] = []
    _speech(t, w, r_speech, events)
    _expressions(t, w, r_expr, events)
    _gaze(t, w, r_gaze, events)
    np.clip(w, 0.0, 1.0, out=w)
    # Blinks go last and take the max with what is there (a squint does not stop a blink).
    _blinks(t, w, r_blink, events)
    rotvec, pos = _head(t, fps, r_head, events)
    np.clip(w, 0.0, 1.0, out=w)
    events.sort(key=lambda e: e.start)
    return Motion(fps=fps, blendshapes=w, head_rotvec=rotvec, head_position=pos, t=t,
                  events=events)


def neutral_weight(t: np.ndarray, seconds: float, ramp_s: float = 1.0) -> np.ndarray:
    """The weight of the motion itself at times ``t`` (s from the motion's start) under a
    neutral start: 0 for the first ``seconds``, easing to 1 over ``ramp_s`` (minimum jerk);
    all 1 when ``seconds`` is 0 (no neutral start)."""
    if seconds <= 0:
        return np.ones(np.shape(t))
    return minimum_jerk((np.asarray(t, np.float64) - seconds) / max(ramp_s, 1e-9))


def with_neutral_start(motion: Motion, seconds: float, ramp_s: float = 1.0) -> Motion:
    """``motion`` with a neutral-pose calibration at its start: face neutral and head at rest
    for the first ``seconds``, then eased into the motion's own face and head over ``ramp_s``
    (minimum jerk)."""
    k = neutral_weight(motion.t - motion.t[0], seconds, ramp_s)[:, None]
    return Motion(fps=motion.fps, blendshapes=motion.blendshapes * k,
                  head_rotvec=motion.head_rotvec * k,
                  head_position=motion.head_position * k, t=motion.t,
                  events=[e for e in motion.events if e.start >= seconds])
