"""Checkpoints: safetensors + config.json, round trip, never unpickled."""

import json
import pickle

import pytest
import torch

from imusic.model import checkpoint as ckpt
from imusic.model.networks import IMUSIC, NetConfig


def test_round_trip_without_pickle(tmp_path, monkeypatch):
    net = IMUSIC(NetConfig(n_features=24, window=10, d_model=16, n_heads=2, enc_layers=1,
                           den_layers=1))
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    config = {"net": NetConfig(n_features=24, window=10, d_model=16, n_heads=2, enc_layers=1,
                               den_layers=1).to_dict(), "note": "x"}
    ckpt.save(tmp_path / "c", tensors, config)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json",
                                                                "model.safetensors"]

    def forbidden(*a, **k):
        raise AssertionError("a checkpoint load must never unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    got, cfg = ckpt.load(tmp_path / "c" / "model.safetensors")
    assert cfg == json.loads(json.dumps(config))
    for k, v in tensors.items():
        assert torch.equal(got[k], v)


def test_not_a_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="imusic train"):
        ckpt.load(tmp_path)


def test_trained_checkpoint_loads_for_inference(tiny_ckpt):
    tr = ckpt.load_model(tiny_ckpt)
    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    assert tr.window == cfg["past"] + cfg["lookahead"]
    assert tr.spec.n_features == cfg["net"]["n_features"]
    assert tr.ridge is not None and tr.mean_face.shape == (52,)
    for key in ("net", "features", "norm", "rig", "train", "command", "data_seed", "data",
                "metrics", "schedule", "sampling"):
        assert key in cfg, key
    assert cfg["command"] == "pytest tiny_ckpt"
    assert len(cfg["norm"]["mean"]) == cfg["net"]["n_features"]


def test_bundled_checkpoint_is_found_and_small():
    path = ckpt.default_checkpoint()
    size = (path / "model.safetensors").stat().st_size
    assert size < 8e6
    tr = ckpt.load_model(None)
    cfg = tr.config
    assert cfg["command"].startswith("imusic train")
    assert "eval" in cfg["metrics"] and cfg["data_seed"]
