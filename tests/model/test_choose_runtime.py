"""scripts/choose_runtime.py chooses the runtime defaults on the validation sessions only, and
--apply makes them the checkpoint's defaults (the runtime and the evaluation pick them up)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import TINY

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "choose_runtime.py"


def _script():
    spec = importlib.util.spec_from_file_location("choose_runtime", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("choose_runtime", mod)   # its dataclasses look their module up
    spec.loader.exec_module(sys.modules["choose_runtime"])
    mod = sys.modules["choose_runtime"]
    return mod


@pytest.fixture(scope="module")
def val_ckpt(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint that early-stopped on validation head shape id02 (held out: id16 and
    take S07-001), trained on the toy data in a few seconds."""
    from imusic.model.train import TrainConfig, train

    out = tmp_path_factory.mktemp("valckpt") / "tiny"
    torch.manual_seed(0)
    cfg = {**TINY, "stage1_steps": 60, "stage2_steps": 60, "eval_every": 30,
           "val_identities": ["id02"]}
    train(toy_data, out, TrainConfig(**cfg),
          command="pytest val_ckpt", progress=False)
    return out


def _held_out(train: dict) -> tuple[set[str], set[str], set[str]]:
    """Held-out identities (incl. those of held-out subjects), takes and performers."""
    ids = {str(i) for i in train.get("holdout_identities", [])}
    return ids, set(train.get("holdout_takes", [])), set(train.get("holdout_performers", []))


def test_quick_run_scores_the_grid_and_applies_a_setting_the_runtime_uses(val_ckpt, toy_data,
                                                                          tmp_path):
    from imusic.model.checkpoint import load_model
    from imusic.model.evaluate import predict_imusic
    from imusic.model.runtime import Runtime

    mod = _script()
    ckpt = tmp_path / "ckpt"
    shutil.copytree(val_ckpt, ckpt)
    before = load_model(ckpt).sampling
    out = tmp_path / "choose.json"
    rc = mod.main(["--model", str(ckpt), "--data", str(toy_data), "--quick",
                   "--budget-ms", "1000", "--apply", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    rows = doc["results"]
    # the quick grid: steps 1, 2 x (carry 0, carry 4 at 0.5), each scored and timed
    assert {(r["steps"], r["carry"], r["carry_blend"]) for r in rows} == {
        (1, 0, 0.0), (1, 4, 0.5), (2, 0, 0.0), (2, 4, 0.5)}
    assert all(r["mae"] > 0 and r["jitter"] > 0 and r["p99_ms"] > 0 and r["frames"] > 200
               for r in rows)
    assert doc["validation_sessions"] == ["id02_a.h5"]
    chosen = doc["chosen"]
    assert sum(r["chosen"] for r in rows) == 1 and chosen == next(r for r in rows if r["chosen"])
    # --apply round-trips: the checkpoint's sampling holds the choice and its provenance ...
    tr = load_model(ckpt)
    assert (tr.sampling["steps"], tr.sampling["carry"], tr.sampling["carry_blend"]) == (
        chosen["steps"], chosen["carry"], chosen["carry_blend"])
    assert tr.sampling["carry"] != before["carry"]   # 6 before: the grid has 0 and 4
    assert tr.sampling["chosen"]["validation_sessions"] == ["id02_a.h5"]
    assert tr.sampling["chosen"]["previous"]["carry"] == before["carry"]
    # ... the runtime takes it as its default ...
    rt = Runtime.from_checkpoint(ckpt)
    assert rt.steps == chosen["steps"] and rt.sampler.carry == chosen["carry"]
    assert rt.sampler.carry_blend == chosen["carry_blend"]
    # ... and so does the evaluation (its defaults give the chosen setting's output)
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(80, tr.net_config.n_features)).astype(np.float32)]
    by_default = predict_imusic(tr, feats)[0]
    explicit = predict_imusic(tr, feats, chosen["steps"], chosen["carry"],
                              carry_blend=chosen["carry_blend"])[0]
    assert (by_default == explicit).all()


def test_validation_sessions_never_meet_the_held_out_sets_on_the_toy_data(val_ckpt, toy_data):
    from imusic.model.checkpoint import load_model
    from imusic.model.data import load_recordings, split_from_config

    mod = _script()
    tr = load_model(val_ckpt)
    picked = mod.validation_files(tr, toy_data)
    # the split training used, on fully loaded recordings, gives the same sessions
    sp = split_from_config(load_recordings(toy_data, tr.spec), tr.config["train"])
    assert [r.path for r in sp.val] == picked
    ids, takes, performers = _held_out(tr.config["train"])
    ids |= {r.identity for r in sp.subjects}          # held-out subject id16
    for r in sp.val:
        assert r.identity not in ids and r.take not in takes and r.performer not in performers
    assert picked and not {p.name for p in picked} & {
        r.path.name for part in sp.parts().values() for r in part}


def test_bundled_checkpoint_validates_on_head_shapes_14_15_and_nothing_held_out(
        tmp_path, shared_data):
    """The bundled checkpoint's own sessions (its recorded simulate command, a few frames of
    each, for head shapes 13-16 and 19 with every motion source): the script's validation list
    is exactly its validation head shapes on the seen takes, apart from every held-out set."""
    import shlex

    from imusic.model.checkpoint import load_model
    from imusic.model.simulate import load_take, plan, write_session

    mod = _script()
    tr = load_model(None)
    cmd = shlex.split(tr.config["data_commands"][0])
    takes = [load_take(shared_data / Path(p).relative_to("../shared/data"))
             for p in cmd[cmd.index("--motion") + 1:cmd.index("--procedural")]]
    for identity, subject, src, sl, sseed in plan(20, 4, takes, True, 0):
        if identity in (13, 14, 15, 16, 19):
            write_session(tmp_path / f"{subject}_{src.name}.h5", src,
                          slice(sl.start, sl.start + 12), subject, identity, "imusic11", 0, sseed)
    picked = sorted(p.name for p in mod.validation_files(tr, tmp_path))
    val = tr.config["data"]["validation_identities"]
    assert picked == sorted(f"{s}_{t}.h5" for s in val["subjects"] for t in val["takes"])
    assert len(picked) == 8 and val["subjects"] == ["id14", "id15"]
    ids, takes_out, performers = _held_out(tr.config["train"])
    from imusic.model.data import session_meta

    for name in picked:
        m = session_meta(tmp_path / name)
        assert m.identity not in ids and m.take not in takes_out
        assert m.performer not in performers


def test_a_checkpoint_without_a_validation_split_is_refused(tiny_ckpt, toy_data, capsys):
    """tiny_ckpt held out id16 and S07-001 and validated on nothing else: no defaults can be
    chosen without a held-out set, one line, exit 1."""
    mod = _script()
    rc = mod.main(["--model", str(tiny_ckpt), "--data", str(toy_data), "--quick",
                   "--json", str(toy_data.parent / "x.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no validation split" in err[0]


def test_the_rule_budget_then_mae_then_jitter_then_fewer_steps():
    mod = _script()
    cfg = mod.ChoiceConfig(budget_ms=10.0, mae_tol=0.05, jitter_tol=0.01)

    def row(steps, mae, jitter, p99, carry=4):
        return {"steps": steps, "carry": carry, "carry_blend": 0.5, "mae": mae,
                "jitter": jitter, "p99_ms": p99}

    over = row(8, 1.00, 0.10, 12.0)              # best MAE, over the budget: never chosen
    a = row(4, 1.50, 0.30, 6.0)                  # lowest MAE within the budget
    b = row(2, 1.54, 0.20, 4.0)                  # a tie on MAE, calmer: wins
    c = row(1, 1.54, 0.205, 2.0)                 # as calm within 0.01, fewer steps: wins over b
    d = row(1, 1.60, 0.10, 2.0)                  # calmest but 0.1 worse: not a tie
    assert mod.choose([over, a, d], cfg) is a
    assert mod.choose([over, a, b, d], cfg) is b
    assert mod.choose([over, a, b, c, d], cfg) is c
    assert mod.choose([over], cfg) is None


def test_the_scores_are_the_runtimes_output(val_ckpt, toy_data):
    """The grid is scored with model.evaluate's streaming sampler (batched over sessions); the
    product's Runtime fed the same session tick by tick gives the same frames, apart from the
    first few after the neutral-pose calibration (the runtime starts them without a carried
    prefix)."""
    from imusic.capture.aligned import read_aligned
    from imusic.model.checkpoint import load_model
    from imusic.model.data import load_recording
    from imusic.model.evaluate import eval_mask, predict_imusic
    from imusic.model.runtime import Runtime

    tr = load_model(val_ckpt)
    path = toy_data / "id02_a.h5"
    rec, al = load_recording(path, tr.spec), read_aligned(path)
    f = tr.norm(rec.features)
    f[~rec.valid_imu] = 0.0
    offline = predict_imusic(tr, [f], 1, 4, carry_blend=0.5)[0]
    rt = Runtime(tr, steps=1, carry=4, carry_blend=0.5)
    frames = []
    for k in range(len(al.t)):
        rt.push(al.acc[k:k + 1], al.gyro[k:k + 1], al.mag[k:k + 1], al.t[k:k + 1])
        frames += rt.poll()
    idx = np.round((np.array([fr.t for fr in frames]) - al.t[0]) * tr.spec.rate_hz).astype(int)
    live = np.array([fr.blendshapes for fr in frames])
    mask = eval_mask(rec, tr.past, tr.lookahead)
    keep = (idx >= 0) & (idx < len(mask))
    keep[keep] = mask[idx[keep]]
    first = np.flatnonzero(mask)[0]
    later = keep & (idx >= first + 8)
    diff = np.abs(live[later] - offline[idx[later]])
    assert later.sum() > 300 and diff.max() < 1e-4
    assert np.abs(live[keep] - offline[idx[keep]]).mean() < 0.01 * offline[mask].std(0).mean()


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.text(max_size=120).map(lambda t: ["imusic simulate " + t]),
    st.lists(st.text(max_size=40), max_size=3),
    st.sampled_from([None, 7, "imusic simulate", ["imusic simulate -o d --subjects 0"],
                     ["imusic simulate -o d --minutes -1"], ["imusic simulate -o 'd"]])))
def test_a_recorded_data_command_parses_or_is_refused_in_one_line(commands):
    """The simulate command a checkpoint records (its config is data) parses as imusic
    simulate parses it, or is refused as one line; never a usage dump or SystemExit."""
    mod = _script()
    try:
        a = mod.data_command({"data_commands": commands})
    except mod.Refused as err:
        assert "\n" not in str(err) and str(err)
    else:
        assert a.subjects >= 1 and a.minutes > 0 and a.out
