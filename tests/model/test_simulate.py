"""imusic simulate: twin sessions in the session format, deterministic, labelled as twin."""

import hashlib

import h5py
import numpy as np
import pytest

from imusic.capture.aligned import read_aligned
from imusic.model.simulate import NEUTRAL_S, RAMP_S, load_take, resample_take


def _digest(path):
    al = read_aligned(path)
    h = hashlib.sha256()
    for a in (al.t, al.blendshapes, al.acc, al.gyro, al.mag, al.valid_arkit):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_simulate_command_makes_paired_deterministic_sessions(shared_data, tmp_path):
    from imusic.cli import main

    take = shared_data / "arkit" / "alexdjulin_llf" / "apfel.csv"
    args = ["simulate", "--subjects", "2", "--minutes", "0.2", "--motion", str(take),
            "--procedural", "--rig", "imusic6", "--seed", "3"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    assert main(args + ["-o", str(tmp_path / "b")]) == 0
    files = sorted(p.name for p in (tmp_path / "a").glob("*.h5"))
    assert files == ["id00_apfel.h5", "id00_procedural.h5", "id01_apfel.h5",
                     "id01_procedural.h5"]
    for f in files:
        assert _digest(tmp_path / "a" / f) == _digest(tmp_path / "b" / f)
    al = read_aligned(tmp_path / "a" / "id01_apfel.h5")
    assert al.attrs["source"] == "twin" and al.attrs["subject"] == "id01"
    assert al.attrs["take"] == "apfel" and al.rig_id == "imusic6"
    assert al.rate_hz == 60.0 and al.acc.shape[1:] == (6, 3)
    # the motion plus the still neutral start (NEUTRAL_S + RAMP_S)
    assert abs(al.n_frames - (0.2 * 60 / 2 + NEUTRAL_S + RAMP_S) * 60) <= 2
    assert al.attrs["performer"] == "alexdjulin_llf"
    # gravity is in the specific force; the sessions differ per subject (own errors/mounting)
    assert 8.0 < np.linalg.norm(al.acc, axis=-1).mean() < 11.5
    other = read_aligned(tmp_path / "a" / "id00_apfel.h5")
    assert not np.allclose(other.acc[:10], al.acc[:10])
    with h5py.File(tmp_path / "a" / "id01_apfel.h5", "r") as h5:
        assert h5.attrs["schema"] == "imusic.session"
        imu = h5["streams/imu"]
        labels = [x.decode() if isinstance(x, bytes) else x for x in imu["channel_labels"][()]]
        assert labels[:3] == [f"{al.sites[0]}.acc.x", f"{al.sites[0]}.acc.y",
                              f"{al.sites[0]}.acc.z"]
        assert labels[-2:] == ["device.time_us", "device.seq"]
        ts = imu["time_stamps"][()]
        assert 95 < 1 / np.median(np.diff(ts)) < 105
        assert h5["streams/blendshapes/time_series"].shape[1] == 61


def test_other_seed_gives_other_data(shared_data, tmp_path):
    from imusic.model.simulate import simulate_dataset

    a = simulate_dataset(tmp_path / "a", 1, 0.1, [], True, "imusic6", seed=1)
    b = simulate_dataset(tmp_path / "b", 1, 0.1, [], True, "imusic6", seed=2)
    assert _digest(a[0]) != _digest(b[0])


def test_face_lost_rows_become_invalid_frames(shared_data):
    src = load_take(shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv")
    lost = ~src.valid
    # 277 lost rows at 30 fps: roughly twice as many invalid 60 Hz frames
    assert 450 < lost.sum() < 650
    assert np.all(np.isnan(src.blendshapes[lost]))
    assert np.all(np.isfinite(src.blendshapes[src.valid]))


def test_resample_take_never_bridges_a_gap():
    t = np.arange(10) / 30.0
    v = np.arange(10, dtype=float)[:, None]
    found = np.ones(10, bool)
    found[4:6] = False
    out, valid = resample_take(t, v, found)
    grid = np.arange(0, t[-1] + 1e-9, 1 / 60)
    assert len(out) == len(grid)
    assert not valid[(grid > t[3] + 1e-9) & (grid < t[6] - 1e-9)].any()
    np.testing.assert_allclose(out[valid, 0], grid[valid] * 30, atol=1e-9)


def test_missing_take_is_named(tmp_path, capsys):
    from imusic.cli import main

    assert main(["simulate", "-o", str(tmp_path), "--motion", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_simulate_as_an_orientation_device(tmp_path, capsys):
    # --report orientation: what the emulator's on-device fusion would have sent (acc + Q14
    # quaternions, no gyro/mag blocks with --no-gyro --no-mag); the same twin otherwise
    from imusic.capture.session import SessionReader
    from imusic.cli import main
    from imusic.model.data import orientation_of

    base = ["simulate", "--subjects", "1", "--minutes", "0.1", "--motion", "none", "--seed", "5"]
    assert main(base + ["-o", str(tmp_path / "raw")]) == 0
    assert main(base + ["-o", str(tmp_path / "q"), "--report", "orientation", "--no-gyro",
                        "--no-mag"]) == 0
    assert "device sends acc+quat" in capsys.readouterr().out
    raw = read_aligned(tmp_path / "raw" / "id00_procedural.h5")
    al = read_aligned(tmp_path / "q" / "id00_procedural.h5")
    assert orientation_of(raw) == "ahrs" and orientation_of(al) == "reported"
    assert np.isnan(al.gyro).all() and np.isnan(al.mag).all()
    np.testing.assert_array_equal(al.acc, raw.acc)
    np.testing.assert_allclose(np.linalg.norm(al.quat, axis=-1), 1.0, atol=1e-5)
    assert al.attrs["report"] == "orientation" and not al.attrs["sends_gyro"]
    with SessionReader(tmp_path / "q" / "id00_procedural.h5") as r:
        imu = r.stream(r.keys_of_type("IMU")[0])
    quantities = {lb.split(".")[1] for lb in imu.spec.labels if not lb.startswith("device.")}
    assert quantities == {"acc", "quat"} and len(imu.spec.labels) == 12 * 7 + 2
    q = imu.time_series[:, [k for k, lb in enumerate(imu.spec.labels) if ".quat." in lb]]
    np.testing.assert_allclose(q * 16384, np.round(q * 16384), atol=1e-6)   # Q14, as sent


def test_simulate_refuses_no_gyro_for_a_raw_device(tmp_path, capsys):
    from imusic.cli import main

    code = main(["simulate", "-o", str(tmp_path / "x"), "--motion", "none", "--no-gyro"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--no-gyro needs --report orientation" in err[0]
    assert not (tmp_path / "x").exists()
