"""Board-on-skin compliance: a glued sensor board does not follow its skin patch perfectly.

Two effects (TWIN.md, "Compliance"; both assumptions, no facial measurement was found):

* **Partial coupling.** The board is stiffer than the skin and bridges it: it takes a
  fraction ``k`` of the patch's rotation relative to the head (rest to now). ``k`` is drawn
  per site and session (a fresh donning) uniform in ``[coupling_min, coupling_max]``.
* **Lag.** Tape and soft tissue are a damped spring under a board of a gram or two: the
  board's rotation (rotation vector relative to rest) and position follow the skin through a
  first-order low-pass of time constant ``tau_s``, integrated exactly for an input that is
  linear between motion frames (any frame times, even irregular). It starts settled on the
  first frame, so that a simulation that starts a quarter second earlier (the emulator's
  chunk seams) agrees after a few ``tau_s``.

Only the face's own motion is filtered; head motion moves skin and board together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ComplianceConfig:
    """Board-on-skin compliance (assumptions, TWIN.md "Compliance")."""

    tau_s: float = 0.005
    """Time constant (s) of the board lagging its skin patch (rotation and position)."""
    coupling_min: float = 0.8
    """Smallest fraction of the patch's rotation a board takes (drawn per site and session)."""
    coupling_max: float = 0.95
    """Largest fraction of the patch's rotation a board takes."""


def low_pass(t: np.ndarray, x: np.ndarray, tau_s: float) -> np.ndarray:
    """First-order low-pass ``y' = (x - y) / tau`` of samples ``x`` (T, ...) at times ``t``
    (T,), exact for ``x`` linear between samples; ``y`` starts at ``x[0]``."""
    y = np.empty_like(x, dtype=np.float64)
    y[0] = x[0]
    if tau_s <= 0:
        y[:] = x
        return y
    dt = np.diff(t)
    decay = np.exp(-dt / tau_s)
    for n in range(1, len(t)):
        slope_tau = (x[n] - x[n - 1]) * (tau_s / dt[n - 1])
        y[n] = x[n] - slope_tau + (y[n - 1] - x[n - 1] + slope_tau) * decay[n - 1]
    return y


def comply(t: np.ndarray, rot: np.ndarray, pos: np.ndarray, coupling: np.ndarray,
           tau_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Board rotations ``(T, S, 3, 3)`` (rest -> now, head frame) and positions ``(T, S, 3)``
    from the skin patches' ``rot`` and anchor positions ``pos`` at frame times ``t``:
    ``coupling`` (S,) of the rotation, both low-passed with ``tau_s``."""
    from scipy.spatial.transform import Rotation

    n_t, n_s = rot.shape[:2]
    rv = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_rotvec().reshape(n_t, n_s, 3)
    rv = rv * coupling[None, :, None]
    both = low_pass(t, np.concatenate([rv, pos], axis=-1), tau_s)
    board = Rotation.from_rotvec(both[..., :3].reshape(-1, 3)).as_matrix()
    return board.reshape(n_t, n_s, 3, 3), both[..., 3:]


def draw_coupling(rng: np.random.Generator, n_sites: int, cfg: ComplianceConfig) -> np.ndarray:
    """Per-site coupling fractions (S,) for one donning."""
    return rng.uniform(cfg.coupling_min, cfg.coupling_max, n_sites)


def lag_at(freq_hz: float, tau_s: float) -> float:
    """Phase lag (s) of the low-pass at ``freq_hz``: atan(2 pi f tau) / (2 pi f)."""
    w = 2 * math.pi * freq_hz
    return math.atan(w * tau_s) / w
