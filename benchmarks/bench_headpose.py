"""Head pose from the reference sensor: degrees RMS against the twin's true head rotation.

A procedural take with head motion (nods, turns up to 30 deg, slow drift) and a 5 s neutral
start (the calibration), the imusic11 rig simulated at 60 Hz with its full error model (gyro
turn-on bias ~1 deg/s, bias walk, noise, scale, mounting error), estimated by
``model.headpose.HeadPose`` with the reference's magnetometer and without it (the slow return
to the calibrated forward instead).

    python benchmarks/bench_headpose.py [--minutes M] [--seeds N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table, save bench_headpose.json."""
    from imusic.model.headpose import HeadPoseConfig, twin_error

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="take length (min)")
    ap.add_argument("--seeds", type=int, default=2, help="takes (seeds 0..N-1)")
    args = ap.parse_args(argv)
    rows = []
    for seed in range(args.seeds):
        for mag in (True, False):
            t0 = time.perf_counter()
            r = twin_error(args.minutes * 60.0, seed=seed, use_magnetometer=mag)
            rows.append({"seed": seed, "magnetometer": "yes" if mag else "no",
                         "yaw_rms": r["yaw_rms_deg"], "pitch_rms": r["pitch_rms_deg"],
                         "roll_rms": r["roll_rms_deg"], "angle_rms": r["angle_rms_deg"],
                         "angle_max": r["angle_max_deg"], "truth_rms": r["truth_rms_deg"],
                         "wall_s": time.perf_counter() - t0})
    print_table(rows, f"head pose error, degrees, {args.minutes:g}-minute twin takes")
    save("bench_headpose", rows, minutes=args.minutes,
         config=HeadPoseConfig().__dict__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
