"""``imusic eval``: IMUSIC model against the baselines on aligned sessions."""

from __future__ import annotations

import argparse

HELP = "evaluate a checkpoint and the baselines: MAE x100 per region/blendshape, velocity, jitter"
EXAMPLE = "imusic eval --model runs/imusic11 --data data/twin --out runs/imusic11/eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic eval``."""
    parser.add_argument("--model", default="default", metavar="CKPT",
                        help="checkpoint folder (default: the bundled checkpoint)")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of session files with an 'aligned' group")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write results.json and PNG plots here")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps (default: the checkpoint's)")
    parser.add_argument("--seen", action="store_true",
                        help="also score the sessions the checkpoint was trained on")
    parser.add_argument("--all", action="store_true",
                        help="score every session as one set, ignoring the checkpoint's "
                             "held-out split (e.g. for a folder of new real sessions)")


def run(args: argparse.Namespace) -> int:
    """Load, split as the checkpoint was trained, score every part, print tables."""
    import sys
    from pathlib import Path

    from rich.console import Console

    from imusic.model.data import load_recordings, split_from_config
    from imusic.model.evaluate import evaluate, plot, save_json, table
    from imusic.model.checkpoint import load_model

    try:
        tr = load_model(args.model)
        recs = load_recordings(args.data, tr.spec, progress=True)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"imusic eval: {err}", file=sys.stderr)
        return 2
    tcfg = tr.config.get("train", {})
    if args.all:
        parts = {"all": recs}
    else:
        sp = split_from_config(recs, tcfg)
        parts = dict(sp.parts())
        if args.seen:
            parts["seen_in_training"] = sp.train
    console = Console() if Console().is_terminal else Console(width=150)
    results = {}
    for name, part in parts.items():
        if not part:
            continue
        res = evaluate(tr, part, args.steps)
        results[name] = res
        kind = "/".join(res.get("_source", [])) or "unknown"
        console.print(table(res, f"{name}: {len(part)} {kind} sessions (MAE ×100)"))
        if args.out:
            for p in plot(tr, res, part, Path(args.out), name, args.steps):
                console.print(f"plot: {p}")
    if not results:
        print(f"imusic eval: no sessions to score under {args.data}", file=sys.stderr)
        return 2
    if args.out:
        save_json({"model": str(tr.path), "data": str(args.data), "results": results},
                  Path(args.out) / "results.json")
        console.print(f"results: {Path(args.out) / 'results.json'}")
    return 0
