"""Choose the runtime defaults (DDIM steps, carry, carry_blend) on the VALIDATION sessions.

    python scripts/choose_runtime.py [--model CKPT] [--data DIR] [--steps 1 2 4 8]
        [--carry 0 2 4 8] [--blend 0 0.5] [--seconds S] [--timing-seconds T] [--apply] [--quick]

Reads top to bottom:

1. **prepare**: the checkpoint (default the bundled one) and its validation sessions, nothing
   else. Which sessions validate is read from the checkpoint's ``train`` settings and split by
   the code training used (``model.data.split_from_config`` on each session's attributes, read
   before any signal: ``session_meta``): the validation head shapes (``val_identities``) on seen
   takes and performers, or the carved tails of the training sessions (``val_fraction``). A
   checkpoint with neither is refused: its runtime defaults cannot be chosen without touching a
   held-out set. The sessions come from ``--data`` (a folder with the checkpoint's sessions;
   only the validation ones are loaded), else from the checkpoint's own data folder when it
   exists, else they are simulated again from the checkpoint's recorded ``imusic simulate``
   command (same seed, so the same sessions; only the validation subjects are simulated).
   ``--seconds`` keeps the first S seconds of each (the neutral start included).
2. **evaluate the grid**: for every (steps, carry, carry_blend) (carry 0 carries nothing, so it
   has one blend): MAE x100 over the 43 shapes without gaze and tongue and jitter
   (``model.evaluate``: the streaming sampler frame by frame with fixed noise and the carried
   prefix, what ``imusic eval`` scores), and the compute time per 60 Hz frame of
   ``model.runtime.Runtime`` itself (the product's pipeline: interpolation, AHRS + features,
   encoder, DDIM) fed the first validation session tick by tick: p50, p99, max of each frame's
   CPU time, and the wall time the runtime records (``wall_p99_ms``, load-dependent).
3. **choose** (``ChoiceConfig``): among settings whose p99 compute is within the budget
   (10 ms per 60 Hz frame), the lowest validation MAE; settings within ``mae_tol`` of it are
   ties, broken by lower jitter (within ``jitter_tol`` a tie), then by fewer DDIM steps, then by
   lower MAE. No setting within the budget: exit 1, nothing applied.
4. **save**: a table, the JSON (``benchmarks/results/choose_runtime.json`` with
   ``IMUSIC_BENCH_SAVE=1``, else ``out/bench``; ``--json`` to choose), and with ``--apply`` the
   chosen setting into the checkpoint's ``config.json`` ``sampling`` (with how it was chosen
   under ``sampling.chosen``), which ``Runtime``, ``imusic live`` and ``imusic eval`` use by
   default.

Compute times depend on the machine and its load; the load average is recorded with them.
TWIN DATA: the bundled checkpoint's sessions are synthetic.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import SCRATCH, RESULTS, SAVE_ENV, machine, print_table  # noqa: E402


@dataclass(frozen=True)
class ChoiceConfig:
    """How a setting is chosen from the grid (see the module docstring)."""

    budget_ms: float = 10.0
    """p99 compute time per 60 Hz frame a setting may take (the runtime target), in CPU time
    of the frame: on this shared 2-core machine the wall time mostly measures the other jobs
    (it is recorded beside it, with the load average)."""
    mae_tol: float = 0.05
    """MAE x100 differences up to this are ties (about 2 % of the bundled model's error)."""
    jitter_tol: float = 0.01
    """Jitter (x100 per frame^2) differences up to this are ties."""
    warmup_frames: int = 30
    """Frames at the start of the timing run left out of the percentiles (allocation)."""


@dataclass(frozen=True)
class Grid:
    """The settings to try."""

    steps: tuple[int, ...] = (1, 2, 4, 8)
    carry: tuple[int, ...] = (0, 2, 4, 8)
    blend: tuple[float, ...] = (0.0, 0.5)

    def settings(self) -> list[tuple[int, int, float]]:
        """(steps, carry, carry_blend) for each point; carry 0 once (its blend is unused)."""
        out = []
        for s, c, b in itertools.product(self.steps, self.carry, self.blend):
            if c == 0 and b != self.blend[0]:
                continue
            out.append((s, c, 0.0 if c == 0 else b))
        return out


class Refused(Exception):
    """Something the script cannot do; the message is the one line it prints."""


# --- prepare ----------------------------------------------------------------------------------

def validation_split(tr: Any) -> tuple[list[str], float]:
    """The checkpoint's validation head shapes and carved fraction; refuses a checkpoint that
    validated on nothing separate from its held-out sets."""
    t = tr.config.get("train", {})
    ids = [str(i) for i in t.get("val_identities", [])]
    frac = float(t.get("val_fraction", 0.0) or 0.0)
    if not ids and frac <= 0:
        raise Refused(f"{tr.path}: the checkpoint has no validation split (train.val_identities "
                      "is empty and val_fraction is 0), so its runtime defaults cannot be chosen "
                      "without a held-out set: retrain with the automatic held-out sets or "
                      "--val-fraction")
    return ids, frac


def validation_files(tr: Any, folder: Path) -> list[Path]:
    """The validation sessions among ``folder``'s session files, chosen on their attributes by
    the split training used (no signal of any session is read here)."""
    from imusic.model.data import session_files, session_meta, split_from_config

    metas = [session_meta(p) for p in session_files(folder)]
    sp = split_from_config(metas, tr.config.get("train", {}))
    ids, frac = validation_split(tr)
    chosen = list(sp.val) + (list(sp.train) if frac > 0 else [])
    return [r.path for r in chosen]


def load_validation(tr: Any, folder: Path, seconds: float | None) -> list[Any]:
    """The validation recordings (features with the checkpoint's spec), each cut to its first
    ``seconds``; for ``val_fraction`` checkpoints the carved tails of the training sessions."""
    import dataclasses

    from imusic.model.data import load_recording
    from imusic.model.train_setup import carve_validation

    files = validation_files(tr, folder)
    recs = [load_recording(p, tr.spec) for p in files]
    ids, frac = validation_split(tr)
    val = [r for r in recs if r.identity in ids]
    if frac > 0:
        _, carved = carve_validation([r for r in recs if r.identity not in ids], frac,
                                     tr.past + tr.lookahead)
        val += carved
    if not val:
        raise Refused(f"{folder}: none of its sessions is in the checkpoint's validation split "
                      f"(head shapes {ids or '-'}, val_fraction {frac:g}): give --data with the "
                      "sessions the checkpoint was trained on")
    if seconds is not None:
        n = int(round(seconds * tr.spec.rate_hz))
        val = [dataclasses.replace(r, features=r.features[:n], blendshapes=r.blendshapes[:n],
                                   valid_imu=r.valid_imu[:n], valid_arkit=r.valid_arkit[:n])
               for r in val]
    return val


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`Refused` instead of printing usage and exiting."""

    def error(self, message: str) -> None:   # type: ignore[override]
        raise Refused(message)


def data_command(config: dict[str, Any]) -> argparse.Namespace:
    """The checkpoint's recorded ``imusic simulate`` command, parsed as ``imusic simulate``
    parses it; :class:`Refused` (one line) when there is not exactly one, or it does not parse."""
    from imusic.commands import simulate as sim_cli

    commands = config.get("data_commands") or []
    if not isinstance(commands, list) or len(commands) != 1 or not isinstance(commands[0], str) \
            or not commands[0].startswith("imusic simulate "):
        raise Refused(f"the checkpoint's data was not made by one 'imusic simulate' command "
                      f"({commands!r:.80}): give --data with its sessions")
    ap = _Parser(prog="imusic simulate", add_help=False)
    sim_cli.add_arguments(ap)
    try:
        a = ap.parse_args(shlex.split(commands[0])[2:])
    except (ValueError, Refused) as err:   # shlex: unbalanced quotes; argparse: bad options
        raise Refused(f"the checkpoint's data command does not parse ({err}): give --data "
                      "with its sessions") from None
    if a.subjects < 1 or not a.minutes > 0 or not a.rate > 0 or a.layout != "session":
        raise Refused("the checkpoint's data command is not one this script can simulate again "
                      f"(subjects {a.subjects}, minutes {a.minutes}, rate {a.rate}, layout "
                      f"{a.layout}): give --data with its sessions")
    return a


def simulate_validation(tr: Any, out: Path) -> Path:
    """Simulate again, into ``out``, the validation subjects' sessions of the checkpoint's
    recorded ``imusic simulate`` command (same seed and session seeds: the same sessions, bit
    for bit)."""
    from imusic.model.simulate import NEUTRAL_S, DeviceOutput, load_take, plan, write_session

    from imusic.capture.livelink_csv import shipped_takes

    a = data_command(tr.config)
    # as imusic simulate reads --motion: absent, the shipped excerpts; paths from the repo root
    takes = shipped_takes() if a.motion is None else [
        REPO / p if not Path(p).is_absolute() else Path(p) for p in a.motion if p != "none"]
    missing = [str(p) for p in takes if not p.is_file()]
    if missing:
        raise Refused(f"the checkpoint's takes are not here ({missing[0]}): give --data with "
                      "its sessions")
    ids, _ = validation_split(tr)
    output = DeviceOutput(a.report, gyro=not a.no_gyro, mag=not a.no_mag)
    jobs = plan(a.subjects, a.minutes, [load_take(p) for p in takes],
                a.procedural or not takes, a.seed)
    command = tr.config["data_commands"][0]
    for identity, subject, src, sl, sseed in jobs:
        if str(identity) in ids:   # the split then picks among these by their attributes
            write_session(out / f"{subject}_{src.name}.h5", src, sl, subject, identity, a.rig,
                          a.seed, sseed, a.rate, command, output, NEUTRAL_S)
    return out


def data_folder(tr: Any, given: str | None, scratch: Path) -> Path:
    """Where the sessions are: ``--data``, the checkpoint's own data folder, or simulated."""
    if given is not None:
        return Path(given)
    recorded = Path(str(tr.config.get("data", {}).get("path", "")))
    for p in (recorded, REPO / recorded):
        if str(recorded) and p.is_dir() and any(p.glob("*.h5")):
            return p
    print(f"simulating the validation sessions from the checkpoint's data command into {scratch}")
    return simulate_validation(tr, scratch)


# --- evaluate the grid ------------------------------------------------------------------------

def timing_signals(rec: Any, seconds: float) -> tuple[Any, ...]:
    """The first ``seconds`` of a session's aligned signals (acc, gyro, mag, quat, t)."""
    from imusic.capture.aligned import read_aligned

    al = read_aligned(rec.path)
    n = min(len(al.t), int(seconds * al.rate_hz))
    quat = al.quat[:n] if al.quat is not None else None
    return al.acc[:n], al.gyro[:n], al.mag[:n], quat, al.t[:n]


def compute_times(tr: Any, setting: tuple[int, int, float], signals: tuple[Any, ...],
                  cfg: ChoiceConfig) -> dict[str, float]:
    """Per-frame compute time of ``model.runtime.Runtime`` at ``setting``, one 60 Hz sample
    pushed and its tick stepped at a time: the CPU time of the frame (``time.thread_time``
    around ``Runtime.step``; torch runs on this thread with one thread), and the wall time
    the runtime itself records (``Runtime.latencies``), which on a shared machine also holds
    the time other jobs had the core."""
    import numpy as np

    from imusic.model.runtime import Runtime

    steps, carry, blend = setting
    rt = Runtime(tr, steps=steps, carry=carry, carry_blend=blend)
    acc, gyro, mag, quat, t = signals
    cpu = []
    for k in range(len(t)):
        sl = slice(k, k + 1)
        rt.push(acc[sl], gyro[sl], mag[sl], t[sl], quat=None if quat is None else quat[sl])
        while rt.ready():
            c0 = time.thread_time()
            rt.step()
            cpu.append(time.thread_time() - c0)
    w = cfg.warmup_frames
    c, wall = np.asarray(cpu[w:]) * 1000, np.asarray(rt.latencies[w:]) * 1000
    return {"p50_ms": float(np.percentile(c, 50)), "p99_ms": float(np.percentile(c, 99)),
            "max_ms": float(c.max()), "wall_p50_ms": float(np.percentile(wall, 50)),
            "wall_p99_ms": float(np.percentile(wall, 99)), "timed_frames": int(len(c))}


def evaluate_grid(tr: Any, recs: list[Any], grid: Grid, cfg: ChoiceConfig,
                  timing_s: float) -> list[dict[str, Any]]:
    """One row per setting: validation MAE (no gaze/tongue), all-52 MAE, jitter, compute."""
    from imusic.model.evaluate import SEEN_MAE, evaluate

    signals = timing_signals(recs[0], timing_s)
    rows = []
    for setting in grid.settings():
        steps, carry, blend = setting
        t0 = time.perf_counter()
        m = evaluate(tr, recs, steps, methods=("imusic",), carry=carry,
                     carry_blend=blend)["imusic"]
        rows.append({"steps": steps, "carry": carry, "carry_blend": blend, "frames": m["frames"],
                     "mae": round(m[SEEN_MAE], 4), "mae_all52": round(m["mae"], 4),
                     "jitter": round(m["jitter"], 4), "vel_err": round(m["vel_err"], 4),
                     **{k: round(v, 3) for k, v in compute_times(tr, setting, signals,
                                                                   cfg).items()},
                     "eval_s": round(time.perf_counter() - t0, 1)})
        print(f"  steps {steps} carry {carry} blend {blend:g}: MAE {rows[-1]['mae']:.3f} "
              f"jitter {rows[-1]['jitter']:.3f} p99 {rows[-1]['p99_ms']:.2f} ms CPU "
              f"({rows[-1]['wall_p99_ms']:.2f} wall)", flush=True)
    return rows


# --- choose -----------------------------------------------------------------------------------

def choose(rows: Sequence[dict[str, Any]], cfg: ChoiceConfig) -> dict[str, Any] | None:
    """The rule of the module docstring; None when no setting is within the budget."""
    fits = [r for r in rows if r["p99_ms"] <= cfg.budget_ms]
    if not fits:
        return None
    best = min(r["mae"] for r in fits)
    tied = [r for r in fits if r["mae"] <= best + cfg.mae_tol]
    calm = min(r["jitter"] for r in tied)
    tied = [r for r in tied if r["jitter"] <= calm + cfg.jitter_tol]
    return min(tied, key=lambda r: (r["steps"], r["mae"], r["jitter"]))


# --- save -------------------------------------------------------------------------------------

def apply(folder: Path, row: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """Write the chosen setting into the checkpoint's ``config.json`` ``sampling``."""
    from imusic.model import checkpoint as ckpt

    _, config = ckpt.load(folder)
    sampling = dict(config.get("sampling", {}))
    previous = {k: sampling.get(k) for k in ("steps", "carry", "carry_blend")}
    sampling.update(steps=int(row["steps"]), carry=int(row["carry"]),
                    carry_blend=float(row["carry_blend"]),
                    chosen={**provenance, "previous": previous})
    config["sampling"] = sampling
    ckpt.save_config(folder, config)
    return sampling


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled one)")
    ap.add_argument("--data", default=None, help="folder with the checkpoint's sessions "
                    "(default: its data folder, else simulated again)")
    ap.add_argument("--steps", type=int, nargs="+", default=list(Grid.steps))
    ap.add_argument("--carry", type=int, nargs="+", default=list(Grid.carry))
    ap.add_argument("--blend", type=float, nargs="+", default=list(Grid.blend))
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="seconds of each validation session scored (default 20; 0: all)")
    ap.add_argument("--timing-seconds", type=float, default=15.0,
                    help="seconds of the first validation session timed per setting")
    ap.add_argument("--budget-ms", type=float, default=ChoiceConfig.budget_ms)
    ap.add_argument("--quick", action="store_true", help="grid 1 2 x 0 4 x 0.5, 8 s, 4 s timed")
    ap.add_argument("--apply", action="store_true",
                    help="write the chosen setting into the checkpoint's sampling config")
    ap.add_argument("--json", default=None, help="where to write the JSON")
    a = ap.parse_args(argv)
    import torch

    from imusic.model.checkpoint import CheckpointError, load_model

    torch.set_num_threads(1)   # as imusic live runs it
    if a.quick:
        a.steps, a.carry, a.blend, a.seconds, a.timing_seconds = [1, 2], [0, 4], [0.5], 8.0, 4.0
    cfg = ChoiceConfig(budget_ms=a.budget_ms)
    grid = Grid(tuple(a.steps), tuple(a.carry), tuple(a.blend))
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    try:
        # 1. prepare
        tr = load_model(a.model)
        with tempfile.TemporaryDirectory(prefix="imusic-val-") as tmp:
            folder = data_folder(tr, a.data, Path(tmp))
            recs = load_validation(tr, folder, a.seconds or None)
            names = [r.path.name for r in recs]
            print(f"validation: {len(recs)} sessions ({', '.join(names)}), "
                  f"{sum(r.n_frames for r in recs) / tr.spec.rate_hz:.0f} s")
            # 2. evaluate the grid
            rows = evaluate_grid(tr, recs, grid, cfg, a.timing_seconds)
    except (Refused, CheckpointError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"choose_runtime: {err}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    # 3. choose
    best = choose(rows, cfg)
    current = {k: tr.sampling.get(k) for k in ("steps", "carry", "carry_blend")}
    for r in rows:
        r["chosen"] = r is best
        r["current"] = (r["steps"], r["carry"]) == (current["steps"], current["carry"]) and (
            r["carry"] == 0 or r["carry_blend"] == current["carry_blend"])
    # 4. save
    print_table(rows, f"validation grid ({tr.path}; TWIN DATA; MAE x100 without gaze and "
                      f"tongue; compute = CPU ms per 60 Hz frame, wall beside it; 1 torch "
                      f"thread, load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
                      "after)")
    info = {"checkpoint": str(tr.path), "validation_sessions": names,
            "validation_seconds_each": a.seconds or None, "timing_seconds": a.timing_seconds,
            "rule": asdict(cfg), "grid": asdict(grid), "current": current,
            "chosen": best, "loadavg_before": list(load_before), "loadavg_after": list(load_after),
            "cores": os.cpu_count(), "wall_s": round(time.perf_counter() - t_start, 1),
            "data": "twin (synthetic)" if "twin" in {r.source for r in recs} else "recorded"}
    import json

    path = Path(a.json) if a.json else (RESULTS if os.environ.get(SAVE_ENV) == "1"
                                        else SCRATCH) / "choose_runtime.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "choose_runtime",
                                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "machine": machine(), "results": rows, **info},
                               indent=2, default=float) + "\n")
    print(f"saved {path}")
    if best is None:
        fastest = min(rows, key=lambda r: r["p99_ms"])
        print(f"choose_runtime: no setting within the {cfg.budget_ms:g} ms p99 budget on this "
              f"machine (fastest: {fastest['steps']} steps at {fastest['p99_ms']:.2f} ms, load "
              f"average {load_after[0]:.2f}): rerun on a quieter machine; nothing applied",
              file=sys.stderr)
        return 1
    print(f"chosen: {best['steps']} DDIM steps, carry {best['carry']}, blend "
          f"{best['carry_blend']:g}: validation MAE {best['mae']:.3f}, jitter "
          f"{best['jitter']:.3f}, p99 {best['p99_ms']:.2f} ms (current: {current})")
    if a.apply:
        prov = {"by": "scripts/choose_runtime.py",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "validation_sessions": names,
            "validation_seconds_each": a.seconds or None, "mae_no_gaze_tongue": best["mae"],
            "jitter": best["jitter"], "p99_ms": best["p99_ms"], "rule": asdict(cfg),
            "loadavg": list(load_after)}
        sampling = apply(tr.path, best, prov)
        print(f"applied to {tr.path}: sampling steps {sampling['steps']}, carry "
              f"{sampling['carry']}, carry_blend {sampling['carry_blend']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
