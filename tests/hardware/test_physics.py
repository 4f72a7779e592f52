"""The twin's sensor physics: gravity, rotation, face deformation, noise, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from imusic.hardware.face import FaceModel
from imusic.hardware.motion import Motion, minimum_jerk
from imusic.hardware.physics import (PATCH_RADIUS_M, MagneticField, TwinConfig, ideal_signals, sensor_frames,
                              simulate)
from imusic.hardware.rig import load_rig, parse_rig, skin_patch
from imusic.hardware.sensors import STANDARD_GRAVITY, ErrorModel, part_spec
from imusic.hardware.vocabulary import ARKIT_NAMES

G = STANDARD_GRAVITY
IDEAL = TwinConfig.ideal()
"""Rigid boards on ICT's shared deltas in a uniform field: for tests of exact kinematics."""


@pytest.fixture(scope="module")
def rig():
    return load_rig("imusic11")


@pytest.fixture(scope="module")
def rest(rig):
    """Error-free readings of a still, neutral face (2 s at 100 Hz)."""
    return simulate(Motion.still(2.0), rig, rate_hz=100, errors=False, twin=IDEAL)


def _triad(a: np.ndarray, m: np.ndarray, a_w: np.ndarray, m_w: np.ndarray) -> np.ndarray:
    """World-from-sensor rotation from two vectors seen in the sensor and in the world."""
    def frame(u, v):
        e1 = u / np.linalg.norm(u)
        e2 = np.cross(u, v)
        e2 /= np.linalg.norm(e2)
        return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)
    return frame(a_w, m_w) @ frame(a, m).T


def test_still_neutral_face_reads_gravity_and_no_rotation(rest, rig):
    assert rest.acc.shape == (len(rest.t), rig.n_sites, 3)
    np.testing.assert_allclose(np.linalg.norm(rest.acc, axis=2), G, atol=1e-9)
    np.testing.assert_allclose(rest.gyro, 0.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(rest.mag, axis=2), 50.0, atol=1e-9)
    # Sensors sit at different angles on the face: they do not all read gravity on one axis.
    directions = rest.acc[0] / G
    assert np.ptp(directions, axis=0).max() > 0.3


def test_still_face_with_noise_reads_gravity_plus_noise(rig):
    sig = simulate(Motion.still(20.0), rig, rate_hz=100, errors=ErrorModel.noise_only(), seed=3)
    n = len(sig.t)
    for s, site in enumerate(rig.sites):
        g_std = part_spec(site.part, "gyro").white_std(100.0)
        a_std = part_spec(site.part, "acc").white_std(100.0)
        # zero mean rate within 5 standard errors
        assert np.all(np.abs(sig.gyro[:, s].mean(axis=0)) < 5 * g_std / np.sqrt(n)), site.name
        assert abs(np.linalg.norm(sig.acc[:, s].mean(axis=0)) - G) < 5 * a_std / np.sqrt(n) * 2


def test_full_error_model_stays_near_gravity(rig):
    sig = simulate(Motion.still(5.0), rig, rate_hz=100, errors=True, seed=1)
    norm = np.linalg.norm(sig.acc, axis=2).mean(axis=0)
    # turn-on bias (30 mg/axis) and 1 % scale errors: within ~1.5 m/s^2 of g, never exactly g
    assert np.all(np.abs(norm - G) < 1.5)
    assert np.any(np.abs(norm - G) > 1e-3)
    assert np.all(np.abs(sig.gyro.mean(axis=0)) < np.radians(5.0))


@pytest.mark.parametrize("axis", [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.3, -0.5, 0.8]])
def test_pure_head_rotation_reads_the_rate_in_each_sensor_frame(rest, rig, axis):
    omega = 1.5 * np.asarray(axis) / np.linalg.norm(axis)          # rad/s, head frame
    fps, seconds = 60.0, 2.0
    n = int(seconds * fps) + 1
    t = np.arange(n) / fps
    motion = Motion(fps=fps, blendshapes=np.zeros((n, 52)), head_rotvec=t[:, None] * omega,
                    head_position=np.zeros((n, 3)))
    sig = simulate(motion, rig, rate_hz=200, errors=False, twin=IDEAL)
    b_w = MagneticField().vector()
    g_w = np.array([0.0, G, 0.0])
    for s, site in enumerate(rig.sites):
        # The sensor's rest orientation, recovered independently from gravity + field (TRIAD).
        r_ws = _triad(rest.acc[0, s], rest.mag[0, s], g_w, b_w)
        expected = r_ws.T @ omega
        np.testing.assert_allclose(sig.gyro[:, s], np.broadcast_to(expected, sig.gyro[:, s].shape),
                                   atol=1e-6, err_msg=site.name)
    # Accelerometers feel gravity plus the centripetal acceleration about the axis through
    # the head origin: |f| = |g_up - w^2 r_perp| at every instant.
    face_pos, _ = sensor_frames(Motion.still(0.1), rig, twin=IDEAL)
    p = face_pos[0]                                                # (S, 3) head frame at rest
    u = omega / np.linalg.norm(omega)
    k = len(sig.t) // 2
    r_now = Rotation.from_rotvec(sig.t[k] * omega).as_matrix()
    r_perp = (p - (p @ u)[:, None] * u) @ r_now.T
    f_w = g_w - np.linalg.norm(omega) ** 2 * r_perp
    np.testing.assert_allclose(np.linalg.norm(sig.acc[k], axis=1), np.linalg.norm(f_w, axis=1),
                               rtol=2e-4)


def _integrate_body_rates(gyro: np.ndarray, dt: float) -> Rotation:
    """Compose body-frame rate samples (trapezoid per step) into one rotation."""
    mid = 0.5 * (gyro[1:] + gyro[:-1]) * dt
    r = Rotation.identity()
    for step in Rotation.from_rotvec(mid):
        r = r * step
    return r


def _patch_normal(rig, site: str, weights: np.ndarray) -> np.ndarray:
    """Area-weighted mean normal (unit, head frame) of a site's skin patch, blended in float64."""
    face = FaceModel.load()
    tri = face.triangles[[p.triangle for p in skin_patch(rig.site(site).anchor, PATCH_RADIUS_M)]]
    ids, inverse = np.unique(tri.ravel(), return_inverse=True)
    verts = face.vertex_subset(weights, ids, dtype=np.float64)[0]
    corners = verts[inverse.reshape(tri.shape)]
    n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).sum(axis=0)
    return n / np.linalg.norm(n)


def test_jaw_open_ramp_turns_the_mentalis_by_the_mesh_angle(rig):
    fps = 30.0                                                     # like a real ARKit take
    n = int(3.0 * fps) + 1
    t = np.arange(n) / fps
    w = np.zeros((n, 52))
    w[:, ARKIT_NAMES.index("jawOpen")] = minimum_jerk((t - 0.5) / 2.0)
    motion = Motion(fps=fps, blendshapes=w, head_rotvec=np.zeros((n, 3)),
                    head_position=np.zeros((n, 3)))
    s = rig.site_names.index("mentalis")
    _, frames = sensor_frames(motion, rig, twin=IDEAL)
    mesh_turn = Rotation.from_matrix(frames[0, s].T @ frames[-1, s])  # in the sensor frame
    assert mesh_turn.magnitude() > np.radians(3.0), "jawOpen should visibly turn the chin"
    # The board's turn (best fit of its skin patch) agrees with the turn of the patch's mean
    # normal, blended in float64: a reference that no single small triangle's shear or the
    # BLAS kernel can move. It is a pitch about the jaw's hinge axis (x).
    board_turn = Rotation.from_matrix(frames[-1, s] @ frames[0, s].T).as_rotvec()   # head
    n0, n1 = _patch_normal(rig, "mentalis", w[0]), _patch_normal(rig, "mentalis", w[-1])
    normal_turn = np.cross(n0, n1)
    normal_angle = np.arctan2(np.linalg.norm(normal_turn), n0 @ n1)
    assert abs(normal_angle - np.linalg.norm(board_turn)) < np.radians(1.0)
    assert normal_turn[0] / np.linalg.norm(normal_turn) > 0.99
    assert abs(board_turn[0]) > 0.95 * np.linalg.norm(board_turn)
    rate = 400.0
    sig = simulate(motion, rig, rate_hz=rate, errors=False, twin=IDEAL)
    turned = _integrate_body_rates(sig.gyro[:, s], 1.0 / rate)
    err = (turned.inv() * mesh_turn).magnitude()
    assert np.degrees(err) < 0.05 * np.degrees(mesh_turn.magnitude()) + 0.05
    # A rigid-spot reference barely turns while the jaw opens.
    ref = rig.reference_index
    assert np.abs(sig.gyro[:, ref]).max() < 0.2 * np.abs(sig.gyro[:, s]).max()


def test_translation_of_a_30fps_track_gives_the_analytic_acceleration(rig):
    fps, f, amp = 30.0, 1.5, 0.01                                  # 1 cm at 1.5 Hz
    t = np.arange(int(4 * fps) + 1) / fps
    pos = np.zeros((len(t), 3))
    pos[:, 2] = amp * np.sin(2 * np.pi * f * t)
    motion = Motion(fps=fps, blendshapes=np.zeros((len(t), 52)), head_rotvec=np.zeros((len(t), 3)),
                    head_position=pos, t=t)
    sig = simulate(motion, rig, rate_hz=200, errors=False)
    rest = simulate(Motion.still(1.0), rig, rate_hz=200, errors=False).acc[0]
    inner = (sig.t > 0.5) & (sig.t < 3.5)                          # away from spline ends
    a_true = -amp * (2 * np.pi * f) ** 2 * np.sin(2 * np.pi * f * sig.t[inner])
    for s in range(rig.n_sites):
        # sensor-frame acceleration = reading minus the gravity reading at rest
        dyn = sig.acc[inner, s] - rest[s]
        peak = np.abs(a_true).max()
        assert np.abs(np.linalg.norm(dyn, axis=1) - np.abs(a_true)).max() < 0.02 * peak


def test_noise_matches_the_configured_density(rig):
    rate = 200.0
    motion = Motion.still(30.0)
    ideal = simulate(motion, rig, rate_hz=rate, errors=False)
    noisy = simulate(motion, rig, rate_hz=rate, errors=ErrorModel.noise_only(), seed=11)
    for q in ("acc", "gyro", "mag"):
        diff = getattr(noisy, q) - getattr(ideal, q)
        for s, site in enumerate(rig.sites):
            expected = part_spec(site.part, q).white_std(rate)
            measured = diff[:, s].std(axis=0)
            # 6000 samples: the std estimate is within ~3 % (3.3 sigma); use 5 %
            np.testing.assert_allclose(measured, expected, rtol=0.05, err_msg=f"{site.name} {q}")
    # the density convention: std = density * sqrt(rate / 2)
    spec = part_spec(rig.sites[0].part, "gyro")
    assert spec.white_std(rate) == pytest.approx(np.radians(0.015) * np.sqrt(rate / 2))


def test_same_seed_same_bytes_other_seed_other_bytes(rig):
    from imusic.hardware.motion import procedural

    motion = procedural(5.0, fps=60, seed=2)
    a = simulate(motion, rig, rate_hz=100, seed=5)
    b = simulate(motion, rig, rate_hz=100, seed=5)
    c = simulate(motion, rig, rate_hz=100, seed=6)
    for q in ("acc", "gyro", "mag"):
        assert getattr(a, q).tobytes() == getattr(b, q).tobytes()
        assert a.counts(q).tobytes() == b.counts(q).tobytes()
        assert getattr(a, q).tobytes() != getattr(c, q).tobytes()
    assert a.device_time_us.tobytes() == b.device_time_us.tobytes()
    assert a.device_time_us.tobytes() != c.device_time_us.tobytes()


def test_quantised_output_is_whole_counts_and_saturates(rig):
    # A violent 25 Hz head shake (3 cm): far beyond +-4 g, so the accelerometers clip.
    fps = 400.0
    t = np.arange(int(1.0 * fps) + 1) / fps
    pos = np.zeros((len(t), 3))
    pos[:, 0] = 0.03 * np.sin(2 * np.pi * 25 * t)
    motion = Motion(fps=fps, blendshapes=np.zeros((len(t), 52)), head_rotvec=np.zeros((len(t), 3)),
                    head_position=pos, t=t)
    sig = simulate(motion, rig, rate_hz=400, errors=True, seed=0)
    for q in ("acc", "gyro", "mag"):
        counts = sig.counts(q)
        assert counts.dtype == np.int16
        np.testing.assert_array_equal(counts * sig.scales[q][:, None], getattr(sig, q))
    assert sig.counts("acc").max() == 32767 and sig.counts("acc").min() == -32768
    full = sig.ranges["acc"][0]
    assert np.abs(sig.acc).max() <= full
    assert sig.scales["acc"][0] == pytest.approx(4 * G / 32768)


def test_mounting_rotation_turns_the_reading(rig, rest):
    data = json_of("imusic11")
    for site in data["sites"]:
        site.pop("mounting", None)
    plain = parse_rig(data, "imusic11-unmounted")
    base = simulate(Motion.still(0.5), plain, rate_hz=100, errors=False, twin=IDEAL)
    s = rig.site_names.index("mentalis")                            # mounted 180 deg about z
    np.testing.assert_allclose(rest.acc[0, s], base.acc[0, s] * [-1, -1, 1], atol=1e-9)
    o = rig.site_names.index("frontalis_r")                         # mounted as the skin
    np.testing.assert_allclose(rest.acc[0, o], base.acc[0, o], atol=1e-12)


def json_of(name: str) -> dict:
    import json

    from imusic.hardware.rig import RIGS_DIR

    return json.loads((RIGS_DIR / f"{name}.json").read_text())


def test_device_rate_and_clock(rig):
    motion = Motion.still(10.0)
    sig = simulate(motion, rig, rate_hz=250, errors=True, seed=4)
    clock = sig.clock
    assert clock is not None and clock.drift_ppm != 0
    assert abs(len(sig.t) - 10.0 * 250) <= 2
    assert np.all(np.diff(sig.device_time_us) >= 0)
    slope = np.polyfit(sig.t, sig.device_time_us.astype(float), 1)[0]
    assert slope == pytest.approx(1e6 * (1 + clock.drift_ppm * 1e-6), abs=0.5)


def test_identity_changes_the_geometry_not_the_physics(rig):
    sig = simulate(Motion.still(0.5), rig, rate_hz=100, identity=7, errors=False)
    np.testing.assert_allclose(np.linalg.norm(sig.acc, axis=2), G, atol=1e-9)
    generic = simulate(Motion.still(0.5), rig, rate_hz=100, errors=False)
    assert not np.allclose(sig.acc, generic.acc)


def test_real_take_simulates(shared_data, rig):
    from imusic.capture.livelink_csv import read_take

    take = read_take(shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv")
    keep = take.t < 20.0
    motion = Motion.from_blendshapes(take.t[keep], take.values[keep])
    sig = simulate(motion, rig, rate_hz=100, seed=0)
    assert np.all(np.isfinite(sig.acc)) and np.all(np.isfinite(sig.gyro))
    assert sig.t[-1] <= take.t[keep][-1] + 1e-9
    ideal = ideal_signals(motion, rig, sig.t)
    gyro_rms = np.sqrt((ideal[1] ** 2).sum(axis=2).mean(axis=0))
    # Lips and chin move more than the rigid nasal-bridge reference.
    names = rig.site_names
    assert gyro_rms[names.index("orbicularis_oris")] > 3 * gyro_rms[rig.reference_index]


def test_bad_arguments_are_named(rig):
    with pytest.raises(ValueError, match="rate_hz"):
        simulate(Motion.still(1.0), rig, rate_hz=0)
    with pytest.raises(ValueError, match="identity"):
        simulate(Motion.still(1.0), rig, identity=25)
