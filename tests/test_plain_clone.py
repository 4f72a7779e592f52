"""The README's examples run from a plain clone: no ../shared/data beside it. The shipped takes
(hardware/data/takes) are real, small, licensed, unchanged excerpts, and the default motion of
`imusic simulate`, scripts/plot_twin.py and benchmarks/bench_arkit.py."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imusic.capture.livelink_csv import SHIPPED_TAKES_DIR, read_take, shipped_takes

REPO = Path(__file__).resolve().parent.parent
COPIED = ("imusic", "hardware", "firmware_bridge", "capture", "model", "viewer", "scripts",
          "benchmarks", "docs", "pyproject.toml", "README.md", "Makefile")
"""What a clone holds that the commands below can touch (tests/ and .git are not needed)."""


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with nothing beside it (as a user's clone)."""
    root = tmp_path_factory.mktemp("user") / "imusic"
    root.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.o")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=skip)
        else:
            shutil.copy2(src, root / name)
    assert not (root.parent / "shared").exists()
    return root


def run(clone: Path, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(clone)}
    return subprocess.run(list(cmd), cwd=clone, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_shipped_takes_are_small_real_and_licensed():
    takes = shipped_takes()
    assert [p.name for p in takes] == ["S07-001.csv", "alex_rom_3.csv"]
    assert sum(p.stat().st_size for p in takes) < 400_000
    licence = (SHIPPED_TAKES_DIR / "LICENSE").read_text()
    assert "Copyright (c) 2021 Alexandre Donciu-Julin" in licence and "MIT License" in licence
    provenance = (SHIPPED_TAKES_DIR / "PROVENANCE.md").read_text()
    for p in takes:
        take = read_take(p)
        assert take.fps == 30.0 and take.n_frames >= 180 and take.face_found.all()
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        assert re.search(rf"\| {re.escape(p.name)} \|.*\| {digest} \|", provenance), p.name


def test_shipped_takes_are_unchanged_excerpts_of_the_originals(shared_data: Path):
    """Header and rows are byte for byte lines of the original take, consecutive."""
    for p in shipped_takes():
        full = (shared_data / "arkit" / "alexdjulin_llf" / p.name).read_bytes().splitlines(True)
        mine = p.read_bytes().splitlines(True)
        assert mine[0] == full[0]
        start = full.index(mine[1])
        assert full[start:start + len(mine) - 1] == mine[1:]


def test_pyproject_ships_the_takes():
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'"imusic.hardware" = \[[^]]*"data/\*\*/\*"', text)


def test_simulate_defaults_to_the_shipped_takes(clone, tmp_path):
    res = run(clone, sys.executable, "-m", "imusic", "simulate", "-o", str(tmp_path / "twin"),
              "--subjects", "1", "--minutes", "0.1", "--procedural")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "twin").glob("*.h5"))
    assert names == ["id00_S07-001.h5", "id00_alex_rom_3.h5", "id00_procedural.h5"]


def test_plot_twin_runs_with_its_defaults(clone, tmp_path):
    out = tmp_path / "twin.png"
    res = run(clone, sys.executable, "scripts/plot_twin.py", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 10_000


def test_bench_arkit_quick_runs(clone):
    res = run(clone, sys.executable, "-m", "imusic", "bench", "--quick", "--only", "arkit")
    assert res.returncode == 0, res.stderr
    assert "read_take (alex_rom_3.csv, 240 rows)" in res.stdout
    assert (clone / "benchmarks" / "results" / "bench_arkit.json").is_file()
