"""Damaged session files: every command that opens a session, on seeded mutations of a real one.

The mutations and the judge are tests/capture/session_damage.py (shared with
tests/capture/test_damaged_sessions.py, which runs a few dozen): truncations, runs of flipped
bytes and zeroed 4 KiB blocks of a small ``imusic simulate`` session, each given to ``info``,
``sync``, ``export``, ``view --snapshot`` and ``train`` as its own subprocess under a timeout.
Prints a table per command (clean errors, harmless rc 0, bad outcomes, timeouts) and writes
benchmarks/results/bench_damaged_sessions.json.

    python benchmarks/bench_damaged_sessions.py [--n 120] [--seed 0] [--commands info,sync]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "capture"))

from session_damage import COMMANDS, sweep  # noqa: E402


def main() -> None:
    """Run the sweep, print a table per command and save the JSON."""
    from benchmarks.common import print_table, save

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120, help="mutations (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    a = ap.parse_args()
    commands = tuple(c for c in a.commands.split(",") if c)
    with tempfile.TemporaryDirectory(prefix="imusic-damage-") as tmp:
        rows = sweep(a.n, a.seed, commands, a.timeout, Path(tmp))
    table = []
    for c in commands:
        mine = [r for r in rows if r["command"] == c]
        table.append({
            "command": c, "files": len(mine),
            "clean_error": sum(1 for r in mine if r["rc"] not in (0, None) and not r["problem"]),
            "ok_rc0": sum(1 for r in mine if r["rc"] == 0 and not r["problem"]),
            "bad": sum(1 for r in mine if r["problem"]),
            "timeouts": sum(1 for r in mine if r["rc"] is None),
            "max_s": max((r["seconds"] for r in mine), default=0.0)})
    print_table(table, f"{a.n} mutated session files (seed {a.seed})")
    for r in rows:
        if r["problem"]:
            print(f"  {r['command']:<7} {r['mutation']:<22} {r['problem']}")
    save("bench_damaged_sessions", {"summary": table, "runs": rows}, n=a.n, seed=a.seed)


if __name__ == "__main__":
    main()
