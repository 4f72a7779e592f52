"""Evaluation: MAE x100 over the 52 blendshapes (overall, per region, per blendshape), velocity
error and jitter, for the IMUSIC model (streamed frame by frame as the runtime does it) and for
every baseline (mean face, ridge, the stage-1 regressor), on the same frames.

The headline figure is ``mae_no_gaze_tongue``, over the 43 shapes outside
``hardware.vocabulary.IMU_BLIND_REGIONS``: gaze (eyeLook*) and tongueOut, which face-skin IMUs
hardly see, are reported apart as their own regions, and ``mae`` keeps all 52. Predictions are
scored raw, as the model makes them, not clipped to 0..1 as they are published
(``model.runtime.stream_values``): see "Outputs in range" in model/MODEL.md.

Metric definitions (values are blendshape units x 100, frames at 60 Hz):

* ``mae``: mean |prediction - truth| over evaluated frames and all 52 blendshapes;
  ``mae_no_gaze_tongue`` the same over the 43 without gaze and tongue; ``regions`` per region;
* ``vel_err``: mean |d prediction - d truth| of consecutive frames (per frame);
* ``jitter``: mean |second difference| of the prediction (per frame^2); ``gt_jitter`` is the
  same for the ground truth, so a model that trembles shows jitter well above it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from imusic.hardware.vocabulary import (ALL_KEY, ARKIT_NAMES, IMU_BLIND_REGIONS, REGION_INDEX, SEEN_KEY,
                                 SEEN_LABEL, region_summary)
from imusic.model.checkpoint import Trained, load_model
from imusic.model.data import Recording
from imusic.model.sampling import StreamingSampler

METHODS = ("mean_face", "ridge", "stage1", "imusic")

SEEN_MAE = "mae_no_gaze_tongue"
"""Key of the MAE over the 43 shapes without gaze and tongue in :func:`metrics`' result."""
TABLE_REGIONS: tuple[str, ...] = (
    *(r for r in REGION_INDEX if r not in IMU_BLIND_REGIONS), *IMU_BLIND_REGIONS)
"""Region columns of :func:`table`: the regions the IMUs see, then gaze and tongue apart."""


def load_for_eval(path: str | Path | None) -> Trained:
    """The checkpoint for evaluation (same as :func:`model.checkpoint.load_model`)."""
    return load_model(path)


def eval_mask(rec: Recording, past: int, lookahead: int) -> np.ndarray:
    """Frames every method is scored on: a full window exists and truth and IMU are valid."""
    m = rec.valid_arkit & rec.valid_imu
    m[: past - 1] = False
    if lookahead:
        m[len(m) - lookahead:] = False
    return m


def metrics(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray],
            mask: Sequence[np.ndarray]) -> dict[str, Any]:
    """Metrics over several recordings (lists of (N, 52) arrays and (N,) masks)."""
    err = np.concatenate([np.abs(p - g)[m] for p, g, m in zip(pred, gt, mask)])
    dv, j, jg = [], [], []
    for p, g, m in zip(pred, gt, mask):
        m2 = m[1:] & m[:-1]
        dv.append(np.abs(np.diff(p, axis=0) - np.diff(g, axis=0))[m2])
        m3 = m[2:] & m[1:-1] & m[:-2]
        j.append(np.abs(np.diff(p, 2, axis=0))[m3])
        jg.append(np.abs(np.diff(g, 2, axis=0))[m3])
    dv, j, jg = np.concatenate(dv), np.concatenate(j), np.concatenate(jg)
    per_shape = err.mean(0) * 100
    summary = region_summary(per_shape)
    return {
        "frames": int(len(err)),
        "mae": summary[ALL_KEY],
        SEEN_MAE: summary[SEEN_KEY],
        "regions": {r: summary[r] for r in REGION_INDEX},
        "per_blendshape": {n: float(v) for n, v in zip(ARKIT_NAMES, per_shape)},
        "vel_err": float(dv.mean() * 100),
        "jitter": float(j.mean() * 100),
        "gt_jitter": float(jg.mean() * 100),
    }


def _windows(x: np.ndarray, past: int, lookahead: int) -> np.ndarray:
    """All windows (N, W, F) of a recording, edge-padded at both ends, window n outputs frame n."""
    n = len(x)
    idx = np.clip(np.arange(n)[:, None] + np.arange(-past + 1, lookahead + 1)[None], 0, n - 1)
    return x[idx]


@torch.no_grad()
def predict_stage1(tr: Trained, feats_norm: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Stage-1 regression for every frame (N, 52) of one recording."""
    w = _windows(feats_norm, tr.past, tr.lookahead)
    out = []
    for s in range(0, len(w), chunk):
        pred = tr.net.regress(torch.from_numpy(w[s:s + chunk]))
        out.append(pred[:, tr.past - 1].numpy())
    return np.concatenate(out) if out else np.zeros((0, tr.net_config.n_out), np.float32)


@torch.no_grad()
def predict_imusic(tr: Trained, feats_norm: Sequence[np.ndarray], steps: int | None = None,
                   carry: int | None = None, fixed_noise: bool = True,
                   seed: int = 0, carry_blend: float | None = None) -> list[np.ndarray]:
    """IMUSIC predictions streamed frame by frame, several recordings side by side as a batch,
    exactly as the runtime would produce them (fixed noise, carried prefix)."""
    steps = steps or int(tr.sampling["steps"])
    carry = int(tr.sampling["carry"]) if carry is None else carry
    blend = float(tr.sampling["carry_blend"]) if carry_blend is None else carry_blend
    lens = [len(f) for f in feats_norm]
    n = max(lens)
    fdim = feats_norm[0].shape[1]
    pad = np.zeros((len(feats_norm), n + tr.lookahead, fdim), np.float32)
    for i, f in enumerate(feats_norm):
        pad[i, : len(f)] = f
    sampler = StreamingSampler(tr.net, tr.schedule, tr.past, tr.lookahead, steps, carry,
                               batch=len(feats_norm), seed=seed, fixed_noise=fixed_noise,
                               carry_blend=blend)
    out = np.zeros((len(feats_norm), n, tr.net_config.n_out), np.float32)
    x = torch.from_numpy(pad)
    for o in range(tr.past - 1, n):
        win = x[:, o - tr.past + 1: o + tr.lookahead + 1]
        out[:, o] = sampler.step(win).numpy()
    return [out[i, : lens[i]] for i in range(len(feats_norm))]


def predict_all(tr: Trained, recs: Sequence[Recording], steps: int | None = None,
                methods: Sequence[str] = METHODS, **kw: Any) -> dict[str, list[np.ndarray]]:
    """Predictions (per method, per recording) on the full timeline of each recording."""
    feats = []
    for r in recs:
        f = tr.norm(r.features)
        f[~r.valid_imu] = 0.0
        feats.append(f)
    preds: dict[str, list[np.ndarray]] = {}
    if "mean_face" in methods and tr.mean_face is not None:
        preds["mean_face"] = [np.tile(tr.mean_face, (len(f), 1)) for f in feats]
    if "ridge" in methods and tr.ridge is not None:
        preds["ridge"] = [tr.ridge.predict(f) for f in feats]
    if "stage1" in methods:
        preds["stage1"] = [predict_stage1(tr, f) for f in feats]
    if "imusic" in methods:
        preds["imusic"] = predict_imusic(tr, feats, steps, **kw)
    return preds


def evaluate(tr: Trained, recs: Sequence[Recording], steps: int | None = None,
             methods: Sequence[str] = METHODS, **kw: Any) -> dict[str, Any]:
    """Metrics per method on ``recs`` (all methods scored on the same frames)."""
    if not recs:
        return {}
    preds = predict_all(tr, recs, steps, methods, **kw)
    masks = [eval_mask(r, tr.past, tr.lookahead) for r in recs]
    gts = [r.blendshapes for r in recs]
    res: dict[str, Any] = {m: metrics(p, gts, masks) for m, p in preds.items()}
    res["_sessions"] = [str(r.path.name) for r in recs]
    res["_source"] = sorted({r.source for r in recs})
    return res


def evaluate_parts(tr: Trained, parts: dict[str, Sequence[Recording]],
                   steps: int | None = None) -> dict[str, Any]:
    """:func:`evaluate` on each named part that has recordings."""
    return {name: evaluate(tr, recs, steps) for name, recs in parts.items() if recs}


def table(results: dict[str, Any], title: str) -> "Any":
    """A rich Table: one row per method, MAE overall and per region, velocity error, jitter."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("method")
    t.add_column(SEEN_LABEL, justify="right")
    for r in TABLE_REGIONS:
        t.add_column(r, justify="right")
    t.add_column("all 52", justify="right")
    t.add_column("vel err", justify="right")
    t.add_column("jitter", justify="right")
    for m, v in results.items():
        if m.startswith("_"):
            continue
        t.add_row(m, f"{v[SEEN_MAE]:.2f}", *(f"{v['regions'][r]:.2f}" for r in TABLE_REGIONS),
                  f"{v['mae']:.2f}", f"{v['vel_err']:.3f}", f"{v['jitter']:.3f}")
    any_m = next((v for k, v in results.items() if not k.startswith("_")), None)
    if any_m is not None:
        t.caption = (f"{any_m['frames']} frames; ground-truth jitter {any_m['gt_jitter']:.3f}; "
                     f"sources: {', '.join(results.get('_source', []))}")
    return t


def plot(tr: Trained, results: dict[str, Any], recs: Sequence[Recording], out_dir: Path,
         tag: str, steps: int | None = None) -> list[Path]:
    """PNG plots: per-blendshape MAE bars for every method, and truth vs prediction over time
    for a few blendshapes of the first recording."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    methods = [m for m in results if not m.startswith("_")]
    fig, ax = plt.subplots(figsize=(16, 5))
    width = 0.8 / len(methods)
    x = np.arange(len(ARKIT_NAMES))
    for i, m in enumerate(methods):
        ax.bar(x + i * width, [results[m]["per_blendshape"][n] for n in ARKIT_NAMES], width,
               label=m)
    ax.set_xticks(x + 0.4 - width / 2, ARKIT_NAMES, rotation=90, fontsize=7)
    ax.set_ylabel("MAE ×100")
    ax.set_title(f"per-blendshape error, {tag} ({', '.join(results.get('_source', []))} data)")
    ax.legend()
    fig.tight_layout()
    p = out_dir / f"model_{tag}_per_blendshape.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    rec = recs[0]
    preds = predict_all(tr, [rec], steps, ("stage1", "imusic"))
    shapes = ["jawOpen", "mouthSmileLeft", "eyeBlinkLeft", "browInnerUp"]
    fig, axes = plt.subplots(len(shapes), 1, figsize=(12, 8), sharex=True)
    t = np.arange(rec.n_frames) / 60.0
    mask = eval_mask(rec, tr.past, tr.lookahead)
    for ax, name in zip(axes, shapes):
        k = ARKIT_NAMES.index(name)
        ax.plot(t, np.where(mask, rec.blendshapes[:, k], np.nan), "k", lw=1.5, label="truth")
        for m, style in (("stage1", "C1--"), ("imusic", "C0")):
            ax.plot(t, np.where(mask, preds[m][0][:, k], np.nan), style, lw=1, label=m)
        ax.set_ylabel(name, fontsize=8)
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"{rec.path.name} ({rec.source} data, subject {rec.subject}, "
                      f"take {rec.take})")
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    p = out_dir / f"model_{tag}_trajectories.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def save_json(obj: Any, path: Path) -> None:
    """Write results as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
