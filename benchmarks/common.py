"""Shared by the benchmark scripts: the machine's description, a table printer, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().parent / "results"
"""The tracked results: the README's Figures table is built from these (scripts/figures.py)."""
SCRATCH = Path(__file__).resolve().parents[1] / "out" / "bench"
"""Where a run writes its JSON unless asked to save it (ignored by git)."""
SAVE_ENV = "IMUSIC_BENCH_SAVE"
"""Set to 1 (``imusic bench --save``) to write the tracked results instead of the scratch copy."""


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU model, cores, memory, Python, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "python": platform.python_version(), "os": platform.platform()}


def print_table(rows: Sequence[dict[str, Any]], title: str = "") -> None:
    """Print rows (dicts with the same keys) as an aligned text table."""
    if title:
        print(title)
    if not rows:
        return
    keys = list(rows[0])
    fmt = [[k] + [(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k])) for r in rows] for k in keys]
    widths = [max(len(c) for c in col) for col in fmt]
    for i in range(len(rows) + 1):
        print("  ".join(col[i].ljust(w) for col, w in zip(fmt, widths)))


def save(name: str, results: Any, **extra: Any) -> Path:
    """Write ``<name>.json`` with the machine and a timestamp: into ``benchmarks/results`` (the
    tracked figures) when ``IMUSIC_BENCH_SAVE=1``, else into ``out/bench`` so that a run never
    dirties the checkout by accident."""
    folder = RESULTS if os.environ.get(SAVE_ENV) == "1" else SCRATCH
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "results": results, **extra}
    path.write_text(json.dumps(doc, indent=2, default=float))
    print(f"saved {path}")
    return path
