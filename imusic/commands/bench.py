"""``imusic bench``: run the benchmark scripts and print their results."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HELP = "run the benchmarks (benchmarks/bench_*.py): each prints a table and writes JSON"
EXAMPLE = "imusic bench --quick --only twin decoder   (--save to update benchmarks/results)"

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
SAVE_ENV = "IMUSIC_BENCH_SAVE"   # read by benchmarks/common.save


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short runs (minutes, not tens)")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME",
                        help="run only these (bench_NAME.py), e.g. twin decoder runtime")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--save", action="store_true",
                        help="write the tracked benchmarks/results/*.json (the README's Figures "
                             "table is made from them: then run python scripts/figures.py); "
                             "without it results go to out/bench/")


def available() -> dict[str, Path]:
    """Benchmark name to script path."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def run(args: argparse.Namespace) -> int:
    scripts = available()
    if not scripts:
        print(f"imusic bench: no benchmarks found in {BENCH_DIR}; they ship with the source "
              "checkout (git clone), not with a wheel", file=sys.stderr)
        return 2
    if args.list:
        for name, path in scripts.items():
            print(f"{name:12s} {path}")
        return 0
    chosen = args.only or list(scripts)
    unknown = [n for n in chosen if n not in scripts]
    if unknown:
        print(f"imusic bench: unknown benchmark(s) {', '.join(unknown)}; "
              f"choose from {', '.join(scripts)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n== {name} ({scripts[name].name}) ==", flush=True)
        cmd = [sys.executable, str(scripts[name])] + (["--quick"] if args.quick else [])
        env = dict(os.environ, **{SAVE_ENV: "1" if args.save else "0"})
        start = time.monotonic()
        rc = subprocess.call(cmd, cwd=BENCH_DIR.parent, env=env)
        print(f"-- {name}: exit {rc} after {time.monotonic() - start:.1f} s")
        if rc != 0:
            failed.append(name)
    results = BENCH_DIR / "results" if args.save else BENCH_DIR.parent / "out" / "bench"
    print("\nresults (JSON):")
    for name in chosen:
        path = results / f"bench_{name}.json"
        if path.exists():
            machine = json.loads(path.read_text()).get("machine", {})
            print(f"  {path}  ({machine.get('cpu', '?')}, {machine.get('cores', '?')} cores)")
    if failed:
        print(f"imusic bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
