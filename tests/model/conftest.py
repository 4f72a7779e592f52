"""Fixtures of the model suite: a small analytic data set and a tiny trained checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from .imu_synth import toy_session  # noqa: E402

TINY = dict(stage1_steps=120, stage2_steps=120, d_model=32, n_heads=4, enc_layers=1,
            den_layers=1, past=24, lookahead=2, batch_size=16, eval_every=60, carry_max=6,
            holdout_subjects=["id16"], holdout_takes=["S07-001"], save_every=0, threads=1,
            warmup=20, lr=3e-3)
"""A training configuration that runs in a few seconds on one core."""


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight small aligned sessions: 3 training subjects + 1 held out, 2 takes each."""
    d = tmp_path_factory.mktemp("toy")
    i = 0
    for subject in ("id00", "id01", "id02", "id16"):
        for take in ("a", "S07-001"):
            toy_session(d / f"{subject}_{take}.h5", subject, take, seconds=10, seed=i,
                        lost=(100, 140) if i == 0 else None)
            i += 1
    return d


@pytest.fixture(scope="session")
def tiny_ckpt(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained by model.train on the toy data (a few seconds)."""
    from imusic.model.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    torch.manual_seed(0)
    train(toy_data, out, TrainConfig(**TINY), command="pytest tiny_ckpt", progress=False)
    return out
