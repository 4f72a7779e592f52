"""A tampered or inconsistent checkpoint is refused when loaded: one CheckpointError naming the
file and what is wrong, never another exception (fuzzed with hypothesis)."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.model import checkpoint as ckpt
from imusic.model.checkpoint import CheckpointError, Trained, check_config, load_model

BUNDLED = ckpt.default_checkpoint()
TENSORS, CONFIG = ckpt.load(BUNDLED)
N_FEATURES = len(CONFIG["norm"]["mean"])
"""Feature channels of the bundled checkpoint (so many per face site, the reference has none)."""
N_FACE_SITES = len(CONFIG["features"]["sites"]) - 1


def _copy(tmp_path: Path, config: dict | None = None) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(BUNDLED, folder)
    if config is not None:
        (folder / ckpt.CONFIG).write_text(json.dumps(config))
    return folder


def _tampered(**changes) -> dict:
    c = copy.deepcopy(CONFIG)
    for path, value in changes.items():
        *head, last = path.split("__")
        d = c
        for k in head:
            d = d[k]
        d[last] = value
    return c


def test_bundled_config_passes():
    check_config(CONFIG, "bundled")


def test_garbage_weights_are_named(tmp_path):
    folder = _copy(tmp_path)
    (folder / ckpt.WEIGHTS).write_bytes(b"\x07" * 4000)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_model(folder)


def test_garbage_config_is_named(tmp_path):
    folder = _copy(tmp_path)
    (folder / ckpt.CONFIG).write_bytes(b"\xff\xfe{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not readable JSON"):
        load_model(folder)


@pytest.mark.parametrize("changes, fragment", [
    ({"net__window": -5}, "window must be an integer >= 1"),
    ({"past": -5}, "past must be an integer >= 1"),
    ({"past": 40}, "does not match the network's window"),
    ({"norm__mean": CONFIG["norm"]["mean"][:-1]}, f"norm.mean has {N_FEATURES - 1} entries"),
    ({"norm__std": CONFIG["norm"]["std"] + [1.0]}, f"norm.std has {N_FEATURES + 1} entries"),
    ({"features__sites": CONFIG["features"]["sites"][1:]},
     f"give {N_FEATURES - N_FEATURES // N_FACE_SITES} feature channels"),
    ({"features__sites": ["cheek"] + CONFIG["features"]["sites"][1:]}, "rig.sites"),
    ({"net__d_model": 32}, "does not match"),
    ({"net__n_out": 61}, "n_out is 61"),
    ({"schedule__kind": "quadratic"}, "schedule.kind"),
])
def test_inconsistent_config_is_refused_naming_the_file(tmp_path, changes, fragment):
    folder = _copy(tmp_path, _tampered(**changes))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert fragment in str(err.value)
    assert str(folder) in str(err.value)
    assert "\n" not in str(err.value)


def test_baseline_of_the_wrong_shape_is_refused():
    bad = dict(TENSORS)
    bad["baseline.mean_face"] = TENSORS["baseline.mean_face"][:10]
    with pytest.raises(CheckpointError, match="baseline.mean_face has shape"):
        Trained(bad, CONFIG, BUNDLED)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=8)


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = sorted(_paths(CONFIG))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), st.booleans(), _json), min_size=1,
                      max_size=3))
def test_fuzz_config_values(edits):
    """Any value anywhere (or a key removed): the model loads, or CheckpointError says why."""
    c = copy.deepcopy(CONFIG)
    for path, delete, value in edits:
        d = c
        for k in path[:-1]:
            if not isinstance(d, dict) or k not in d:
                break
            d = d[k]
        else:
            if isinstance(d, dict):
                if delete:
                    d.pop(path[-1], None)
                else:
                    d[path[-1]] = value
    try:
        Trained(TENSORS, c, BUNDLED)
    except CheckpointError as err:
        assert "\n" not in str(err)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_config_file_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "c"
        folder.mkdir()
        (folder / ckpt.WEIGHTS).symlink_to(BUNDLED / ckpt.WEIGHTS)
        (folder / ckpt.CONFIG).write_bytes(data)
        with pytest.raises(CheckpointError):
            load_model(folder)
