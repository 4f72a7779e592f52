"""The README's Figures table is the benchmark JSON, and a benchmark run leaves it alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import common

REPO = Path(__file__).resolve().parents[1]


def test_readme_figures_table_is_what_the_results_say():
    out = subprocess.run([sys.executable, "scripts/figures.py", "--check"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_benchmark_run_writes_the_tracked_results_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(common, "SCRATCH", tmp_path / "scratch")
    monkeypatch.delenv(common.SAVE_ENV, raising=False)
    path = common.save("bench_probe", [{"x": 1.0}])
    assert path.parent == tmp_path / "scratch" and not (tmp_path / "results").exists()
    monkeypatch.setenv(common.SAVE_ENV, "1")
    path = common.save("bench_probe", [{"x": 2.0}])
    assert path == tmp_path / "results" / "bench_probe.json"
    assert json.loads(path.read_text())["results"] == [{"x": 2.0}]
