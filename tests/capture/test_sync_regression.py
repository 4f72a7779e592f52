"""Sync's output before and after the split of capture/sync.py (issue 15 item 5).

``EXPECTED`` was computed by the code before the split (capture/sync.py as one 684-line module,
run on these seeded sessions, through the twin as it was then: ``TwinConfig.ideal()``); the
split code must give the same numbers. The split was
checked byte-identical (SHA-256 of every aligned array) on this machine; here the numbers are
compared with a tolerance far below any real change (1e-9 relative), so that another BLAS or
libm does not fail the test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from .twin_session import blendshape_stream_info, imu_stream_info, twin_take

from imusic.capture.session import SessionWriter, StreamSpec
from imusic.capture.sync import sync_session
from imusic.hardware.physics import TwinConfig

BASE = 5000.0
NAN = float("nan")


def write_session(path, take, lag, *, imu_offset=0.0, face_found=None, imu_keep=None,
                  markers=(), imu_jitter=0.002):
    """A recorded session: IMU jittered and ``imu_offset`` behind (with measured offsets),
    ARKit ``lag`` s late; optionally face-lost rows, dropped IMU samples, device markers."""
    rng = np.random.default_rng(0)
    with SessionWriter(path) as w:
        keep = np.ones(len(take.imu_t), bool) if imu_keep is None else imu_keep
        k = w.add_stream(imu_stream_info(take, "imu"))
        w.append(k, take.imu_rows[keep], BASE - imu_offset + take.imu_t[keep]
                 + rng.normal(0, imu_jitter, int(keep.sum())))
        for t in np.arange(0, take.imu_t[-1], 5.0):
            w.add_clock_offset(k, BASE + t, imu_offset + rng.normal(0, 1e-4))
        b = w.add_stream(blendshape_stream_info("arkit"))
        ok = np.ones(len(take.bs_t), bool) if face_found is None else face_found
        w.append(b, take.bs_rows[ok],
                 BASE + take.bs_t[ok] + lag + rng.normal(0, 0.003, int(ok.sum())))
        if markers:
            m = w.add_stream(StreamSpec("imu-events", "Markers", 1, 0.0, "string"))
            w.append(m, [[json.dumps(x)] for x, _ in markers], [BASE + t for _, t in markers])
    return path


def _take():
    return twin_take(30.0, imu_rate=100.0, seed=3, twin=TwinConfig.ideal())


def lagged(path):
    return write_session(path, _take(), 0.137, imu_offset=0.35)


def gaps(path):
    take = _take()
    ff = np.ones(len(take.bs_t), bool)
    ff[600:700] = ff[1200:1210] = False                       # face lost twice
    keep = np.ones(len(take.imu_t), bool)
    keep[1500:1700] = keep[2300] = False                       # a 2 s IMU gap, one drop
    return write_session(path, take, 0.05, face_found=ff, imu_keep=keep)


def marker(path):
    return write_session(path, twin_take(12.0, imu_rate=100.0, seed=5, tap=False, twin=TwinConfig.ideal()), 0.05,
                         imu_jitter=0.001,
                         markers=[({"event": "health"}, 0.5), ({"event": "tap"}, 1.25)])


CASES = [("lagged", lagged, {}), ("forced", lagged, {"lag": 0.1}),
         ("narrow", lagged, {"max_lag": 0.5, "rate_hz": 50.0}), ("gaps", gaps, {}),
         ("marker", marker, {})]


def summary(res) -> dict:
    """Numbers that change if any aligned array or found time changes."""
    a = res.aligned
    out = {"lag_s": res.lag_s, "lag_confidence": res.lag_confidence,
           "tap_imu": res.tap_imu, "tap_blendshapes": res.tap_blendshapes,
           "frames": int(a.n_frames), "t0": float(a.t[0]),
           "valid_imu": int(a.valid_imu.sum()), "valid_arkit": int(a.valid_arkit.sum()),
           "still_fraction": res.calibration.still_fraction}
    for name in ("blendshapes", "pose", "acc", "gyro"):
        x = getattr(a, name).astype(np.float64)
        out[name] = [float(np.nansum(x)), float(np.nansum(x * x)),
                     float(np.nansum(x * np.arange(len(x)).reshape(-1, *[1] * (x.ndim - 1))))]
    return out


EXPECTED = {   # computed by capture/sync.py before the split (commit 680a119)
    "lagged": {
        "lag_s": 0.14280990018766246, "lag_confidence": 0.40235372442967626,
        "tap_imu": 5001.499855600827, "tap_blendshapes": 5001.703807162542, "frames": 1800,
        "t0": 4999.999863284183, "valid_imu": 1800, "valid_arkit": 1800,
        "still_fraction": 0.14361879373542152,
        "blendshapes": [2929.343821679129, 1091.290139115307, 2898833.1770134275],
        "pose": [0.0, 0.0, 0.0],
        "acc": [185617.21186718837, 2061610.030917784, 167662152.62413594],
        "gyro": [-112.85405981477965, 6818.345932991464, -178268.4595805927],
    },
    "forced": {
        "lag_s": 0.1, "lag_confidence": 1.0, "tap_imu": 5001.499855600827,
        "tap_blendshapes": 5001.703807162542, "frames": 1798, "t0": 5000.037140303009,
        "valid_imu": 1798, "valid_arkit": 1798, "still_fraction": 0.14361879373542152,
        "blendshapes": [2924.7387384888684, 1093.8906141111988, 2891522.8528077165],
        "pose": [0.0, 0.0, 0.0],
        "acc": [185419.3212821033, 2058687.488010729, 167290469.6504239],
        "gyro": [-112.14920970846754, 6818.555225600972, -176996.71414768673],
    },
    "narrow": {
        "lag_s": 0.1431652664777438, "lag_confidence": 0.4228956355659519,
        "tap_imu": 5001.499855600827, "tap_blendshapes": 5001.703807162542, "frames": 1500,
        "t0": 4999.999863284183, "valid_imu": 1500, "valid_arkit": 1500,
        "still_fraction": 0.14361879373542152,
        "blendshapes": [2441.360287434034, 909.9759140455517, 2013196.2322015958],
        "pose": [0.0, 0.0, 0.0],
        "acc": [154685.8727443138, 1717458.6438353078, 116419062.52356416],
        "gyro": [-93.460066110031, 5756.436739415363, -122929.68233285019],
    },
    "gaps": {
        "lag_s": 0.055657338717060766, "lag_confidence": 0.41902991587907606,
        "tap_imu": 5001.499873051099, "tap_blendshapes": 5001.616484561489, "frames": 1800,
        "t0": 4999.999858860281, "valid_imu": 1679, "valid_arkit": 1699,
        "still_fraction": 0.15392857142857144,
        "blendshapes": [2616.6895204594925, 968.5654135756877, 2696464.849297492],
        "pose": [0.0, 0.0, 0.0],
        "acc": [173306.36759706197, 1922689.5817036023, 155848331.22870076],
        "gyro": [107.13010628969221, 6148.564933228277, 26198.598080224925],
    },
    "marker": {
        "lag_s": 0.04915651516702765, "lag_confidence": 0.5867115838857611, "tap_imu": 5001.25,
        "tap_blendshapes": NAN, "frames": 720, "t0": 5000.0001054779295, "valid_imu": 720,
        "valid_arkit": 720, "still_fraction": 0.22148209825145712,
        "blendshapes": [1095.0001937663837, 459.62280193057455, 487246.40529378504],
        "pose": [0.0, 0.0, 0.0], "acc": [72331.19705016621, 841901.11776609, 25800780.993459605],
        "gyro": [123.0559624088794, 1699.5441318160345, 129326.67115776805],
    },
}


@pytest.mark.parametrize("name,build,kw", CASES, ids=[c[0] for c in CASES])
def test_split_sync_gives_the_old_numbers(tmp_path, name, build, kw):
    got = summary(sync_session(build(tmp_path / f"{name}.h5"), write=False, **kw))
    want = EXPECTED[name]
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, int) and not isinstance(value, bool):
            assert got[key] == value, key
        else:
            np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-9, err_msg=key)
