"""Magnetic disturbances around the wearer: the field is not the Earth's alone.

``MagneticScene.random(rng, cfg)`` draws one session's room (TWIN.md, "Magnetic
disturbance"; magnitudes are assumptions):

* a **static source** nearby (a steel desk frame, a monitor, a chair): a magnetic dipole
  fixed in the world, 0.4-0.9 m from the head, whose field at the head is 2-8 uT. Its field
  falls off as 1/r^3, so it differs between sites (a gradient across the face) and changes
  as the head moves or turns: the reference sensor does not cancel it.
* **moving sources** (a phone in a hand, a passing trolley): dipoles that pass the head on a
  straight line (closest approach 0.3-0.8 m, 0.3-1.2 m/s, 1-5 uT at the head when closest), at
  times of a Poisson process (mean one per ``pass_interval_s``) on the motion's own
  timeline from t = 0, so that any stretch of a session sees the same passes (the emulator
  simulates in chunks).

``field(p, t)`` gives the disturbance (uT, world frame) at positions ``p`` (N, S, 3) m and
times ``t`` (N,) s; the twin adds it to the Earth's field before turning it into each
sensor's frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MU0_4PI_UT = 0.1
"""mu0 / 4 pi in uT m^3 / (A m^2)."""


@dataclass(frozen=True)
class DisturbanceConfig:
    """Magnetic disturbances of a session (assumptions, TWIN.md "Magnetic disturbance")."""

    static_ut: tuple[float, float] = (2.0, 8.0)
    """Field (uT) of the static source at the head origin, drawn uniform in this range."""
    static_distance_m: tuple[float, float] = (0.4, 0.9)
    """Distance (m) of the static source from the head origin."""
    pass_interval_s: float = 60.0
    """Mean time (s) between moving sources passing the head."""
    pass_ut: tuple[float, float] = (1.0, 5.0)
    """Field (uT) of a passing source at the head origin when it is closest."""
    pass_distance_m: tuple[float, float] = (0.3, 0.8)
    """Closest approach (m) of a passing source to the head origin."""
    pass_speed_m_s: tuple[float, float] = (0.3, 1.2)
    """Speed (m/s) of a passing source."""


def dipole_field(moment: np.ndarray, source: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Field (uT) at points ``p`` (..., 3) m of dipoles of ``moment`` (..., 3) A m^2 at
    ``source`` (..., 3) m (all broadcast)."""
    r = p - source
    d = np.linalg.norm(r, axis=-1, keepdims=True)
    u = r / d
    return MU0_4PI_UT * (3.0 * np.sum(moment * u, axis=-1, keepdims=True) * u - moment) / d ** 3


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _scaled(rng: np.random.Generator, source: np.ndarray, ut: float) -> np.ndarray:
    """A random moment direction scaled so its field at the head origin is ``ut``."""
    m = _unit(rng)
    return m * ut / np.linalg.norm(dipole_field(m, source, np.zeros(3)))


class MagneticScene:
    """One session's magnetic disturbances (world frame, metres, seconds)."""

    def __init__(self, static_source: np.ndarray | None = None,
                 static_moment: np.ndarray | None = None,
                 cfg: DisturbanceConfig = DisturbanceConfig(),
                 passes_seed: np.random.SeedSequence | None = None):
        self.static_source = static_source            # (3,) m, or None: no static source
        self.static_moment = static_moment            # (3,) A m^2
        self.cfg = cfg
        self._rng = None if passes_seed is None else np.random.default_rng(passes_seed)
        self._t_next = 0.0                            # time of the last pass drawn
        self.passes: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
        """(time of closest approach s, closest point m, velocity m/s, moment A m^2)."""

    @classmethod
    def random(cls, seq: np.random.SeedSequence,
               cfg: DisturbanceConfig = DisturbanceConfig()) -> "MagneticScene":
        """A room drawn from ``seq``."""
        seq_static, seq_pass = seq.spawn(2)
        rng = np.random.default_rng(seq_static)
        src = _unit(rng) * rng.uniform(*cfg.static_distance_m)
        return cls(src, _scaled(rng, src, rng.uniform(*cfg.static_ut)), cfg, seq_pass)

    def _passes_until(self, t_end: float) -> list:
        """The passes up to ``t_end`` + 30 s, drawn in order from t = 0 (so the same passes
        whatever stretch of the timeline is asked for first)."""
        c = self.cfg
        while self._rng is not None and self._t_next < t_end + 30.0:
            rng = self._rng
            self._t_next += rng.exponential(c.pass_interval_s)
            closest = _unit(rng) * rng.uniform(*c.pass_distance_m)
            along = np.cross(closest, _unit(rng))
            velocity = along / np.linalg.norm(along) * rng.uniform(*c.pass_speed_m_s)
            self.passes.append((self._t_next, closest, velocity,
                                _scaled(rng, closest, rng.uniform(*c.pass_ut))))
        return self.passes

    def field(self, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Disturbance (uT, world) at positions ``p`` (N, S, 3) and times ``t`` (N,)."""
        out = np.zeros(p.shape)
        if self.static_source is not None:
            out += dipole_field(self.static_moment, self.static_source, p)
        t = np.asarray(t, dtype=np.float64)
        for t_c, closest, velocity, moment in self._passes_until(float(t.max())):
            src = closest + (t - t_c)[:, None] * velocity                 # (N, 3)
            near = np.linalg.norm(src, axis=1) < 20.0                       # 1/r^3: 20 m is 0
            if near.any():
                out[near] += dipole_field(moment, src[near, None, :], p[near])
        return out
