"""The firmware's on-device fusion (hardware/firmware/core/imusic_fusion.c) on the twin's own
signals: ``imp_tool fuse`` (built with sanitizers) must track each sensor's true tilt, as the
emulator's imufusion-based device fusion does, and hand out the Q14 counts the wire carries."""

from __future__ import annotations

import numpy as np
import pytest

from imusic.firmware_bridge.emulator_fusion import DeviceFusion
from imusic.firmware_bridge.emulator_fusion import to_counts as quat_counts

RATE = 100


@pytest.fixture(scope="module")
def twin():
    """20 s of procedural face and head motion on the 6-site rig; the signals with the full
    sensor error model and with noise and quantisation only (no bias, scale or cross-axis
    error: those tilt any accelerometer-referenced filter by a few degrees); each site's true
    up direction in its own frame."""
    from scipy.spatial.transform import Rotation, RotationSpline

    from imusic.hardware.motion import procedural
    from imusic.hardware.physics import sensor_frames, simulate
    from imusic.hardware.rig import load_rig
    from imusic.hardware.sensors import ErrorModel

    rig = load_rig("imusic6")
    motion = procedural(20.0, seed=4)
    # mounting_deg 0: the mesh frames are then the chips' true frames
    full = ErrorModel(mounting_deg=0.0)
    clean = ErrorModel(bias=False, bias_walk=False, scale=False, cross_axis=False,
                       mounting_deg=0.0)
    sigs = {name: simulate(motion, rig, rate_hz=RATE, seed=4, errors=m)
            for name, m in (("full", full), ("clean", clean))}
    sig = sigs["full"]
    _, rot = sensor_frames(motion, rig)
    up = np.stack([RotationSpline(motion.t, Rotation.from_matrix(rot[:, s]))(sig.t).as_matrix()
                   .transpose(0, 2, 1)[:, :, 1] for s in range(rig.n_sites)], axis=1)
    return sigs, up   # up: world +y (up) in sensor coordinates, (N, S, 3)


def _up_of(q: np.ndarray) -> np.ndarray:
    """The earth's z (up, NWU) in sensor coordinates for sensor-to-earth quaternions."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1)


def _tilt_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


# (errors, with_mag, median and 99th-percentile tilt error bounds in degrees)
CASES = [("clean", False, 0.5, 3.0), ("clean", True, 0.5, 3.0), ("full", False, 8.0, 10.0)]


@pytest.mark.parametrize("errors,with_mag,median_deg,p99_deg", CASES)
def test_c_fusion_tracks_the_twin_tilt_like_the_emulator_fusion(imp_tool, twin, errors,
                                                                 with_mag, median_deg, p99_deg):
    sigs, up = twin
    sig = sigs[errors]
    s = 2                                               # a cheek sensor: skin motion and head turns
    acc, gyro, mag = sig.acc[:, s], sig.gyro[:, s], sig.mag[:, s]
    cols = [acc, gyro] + ([mag] if with_mag else [])
    text = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in np.concatenate(cols, 1)) + "\n"
    proc = imp_tool.run("fuse", text.encode(), args=(str(RATE),))
    assert proc.returncode == 0, proc.stderr.decode()
    out = np.loadtxt(proc.stdout.decode().splitlines())
    q, q14 = out[:, :4], out[:, 4:].astype(np.int16)
    assert q.shape == (len(acc), 4)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    # the wire form is the float one rounded (within one count: q is printed to 7 digits)
    assert np.abs(q14.astype(int) - quat_counts(q)).max() <= 1
    settled = slice(RATE, None)                         # after the first second
    err_c = _tilt_deg(_up_of(q), up[:, s])[settled]
    ref = DeviceFusion(1, RATE, use_mag=with_mag).update(
        acc[:, None], gyro[:, None], mag[:, None] if with_mag else None)[:, 0]
    err_ref = _tilt_deg(_up_of(ref), up[:, s])[settled]
    # Tilt near the truth while the head nods and turns (as near as the accelerometer's own
    # errors allow), and no worse than imufusion's AHRS (the emulator's device fusion) by more
    # than a degree.
    assert np.median(err_c) < median_deg and np.percentile(err_c, 99) < p99_deg, (
        np.median(err_c), np.percentile(err_c, 99))
    assert np.median(err_c) < np.median(err_ref) + 1.0, (np.median(err_c), np.median(err_ref))
    # Without a magnetometer the heading is free; with one, the C filter and imufusion agree on
    # north (both NWU): the whole rotations are close, not just the tilt.
    if with_mag:
        dot = np.abs(np.sum(q[settled] * ref[settled], 1))
        angle = np.degrees(2 * np.arccos(np.clip(dot, -1, 1)))
        assert np.median(angle) < 5.0, np.median(angle)


def test_fuse_tool_names_a_bad_line(imp_tool):
    proc = imp_tool.run("fuse", b"1 2 3\n")
    assert proc.returncode == 2  # usage: RATE missing
    proc = imp_tool.run("fuse", b"0 0 9.8 0 0 0\n1 2 3\n", args=("100",))
    assert proc.returncode == 2 and b"line 2" in proc.stderr
