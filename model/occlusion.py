"""Simulated camera occlusions, and the hybrid-tracking evaluation that uses them.

What ARKit does when a hand covers the mouth is modelled on how camera face trackers fail: the
covered regions stop following the face and hold their last estimate with a little tracker noise;
when the whole face leaves the camera, frames stop (Live Link Face sends face-lost packets).
These are assumptions of the simulation, stated so that its numbers can be judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imusic.hardware.vocabulary import REGION_INDEX, region_summary
from imusic.model.fusion import REGION_NAMES, FusionConfig, HybridFusion

MOUTH_REGIONS: tuple[str, ...] = ("mouth", "jaw", "cheeks_nose")
"""Regions a hand over the mouth hides."""


@dataclass
class Occlusions:
    """What a camera would have seen of a blendshape sequence."""

    observed: np.ndarray        # (N, 52) ARKit as it would report; NaN rows when the face is lost
    mouth_covered: np.ndarray   # (N,) bool
    face_lost: np.ndarray       # (N,) bool


def _episodes(n: int, rate_hz: float, fraction: float, min_s: float, max_s: float,
              rng: np.random.Generator) -> np.ndarray:
    """A mask covering about ``fraction`` of ``n`` frames in episodes of ``min_s``..``max_s``."""
    mask = np.zeros(n, bool)
    target = int(round(fraction * n))
    # Place episodes at random starts until the covered share reaches the target.
    for _ in range(10_000):
        if mask.sum() >= target:
            break
        length = int(rng.uniform(min_s, max_s) * rate_hz)
        start = int(rng.integers(0, max(n - length, 1)))
        mask[start:start + length] = True
    return mask


def simulate_occlusions(truth: np.ndarray, rate_hz: float = 60.0, seed: int = 0,
                        mouth_fraction: float = 0.20, mouth_episode_s: tuple[float, float] = (0.5, 5.0),
                        lost_fraction: float = 0.05, lost_episode_s: tuple[float, float] = (0.3, 2.0),
                        tracker_noise: float = 0.01) -> Occlusions:
    """Hide parts of ``truth`` (N, 52) as a camera would: a hand over the mouth about
    ``mouth_fraction`` of the time in episodes of 0.5 to 5 s, the whole face lost
    ``lost_fraction`` of the time. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    covered = _episodes(n, rate_hz, mouth_fraction, *mouth_episode_s, rng)
    lost = _episodes(n, rate_hz, lost_fraction, *lost_episode_s, rng)
    observed = np.array(truth, dtype=np.float64, copy=True)
    observed += rng.normal(0, tracker_noise, observed.shape) * 0.2   # ARKit's own small jitter
    idx = np.concatenate([REGION_INDEX[r] for r in MOUTH_REGIONS])
    # Under the hand the covered regions hold the frame before each episode began.
    starts = np.flatnonzero(covered & ~np.concatenate([[False], covered[:-1]]))
    episode_start = np.maximum.accumulate(np.where(np.isin(np.arange(n), starts),
                                                   np.arange(n), 0))
    frozen = observed[np.maximum(episode_start - 1, 0)][:, idx]
    rows = np.flatnonzero(covered)
    observed[np.ix_(rows, idx)] = frozen[rows] + rng.normal(0, tracker_noise * 0.1,
                                                            (len(rows), len(idx)))
    observed[lost] = np.nan
    return Occlusions(observed=observed, mouth_covered=covered, face_lost=lost)


def hold_last(observed: np.ndarray) -> np.ndarray:
    """ARKit alone: lost frames repeat the last frame seen (zeros before the first)."""
    observed = np.asarray(observed, dtype=np.float64)
    seen = np.all(np.isfinite(observed), axis=1)
    last = np.maximum.accumulate(np.where(seen, np.arange(len(observed)), -1))
    padded = np.vstack([np.zeros((1, observed.shape[1])), observed])
    return padded[last + 1]


def run_hybrid(imu: np.ndarray, observed: np.ndarray, rate_hz: float = 60.0,
               config: FusionConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the fuser over a sequence. Returns fused (N, 52) and ARKit weights (N, regions)."""
    fuser = HybridFusion(config or FusionConfig(rate_hz=rate_hz))
    fused = np.empty_like(np.asarray(imu, dtype=np.float64))
    weights = np.empty((len(imu), len(REGION_NAMES)))
    for k in range(len(imu)):
        row = observed[k]
        frame = fuser.step(k / rate_hz, imu[k], row if np.all(np.isfinite(row)) else None)
        fused[k], weights[k] = frame.values, frame.arkit_weight
    return fused, weights


def region_mae(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean absolute error x100 per region, without gaze and tongue, and over all 52
    (``hardware.vocabulary.region_summary``)."""
    err = np.abs(np.asarray(pred) - np.asarray(truth))
    return region_summary(err.mean(axis=0) * 100)


def evaluate_hybrid(truth: np.ndarray, imu: np.ndarray, rate_hz: float = 60.0,
                    seed: int = 0) -> dict[str, dict[str, float]]:
    """Error per region of ARKit holding its last value, IMU only, and the hybrid, under
    simulated occlusions of ``truth`` (N, 52) with the IMU estimate ``imu`` (N, 52)."""
    occ = simulate_occlusions(truth, rate_hz, seed)
    fused, _ = run_hybrid(imu, occ.observed, rate_hz)
    return {
        "arkit_hold": region_mae(hold_last(occ.observed), truth),
        "imu_only": region_mae(imu, truth),
        "hybrid": region_mae(fused, truth),
    }


def twin_study(model: str | None = None, identities: tuple[int, ...] | None = None,
               takes: tuple[str, ...] = (), seconds: float | None = None, seed: int = 2026,
               data: str | None = None) -> tuple[dict[str, dict[str, float]], float, int]:
    """The hybrid study on twin data: held-out wearers (``identities``, default the checkpoint's
    held-out subjects) driven by real takes (default its held-out takes), simulated with a seed
    training never used; the model predicts from their IMUs; then ``evaluate_hybrid``.

    Returns (results, seconds of data, sessions). ``data``: use these aligned sessions instead.
    """
    import tempfile
    from pathlib import Path

    from imusic.model.data import load_recordings
    from imusic.model.evaluate import load_for_eval, predict_all
    from imusic.model.simulate import NEUTRAL_S, load_take, write_session

    tr = load_for_eval(model)
    held = tr.config.get("train", {})
    if identities is None:
        identities = heldout_identities(held)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(data) if data is not None else Path(tmp)
        if data is None:
            # no take given: procedural motion (the held-out performer of the default split),
            # 90 s per wearer, from a seed training never used
            sources = [load_take(t) for t in takes] or [procedural_source(90.0, seed)]
            for src in sources:
                n = len(src.blendshapes) if seconds is None else min(len(src.blendshapes),
                                                                     int(seconds * 60))
                for identity in identities:
                    write_session(folder / f"id{identity:02d}_{src.name}.h5", src, slice(0, n),
                                  f"id{identity:02d}", identity, tr.config["rig"]["id"], seed,
                                  seed + identity, neutral_s=NEUTRAL_S)
        recs = load_recordings(folder, tr.spec)
        preds = predict_all(tr, recs, methods=("imusic",))["imusic"]
    keep = [r.valid_arkit & r.valid_imu for r in recs]
    truth = np.concatenate([r.blendshapes[k] for r, k in zip(recs, keep)]).astype(np.float64)
    imu = np.concatenate([p[k] for p, k in zip(preds, keep)]).astype(np.float64)
    return evaluate_hybrid(truth, imu, 60.0, seed), len(truth) / 60.0, len(recs)


def procedural_source(seconds: float, seed: int) -> Any:
    """A procedural motion source (``model.simulate.MotionSource``) of ``seconds``."""
    from imusic.hardware.motion import procedural
    from imusic.model.simulate import MotionSource

    m = procedural(seconds, fps=60.0, seed=seed)
    return MotionSource("procedural", m.blendshapes, np.zeros((m.n_frames, 9)),
                        np.ones(m.n_frames, bool), procedural=True)


def heldout_identities(train_cfg: dict[str, Any]) -> tuple[int, ...]:
    """The head shapes a checkpoint never saw: its ``holdout_identities``, else those of its
    held-out subjects (``idNN`` names, the older checkpoints' form)."""
    ids = train_cfg.get("holdout_identities") or [
        s[2:4] for s in train_cfg.get("holdout_subjects", [])]
    return tuple(int(i) for i in ids)
