"""Baselines on the same features and splits as the IMUSIC model: the mean face and ridge
regression on windowed features (closed form). The stage-1 regressor alone is the third
baseline; it lives in the IMUSIC network itself (``IMUSIC.regress``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from model.data import Normaliser, Recording

RIDGE_OFFSETS = (-48, -32, -20, -12, -8, -4, -2, -1, 0, 1, 2, 4)
"""Frames, relative to the output frame, whose features the ridge model sees."""


def mean_face(recs: Sequence[Recording]) -> np.ndarray:
    """Mean blendshape vector (52,) over the valid frames of ``recs``."""
    y = np.concatenate([r.blendshapes[r.valid_arkit] for r in recs])
    return y.mean(0).astype(np.float32)


def windowed(x: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """Stack ``x`` (N, F) at frame offsets into (N, len(offsets) * F), edge-padded."""
    n = len(x)
    idx = np.clip(np.arange(n)[:, None] + np.asarray(offsets)[None], 0, n - 1)
    return x[idx].reshape(n, -1)


@dataclass
class Ridge:
    """Linear map from windowed, normalised features to blendshapes (bias included)."""

    weights: np.ndarray            # (D + 1, 52)
    offsets: tuple[int, ...]

    @classmethod
    def fit(cls, recs: Sequence[Recording], norm: Normaliser, lam: float = 10.0,
            offsets: Sequence[int] = RIDGE_OFFSETS, stride: int = 2) -> "Ridge":
        """Closed-form ridge, accumulating the normal equations recording by recording (so
        memory stays at D x D whatever the data size)."""
        d = len(offsets) * len(norm.mean) + 1
        xtx = np.zeros((d, d))
        xty = np.zeros((d, recs[0].blendshapes.shape[1]))
        for r in recs:
            x = norm(r.features)
            x[~r.valid_imu] = 0.0
            xw = windowed(x, offsets)[::stride]
            keep = (r.valid_arkit & r.valid_imu)[::stride]
            xw = np.hstack([xw[keep], np.ones((keep.sum(), 1), np.float32)]).astype(np.float64)
            xtx += xw.T @ xw
            xty += xw.T @ r.blendshapes[::stride][keep]
        reg = lam * np.eye(d)
        reg[-1, -1] = 0.0   # don't shrink the bias
        w = np.linalg.solve(xtx + reg, xty)
        return cls(w.astype(np.float32), tuple(int(o) for o in offsets))

    def predict(self, feats_norm: np.ndarray) -> np.ndarray:
        """Blendshapes (N, 52) for a recording's normalised features (N, F)."""
        xw = windowed(feats_norm, self.offsets)
        return xw @ self.weights[:-1] + self.weights[-1]
