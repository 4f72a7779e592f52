"""Your own paired data, end to end: a twin-made folder in the IMUSIC release layout is
imported, trained on, fine-tuned with --init and scored with eval --all, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imusic.capture.aligned import read_aligned
from imusic.model.release_twin import make_release

TINY = {"stage1_steps": 40, "stage2_steps": 20, "d_model": 32, "n_heads": 4, "enc_layers": 1,
        "den_layers": 1, "past": 24, "lookahead": 2, "batch_size": 16, "carry_max": 4,
        "save_every": 0, "threads": 1, "warmup": 10, "lr": 3e-3}


def _imusic(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imusic", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("release")
    make_release(root, subjects=2, takes=2, seconds=8, seed=3)
    return root


def test_import_train_finetune_eval(release: Path, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    r = _imusic("import", str(release / "data"), "-o", str(sessions))
    assert r.returncode == 0, r.stderr
    files = sorted(sessions.glob("*.h5"))
    assert [f.stem for f in files] == [f"participant_{i}_testcase_{j}" for i in (1, 2)
                                       for j in (1, 2)]
    al = read_aligned(files[1])
    assert al.attrs["subject"] == "participant_1" and al.attrs["take"] == "testcase_2"
    assert al.attrs["source"] == "twin" and al.sites[0] == "000" and al.reference == "000"
    assert al.has_quat and not al.has_gyro
    np.testing.assert_allclose(np.linalg.norm(al.quat, axis=2), 1.0, atol=1e-5)
    assert 8.0 < np.linalg.norm(al.acc[:, 0], axis=1).mean() < 11.5     # m/s^2 with gravity

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    base = tmp_path / "base"
    r = _imusic("train", "--data", str(sessions), "--out", str(base), "--config", str(cfg),
                "--holdout-take", "testcase_2", "--val-fraction", "0.25", "--patience", "2",
                "--eval-every", "20", "--quiet")
    assert r.returncode == 0, r.stderr
    c = json.loads((base / "config.json").read_text())
    assert c["features"]["orientation"] == "reported" and c["rig"]["id"] == "imusic_release"
    assert c["data"]["heldout_takes"]["takes"] == ["testcase_2"]
    assert c["data"]["train"]["takes"] == ["testcase_1"]
    assert c["data"]["validation"]["sessions"] == 2

    tuned = tmp_path / "tuned"
    r = _imusic("train", "--init", str(base), "--data", str(sessions), "--out", str(tuned),
                "--config", str(cfg), "--holdout-take", "testcase_2", "--quiet", "--no-eval")
    assert r.returncode == 0, r.stderr
    t = json.loads((tuned / "config.json").read_text())
    assert t["init"] == str(base) and t["norm"] == c["norm"] and t["net"] == c["net"]

    r = _imusic("eval", "--model", str(tuned), "--data", str(sessions), "--all")
    assert r.returncode == 0, r.stderr
    assert "all: 4 twin sessions" in r.stdout and "imusic" in r.stdout


def test_init_refuses_a_checkpoint_of_another_rig(release: Path, tmp_path: Path) -> None:
    sessions = tmp_path / "s"
    assert _imusic("import", str(release / "data" / "participant_1_testcase_1"), "-o",
                   str(sessions.with_suffix(".h5"))).returncode == 0
    sessions.mkdir()
    sessions.with_suffix(".h5").rename(sessions / "a.h5")
    r = _imusic("train", "--init", "default", "--data", str(sessions), "--out",
                str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--init" in lines[0] and "imusic11" in lines[0]
    assert not (tmp_path / "x" / "model.safetensors").exists()
