"""Training reduces the loss, resumes, and evaluation produces its table, JSON and plots."""

import json

import numpy as np
import pytest
import torch

from .conftest import TINY
from imusic.model.baselines import Ridge, windowed
from imusic.model.data import Normaliser, WindowDataset, load_recordings, split
from imusic.model.train import TrainConfig, train


def test_training_reduces_the_loss(tiny_ckpt):
    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    hist = cfg["metrics"]["history"]
    s1 = [h for h in hist if h["stage"] == 1]
    assert len(s1) >= 2
    assert s1[-1]["stage1_mae100"] < s1[0]["stage1_mae100"]
    ev = cfg["metrics"]["eval"]["heldout_subjects"]
    assert ev["stage1"]["mae"] < ev["mean_face"]["mae"]
    assert cfg["train_state"]["done"]


def test_loss_goes_down_step_by_step(toy_data):
    """The stage-1 loss on a fixed batch drops with training (a direct check)."""
    from imusic.model.networks import IMUSIC, NetConfig
    from imusic.model.train import Stage1Loss

    recs = load_recordings(toy_data)
    norm = Normaliser.fit(recs)
    ds = WindowDataset(recs, norm, 24, 2)
    x, y, m = (torch.stack(t) for t in zip(*(ds[i] for i in range(0, len(ds), 50))))
    torch.manual_seed(0)
    net = IMUSIC(NetConfig(n_features=x.shape[-1], window=26, d_model=32, n_heads=4,
                           enc_layers=1, den_layers=1, dropout=0.0))
    loss = Stage1Loss(net)
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    first = loss(x, y, m).item()
    for _ in range(60):
        opt.zero_grad()
        l = loss(x, y, m)
        l.backward()
        opt.step()
    assert l.item() < 0.5 * first


def test_split_by_subject_and_take(toy_data):
    recs = load_recordings(toy_data)
    sp = split(recs, ["id16"], ["S07-001"])
    assert {r.subject for r in sp.train} == {"id00", "id01", "id02"}
    assert {r.take for r in sp.train} == {"a"}
    assert {(r.subject, r.take) for r in sp.subjects} == {("id16", "a")}
    assert {r.subject for r in sp.takes} == {"id00", "id01", "id02"}
    assert {r.take for r in sp.takes} == {"S07-001"}


def test_windows_skip_invalid_output_frames(toy_data):
    recs = load_recordings(toy_data)
    lost = [r for r in recs if not r.valid_arkit.all()][0]
    assert not lost.valid_arkit[100:140].any()
    ds = WindowDataset([lost], Normaliser.fit([lost]), 24, 2)
    outs = {e - 2 - 1 for _, e in ds.index}
    assert not outs & set(range(100, 140))
    assert len(ds) == lost.n_frames - 26 + 1 - 40


def test_resume_continues_from_the_saved_step(toy_data, tmp_path):
    cfg = TrainConfig(**{**TINY, "stage1_steps": 40, "stage2_steps": 40, "save_every": 20,
                         "final_eval": False})
    out = tmp_path / "r"
    train(toy_data, out, TrainConfig(**{**cfg.__dict__, "stage2_steps": 20}), progress=False)
    state = json.loads((out / "config.json").read_text())["train_state"]
    assert state["done"]
    # pretend it was interrupted at stage 2 step 20 of 40, then resume
    c = json.loads((out / "config.json").read_text())
    c["train_state"] = {"stage": 2, "step": 20, "elapsed_s": 1.0}
    (out / "config.json").write_text(json.dumps(c))
    res = train(toy_data, out, cfg, resume=True, progress=False)
    assert res["train_state"]["done"] if "train_state" in res else True
    final = json.loads((out / "config.json").read_text())["train_state"]
    assert final["done"] and final["elapsed_s"] > 1.0


def test_unknown_setting_is_named(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"stage1_step": 3}')
    with pytest.raises(ValueError, match="stage1_step"):
        TrainConfig.from_json(p)


def test_ridge_recovers_a_linear_map(toy_data):
    recs = load_recordings(toy_data)[:2]
    norm = Normaliser.fit(recs)
    w = np.random.default_rng(0).normal(0, 0.05, (norm.mean.size, 52)).astype(np.float32)
    for r in recs:
        r.blendshapes = (norm(r.features) @ w + 0.3).astype(np.float32)
        r.valid_arkit[:] = True
    ridge = Ridge.fit(recs, norm, lam=1e-3, offsets=(0,), stride=1)
    pred = ridge.predict(norm(recs[0].features))
    np.testing.assert_allclose(pred, recs[0].blendshapes, atol=2e-3)
    assert windowed(np.arange(5.0)[:, None], (-1, 0, 1)).shape == (5, 3)


def test_eval_command_writes_table_json_and_plots(tiny_ckpt, toy_data, tmp_path, capsys):
    from imusic.cli import main

    rc = main(["eval", "--model", str(tiny_ckpt), "--data", str(toy_data), "--out",
               str(tmp_path / "ev"), "--steps", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    for word in ("heldout_subjects", "heldout_takes", "mean_face", "ridge", "stage1", "imusic",
                 "brows", "gaze", "jaw", "jitter"):
        assert word in out
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]
    r = res["heldout_takes"]["imusic"]
    assert set(r["regions"]) == {"brows", "eyes", "gaze", "cheeks_nose", "mouth", "jaw",
                                 "tongue"}
    assert len(r["per_blendshape"]) == 52 and r["frames"] > 0
    # the headline figure leaves out gaze (eyeLook*) and tongueOut, which are reported apart
    per = r["per_blendshape"]
    seen = [v for n, v in per.items() if not n.startswith("eyeLook") and n != "tongueOut"]
    assert len(seen) == 43
    assert r["mae_no_gaze_tongue"] == pytest.approx(np.mean(seen))
    assert r["mae"] == pytest.approx(np.mean(list(per.values())))
    assert r["regions"]["tongue"] == pytest.approx(per["tongueOut"])
    assert r["regions"]["gaze"] == pytest.approx(
        np.mean([v for n, v in per.items() if n.startswith("eyeLook")]))
    # and so does the printed table: the headline column, gaze and tongue columns, all 52
    header = next(line for line in out.splitlines() if "method" in line)
    columns = [c.strip() for c in header.strip().strip("┃").split("┃")]
    assert columns[:2] == ["method", "all (no gaze/tongue)"], columns
    assert columns[-5:] == ["gaze", "tongue", "all 52", "vel err", "jitter"], columns
    # the last table is heldout_takes; its imusic row's first figure is the headline
    row = [line for line in out.splitlines() if line.strip("│┃ ").startswith("imusic ")][-1]
    cells = [c.strip() for c in row.strip().strip("│┃").split("│")]
    assert float(cells[1]) == pytest.approx(r["mae_no_gaze_tongue"], abs=0.006), row
    assert float(cells[-3]) == pytest.approx(r["mae"], abs=0.006), row
    pngs = sorted(p.name for p in (tmp_path / "ev").glob("*.png"))
    assert "seen_in_training" not in res
    assert "model_heldout_takes_per_blendshape.png" in pngs
    assert "model_heldout_takes_trajectories.png" in pngs
    assert (tmp_path / "ev" / pngs[0]).read_bytes()[:4] == b"\x89PNG"


def test_eval_command_names_a_bad_folder(tiny_ckpt, tmp_path, capsys):
    from imusic.cli import main

    assert main(["eval", "--model", str(tiny_ckpt), "--data", str(tmp_path)]) == 2
    assert "imusic simulate" in capsys.readouterr().err


def test_train_command_writes_a_checkpoint(toy_data, tmp_path, capsys):
    from imusic.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "stage1_steps": 10, "stage2_steps": 10,
                               "eval_every": 0}))
    out = tmp_path / "ck"
    assert main(["train", "--data", str(toy_data), "--out", str(out), "--config", str(cfg),
                 "--no-eval", "--quiet"]) == 0
    c = json.loads((out / "config.json").read_text())
    assert c["train"]["stage1_steps"] == 10 and c["train_state"]["done"]
    assert "checkpoint" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(out)]) == 2


def _torchrun(args: list[str], timeout_s: float = 240.0):
    """``torchrun --nproc_per_node=2 -m imusic ARGS`` in a session of its own; on timeout the
    whole group is killed (a hung rank must not outlive the test) and the test fails."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc_per_node=2", "-m",
                             "imusic", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=Path(__file__).resolve().parents[2],
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not end within {timeout_s:g} s: {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_runs_under_torchrun_unchanged(toy_data, tmp_path):
    """Two CPU processes (gloo) under torchrun: DistributedDataParallel + DistributedSampler,
    rank 0 writes the checkpoint."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "stage1_steps": 6, "stage2_steps": 6, "eval_every": 0,
                               "final_eval": False}))
    out = tmp_path / "ddp"
    r = _torchrun(["train", "--data", str(toy_data), "--out", str(out), "--config", str(cfg),
                   "--quiet"])
    assert r.returncode == 0, r.stderr[-3000:]
    c = json.loads((out / "config.json").read_text())
    assert c["train_state"]["done"]
    assert r.stdout.count("checkpoint:") == 1


def test_an_early_stop_under_torchrun_ends_every_rank(toy_data, tmp_path):
    """Rank 0 decides an early stop (lr 0: the validation MAE can never improve, so the second
    evaluation stops each stage); every rank leaves the loop with it. Before, rank 0 left
    alone and rank 1 waited for ever in the next gradient all-reduce."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "stage1_steps": 400, "stage2_steps": 400, "lr": 0.0,
                               "eval_every": 2, "patience": 1, "val_fraction": 0.25,
                               "final_eval": False}))
    out = tmp_path / "ddp-early"
    r = _torchrun(["train", "--data", str(toy_data), "--out", str(out), "--config", str(cfg),
                   "--quiet"])
    assert r.returncode == 0, r.stderr[-3000:]
    history = json.loads((out / "config.json").read_text())["metrics"]["history"]
    stops = [h for h in history if h.get("early_stop")]
    assert [(h["stage"], h["step"]) for h in stops] == [(1, 4), (2, 4)], history


def test_untrained_stage1_is_the_mean_face(toy_data, tmp_path):
    """With no training step at all the stage-1 regressor scores exactly the mean face (its
    head starts there); PyTorch's default init started it at about 0.6 per blendshape, and a
    short run scored 3x worse than the mean face."""
    from .conftest import TINY
    from imusic.model.train import TrainConfig, train

    cfg = train(toy_data, tmp_path / "zero", TrainConfig(**{**TINY, "stage1_steps": 0,
                                                          "stage2_steps": 0}),
                command="pytest", progress=False)
    ev = cfg["metrics"]["eval"]["heldout_subjects"]
    assert abs(ev["stage1"]["mae"] - ev["mean_face"]["mae"]) < 1e-3
