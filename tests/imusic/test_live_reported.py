"""``imusic live`` with a checkpoint trained on reported orientation, from the IMUSIC paper's
kind of device: ``imusic emulate --report orientation --no-gyro --no-mag`` (acceleration and
the on-device quaternion only, 6-axis fusion). The checkpoint is trained here, in seconds, on
twin sessions of the same rig simulated as that device (``model.simulate.DeviceOutput``).

Live must equal offline: the checkpoint's output on the emulator's own samples (its truth log:
true sample times, no wire, no clock map) at the times the live run published."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pylsl
import pytest
import torch

from imusic.capture.aligned import read_aligned
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.cli import main
from imusic.model.simulate import DeviceOutput, simulate_dataset
from .test_live import _collect, _run_cli, offline_predictions, truth_at

pytestmark = pytest.mark.timeout(200)

TINY = {"stage1_steps": 200, "stage2_steps": 60, "d_model": 32, "n_heads": 4, "enc_layers": 1,
        "den_layers": 1, "past": 24, "lookahead": 2, "batch_size": 16, "carry_max": 4,
        "save_every": 0, "threads": 1, "warmup": 20, "lr": 3e-3, "final_eval": False,
        "eval_every": 1000, "calibrate": False}
"""A training budget of a few seconds on one core. Detrended features, not the neutral-pose
calibration: the emulator's procedural motion has no still neutral start, so the live stream
and the offline replay would each calibrate on their own stillest window (the calibrated
runtime is tested in tests/model/test_runtime.py and test_calibration.py)."""
PAPER_DEVICE = DeviceOutput("orientation", gyro=False, mag=False)
"""What the IMUSIC authors' ESP32 sends: acceleration and quaternion, no magnetometer."""
LIVE_S = 10


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sessions folder, checkpoint): imusic11 twin sessions as the paper's device records
    them, and a tiny checkpoint trained on them (features from the reported orientation)."""
    from imusic.model.train import TrainConfig, train

    root = tmp_path_factory.mktemp("reported")
    data = root / "sessions"
    simulate_dataset(data, subjects=3, minutes=0.5, takes=(), use_procedural=True, seed=7,
                     output=PAPER_DEVICE)
    torch.manual_seed(0)
    config = train(data, root / "ckpt", TrainConfig(**TINY), command="pytest reported",
                   progress=False)
    assert config["features"]["orientation"] == "reported"
    return data, root / "ckpt"


def _paper_device(unique_name: str, seconds: float = 40.0):
    return Emulator.run_in_thread(EmulatorConfig(
        transport="serial", rig="imusic11", rate_hz=100, seconds=seconds, seed=4,
        report="orientation", gyro=False, mag=False, publish_truth=True,
        truth_name=f"{unique_name}-truth"))


def test_runtime_features_are_the_training_features(reported):
    # Samples on the 60 Hz grid: the runtime's streaming features are the ones training
    # computed from the same session, bit for bit (same extractor, implied rate included).
    from imusic.model.data import load_recording
    from imusic.model.runtime import Runtime

    data, ckpt = reported
    path = sorted(data.glob("*.h5"))[0]
    al = read_aligned(path)
    assert al.has_quat and not al.has_gyro and not np.isfinite(al.mag).any()
    rt = Runtime.from_checkpoint(ckpt)
    want = rt.trained.norm(load_recording(path, rt.spec, cache=False).features)
    got = []
    for k in range(len(al.t)):
        rt.push(al.acc[k:k + 1], None, None, al.t[k:k + 1], quat=al.quat[k:k + 1])
        while rt.ready():
            rt.step(sample=False)
            got.append(rt.feats[-1].copy())
    got = np.stack(got)
    assert len(got) >= len(want) - 1   # (the last tick may wait for a sample after it)
    np.testing.assert_allclose(got, want[:len(got)], atol=1e-5)


def _device_rows(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A session's IMU stream as recorded: (rows, timestamps, labels) at the device rate."""
    from imusic.capture.session import SessionReader

    with SessionReader(path) as reader:
        data = reader.stream(reader.keys_of_type("IMU")[0])
    return np.asarray(data.time_series), np.asarray(data.time_stamps), data.spec.labels


def _streamed_features(rt, rows: np.ndarray, ts: np.ndarray, labels: list[str]) -> np.ndarray:
    layout = rt.layout(labels)
    out = []
    for i in range(0, len(ts), 7):
        rt.push_rows(rows[i:i + 7], ts[i:i + 7], layout)
        while rt.ready():
            rt.step(sample=False)
            out.append(rt.feats[-1].copy())
    return np.stack(out)


def test_device_rows_by_label_and_either_quaternion_sign(reported):
    # The session's own 100 Hz acc+quat rows, channels found by label: features are finite,
    # move, and do not change when a device sends q and -q (the same rotation) in turn.
    from imusic.model.runtime import Runtime

    data, ckpt = reported
    rows, ts, labels = _device_rows(sorted(data.glob("*.h5"))[1])
    assert not any(".gyro." in lb or ".mag." in lb for lb in labels)
    plain = _streamed_features(Runtime.from_checkpoint(ckpt), rows, ts, labels)
    flipped = rows.copy()
    quat_cols = [k for k, lb in enumerate(labels) if ".quat." in lb]
    flipped[1::2, quat_cols] *= -1.0
    other = _streamed_features(Runtime.from_checkpoint(ckpt), flipped, ts, labels)
    assert np.isfinite(plain).all() and plain[60:].std(axis=0).mean() > 0.05
    np.testing.assert_allclose(other, plain, atol=1e-4)
    rt = Runtime.from_checkpoint(ckpt)
    with pytest.raises(ValueError, match="need quat samples"):
        rt.push(rows[:1, :3].reshape(1, 1, 3).repeat(12, 1), None, None, ts[:1])


def test_live_runs_a_reported_checkpoint_on_the_paper_device(reported, unique_name):
    _, ckpt = reported
    with _paper_device(unique_name) as emu:
        name = f"{unique_name}-pred"
        th, result = _run_cli(["live", "--serial", emu.emulator.serial_path, "--model",
                               str(ckpt), "--seconds", str(LIVE_S), "--name", name, "--quiet"])
        found = pylsl.resolve_byprop("name", name, 1, 30.0)
        assert found, "imusic live published no predictions stream"
        inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
        rows, ts = _collect(inlet, th)
        th.join(30)
        info = emu.emulator.info
        log = emu.emulator.truth()
    assert result.get("code") == 0
    assert info.has_quat and not info.has_gyro and not info.has_mag
    assert log.gyro is None and log.mag is None

    # 60 Hz: every frame on the tick grid, nearly every tick published
    steps = np.diff(ts) * 60.0
    assert np.all(steps > 0.5) and np.allclose(steps, np.round(steps), atol=0.01)
    assert np.median(steps) == pytest.approx(1.0, abs=0.01)
    assert len(ts) >= 0.9 * (ts[-1] - ts[0]) * 60.0 and len(ts) > 60 * (LIVE_S - 5)
    pred = rows[:, :52]
    assert np.isfinite(rows).all() and np.all(rows[:, 52:] == 0)
    # published values are clipped to [0, 1] (model.runtime.stream_values)
    assert pred.min() >= 0.0 and pred.max() <= 1.0, (pred.min(), pred.max())

    # live equals offline on the same samples
    keep = ts > ts[0] + 2.0
    offline = offline_predictions(log, ts[keep], ckpt)
    truth = truth_at(log, ts[keep])
    live_mae = float(np.abs(pred[keep] - truth).mean() * 100)
    offline_mae = float(np.abs(offline - truth).mean() * 100)
    apart = float(np.abs(pred[keep] - offline).mean() * 100)
    moves = float(pred[keep].std(axis=0).mean() * 100)
    print(f"live MAE x100 {live_mae:.3f}, offline {offline_mae:.3f}; live vs offline "
          f"{apart:.3f}; output spread {moves:.3f}")
    # (what differs: the live ticks fall on the LSL clock's 60 Hz grid, offline on the
    # twin's true time, so the quaternions are interpolated at other instants)
    assert abs(live_mae - offline_mae) < 1.0, (live_mae, offline_mae)
    assert apart < 0.25 * moves, (apart, moves)   # the output moves; live follows offline
    lo, hi = offline.min(axis=0), offline.max(axis=0)
    margin = 0.25 * (hi - lo) + 0.01
    assert np.all(pred[keep] >= lo - margin) and np.all(pred[keep] <= hi + margin)


def test_a_reported_checkpoint_on_a_raw_device_says_one_line(reported, unique_name, capfd):
    _, ckpt = reported
    config = EmulatorConfig(transport="serial", rig="imusic11", rate_hz=100, seconds=20.0,
                            seed=4, publish_truth=False)
    with Emulator.run_in_thread(config) as emu:
        code = main(["live", "--serial", emu.emulator.serial_path, "--model", str(ckpt),
                     "--seconds", "20", "--name", f"{unique_name}-pred", "--quiet"])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("imusic live: the model")]
    assert len(lines) == 1, err
    assert (f"({ckpt}) needs channels frontalis_r.quat.w|x|y|z" in lines[0]
            and "sends acc+gyro+mag per site" in lines[0]), lines[0]
