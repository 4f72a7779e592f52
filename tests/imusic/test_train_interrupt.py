"""Ctrl-C in `imusic train` after stage 1 leaves a loadable checkpoint that `--resume`
finishes; `imusic simulate` refuses to write over a folder of sessions (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from imusic.model import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
TINY = {"stage1_steps": 20, "stage2_steps": 100000, "d_model": 16, "n_heads": 2,
        "enc_layers": 1, "den_layers": 1, "past": 12, "lookahead": 2, "batch_size": 8,
        "eval_every": 0, "save_every": 0, "warmup": 5, "final_eval": False,
        "holdout_subjects": [], "holdout_takes": []}
"""Stage 1 ends in seconds; stage 2 would run for an hour unless interrupted."""


def imusic(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imusic", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_ctrl_c_after_stage_1_saves_and_resume_finishes(tmp_path):
    made = imusic("simulate", "-o", "twin", "--subjects", "2", "--minutes", "0.2",
                  "--rig", "imusic6", "--seed", "1", "--motion", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    log = tmp_path / "train.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "imusic", "train", "--data", "twin",
                                 "--out", "run", "--config", "tiny.json", "--quiet"],
                                cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=err,
                                text=True)
        try:
            deadline = time.monotonic() + 240
            while "stage 1 done" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "stage 1 did not end: " + log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert rc == 130, text
    assert "Traceback" not in text, text
    assert "checkpoint saved to run" in text and "--resume" in text, text

    trained = ckpt.load_model(tmp_path / "run")            # loadable as it stands
    state = trained.config["train_state"]
    assert state["stage"] == 2 and 0 <= state["step"] < TINY["stage2_steps"], state
    assert trained.net_config.d_model == TINY["d_model"]

    resumed = imusic("train", "--data", "twin", "--out", "run", "--resume",
                     "--stage2-steps", str(state["step"] + 10), "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads((tmp_path / "run" / ckpt.CONFIG).read_text())
    assert done["train_state"].get("done") is True
    assert done["train"]["d_model"] == TINY["d_model"]        # the run's own settings
    ckpt.load_model(tmp_path / "run")


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    (tmp_path / "twin").mkdir()
    res = imusic("train", "--data", "twin", "--out", "run", "--resume", cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "no checkpoint at run" in res.stderr


def test_simulate_refuses_a_folder_with_sessions_unless_overwrite(tmp_path):
    args = ("simulate", "-o", "twin", "--subjects", "1", "--minutes", "0.05",
            "--rig", "imusic6", "--motion")   # --motion with no file: procedural only
    assert imusic(*args, cwd=tmp_path).returncode == 0
    session = tmp_path / "twin" / "id00_procedural.h5"
    before = (session.stat().st_size, session.stat().st_mtime_ns)

    again = imusic(*args, "--seed", "7", cwd=tmp_path)
    assert again.returncode != 0
    assert "Traceback" not in again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds 1 session file" in lines[0] \
        and "--overwrite" in lines[0], again.stderr
    assert (session.stat().st_size, session.stat().st_mtime_ns) == before

    forced = imusic(*args, "--seed", "7", "--overwrite", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert session.stat().st_mtime_ns != before[1]
