"""Training: one readable loop for both stages (nanoGPT style).

Stage 1 trains the IMU encoder and its regression head (L1 on the window). Stage 2 freezes
them (or tunes them slowly, ``encoder_lr_mult``) and trains the denoiser to predict the clean
window from a noisy one at a random timestep, with a random known prefix of ground truth (as the
runtime will carry its own previous output). The mean face and ridge baselines are fitted on the
same training split and saved in the same checkpoint, so ``imusic eval`` compares like with like.

Runs on CPU by default; under ``torchrun`` (WORLD_SIZE set) each process trains on its shard
with DistributedDataParallel and rank 0 writes the checkpoints.

Checkpoints are written every ``save_every`` steps, at the end of each stage, and when
``should_stop()`` turns true (``imusic train`` makes Ctrl-C do that: the step in progress
finishes, the checkpoint is saved, :class:`TrainingInterrupted` is raised). ``resume=True``
continues from the checkpoint's ``train_state`` (stage, step, optimiser state).

``train()`` reads top to bottom: prepare (``model.train_setup``: the feature spec, the split
chosen from the data, resume state), build (network, schedule, the losses of
``model.losses``), loop (both stages, one loop), save (``model.train_setup``: baselines,
config, checkpoint).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from imusic.model import checkpoint as ckpt
from imusic.model.baselines import mean_face
from imusic.model.data import Normaliser, WindowDataset, load_recordings, split_from_config
from imusic.model.diffusion import Schedule
from imusic.model.features import FeatureSpec
from imusic.model.losses import Stage1Loss, Stage2Loss
from imusic.model.networks import IMUSIC, NetConfig
from imusic.model.train_setup import (carve_validation, check_init, checkpoint_config, choose_holdouts,
                               fit_baselines, infer_spec, load_optim, resumed_state,
                               save_checkpoint)


@dataclass
class TrainConfig:
    """Every training setting, with the defaults of the bundled checkpoint."""

    past: int = 48                   # frames up to and including the output frame (0.8 s)
    lookahead: int = 4               # future frames (67 ms of latency)
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 2
    den_layers: int = 2
    dropout: float = 0.1
    batch_size: int = 32
    stage1_steps: int = 6000
    stage2_steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 150
    encoder_lr_mult: float = 0.0     # stage 2: 0 freezes the encoder and head
    carry_max: int = 4               # longest known prefix shown in stage 2 (runtime carry)
    carry_blend: float = 0.5         # runtime: weight of its own output in the carried prefix
    p_no_prefix: float = 0.25        # fraction of stage-2 windows with no known prefix
    prefix_noise: float = 0.03       # noise on the known prefix (the runtime's own errors)
    vel_weight: float = 0.5          # stage-2 loss on frame-to-frame velocity
    n_timesteps: int = 1000
    schedule: str = "cosine"
    sample_steps: int = 2            # DDIM steps the runtime uses by default
    ahrs_gain: float = 0.5
    detrend_s: float = 4.0           # feature trend time constant (without calibration only)
    calibrate: bool = True           # features relative to the neutral pose (model/calibration)
    window_stride: int = 1
    holdout_subjects: list[str] = field(default_factory=list)  # holds out their identities
    holdout_takes: list[str] = field(default_factory=list)     # from the sessions' take attrs
    holdout_identities: list[str] = field(default_factory=list)  # head shapes (identity attr)
    holdout_performers: list[str] = field(default_factory=list)  # performer attr
    val_identities: list[str] = field(default_factory=list)    # validation head shapes
    auto_holdout: bool = True        # nothing held out explicitly: choose from the data
    val_fraction: float = 0.0        # the last fraction of each training session validates
    patience: int = 4                # early stopping: evaluations without improvement (0: off)
    orientation: str = "auto"        # features: "ahrs", "reported" or "auto" (from the data)
    eval_every: int = 500
    save_every: int = 500
    final_eval: bool = True          # full streaming evaluation into the config at the end
    seed: int = 0
    device: str = "cpu"
    threads: int = 1                 # torch CPU threads (1 suits a shared CPU; 0: torch's default)

    @classmethod
    def from_json(cls, path: str | Path | None, **overrides: Any) -> "TrainConfig":
        """Defaults, updated from a JSON file of some fields, then from ``overrides``."""
        d: dict[str, Any] = {}
        if path:
            d.update(json.loads(Path(path).read_text()))
        d.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown training settings {bad} in {path or 'overrides'}; "
                             f"known: {sorted(known)}")
        return cls(**d)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request after saving a checkpoint (``resume=True`` continues)."""

    def __init__(self, out: Path, stage: int, step: int) -> None:
        super().__init__(f"stopped in stage {stage} after step {step}; checkpoint saved to {out}")
        self.out, self.stage, self.step = out, stage, step


def _dist() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (an all-reduce). The ranks must leave the
    training loop together: one that stops alone (rank 0's early stop, a signal one rank got)
    leaves the others waiting for ever in DistributedDataParallel's next gradient all-reduce."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _batches(ds: WindowDataset, cfg: TrainConfig, rank: int, world: int,
             seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless shuffled batches (a DistributedSampler shard under torchrun)."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    epoch = 0
    while True:
        if world > 1:
            sampler = DistributedSampler(ds, world, rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed + epoch))
        yield from DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
        epoch += 1


def _lr(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


@torch.no_grad()
def quick_eval(net: IMUSIC, schedule: Schedule, ds: WindowDataset, cfg: TrainConfig,
               max_windows: int = 512) -> dict[str, float]:
    """Stage-1 and one-shot DDIM MAE x100 on the output frames of up to ``max_windows``
    held-out windows (fast; the full streaming evaluation is in model.evaluate)."""
    from imusic.model.diffusion import ddim_sample

    if len(ds) == 0:
        return {}
    net.eval()
    idx = np.linspace(0, len(ds) - 1, min(max_windows, len(ds))).astype(int)
    x, y, m = (torch.stack(t) for t in zip(*(ds[i] for i in idx)))
    tokens, base = net.condition(x)
    o = cfg.past - 1
    known = torch.zeros_like(base)
    mask = torch.zeros(len(idx), x.shape[1], 1, dtype=torch.bool)
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(schedule, lambda xt, t: net.denoiser(xt, t, tokens, base, known, mask),
                      noise, cfg.sample_steps)
    net.train()
    return {"stage1_mae100": float((base[:, o] - y[:, o]).abs().mean() * 100),
            "imusic_mae100": float((out[:, o] - y[:, o]).abs().mean() * 100)}


def train(data: str | Path, out: str | Path, cfg: TrainConfig, resume: bool = False,
          command: str | None = None, progress: bool = True,
          should_stop: Callable[[], bool] | None = None,
          init: str | Path | None = None) -> dict[str, Any]:
    """Train both stages on the sessions under ``data`` and write the checkpoint to ``out``.

    ``init`` fine-tunes an existing checkpoint (its architecture, features and normaliser)
    on the data, when its rig and features match. ``should_stop`` is asked after every step;
    when it says True the checkpoint is saved and :class:`TrainingInterrupted` raised.
    Returns the checkpoint config (with metrics).
    """
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    rank, world = _dist()
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device if cfg.device != "cuda" or torch.cuda.is_available()
                          else "cpu")
    t_start = time.perf_counter()

    # ---- prepare: what to resume, the features, the data and its split
    out = Path(out)
    state, tensors, old = resumed_state(out) if resume else (
        {"stage": 1, "step": 0, "elapsed_s": 0.0}, {}, {})
    spec = FeatureSpec.from_dict(old["features"]) if resume else infer_spec(data, cfg)
    init_cfg: dict[str, Any] | None = None
    if init is not None and not resume:
        init_tensors, init_cfg = ckpt.load(init)
        spec = check_init(init, init_cfg, spec)
        cfg.past, cfg.lookahead = int(init_cfg["past"]), int(init_cfg["lookahead"])
    recs = load_recordings(data, spec, progress=progress and rank == 0)
    choose_holdouts(cfg, recs)
    parts = split_from_config(recs, asdict(cfg))
    if not parts.train:
        raise ValueError(f"no training sessions under {data} once held-out subjects "
                         f"{cfg.holdout_subjects}, identities {cfg.holdout_identities}, "
                         f"performers {cfg.holdout_performers}, validation identities "
                         f"{cfg.val_identities} and takes {cfg.holdout_takes} are removed")
    fit_recs, carved = carve_validation(parts.train, cfg.val_fraction, cfg.past + cfg.lookahead)
    if init_cfg is not None:
        norm = Normaliser.from_dict(init_cfg["norm"])   # the features the weights expect
    else:
        norm = Normaliser.fit(fit_recs) if not resume else Normaliser.from_dict(old["norm"])
    train_ds = WindowDataset(fit_recs, norm, cfg.past, cfg.lookahead, cfg.window_stride)
    val_recs = parts.val or carved or parts.subjects or parts.takes or parts.train
    val_ds = WindowDataset(val_recs, norm, cfg.past, cfg.lookahead, stride=8)

    # ---- build: the network (fresh at the mean face, resumed, or from --init)
    if init_cfg is not None:
        net_cfg = NetConfig(**init_cfg["net"])
    else:
        net_cfg = NetConfig(n_features=spec.n_features, window=cfg.past + cfg.lookahead,
                            d_model=cfg.d_model, n_heads=cfg.n_heads, enc_layers=cfg.enc_layers,
                            den_layers=cfg.den_layers, dropout=cfg.dropout,
                            n_timesteps=cfg.n_timesteps)
    net = IMUSIC(net_cfg).to(device)
    if tensors:
        net.load_state_dict(ckpt.split_prefix(tensors, "model"))
    elif init_cfg is not None:
        net.load_state_dict(ckpt.split_prefix(init_tensors, "model"))
    else:
        net.init_output(torch.from_numpy(mean_face(fit_recs)))
    schedule = Schedule(cfg.n_timesteps, cfg.schedule)
    names = {id(p): n for n, p in net.named_parameters()}

    base_config = checkpoint_config(cfg, spec, norm, net_cfg, recs, parts, data, init,
                                    len(carved), command)
    extra = fit_baselines(parts.train, norm, tensors, base_config)

    def save(opt: torch.optim.Optimizer | None, metrics: dict[str, Any] | None = None) -> None:
        if rank == 0:
            save_checkpoint(out, net, extra, opt, names, base_config, state, metrics)

    # ---- the loop: stage 1 (encoder + head), then stage 2 (denoiser)
    history: list[dict[str, float]] = []
    for stage in (1, 2):
        if state["stage"] > stage:
            continue
        total = cfg.stage1_steps if stage == 1 else cfg.stage2_steps
        if stage == 1:
            # only what this stage trains may require grad (DDP insists every such parameter
            # gets one)
            net.denoiser.requires_grad_(False)
            params = [p for n, p in net.named_parameters() if not n.startswith("denoiser.")]
            loss_mod: nn.Module = Stage1Loss(net)
            groups = [{"params": params, "lr_mult": 1.0}]
        else:
            enc = [p for n, p in net.named_parameters() if not n.startswith("denoiser.")]
            for p in enc:
                p.requires_grad_(cfg.encoder_lr_mult > 0)
            net.denoiser.requires_grad_(True)
            groups = [{"params": list(net.denoiser.parameters()), "lr_mult": 1.0}]
            if cfg.encoder_lr_mult > 0:
                groups.append({"params": enc, "lr_mult": cfg.encoder_lr_mult})
            loss_mod = Stage2Loss(net, schedule, cfg)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if tensors and state["stage"] == stage and state["step"] > 0:
            load_optim(opt, names, tensors)
        model_run: nn.Module = loss_mod
        if world > 1:
            model_run = nn.parallel.DistributedDataParallel(loss_mod)
        batches = _batches(train_ds, cfg, rank, world, cfg.seed + 1000 * stage + state["step"])
        net.train()
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[info]}"),
                       disable=not progress or rank != 0)
        best = (math.inf, None)        # (validation MAE, weights) for early stopping
        stale = 0
        key = "stage1_mae100" if stage == 1 else "imusic_mae100"
        with bar:
            task = bar.add_task(f"stage {stage}", total=total, completed=state["step"],
                                info="")
            for step in range(state["step"], total):
                x, y, m = (t.to(device) for t in next(batches))
                for g in opt.param_groups:
                    g["lr"] = _lr(step, total, cfg) * g["lr_mult"]
                loss = model_run(x, y, m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
                opt.step()
                state.update(stage=stage, step=step + 1)
                bar.update(task, advance=1)
                if (step + 1) % 20 == 0:
                    bar.update(task, info=f"loss {loss.item():.4f}")
                if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                    stop_early = False
                    if rank == 0:   # validation and the early-stopping decision are rank 0's
                        ev = quick_eval(net, schedule, val_ds, cfg)
                        history.append({"stage": stage, "step": step + 1, "loss": loss.item(),
                                        **ev})
                        if progress:
                            bar.console.print(f"stage {stage} step {step + 1}: loss "
                                              f"{loss.item():.4f} "
                                              + " ".join(f"{k} {v:.2f}" for k, v in ev.items()))
                        if cfg.patience and key in ev:
                            if ev[key] < best[0]:
                                best, stale = (ev[key], copy.deepcopy(net.state_dict())), 0
                            else:
                                stale += 1
                            if stale >= cfg.patience:
                                history.append({"stage": stage, "step": step + 1,
                                                "early_stop": True, "best": best[0]})
                                stop_early = True
                    if _any_rank(stop_early, world, device):
                        break
                stopping = _any_rank(should_stop is not None and should_stop(), world, device)
                if stopping or (cfg.save_every and (step + 1) % cfg.save_every == 0):
                    now = time.perf_counter()
                    state["elapsed_s"] = state.get("elapsed_s", 0.0) + now - t_start
                    t_start = now
                    save(opt)
                if stopping:
                    raise TrainingInterrupted(out, stage, step + 1)
        if best[1] is not None:
            net.load_state_dict(best[1])   # the best validated weights of this stage
        state.update(stage=stage + 1, step=0)
        tensors = {}
        if stage == 1:   # a finished stage is never lost: --resume starts stage 2 from here
            now = time.perf_counter()
            state["elapsed_s"] = state.get("elapsed_s", 0.0) + now - t_start
            t_start = now
            save(None)
            if rank == 0:
                print(f"stage 1 done: checkpoint saved to {out}", file=sys.stderr, flush=True)
    state["elapsed_s"] = state.get("elapsed_s", 0.0) + time.perf_counter() - t_start
    state["done"] = True

    # ---- save, with the full streaming evaluation of every held-out set

    metrics: dict[str, Any] = {"history": history, "train_time_s": state["elapsed_s"]}
    if rank == 0:
        save(None)   # weights first, so evaluation can load the checkpoint
        if cfg.final_eval:
            from imusic.model.evaluate import evaluate_parts, load_for_eval
            trained = load_for_eval(out)
            metrics["eval"] = evaluate_parts(trained, parts.parts(), steps=cfg.sample_steps)
        save(None, metrics)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {**base_config, "metrics": metrics}
