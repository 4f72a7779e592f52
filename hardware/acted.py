"""An actor for the twin: a recording protocol's steps turned into facial motion.

``act(steps, seed)`` gives the ``Motion`` a participant would make following the prompts:
each step is ``(start, end, kind, target)`` in seconds on the motion's clock (kind as in
capture/protocol.py: ``neutral``, ``tap``, ``expression``, ``speech``, ``rest``; target ARKit
names -> levels). The participant is human about it (``ActingConfig``):

* every reaction comes a lognormal reaction time after the prompt, and the face eases in and
  out with minimum-jerk profiles of random length;
* levels vary (overall intensity, per shape, a little left/right asymmetry) and wobble slowly
  while held;
* the neutral hold is still (no blinks, no head motion): calibration needs it; elsewhere the
  participant blinks and the head drifts a little;
* the chin tap is a ``tap`` event (the emulator sends it as the device's EVENT tap) and the
  brief jaw/mouth twitch a tap on the mentalis causes, which sync finds in the blendshapes;
* speech opens and shapes the mouth at syllable rate, on top of the step's target (the
  emotion a line is spoken with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from imusic.hardware.motion import Motion, MotionEvent, _blink_profile, minimum_jerk
from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES

_IDX = {n: i for i, n in enumerate(ARKIT_NAMES)}
TWITCH = {"jawOpen": 0.25, "mouthShrugLower": 0.3, "mouthClose": 0.1}
"""The blendshape twitch a chin tap causes (peak levels)."""


@dataclass
class ActingConfig:
    """How human the actor is."""

    fps: float = 60.0
    """Frame rate of the motion."""
    reaction_median_s: float = 0.45
    """Median reaction time from a prompt to the face moving."""
    reaction_sigma: float = 0.3
    """Lognormal spread of the reaction time."""
    reaction_range_s: tuple[float, float] = (0.2, 1.0)
    """Reaction times are clipped to this range."""
    rise_range_s: tuple[float, float] = (0.25, 0.6)
    """Onset duration range (minimum jerk)."""
    fall_range_s: tuple[float, float] = (0.3, 0.7)
    """Release duration range."""
    intensity_range: tuple[float, float] = (0.8, 1.05)
    """Overall level scale per step."""
    shape_jitter: float = 0.1
    """Per-shape level variation (fraction)."""
    asymmetry: float = 0.1
    """Left/right level difference (fraction)."""
    wobble: float = 0.05
    """Slow variation of held levels (fraction)."""
    tap_twitch_s: float = 0.04
    """Width (std) of the chin twitch after the tap."""
    blink_interval_s: float = 3.5
    """Mean interval between blinks outside the neutral hold."""
    syllable_hz: float = 5.0
    """Syllable rate of speech steps."""
    syllable_jitter: float = 0.15
    """Slow variation of the syllable rate (fraction; the phase integrates it, so it is smooth)."""
    pause_edge: float = 0.4
    """Width of a speech pause's fade, in units of the pause noise (0: hard on/off)."""
    head_drift_rad: float = 0.02
    """Amplitude of the slow head drift outside neutral and tap steps."""
    tail_s: float = 1.0
    """Motion after the last step ends (the release)."""


def _smooth(n: int, fps: float, hz: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-ish smooth noise: white noise low-passed by a moving average of 1/hz."""
    k = max(1, int(fps / hz))
    x = np.convolve(rng.standard_normal(n + k), np.ones(k) / np.sqrt(k), mode="valid")[:n]
    return x


def _gauss_noise(n: int, fps: float, hz: float, rng: np.random.Generator) -> np.ndarray:
    """Unit smooth noise with smooth derivatives (a Gaussian low-pass at ``hz``): speech
    drives the jaw fast, and the IMU twin differentiates twice, so a moving average's
    frame-to-frame kinks would show as acceleration spikes."""
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.standard_normal(n), sigma=fps / (2 * np.pi * hz), mode="reflect")
    return x / (x.std() or 1.0)


def _mirror(name: str) -> str | None:
    if name.endswith("Left"):
        return name[:-4] + "Right"
    if name.endswith("Right"):
        return name[:-5] + "Left"
    return None


def act(steps: Iterable[Sequence], seed: int = 0, config: ActingConfig | None = None) -> Motion:
    """The motion of a participant following ``steps`` = ``(start, end, kind, target)``; it
    starts at time 0 with a still neutral face until the first step."""
    cfg = config or ActingConfig()
    steps = [(float(a), float(b), str(k), dict(tg or {})) for a, b, k, tg in steps]
    if not steps:
        raise ValueError("act() needs at least one step")
    rng = np.random.default_rng(seed)
    end = max(b for _, b, _, _ in steps) + cfg.tail_s
    n = max(4, int(np.ceil(end * cfg.fps)) + 1)
    t = np.arange(n) / cfg.fps
    w = np.zeros((n, N_BLENDSHAPES))
    events: list[MotionEvent] = []
    quiet = np.zeros(n, bool)     # neutral and tap steps: no blinks, no head drift

    def reaction() -> float:
        r = cfg.reaction_median_s * np.exp(cfg.reaction_sigma * rng.standard_normal())
        return float(np.clip(r, *cfg.reaction_range_s))

    for a, b, kind, target in steps:
        if kind in ("neutral", "tap"):
            quiet |= (t >= a - 0.2) & (t < b + 0.2)
        if kind == "tap":
            t_tap = min(a + reaction() + 0.3, b - 0.1)
            events.append(MotionEvent("tap", t_tap, t_tap + 0.02))
            bump = np.exp(-0.5 * ((t - t_tap - 0.03) / cfg.tap_twitch_s) ** 2)
            for name, amp in TWITCH.items():
                w[:, _IDX[name]] += amp * bump
            continue
        on = a + reaction()
        rise = rng.uniform(*cfg.rise_range_s)
        off = b + reaction() * 0.5
        fall = rng.uniform(*cfg.fall_range_s)
        prof = minimum_jerk((t - on) / rise) - minimum_jerk((t - off) / fall)
        if kind == "speech":
            talk = np.clip(prof, 0, 1)
            # smooth in every derivative: a rate that varies slowly, integrated to a phase;
            # raised-cosine syllables; pauses that fade (no clipped sine, no on/off steps)
            hz = cfg.syllable_hz * (1 + cfg.syllable_jitter * _gauss_noise(n, cfg.fps, 0.5, rng))
            phase = 2 * np.pi * np.cumsum(hz) / cfg.fps
            syll = (0.5 - 0.5 * np.cos(phase)) ** 2
            gap = (_gauss_noise(n, cfg.fps, 0.4, rng) + 1.2) / max(cfg.pause_edge, 1e-6)
            pauses = minimum_jerk(np.clip(gap + 0.5, 0.0, 1.0))
            w[:, _IDX["jawOpen"]] += talk * pauses * syll * rng.uniform(0.2, 0.35)
            w[:, _IDX["mouthFunnel"]] += talk * pauses * syll * rng.uniform(0.0, 0.15)
            w[:, _IDX["mouthClose"]] += talk * pauses * (1 - syll) * 0.05
            prof = prof * 0.7
        if target:
            scale = rng.uniform(*cfg.intensity_range)
            side = 1.0 + cfg.asymmetry * rng.uniform(-1, 1)
            wob = 1.0 + cfg.wobble * _smooth(n, cfg.fps, 0.5, rng)
            events.append(MotionEvent(f"expression:{kind}", on, off + fall, {"target": target}))
            for name, level in target.items():
                lv = level * scale * (1 + cfg.shape_jitter * rng.uniform(-1, 1))
                if name.endswith("Left"):
                    lv *= side
                elif name.endswith("Right"):
                    lv /= side
                w[:, _IDX[name]] += np.clip(lv, 0, 1) * prof * wob
    # blinks outside the quiet steps
    tb = rng.exponential(cfg.blink_interval_s)
    while tb < end:
        dur = rng.uniform(0.12, 0.3)
        if not quiet[(t >= tb - 0.1) & (t <= tb + dur + 0.1)].any() and tb > steps[0][0]:
            p = _blink_profile(t, tb, dur)
            w[:, _IDX["eyeBlinkLeft"]] = np.maximum(w[:, _IDX["eyeBlinkLeft"]], p)
            w[:, _IDX["eyeBlinkRight"]] = np.maximum(w[:, _IDX["eyeBlinkRight"]],
                                                      p * rng.uniform(0.9, 1.0))
            events.append(MotionEvent("blink", tb, tb + dur))
        tb += dur + rng.exponential(cfg.blink_interval_s)
    # head: a slow drift that fades out over the quiet steps (minimum-jerk edges)
    fade = np.convolve((~quiet).astype(float), np.ones(int(cfg.fps * 0.5)) / int(cfg.fps * 0.5),
                       mode="same")
    fade[t < steps[0][0]] = 0.0
    rv = np.stack([cfg.head_drift_rad * _smooth(n, cfg.fps, 0.3, rng) / 3 * fade
                   for _ in range(3)], axis=1)
    return Motion(fps=cfg.fps, blendshapes=np.clip(w, 0.0, 1.0), head_rotvec=rv,
                  head_position=np.zeros((n, 3)), t=t, events=events)
