"""Streaming runtime speed: per-frame latency of the IMUSIC model on this CPU.

A twin session (procedural motion, the checkpoint's rig, 100 Hz device) is pushed into
``model.runtime.Runtime`` in 10 ms bursts, as a device would deliver it; each 60 Hz frame's
compute time (resampling, AHRS + features, encoder, DDIM) is recorded. Reports p50/p99/max per
DDIM step count, and the training time of the checkpoint (measured when ``imusic train`` made
it, read from its config).

    python benchmarks/bench_runtime.py [--quick] [--model CKPT] [--seconds S]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table, save benchmarks/results/bench_runtime.json."""
    import numpy as np
    import torch

    from imusic.hardware.motion import procedural
    from imusic.hardware.physics import simulate
    from imusic.model.checkpoint import load_model
    from imusic.model.runtime import Runtime

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run, default step count only")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled one)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds of data per case")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    tr = load_model(args.model)
    default_steps = int(tr.sampling["steps"])
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    steps_list = [default_steps] if args.quick else sorted({1, 2, default_steps, 4, 8})
    motion = procedural(seconds + 1.0, fps=60, seed=7)
    sig = simulate(motion, tr.config["rig"]["id"], rate_hz=100.0, identity=5, seed=7)
    burst = 1   # 100 Hz device, one sample per 10 ms
    rows = []
    for steps in steps_list:
        rt = Runtime(tr, steps=steps)
        for s in range(0, sig.n_samples, burst):
            sl = slice(s, s + burst)
            rt.push(sig.acc[sl], sig.gyro[sl], sig.mag[sl], sig.t[sl])
            rt.poll()
        lat = np.asarray(rt.latencies[30:]) * 1000   # skip the warm-up frames
        rows.append({"ddim_steps": steps, "frames": int(len(lat)),
                     "p50_ms": float(np.percentile(lat, 50)),
                     "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
                     "under_16.7ms_%": float((lat < 1000 / 60).mean() * 100),
                     "default": steps == default_steps})
    print_table(rows, f"runtime latency per 60 Hz frame ({tr.path}, torch threads "
                      f"{args.threads})")
    train_s = tr.config.get("metrics", {}).get("train_time_s")
    if train_s is not None:
        print(f"training time of this checkpoint (measured by imusic train): {train_s:.0f} s "
              f"({tr.config['train']['stage1_steps']} + {tr.config['train']['stage2_steps']} "
              "steps, CPU)")
    n_params = sum(p.numel() for p in tr.net.parameters())
    save("bench_runtime", rows, checkpoint=str(tr.path), parameters=n_params,
         train_time_s=train_s, target_p99_ms=1000 / 60, quick=args.quick,
         torch_threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
