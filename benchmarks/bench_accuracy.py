"""Model accuracy of a checkpoint, as ``imusic train`` measured it on its held-out sets (twin data).

``imusic train`` ends with the full streaming evaluation (``model.evaluate``: the runtime's
own loop, frame by frame) and stores it in the checkpoint's ``config.json`` (``metrics/eval``),
with the split it chose and its training time. This reads that evaluation back, prints the
headline per set (MAE x100 without gaze and tongue, mouth, jaw, jitter, for the model and every
baseline) and writes JSON for the README's Figures table. Re-measuring means re-training:
``bash scripts/train_default.sh``, which also runs ``imusic eval`` on the data to check it.

    python benchmarks/bench_accuracy.py [--model CKPT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402

METHODS = ("mean_face", "ridge", "stage1", "imusic")


def _mae(region: object) -> float:
    return float(region["mae"] if isinstance(region, dict) else region)


def main(argv: list[str] | None = None) -> int:
    """Print the table, save bench_accuracy.json."""
    from imusic.model.checkpoint import load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint folder (default: the bundled one)")
    args = p.parse_args(argv)
    trained = load_model(args.model)
    cfg = trained.config
    ev = cfg["metrics"]["eval"]
    rows, results = [], {}
    for name, res in ev.items():
        results[name] = {}
        for m in METHODS:
            d = res[m]
            row = {"set": name, "method": m, "mae_no_gaze_tongue": d["mae_no_gaze_tongue"],
                   "mouth": _mae(d["regions"]["mouth"]), "jaw": _mae(d["regions"]["jaw"]),
                   "all_52": d["mae"], "jitter": d["jitter"], "frames": d["frames"]}
            rows.append(row)
            results[name][m] = row
    print_table(rows, f"accuracy of {trained.path} (twin data; MAE x100)")
    split = {k: cfg["train"].get(k) for k in ("holdout_identities", "val_identities",
                                               "holdout_performers")}
    save("bench_accuracy", results, checkpoint=str(trained.path), split=split,
         train_time_s=cfg["metrics"].get("train_time_s"), command=cfg.get("command"),
         data="twin")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
