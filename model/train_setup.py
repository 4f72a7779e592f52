"""What ``model.train.train`` does before and after its loop, each a small named step:

* prepare: :func:`infer_spec` (the feature spec from the sessions), :func:`choose_holdouts`
  (held-out identities, validation identities and performer from the data),
  :func:`carve_validation` (a time-contiguous tail of each session, when asked),
  :func:`check_init` (a checkpoint to fine-tune must match the rig), :func:`resumed_state`;
* save: :func:`fit_baselines` (mean face and ridge, closed form, once),
  :func:`checkpoint_config` (``config.json``), :func:`save_checkpoint` (weights, baselines,
  AdamW state as flat tensors so that resuming needs no pickle, config; atomic).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from imusic.model import checkpoint as ckpt
from imusic.model.baselines import RIDGE_OFFSETS, Ridge, mean_face
from imusic.model.calibration import CalibrationConfig
from imusic.model.data import Normaliser, Recording, Split, auto_holdouts
from imusic.model.features import FeatureSpec
from imusic.model.networks import IMUSIC, NetConfig

if TYPE_CHECKING:
    from imusic.model.train import TrainConfig


def optim_tensors(opt: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, torch.Tensor]:
    """AdamW state as flat named tensors (so resume needs no pickle)."""
    out = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            for k, v in st.items():
                out[f"optim.{names[id(p)]}.{k}"] = torch.as_tensor(v).reshape(-1) if k == "step" \
                    else v
    return out


def load_optim(opt: torch.optim.Optimizer, names: dict[int, str],
                tensors: dict[str, torch.Tensor]) -> None:
    for group in opt.param_groups:
        for p in group["params"]:
            key = f"optim.{names[id(p)]}."
            st = {k[len(key):]: v for k, v in tensors.items() if k.startswith(key)}
            if st:
                if "step" in st:
                    st["step"] = st["step"].reshape(())
                opt.state[p] = st


def check_init(path: str | Path, config: dict[str, Any], spec: FeatureSpec) -> FeatureSpec:
    """The feature spec to fine-tune with: the checkpoint's, when its rig (sites, reference)
    and orientation source match the data's; else a one-line ``ValueError``."""
    old = FeatureSpec.from_dict(config["features"])
    if (old.sites, old.reference) != (spec.sites, spec.reference):
        raise ValueError(f"--init {path}: the checkpoint's rig {config.get('rig', {}).get('id')} "
                         f"(sites {','.join(old.sites)}; reference {old.reference}) does not "
                         f"match the data's (sites {','.join(spec.sites)}; reference "
                         f"{spec.reference}): train from scratch or pick a checkpoint of this rig")
    if old.orientation != spec.orientation or old.rate_hz != spec.rate_hz:
        raise ValueError(f"--init {path}: the checkpoint's features use orientation "
                         f"'{old.orientation}' at {old.rate_hz:g} Hz, the data needs "
                         f"'{spec.orientation}' at {spec.rate_hz:g} Hz: train from scratch")
    return old


def carve_validation(recs: list[Recording], fraction: float,
                     min_frames: int) -> tuple[list[Recording], list[Recording]]:
    """Split off the last ``fraction`` of every recording as validation (time-contiguous, so
    neighbouring windows do not leak across); ``fraction`` 0 returns (recs, [])."""
    if fraction <= 0:
        return list(recs), []
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    fit, val = [], []
    for r in recs:
        cut = int(round(r.n_frames * (1 - fraction)))
        if cut < min_frames or r.n_frames - cut < min_frames:
            fit.append(r)
            continue
        for part, sl in ((fit, slice(0, cut)), (val, slice(cut, None))):
            part.append(dataclasses.replace(
                r, features=r.features[sl], blendshapes=r.blendshapes[sl],
                valid_imu=r.valid_imu[sl], valid_arkit=r.valid_arkit[sl]))
    return fit, val


def choose_holdouts(cfg: TrainConfig, recs: list[Recording]) -> None:
    """With ``auto_holdout`` and nothing held out explicitly, fill the held-out identities,
    validation identities and performer from the data (:func:`model.data.auto_holdouts`), so
    the checkpoint's ``train`` settings say what was held out."""
    given = (cfg.holdout_subjects or cfg.holdout_takes or cfg.holdout_identities
             or cfg.holdout_performers or cfg.val_identities)
    if cfg.auto_holdout and not given:
        for k, v in auto_holdouts(recs).items():
            setattr(cfg, k, v)


def resumed_state(out: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(train_state, tensors, config) of the checkpoint at ``out`` for ``--resume``."""
    if not (out / ckpt.WEIGHTS).is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {out} to resume from")
    tensors, old = ckpt.load(out)
    return old.get("train_state", {"stage": 1, "step": 0, "elapsed_s": 0.0}), tensors, old


def infer_spec(data: str | Path, cfg: TrainConfig) -> FeatureSpec:
    """The feature spec for the sessions under ``data``: their rig, their orientation source
    (unless ``cfg.orientation`` forces one), neutral-pose calibration when ``cfg.calibrate``."""
    from imusic.capture.aligned import read_aligned
    from imusic.model.data import orientation_of, session_files

    al = read_aligned(session_files(data)[0])
    orient = orientation_of(al) if cfg.orientation == "auto" else cfg.orientation
    return FeatureSpec(tuple(al.sites), al.reference, float(al.rate_hz), cfg.ahrs_gain,
                       detrend_s=cfg.detrend_s, orientation=orient,
                       calibration=CalibrationConfig() if cfg.calibrate else None)


def checkpoint_config(cfg: TrainConfig, spec: FeatureSpec, norm: Normaliser, net_cfg: NetConfig,
                      recs: list[Recording], parts: Split, data: str | Path,
                      init: str | Path | None, n_carved: int,
                      command: str | None) -> dict[str, Any]:
    """The checkpoint's ``config.json`` (everything but train_state and metrics)."""
    seeds = sorted({str(r.attrs.get("seed")) for r in recs if "seed" in r.attrs})
    data_commands = sorted({str(r.attrs["command"]) for r in recs if r.attrs.get("command")})
    return {
        "schema": "imusic.checkpoint", "schema_version": 1,
        "net": net_cfg.to_dict(), "features": spec.to_dict(), "norm": norm.to_dict(),
        "past": cfg.past, "lookahead": cfg.lookahead, "rate_hz": spec.rate_hz,
        "schedule": {"n_steps": cfg.n_timesteps, "kind": cfg.schedule},
        "sampling": {"steps": cfg.sample_steps, "carry": cfg.carry_max,
                     "carry_blend": cfg.carry_blend, "seed": 0},
        "rig": {"id": recs[0].rig_id, "sites": list(spec.sites), "reference": spec.reference},
        "train": asdict(cfg),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data_seed": seeds, "data_commands": data_commands,
        "data": {"path": str(data), **parts.summary(),
                 "validation": {"fraction": cfg.val_fraction, "sessions": n_carved}},
        "init": str(init) if init is not None else None,
        "baselines": {"ridge_offsets": list(RIDGE_OFFSETS)},
    }


def fit_baselines(train_recs: list[Recording], norm: Normaliser,
                  tensors: dict[str, torch.Tensor],
                  config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Mean face and ridge on the training split (closed form, once; a resumed run keeps
    its own), as checkpoint tensors; the ridge's lambda goes into ``config``."""
    if "baseline.ridge" in tensors:
        return {k: v for k, v in tensors.items() if k.startswith("baseline.")}
    ridge, lam, scores = Ridge.fit_validated(train_recs, norm)
    config["baselines"].update(ridge_lambda=lam, ridge_validation_mae100=scores)
    return {"baseline.mean_face": torch.from_numpy(mean_face(train_recs)),
            "baseline.ridge": torch.from_numpy(ridge.weights)}


def save_checkpoint(out: Path, net: IMUSIC, extra: dict[str, torch.Tensor],
                    opt: torch.optim.Optimizer | None, names: dict[int, str],
                    config: dict[str, Any], state: dict[str, Any],
                    metrics: dict[str, Any] | None = None) -> None:
    """Weights, baselines, optimiser state (while training) and config, atomically."""
    t = {f"model.{k}": v for k, v in net.state_dict().items()}
    t.update(extra)
    if opt is not None:
        t.update(optim_tensors(opt, names))
    c = dict(config)
    c["train_state"] = dict(state)
    if metrics is not None:
        c["metrics"] = metrics
    ckpt.save(out, t, c)
