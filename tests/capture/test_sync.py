"""Sync: clock offsets, dejitter, gaps, tap, lag and the aligned group (offline sessions)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from .twin_session import (TAP_TIME, blendshape_stream_info, imu_stream_info, twin_take)

from imusic.capture.aligned import read_aligned
from imusic.capture.livelink_csv import read_take
from imusic.capture.session import SessionReader, SessionWriter, StreamSpec
from imusic.capture.sync import (SyncError, apply_clock_offsets, dejitter, parse_imu,
                          resample_segments, segments, sync_session)
from imusic.hardware.motion import Motion
from imusic.hardware.physics import simulate

FRAME = 1 / 60


def write_session(path, take, lag, *, base=5000.0, imu_jitter=0.002, bs_jitter=0.003,
                  imu_offset=0.0, seed=0, face_found=None):
    """A session as a recorder would write it: ARKit stamped ``lag`` s late, IMU jittered,
    the IMU sender clock ``imu_offset`` s behind the recorder (with its measured offsets)."""
    rng = np.random.default_rng(seed)
    with SessionWriter(path) as w:
        k = w.add_stream(imu_stream_info(take, "imu"))
        w.append(k, take.imu_rows,
                 base - imu_offset + take.imu_t + rng.normal(0, imu_jitter, len(take.imu_t)))
        for t in np.arange(0, take.imu_t[-1], 5.0):
            w.add_clock_offset(k, base + t, imu_offset + rng.normal(0, 1e-4))
        b = w.add_stream(blendshape_stream_info("arkit"))
        ok = np.ones(len(take.bs_t), bool) if face_found is None else face_found
        w.append(b, take.bs_rows[ok],
                 base + take.bs_t[ok] + lag + rng.normal(0, bs_jitter, int(ok.sum())))
    return path


@pytest.fixture(scope="module")
def take():
    return twin_take(30.0, imu_rate=100.0, seed=3)


def test_clock_offsets_are_interpolated():
    offsets = np.array([[10.0, 1.0], [20.0, 3.0]])   # sender times 9 and 17
    ts = np.array([0.0, 9.0, 13.0, 17.0, 30.0])
    np.testing.assert_allclose(apply_clock_offsets(ts, offsets) - ts, [1, 1, 2, 3, 3])
    np.testing.assert_array_equal(apply_clock_offsets(ts, np.zeros((0, 2))), ts)


@pytest.mark.parametrize("jitter,drops", [(0.001, True), (0.003, False)])
def test_dejitter_keeps_drops_and_never_crosses_a_gap(jitter, drops):
    rng = np.random.default_rng(1)
    rate, drift = 100.0, 1 + 80e-6
    k = np.arange(3000)
    if drops:
        k = k[(k % 397) != 5]              # a few single dropped samples
    true = 100.0 + k * drift / rate
    true[k >= 1500] += 2.0                 # a 2 s gap (stream lost and back)
    ts = true + rng.normal(0, jitter, len(true))
    out = dejitter(ts, rate)
    assert len(segments(ts, rate)) == 2
    assert np.abs(out - true).max() < 1e-3          # jitter gone, drops kept their slot
    assert np.abs(ts - true).max() > 0.003
    # Dejittering with the device clock gives the same line.
    dev_us = np.round(true * 1e6 / drift)
    np.testing.assert_allclose(dejitter(ts, rate, dev_us), out, atol=1e-3)


def test_resampling_marks_gaps_and_lost_face_invalid():
    t = np.concatenate([np.arange(0, 2, 0.01), np.arange(3, 5, 0.01)])
    x = np.sin(t)[:, None].repeat(2, 1)
    x[250:260] = np.nan                     # face lost for 0.1 s
    grid = np.arange(0, 5, FRAME)
    y, valid = resample_segments(t, x, grid, segments(t, 100.0))
    in_gap = (grid > 1.99) & (grid < 3.0)
    assert not valid[in_gap].any()
    lost = (grid > 3.5) & (grid < 3.59)
    assert not valid[lost].any() and np.all(y[~valid] == 0)
    ok = valid & (grid < 1.9)
    np.testing.assert_allclose(y[ok, 0], np.sin(grid[ok]), atol=1e-4)
    assert valid.mean() > 0.75


@pytest.mark.parametrize("lag", [0.137, -0.08])
def test_sync_recovers_lag_tap_and_writes_aligned(tmp_path, take, lag):
    path = write_session(tmp_path / "s.h5", take, lag, imu_offset=0.35)
    res = sync_session(path)
    assert abs(res.lag_s - lag) < FRAME, res.lag_s
    assert res.lag_confidence > 0.2
    # The tap: the IMU spike within one IMU sample, the blendshape twitch near it (+lag).
    base = 5000.0
    assert abs(res.tap_imu - (base + TAP_TIME)) < 0.011
    assert abs(res.tap_blendshapes - (base + TAP_TIME + lag)) < 0.1
    a = read_aligned(path)
    assert a.rate_hz == 60 and a.reference == "nasal_bridge" and a.rig_id == "imusic11"
    assert a.sites == take.sites and a.valid_imu.all() and a.valid_arkit.all()
    assert abs(a.attrs["lag_s"] - res.lag_s) < 1e-12 and a.attrs["tap_detected_in"]
    # After the shift, blendshapes line up with the twin's (true) blendshapes at aligned.t.
    j = take.sites.index("mentalis")
    truth = np.interp(a.t - base, take.bs_t, take.bs_rows[:, 17])      # jawOpen
    assert np.abs(a.blendshapes[:, 17] - truth).max() < 0.08
    # Gyro resampled from the IMU, bias removed: the still start reads near zero.
    still = (a.t - base) < 1.0
    assert np.abs(a.gyro[still, j]).max() < 0.05
    with SessionReader(path) as r:
        assert r.has_aligned and r.has_calibration


def test_imu_channels_found_by_label_not_position(tmp_path, take):
    order = np.random.default_rng(0).permutation(len(take.imu_labels))
    shuffled = take.__class__(**{**take.__dict__,
                                 "imu_rows": take.imu_rows[:, order],
                                 "imu_labels": [take.imu_labels[i] for i in order]})
    a = parse_imu(_stream(write_session(tmp_path / "a.h5", take, 0.0), "imu"))
    b = parse_imu(_stream(write_session(tmp_path / "b.h5", shuffled, 0.0), "imu"))
    assert a.sites == b.sites or set(a.sites) == set(b.sites)
    for s in a.sites:
        np.testing.assert_array_equal(a.gyro[:, a.sites.index(s)], b.gyro[:, b.sites.index(s)])
    assert b.reference == "nasal_bridge"


def _stream(path, key):
    with SessionReader(path) as r:
        return r.stream(key)


@pytest.mark.parametrize("fname,start", [("S88-001.csv", 0), ("apfel.csv", 600)])
def test_lag_on_real_human_motion(tmp_path, shared_data, fname, start):
    """A real Live Link Face take (with its face-lost rows) drives the twin."""
    tk = read_take(shared_data / "arkit" / "alexdjulin_llf" / fname)
    sl = slice(start, start + 600)
    t, v, found = tk.t[sl] - tk.t[start], tk.values[sl], tk.face_found[sl]
    sig = simulate(Motion.from_blendshapes(t, v), "imusic11", rate_hz=100.0, seed=2)
    labels = [f"{s}.{q}.{a}" for s in sig.site_names for q in ("acc", "gyro", "mag")
              for a in "xyz"]
    rows = np.concatenate([sig.acc, sig.gyro, sig.mag], axis=2).reshape(len(sig.t), -1)
    lag = 0.137
    path = tmp_path / "real.h5"
    with SessionWriter(path) as w:
        k = w.add_stream(StreamSpec("imu", "IMU", len(labels), 100.0, "double64",
                                    labels=labels))
        w.append(k, rows, 50.0 + sig.t)
        b = w.add_stream(blendshape_stream_info("arkit"))
        w.append(b, v[found], 50.0 + t[found] + lag)
    res = sync_session(path)
    assert abs(res.lag_s - lag) < FRAME
    a = read_aligned(path)
    if not found.all():
        # Face-lost rows become invalid frames, not zeros passed off as data.
        lost_t = 50.0 + t[~found] + lag - res.lag_s
        near = np.abs(a.t[:, None] - lost_t[None, :]).min(axis=1) < 0.5 * FRAME
        assert not a.valid_arkit[near].any()
        assert a.valid_arkit.mean() > 0.5


def test_sync_errors_name_the_problem(tmp_path, take):
    path = tmp_path / "imu_only.h5"
    with SessionWriter(path) as w:
        k = w.add_stream(imu_stream_info(take, "imu"))
        w.append(k, take.imu_rows, take.imu_t)
    with pytest.raises(SyncError, match="no Blendshapes stream"):
        sync_session(path)
    out = subprocess.run([sys.executable, "-m", "imusic", "sync", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no Blendshapes stream" in out.stderr


def test_cli_sync_then_info(tmp_path, take):
    path = write_session(tmp_path / "c.h5", take, 0.137)
    out = subprocess.run([sys.executable, "-m", "imusic", "sync", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "lag +1" in out.stdout and "tap" in out.stdout
    info = subprocess.run([sys.executable, "-m", "imusic", "info", str(path)],
                          capture_output=True, text=True)
    assert info.returncode == 0 and "aligned: 1" in info.stdout and "valid" in info.stdout


def test_cli_sync_takes_any_threshold(tmp_path, take):
    """``--set NAME=VALUE`` reaches SyncConfig; a bad name or value is one line and exit 2."""
    path = write_session(tmp_path / "t.h5", take, 0.137)

    def sync(*extra):
        return subprocess.run([sys.executable, "-m", "imusic", "sync", str(path), "--dry-run",
                               "--json", *extra], capture_output=True, text=True)

    found, missed = sync(), sync("--set", "tap_min_spike=1000", "--rate", "30")
    assert found.returncode == 0 and missed.returncode == 0, missed.stderr
    assert json.loads(found.stdout)["tap_imu_s"] is not None
    d = json.loads(missed.stdout)
    assert d["tap_imu_s"] is None and d["frames"] == pytest.approx(
        json.loads(found.stdout)["frames"] / 2, abs=1)
    for bad, says in ((["--set", "tap_min_spkie=1"], "unknown sync threshold(s) tap_min_spkie"),
                      (["--set", "tap_min_spike"], "expected NAME=NUMBER"),
                      (["--set", "max_lag=soon"], "expected NAME=NUMBER"),
                      (["--max-lag", "nan"], "max_lag must be a number")):
        out = sync(*bad)
        assert out.returncode == 2 and says in out.stderr, (bad, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_device_tap_marker_stands_in_for_a_missing_spike(tmp_path):
    """No acceleration spike, but the device's tap EVENT was recorded (a JSON marker)."""
    take = twin_take(12.0, imu_rate=100.0, seed=5, tap=False)
    path = tmp_path / "m.h5"
    base = 5000.0
    with SessionWriter(path) as w:
        rng = np.random.default_rng(0)
        k = w.add_stream(imu_stream_info(take, "imu"))
        w.append(k, take.imu_rows, base + take.imu_t + rng.normal(0, 0.001, len(take.imu_t)))
        b = w.add_stream(blendshape_stream_info("arkit"))
        w.append(b, take.bs_rows, base + take.bs_t + 0.05)
        m = w.add_stream(StreamSpec("imu-events", "Markers", 1, 0.0, "string"))
        w.append(m, [[json.dumps({"event": "health"})], ["not json"],
                     [json.dumps({"event": "tap", "device_us": 123})]],
                 [base + 0.5, base + 0.7, base + 1.25])
    res = sync_session(path)
    assert res.tap_imu == pytest.approx(base + 1.25)
    a = read_aligned(path)
    assert a.attrs["tap_marker_time"] == pytest.approx(base + 1.25)
    assert "marker" in a.attrs["tap_detected_in"]


def test_no_tap_means_no_tap(tmp_path):
    """Face and head motion without a tap: no spike is mistaken for one."""
    take = twin_take(20.0, imu_rate=100.0, seed=6, tap=False)
    res = sync_session(write_session(tmp_path / "n.h5", take, 0.1), write=False)
    assert np.isnan(res.tap_imu) and np.isnan(res.tap_blendshapes)
    assert abs(res.lag_s - 0.1) < FRAME
