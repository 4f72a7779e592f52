"""Hybrid tracking under simulated occlusions, on twin data.

For held-out twin sessions (simulated with a seed and identities the bundled model did not
train on), the bundled model predicts blendshapes from the IMUs; then the truth is hidden as a
camera would lose it (model/occlusion.py: a hand over the mouth 20% of the time in episodes of
0.5 to 5 s, the whole face lost 5% of the time), and three trackers are scored per region:
ARKit holding its last value, the IMU alone, and the hybrid. Gaze and tongue, which the IMUs
hardly see (and the hybrid takes from the camera only), are rows of their own, apart from the
"all (no gaze/tongue)" row; "all" keeps the 52.

    .venv/bin/python scripts/eval_hybrid.py [--data DIR] [--model CKPT] [--quick]

Prints a table and writes benchmarks/results/eval_hybrid.json. TWIN DATA: synthetic IMU from
real human facial motion; not a measurement on people.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table, save  # noqa: E402
from imusic.hardware.vocabulary import ALL_KEY, IMU_BLIND_REGIONS, SEEN_KEY, SEEN_LABEL  # noqa: E402
from imusic.model.fusion import REGION_NAMES  # noqa: E402

FULL_TAKES = REPO.parent / "shared" / "data" / "arkit"
"""The whole real takes, where they sit beside the repository; a plain clone uses the short
excerpts shipped in hardware/data/takes instead (same names, so the held-out take is found)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="aligned twin sessions (default: simulate held-out ones)")
    parser.add_argument("--model", default=None, help="checkpoint (default: bundled)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter sessions")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    from imusic.model.evaluate import load_for_eval
    from imusic.model.occlusion import heldout_identities, twin_study

    from imusic.capture.livelink_csv import shipped_takes

    all_takes = sorted(FULL_TAKES.rglob("*.csv")) or shipped_takes()
    held = load_for_eval(args.model).config.get("train", {})
    identities = heldout_identities(held)
    # the takes it never saw: its held-out takes, else its held-out performer's
    names = set(held.get("holdout_takes", []))
    if not names and held.get("holdout_performers"):
        from imusic.model.simulate import performer_of
        names = {p.stem for p in all_takes if performer_of(p) in held["holdout_performers"]}
    takes = tuple(str(p) for p in all_takes if p.stem in names)
    print(f"held-out takes: {', '.join(takes) or 'none (procedural motion only)'}")
    results, seconds, sessions = twin_study(
        args.model, identities[:2] if args.quick else identities, takes,
        60.0 if args.quick else None, args.seed, args.data)
    rows = []
    # the regions the IMUs see, the figure over them, then gaze and tongue apart, then all 52
    seen = tuple(r for r in REGION_NAMES if r not in IMU_BLIND_REGIONS)
    for region in (*seen, SEEN_KEY, *IMU_BLIND_REGIONS, ALL_KEY):
        rows.append({"region": SEEN_LABEL if region == SEEN_KEY else region,
                     **{m: round(results[m][region], 2) for m in results},
                     "hybrid_best": results["hybrid"][region] < min(
                         results["arkit_hold"][region], results["imu_only"][region])})
    print_table(rows, f"MAE x100 under simulated occlusions, TWIN DATA ({sessions} held-out "
                      f"sessions, {seconds:.0f} s)")
    save("eval_hybrid", results, data="twin (synthetic)", sessions=sessions, seconds=seconds,
         occlusions="mouth 20% in 0.5-5 s episodes; face lost 5%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
