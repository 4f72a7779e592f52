"""Bad input to a command: one line naming the file and what is wrong, a non-zero exit, no
traceback (real subprocesses of the installed command line)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imusic.model import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]
N_FEATURES = len(ckpt.load(ckpt.default_checkpoint())[1]["norm"]["mean"])
"""Feature channels of the bundled checkpoint."""


def imusic(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "imusic", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line(res: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exactly one line on stderr that holds every fragment."""
    assert res.returncode != 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "table.csv").write_text("a,b,c\n1,2,3\n")
    noise = bytes((i * 197 + 89) % 256 for i in range(3000))   # not UTF-8 from byte 0
    (tmp_path / "blob.csv").write_bytes(noise)
    (tmp_path / "blob.npy").write_bytes(noise)
    return tmp_path


def test_view_on_a_csv_that_is_not_a_take(files):
    one_line(imusic("view", "table.csv", "--snapshot", "x.png", cwd=files),
             "imusic view", "table.csv", "Timecode")
    assert not (files / "x.png").exists()


def test_simulate_on_a_csv_that_is_not_a_take(files):
    one_line(imusic("simulate", "-o", "out", "--motion", "table.csv", "--subjects", "1",
                    "--minutes", "0.05", cwd=files), "imusic simulate", "table.csv", "Timecode")
    assert not list((files / "out").glob("*.h5")) if (files / "out").exists() else True


def test_arkit_replay_of_a_binary_file(files):
    one_line(imusic("arkit", "--replay", "blob.csv", "--seconds", "1", cwd=files),
             "imusic arkit", "blob.csv", "not a text file")


@pytest.mark.parametrize("name", ["blob.csv", "blob.npy"])
def test_view_of_a_binary_file(files, name):
    one_line(imusic("view", name, "--snapshot", "x.png", cwd=files), "imusic view", name)


def test_info_into_a_closed_pipe_exits_quietly(tmp_path):
    """`imusic info FILE | head` where head has gone: no traceback, the SIGPIPE status."""
    from imusic.model.simulate import simulate_dataset

    session = simulate_dataset(tmp_path / "s", 1, 0.05, [], True, "imusic6", seed=3)[0]
    read, write = os.pipe()
    os.close(read)   # the reader is gone before the command writes anything
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        res = subprocess.run([sys.executable, "-m", "imusic", "info", str(session)],
                             stdout=write, stderr=subprocess.PIPE, text=True, env=env,
                             timeout=120)
    finally:
        os.close(write)
    assert res.returncode == 141, res.stderr
    assert res.stderr == "", res.stderr


def _checkpoint(tmp_path: Path, weights: bytes | None = None, **changes) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(ckpt.default_checkpoint(), folder)
    if weights is not None:
        (folder / ckpt.WEIGHTS).write_bytes(weights)
    config = json.loads((folder / ckpt.CONFIG).read_text())
    for key, value in changes.items():
        *head, last = key.split("__")
        d = config
        for k in head:
            d = d[k]
        d[last] = value(copy.deepcopy(d[last])) if callable(value) else value
    (folder / ckpt.CONFIG).write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("tamper, fragment", [
    (dict(weights=b"\x00\x13" * 2000), "not a readable safetensors file"),
    (dict(net__window=-52), "window must be an integer >= 1"),
    (dict(norm__mean=lambda v: v[:-2]), f"norm.mean has {N_FEATURES - 2} entries"),
    (dict(features__sites=lambda v: v[:-2] + v[-1:]), "feature channels"),
    (dict(rig__sites=lambda v: ["chin"] + v[1:]), "rig.sites"),
], ids=["garbage-weights", "negative-window", "norm-length", "site-count", "site-names"])
def test_tampered_checkpoint_is_refused_in_one_line(tmp_path, tamper, fragment):
    folder = _checkpoint(tmp_path, **tamper)
    line = one_line(imusic("eval", "--model", str(folder), "--data", str(tmp_path / "none"),
                           cwd=tmp_path), "imusic eval", fragment)
    assert str(folder) in line
