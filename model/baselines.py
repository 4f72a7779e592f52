"""Baselines on the same features and splits as the IMUSIC model: the mean face and ridge
regression on windowed features (closed form). The stage-1 regressor alone is the third
baseline; it lives in the IMUSIC network itself (``IMUSIC.regress``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from imusic.model.data import Normaliser, Recording

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

    @staticmethod
    def _design(r: Recording, norm: Normaliser, offsets: Sequence[int],
                stride: int) -> tuple[np.ndarray, np.ndarray]:
        x = norm(r.features)
        x[~r.valid_imu] = 0.0
        xw = windowed(x, offsets)[::stride]
        keep = (r.valid_arkit & r.valid_imu)[::stride]
        xw = np.hstack([xw[keep], np.ones((keep.sum(), 1), np.float32)]).astype(np.float64)
        return xw, r.blendshapes[::stride][keep].astype(np.float64)

    @staticmethod
    def _solve(xtx: np.ndarray, xty: np.ndarray, lam: float) -> np.ndarray:
        reg = lam * np.eye(len(xtx))
        reg[-1, -1] = 0.0   # don't shrink the bias
        return np.linalg.solve(xtx + reg, xty)

    @classmethod
    def fit(cls, recs: Sequence[Recording], norm: Normaliser, lam: float = 10.0,
            offsets: Sequence[int] = RIDGE_OFFSETS, stride: int = 2) -> "Ridge":
        """Closed-form ridge, accumulating the normal equations recording by recording (so
        memory stays at D x D whatever the data size)."""
        d = len(offsets) * len(norm.mean) + 1
        xtx = np.zeros((d, d))
        xty = np.zeros((d, recs[0].blendshapes.shape[1]))
        for r in recs:
            xw, y = cls._design(r, norm, offsets, stride)
            xtx += xw.T @ xw
            xty += xw.T @ y
        return cls(cls._solve(xtx, xty, lam).astype(np.float32), tuple(int(o) for o in offsets))

    @classmethod
    def fit_validated(cls, recs: Sequence[Recording], norm: Normaliser,
                      lambdas: Sequence[float] = (10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7),
                      offsets: Sequence[int] = RIDGE_OFFSETS, stride: int = 2,
                      ) -> tuple["Ridge", float, dict[str, float]]:
        """Pick lambda on the training split alone: hold out the last fifth of the training
        subjects, score each lambda's MAE on them, then refit on everything with the best.
        Returns (model, lambda, {lambda: validation MAE x100})."""
        subjects = sorted({r.identity for r in recs})     # by head shape: names leak
        n_val = max(1, len(subjects) // 5) if len(subjects) > 1 else 0
        val_subj = set(subjects[len(subjects) - n_val:])
        d = len(offsets) * len(norm.mean) + 1
        parts = {k: (np.zeros((d, d)), np.zeros((d, recs[0].blendshapes.shape[1])))
                 for k in ("fit", "val")}
        val_xy = []
        for r in recs:
            xw, y = cls._design(r, norm, offsets, stride)
            k = "val" if r.identity in val_subj else "fit"
            parts[k][0][...] += xw.T @ xw
            parts[k][1][...] += xw.T @ y
            if k == "val":
                val_xy.append((xw[::2], y[::2]))
        scores: dict[str, float] = {}
        if val_xy:
            for lam in lambdas:
                w = cls._solve(*parts["fit"], lam)
                err = np.concatenate([np.abs(x @ w - y) for x, y in val_xy])
                scores[str(lam)] = float(err.mean() * 100)
            best = float(min(lambdas, key=lambda v: scores[str(v)]))
        else:
            best = float(lambdas[len(lambdas) // 2])
        w = cls._solve(parts["fit"][0] + parts["val"][0], parts["fit"][1] + parts["val"][1],
                       best)
        return cls(w.astype(np.float32), tuple(int(o) for o in offsets)), best, scores

    def predict(self, feats_norm: np.ndarray) -> np.ndarray:
        """Blendshapes (N, 52) for a recording's normalised features (N, F)."""
        xw = windowed(feats_norm, self.offsets)
        return xw @ self.weights[:-1] + self.weights[-1]
