"""Analytic IMU signals for tests: sensors on a rotating head, one with extra skin rotation."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

GRAVITY_NWU = np.array([0.0, 0.0, 9.80665])   # specific force of a resting sensor, Z up
FIELD_NWU = np.array([20.0, 0.0, -45.0])      # µT, a mid-latitude field


def head_rotvec(n: int, rate: float, seed: int, amp: float = 0.4) -> np.ndarray:
    """A smooth random head orientation trajectory (N, 3) rotation vectors."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f = rng.uniform(0.1, 0.6, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    return amp * np.sin(2 * np.pi * f * t[:, None] + ph)


def signals(head: np.ndarray, skin: np.ndarray, mounting: np.ndarray, rate: float,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """acc, gyro, mag (N, S, 3) for sensors with earth-from-sensor R_head(t) R_skin_s(t) M_s.

    ``head`` (N, 3) rotvec; ``skin`` (N, S, 3) rotvec per sensor; ``mounting`` (S, 3) rotvec.
    No lever arm: the head rotates about the sensors (so relative acceleration is skin-only).
    """
    n, s = skin.shape[:2]
    rot = np.empty((n, s, 3, 3))
    for j in range(s):
        rot[:, j] = (Rotation.from_rotvec(head) * Rotation.from_rotvec(skin[:, j])
                     * Rotation.from_rotvec(np.tile(mounting[j], (n, 1)))).as_matrix()
    # body angular velocity from finite differences of R: [w]x = R^T dR/dt
    gyro = np.zeros((n, s, 3))
    for j in range(s):
        r = Rotation.from_matrix(rot[:, j])
        d = (r[:-1].inv() * r[1:]).as_rotvec() * rate
        gyro[1:, j] = d
        gyro[0, j] = d[0]
    acc = np.einsum("nsji,j->nsi", rot, GRAVITY_NWU)
    mag = np.einsum("nsji,j->nsi", rot, FIELD_NWU)
    return acc.astype(np.float32), gyro.astype(np.float32), mag.astype(np.float32)


def toy_session(path, subject: str, take: str, seconds: float = 20.0, seed: int = 0,
                n_face: int = 4, rate: float = 60.0, head_seed: int | None = None,
                lost: tuple[int, int] | None = None, still_s: float = 2.5) -> None:
    """A small aligned session where skin rotations are a fixed linear function of the
    blendshapes (an analytic stand-in, for fast tests of the training and evaluation code
    paths; the twin makes the real training data). It starts with ``still_s`` of a still neutral
    face and head (the neutral-pose calibration's window), as a take should."""
    import h5py

    from imusic.capture.aligned import Aligned, write_aligned

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    # 6 latent "muscles" drive all 52 shapes (the same mix for every subject), so that the
    # blendshapes are recoverable from a dozen skin rotations
    latent = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t
                                          + rng.uniform(0, 6)) for _ in range(6)], 1)
    shape_mix = np.random.default_rng(4321).uniform(0, 1, (6, 52))
    shape_mix /= shape_mix.sum(0, keepdims=True)
    n_still = min(n - 1, int(still_s * rate))
    ramp = np.clip((np.arange(n) - n_still) / (0.5 * rate), 0.0, 1.0)
    latent *= ramp[:, None]          # neutral (all shapes 0), then a ramp into the motion
    bs = (latent @ shape_mix).astype(np.float32)
    mix = np.random.default_rng(1234).normal(0, 0.1, (52, n_face, 3))  # same "anatomy" for all
    skin = np.zeros((n, n_face + 1, 3))
    skin[:, 1:] = np.einsum("nk,ksc->nsc", bs, mix)
    mount = np.random.default_rng(seed + 7).normal(0, 0.02, (n_face + 1, 3))
    hs = seed if head_seed is None else head_seed
    head = head_rotvec(n, rate, hs, 0.2)
    head[:n_still] = head[n_still]
    acc, gyro, mag = signals(head, skin, mount, rate)
    noise = np.random.default_rng(seed + 99)
    acc += noise.normal(0, 0.02, acc.shape).astype(np.float32)
    gyro += noise.normal(0, 0.002, gyro.shape).astype(np.float32)
    valid_arkit = np.ones(n, bool)
    if lost:
        valid_arkit[lost[0]:lost[1]] = False
        bs[lost[0]:lost[1]] = np.nan
    sites = ["ref"] + [f"s{i}" for i in range(n_face)]
    al = Aligned(rate_hz=rate, t=t, blendshapes=bs, pose=np.zeros((n, 9), np.float32),
                 acc=acc, gyro=gyro, mag=mag, valid_imu=np.ones(n, bool),
                 valid_arkit=valid_arkit, sites=sites, reference="ref", rig_id="toy",
                 attrs={"source": "toy", "subject": subject, "take": take, "seed": seed})
    with h5py.File(path, "w") as h5:
        write_aligned(h5, al)
