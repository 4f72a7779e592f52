"""Ablations of a trained checkpoint on its held-out data: DDIM step counts and the runtime's
prefix carrying, scored as ``imusic eval`` scores (twin data is labelled as such).

    python -m imusic.model.ablation --model CKPT --data DIR [--steps 1 2 4 8] [--every 2] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def run(model: str, data: str, steps: list[int], every: int = 1,
        carries: list[int] | None = None) -> dict[str, Any]:
    """Metrics per held-out part for each step count (and carry length, at the default
    steps)."""
    from imusic.model.checkpoint import load_model
    from imusic.model.data import load_recordings, split_from_config
    from imusic.model.evaluate import evaluate

    tr = load_model(model)
    recs = load_recordings(data, tr.spec)
    t = tr.config["train"]
    sp = split_from_config(recs, t)
    # the validation head shapes first: runtime defaults are chosen there, not on a test set
    parts = {k: v[::every] for k, v in {"validation": sp.val, **sp.parts()}.items() if v}
    out: dict[str, Any] = {"model": str(tr.path), "data": data, "every": every,
                           "rig": tr.config["rig"]["id"], "steps": {}, "carry": {}}
    for name, part in parts.items():
        base = evaluate(tr, part, steps[0], methods=("mean_face", "ridge", "stage1"))
        out.setdefault("baselines", {})[name] = base
        for s in steps:
            t0 = time.perf_counter()
            r = evaluate(tr, part, s, methods=("imusic",))
            out["steps"].setdefault(name, {})[str(s)] = {**r["imusic"],
                                                         "eval_s": time.perf_counter() - t0}
        for c in carries or []:
            for blend in (0.5, 1.0):
                if c == 0 and blend != 0.5:
                    continue
                r = evaluate(tr, part, None, methods=("imusic",), carry=c, carry_blend=blend)
                key = f"{c}" if c == 0 else f"{c}@{blend:g}"
                out["carry"].setdefault(name, {})[key] = r["imusic"]
    return out


def _mae(v: dict) -> str:
    """MAE x100 without gaze and tongue, then gaze, tongue and all 52 (model.evaluate.metrics)."""
    from imusic.model.evaluate import SEEN_MAE

    r = v["regions"]
    return (f"{v[SEEN_MAE]:.2f} (gaze {r['gaze']:.2f}, tongue {r['tongue']:.2f}, "
            f"all 52 {v['mae']:.2f})")


def main(argv: list[str] | None = None) -> int:
    """Run and print a compact table; write JSON with --out."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--carry", type=int, nargs="*", default=[])
    ap.add_argument("--every", type=int, default=1, help="score every k-th held-out session")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    res = run(a.model, a.data, a.steps, a.every, a.carry)
    for part, by_steps in res["steps"].items():
        print(f"{part} ({res['rig']}, twin data)")
        for m, v in res["baselines"][part].items():
            if not m.startswith("_"):
                print(f"  {m:10s} MAE {_mae(v)} jitter {v['jitter']:.3f}")
        for s, v in by_steps.items():
            print(f"  imusic {s:>2s} steps MAE {_mae(v)} jitter {v['jitter']:.3f} "
                  f"vel {v['vel_err']:.3f}")
        for c, v in res["carry"].get(part, {}).items():
            print(f"  imusic carry {c:>2s} MAE {_mae(v)} jitter {v['jitter']:.3f}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
