"""Twin speed: seconds to simulate 10 minutes of the 12-sensor imusic11 rig at 200 Hz.

Cases: procedural motion generation (60 fps), the physics with the full error model, the
physics without errors (ideal signals), and the 6-sensor rig; each on the same procedural
motion. Target (issue 2): the full 12-sensor simulation of 10 minutes at 200 Hz in under 30 s
on a 2-core machine.

    python benchmarks/bench_twin.py [--quick] [--minutes M] [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (s) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table, save benchmarks/results/bench_twin.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 simulated minute, one repeat")
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    ap.add_argument("--rate", type=float, default=200.0, help="device rate (Hz)")
    ap.add_argument("--repeat", type=int, default=2, help="repeats per case (best is kept)")
    args = ap.parse_args(argv)
    minutes = 1.0 if args.quick else args.minutes
    repeat = 1 if args.quick else args.repeat

    from imusic.hardware.motion import procedural
    from imusic.hardware.physics import simulate
    from imusic.hardware.rig import load_rig

    seconds = minutes * 60.0
    rig11, rig6 = load_rig("imusic11"), load_rig("imusic6")
    simulate(procedural(2.0, seed=0), rig11, rate_hz=args.rate)       # warm caches

    t_motion, motion = _best(lambda: procedural(seconds, fps=60.0, seed=1), repeat)
    cases = [
        ("procedural motion, 60 fps", t_motion, 0, 0),
    ]
    for label, rig, errors in (("imusic11 (12 sensors), full error model", rig11, True),
                               ("imusic11 (12 sensors), ideal signals", rig11, False),
                               ("imusic6 (6 sensors), full error model", rig6, True)):
        dt, sig = _best(lambda: simulate(motion, rig, rate_hz=args.rate, seed=1, errors=errors),
                        repeat)
        cases.append((label, dt, rig.n_sites, sig.n_samples))
    rows = []
    for label, dt, sensors, samples in cases:
        rows.append({"case": label, "simulated_s": seconds, "rate_hz": args.rate if samples else 60.0,
                     "sensors": sensors, "samples": samples, "wall_s": round(dt, 3),
                     "x_realtime": round(seconds / dt, 1)})
    print_table(rows, f"twin: {minutes:g} simulated minutes at {args.rate:g} Hz "
                      f"(best of {repeat})")
    headline = rows[1]["wall_s"] * (10.0 / minutes)
    target = 30.0
    print(f"headline: 10 min of the 12-sensor rig at {args.rate:g} Hz takes "
          f"{headline:.2f} s{' (scaled from the quick run)' if minutes != 10.0 else ''}; "
          f"target < {target:g} s: {'met' if headline < target else 'NOT met'}")
    save("bench_twin", rows, quick=args.quick, headline_s_per_10min=round(headline, 3),
         target_s=target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
