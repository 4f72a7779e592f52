"""Checkpoints: a folder with ``model.safetensors`` (tensors) and ``config.json`` (everything
else: architecture, feature spec, normalisation, rig, training data summary, metrics, the exact
training command and data seed). Loading never unpickles.

Loading checks before it trusts: :func:`load` turns an unreadable ``model.safetensors`` or
``config.json`` into a :class:`CheckpointError` naming the file; :func:`check_config` checks
that the config describes one consistent network (positive sizes, ``past + lookahead`` equal
to the network's window, as many feature sites and normalisation channels as the network has
inputs, the rig's sites equal to the feature sites); :class:`Trained` then checks every tensor's
shape against that network. Each refusal is one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
DEFAULT = Path(__file__).resolve().parent / "checkpoints" / "default"


MAX_TIMESTEPS = 100_000
"""Most diffusion timesteps a config may give (the schedule is allocated at load)."""
MAX_RIDGE_OFFSET = 3600
"""Largest ridge-baseline frame offset a config may give (a minute at 60 Hz)."""


SAMPLING_DEFAULTS: dict[str, Any] = {"steps": 4, "carry": 4, "carry_blend": 0.5, "seed": 0}
"""What a checkpoint whose config has no (or a partial) ``sampling`` record runs at."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


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
    tmp_c.write_text(_config_text(config))
    os.replace(tmp_w, folder / WEIGHTS)
    os.replace(tmp_c, folder / CONFIG)
    return folder


def _config_text(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=False) + "\n"


def save_config(folder: str | Path, config: dict[str, Any]) -> Path:
    """Rewrite only a checkpoint's ``config.json`` (atomically; the weights are untouched),
    after checking that it still describes the network (:func:`check_config`)."""
    folder = resolve(folder)
    check_config(config, folder / CONFIG)
    tmp_c = folder / (CONFIG + ".tmp")
    tmp_c.write_text(_config_text(config))
    os.replace(tmp_c, folder / CONFIG)
    return folder


def load(path: str | Path | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and config of a checkpoint folder (safetensors only; no pickle anywhere)."""
    folder = resolve(path)
    try:
        tensors = load_file(str(folder / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{folder / WEIGHTS}: not a readable safetensors file ({err}); "
                              "retrain or copy the checkpoint again") from None
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{folder / CONFIG}: not readable JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / CONFIG}: holds a {type(config).__name__}, "
                              "not a JSON object")
    return tensors, config


def _int(d: dict[str, Any], key: str, where: str, low: int) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise CheckpointError(f"{where}: {key} must be an integer >= {low}, got {v!r}")
    return v


def _dict(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise CheckpointError(f"{where}: '{key}' must be a JSON object, got {v!r:.60}")
    return v


def check_config(config: dict[str, Any], where: str | Path = CONFIG) -> None:
    """Raise :class:`CheckpointError` (naming ``where``) unless ``config`` describes one
    consistent network that :class:`Trained` can build and run."""
    from imusic.hardware.vocabulary import N_BLENDSHAPES
    from imusic.model.features import FeatureSpec
    from imusic.model.networks import NetConfig

    where = str(where)
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: not a JSON object")
    net = _dict(config, "net", where)
    known = set(NetConfig.__dataclass_fields__)
    if set(net) - known:
        raise CheckpointError(f"{where}: net has unknown fields {sorted(set(net) - known)}")
    sizes = {k: _int(net, k, where + ": net", 1) for k in
             ("n_features", "window", "n_out", "d_model", "n_heads", "n_timesteps")}
    for k in ("enc_layers", "den_layers"):
        _int(net, k, where + ": net", 1)
    if sizes["n_out"] != N_BLENDSHAPES:
        raise CheckpointError(f"{where}: net n_out is {sizes['n_out']}, imusic models output "
                              f"the {N_BLENDSHAPES} ARKit blendshapes")
    if sizes["d_model"] % sizes["n_heads"]:
        raise CheckpointError(f"{where}: net d_model {sizes['d_model']} is not a multiple of "
                              f"n_heads {sizes['n_heads']}")
    dropout = net.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout < 1.0:
        raise CheckpointError(f"{where}: net dropout must be a number in [0, 1), got {dropout!r}")
    past, lookahead = _int(config, "past", where, 1), _int(config, "lookahead", where, 0)
    if past + lookahead != sizes["window"]:
        raise CheckpointError(f"{where}: past {past} + lookahead {lookahead} does not match the "
                              f"network's window of {sizes['window']} frames")
    feats = _dict(config, "features", where)
    sites = feats.get("sites")
    if not isinstance(sites, list) or not all(isinstance(x, str) and x for x in sites) \
            or len(set(sites)) != len(sites):
        raise CheckpointError(f"{where}: features.sites must be a list of distinct site names")
    try:
        spec = FeatureSpec.from_dict(feats)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: features: {err}") from None
    for k in ("rate_hz", "ahrs_gain", "detrend_s"):
        v = getattr(spec, k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf") \
                or (k == "rate_hz" and v == 0):
            raise CheckpointError(f"{where}: features.{k} must be a finite number"
                                  f"{' > 0' if k == 'rate_hz' else ' >= 0'}, got {v!r}")
    if spec.n_features != sizes["n_features"]:
        raise CheckpointError(f"{where}: features.sites {list(spec.sites)} give "
                              f"{spec.n_features} feature channels, the network takes "
                              f"{sizes['n_features']}")
    rig = config.get("rig")
    if isinstance(rig, dict) and "sites" in rig and rig["sites"] != list(spec.sites):
        raise CheckpointError(f"{where}: rig.sites {rig['sites']!r:.200} differ from the "
                              f"features.sites {list(spec.sites)} the network was trained on")
    norm = _dict(config, "norm", where)
    for k in ("mean", "std"):
        v = norm.get(k)
        if not isinstance(v, list) or len(v) != sizes["n_features"]:
            n = len(v) if isinstance(v, list) else type(v).__name__
            raise CheckpointError(f"{where}: norm.{k} has {n} entries, the network takes "
                                  f"{sizes['n_features']} features")
        if not all(not isinstance(x, bool) and isinstance(x, (int, float))
                   and abs(x) < float("inf") for x in v):
            raise CheckpointError(f"{where}: norm.{k} must hold finite numbers")
    if not all(x > 0 for x in norm["std"]):
        raise CheckpointError(f"{where}: norm.std must be > 0 everywhere")
    if sizes["n_timesteps"] > MAX_TIMESTEPS:
        raise CheckpointError(f"{where}: net n_timesteps {sizes['n_timesteps']} is over "
                              f"{MAX_TIMESTEPS}")
    sched = _dict(config, "schedule", where)
    if not 1 <= _int(sched, "n_steps", where + ": schedule", 1) <= MAX_TIMESTEPS:
        raise CheckpointError(f"{where}: schedule n_steps {sched['n_steps']} is over "
                              f"{MAX_TIMESTEPS}")
    if sched.get("kind") not in ("cosine", "linear"):
        raise CheckpointError(f"{where}: schedule.kind must be 'cosine' or 'linear', "
                              f"got {sched.get('kind')!r:.60}")
    sampling = config.get("sampling", {})
    if not isinstance(sampling, dict):
        raise CheckpointError(f"{where}: 'sampling' must be a JSON object")
    for k, low in (("steps", 1), ("carry", 0), ("seed", 0)):
        if k in sampling:
            _int(sampling, k, where + ": sampling", low)
    blend = sampling.get("carry_blend", SAMPLING_DEFAULTS["carry_blend"])
    if isinstance(blend, bool) or not isinstance(blend, (int, float)) or not 0 <= blend <= 1:
        raise CheckpointError(f"{where}: sampling.carry_blend must be in [0, 1], got {blend!r}")
    base = config.get("baselines", {})
    offsets = base.get("ridge_offsets", []) if isinstance(base, dict) else None
    if not isinstance(offsets, list) or not all(
            isinstance(o, int) and not isinstance(o, bool) and abs(o) <= MAX_RIDGE_OFFSET
            for o in offsets):
        raise CheckpointError(f"{where}: baselines.ridge_offsets must be whole frame offsets "
                              f"within +-{MAX_RIDGE_OFFSET}, got {offsets!r:.80}")


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed (e.g. 'model.' -> a state dict)."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


class Trained:
    """A loaded checkpoint ready for inference: the network, the feature spec and
    normalisation, the window, the noise schedule and the baselines trained beside it."""

    def __init__(self, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                 path: Path | None = None) -> None:
        from imusic.model.baselines import Ridge
        from imusic.model.data import Normaliser
        from imusic.model.diffusion import Schedule
        from imusic.model.features import FeatureSpec
        from imusic.model.networks import IMUSIC, NetConfig

        self.path = path
        self.config = config
        where = (path / CONFIG) if path is not None else CONFIG
        check_config(config, where)
        self.net_config = NetConfig(**config["net"])
        state = split_prefix(tensors, "model")
        try:
            with torch.device("meta"):   # shapes only: nothing allocated for a tampered config
                expected = {k: tuple(v.shape)
                            for k, v in IMUSIC(self.net_config).state_dict().items()}
        except (RuntimeError, ValueError, AssertionError) as err:
            raise CheckpointError(f"{where}: the network it describes cannot be built "
                                  f"({err})") from None
        wrong = [f"{k} {tuple(state[k].shape)} (config: {v})" for k, v in expected.items()
                 if k in state and tuple(state[k].shape) != v]
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected or wrong:
            what = (f"shapes differ: {wrong[0]}" if wrong else
                    f"tensors missing: {missing[:3]}" if missing else
                    f"unexpected tensors: {unexpected[:3]}")
            raise CheckpointError(f"{path / WEIGHTS if path else WEIGHTS} does not match "
                                  f"{where}: {what}")
        self.net = IMUSIC(self.net_config)
        self.net.load_state_dict(state)
        self.net.eval()
        self.spec = FeatureSpec.from_dict(config["features"])
        self.norm = Normaliser.from_dict(config["norm"])
        self.past = int(config["past"])
        self.lookahead = int(config["lookahead"])
        self.schedule = Schedule(config["schedule"]["n_steps"], config["schedule"]["kind"])
        self.sampling: dict[str, Any] = {**SAMPLING_DEFAULTS, **config.get("sampling", {})}
        """DDIM ``steps``, ``carry``, ``carry_blend`` and ``seed`` the runtime and the
        evaluation use unless told otherwise (every key present)."""
        n_in, n_out = self.net_config.n_features, self.net_config.n_out
        offsets = config.get("baselines", {}).get("ridge_offsets", [])
        for key, shape in (("baseline.mean_face", (n_out,)),
                           ("baseline.ridge", (len(offsets) * n_in + 1, n_out))):
            if key in tensors and tuple(tensors[key].shape) != shape:
                raise CheckpointError(f"{path / WEIGHTS if path else WEIGHTS}: {key} has shape "
                                      f"{tuple(tensors[key].shape)}, {where} needs {shape}")
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
