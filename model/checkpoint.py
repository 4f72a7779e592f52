"""Checkpoints: a folder with ``model.safetensors`` (tensors) and ``config.json`` (everything
else: architecture, feature spec, normalisation, rig, training data summary, metrics, the exact
training command and data seed). Loading never unpickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
DEFAULT = Path(__file__).resolve().parent / "checkpoints" / "default"


def default_checkpoint() -> Path:
    """The checkpoint bundled with the package (trained on twin data by ``imusic train``)."""
    if not (DEFAULT / WEIGHTS).is_file():
        raise FileNotFoundError(f"the bundled checkpoint is missing at {DEFAULT}: reinstall the "
                                "package or pass --model with a checkpoint from 'imusic train'")
    return DEFAULT


def resolve(path: str | Path | None) -> Path:
    """A checkpoint folder from a folder, a path to one of its files, or None/'default'."""
    if path is None or str(path) == "default":
        return default_checkpoint()
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not (p / WEIGHTS).is_file() or not (p / CONFIG).is_file():
        raise FileNotFoundError(f"{p} is not a checkpoint: it needs {WEIGHTS} and {CONFIG} "
                                "(make one with 'imusic train --data DIR --out CKPT')")
    return p


def save(folder: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write tensors and config atomically (temp files, then rename), so that a killed training
    run never leaves a half-written checkpoint."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp_w, tmp_c = folder / (WEIGHTS + ".tmp"), folder / (CONFIG + ".tmp")
    save_file(flat, str(tmp_w), metadata={"format": "pt", "schema": "imusic.checkpoint"})
    tmp_c.write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
    os.replace(tmp_w, folder / WEIGHTS)
    os.replace(tmp_c, folder / CONFIG)
    return folder


def load(path: str | Path | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and config of a checkpoint folder (safetensors only; no pickle anywhere)."""
    folder = resolve(path)
    tensors = load_file(str(folder / WEIGHTS), device="cpu")
    config = json.loads((folder / CONFIG).read_text())
    return tensors, config


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed (e.g. 'model.' -> a state dict)."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


class Trained:
    """A loaded checkpoint ready for inference: the network, the feature spec and
    normalisation, the window, the noise schedule and the baselines trained beside it."""

    def __init__(self, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                 path: Path | None = None) -> None:
        from model.baselines import Ridge
        from model.data import Normaliser
        from model.diffusion import Schedule
        from model.features import FeatureSpec
        from model.networks import IMUSIC, NetConfig

        self.path = path
        self.config = config
        self.net_config = NetConfig(**config["net"])
        self.net = IMUSIC(self.net_config)
        missing, unexpected = self.net.load_state_dict(split_prefix(tensors, "model"),
                                                       strict=False)
        if missing or unexpected:
            raise ValueError(f"checkpoint {path} does not match its config: missing {missing}, "
                             f"unexpected {unexpected}")
        self.net.eval()
        self.spec = FeatureSpec.from_dict(config["features"])
        self.norm = Normaliser.from_dict(config["norm"])
        self.past = int(config["past"])
        self.lookahead = int(config["lookahead"])
        self.schedule = Schedule(config["schedule"]["n_steps"], config["schedule"]["kind"])
        self.sampling = dict(config.get("sampling", {"steps": 4, "carry": 12, "seed": 0}))
        self.mean_face = (tensors["baseline.mean_face"].numpy()
                          if "baseline.mean_face" in tensors else None)
        self.ridge = (Ridge(tensors["baseline.ridge"].numpy(),
                            tuple(config["baselines"]["ridge_offsets"]))
                      if "baseline.ridge" in tensors else None)

    @property
    def window(self) -> int:
        """Frames per model window (past incl. the output frame, plus look-ahead)."""
        return self.past + self.lookahead


def load_model(path: str | Path | None = None) -> Trained:
    """Load a checkpoint folder for inference (``None`` or 'default': the bundled one)."""
    folder = resolve(path)
    tensors, config = load(folder)
    return Trained(tensors, config, folder)
