"""Take folders in the IMUSIC release layout, made by the digital twin (``imusic simulate
--layout imusic-release``).

Each take is a twin session (model/simulate.py: the imusic11 rig on one of the face model's
head shapes, procedural facial and head motion, the full sensor error model) turned into what
the IMUSIC authors' device would have written: per sensor, the orientation an on-device AHRS
computes from the twin's *raw* accelerometer, gyroscope and magnetometer samples at the device
rate (imufusion, the same settings as model/features.py; so the quaternions carry the gyro
bias, noise, magnetic and heading errors a real fusion has, not the twin's exact truth),
sampled at 60 Hz, and the raw acceleration in g. The calib files hold the orientation relative
to sensor 000 and the acceleration minus the gravity that orientation predicts. The ARKit CSV
holds the twin's ground-truth blendshapes (head rotation columns zero, as in the release).

The twin's rig has 12 sites, the release 11 sensors: :data:`TWIN_SITES` maps ids to imusic11
sites (000 the nasal-bridge reference; the corrugator site is left out). The map is this
generator's choice: the release does not say where each id sits. Every take folder gets an
``IMUSIC_TWIN.json`` (provenance: the twin session's seeds, the site map, the AHRS), which the
importer reads to label the session ``source = "twin"``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from imusic.capture.imusic_release import (ARKIT_CSV, CALIB_DIR, G, IMU_COLUMNS, RAW_DIR, TWIN_MARKER)
from imusic.capture.orientation import continuous, normalise, quat_conjugate, quat_multiply, \
    quat_to_matrix

TWIN_RIG = "imusic11"
TWIN_SITES = {"000": "nasal_bridge", "006": "frontalis_r", "007": "frontalis_l",
              "005": "orbicularis_oculi_r", "001": "orbicularis_oculi_l",
              "002": "zygomaticus_r", "013": "zygomaticus_l", "010": "buccinator_r",
              "018": "buccinator_l", "017": "orbicularis_oris", "020": "mentalis"}
"""Release sensor id -> imusic11 site simulated for it."""
FIRST_FRAME = 90
"""Frame index of the first row (the release's takes start after the sync tap)."""
WARMUP_S = 6.0
"""Seconds simulated and fused before a take's first row and then cut: a real device's fusion
has been running (and converged) long before the take starts."""


def device_ahrs(acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray, rate_hz: float,
                gain: float = 0.5) -> np.ndarray:
    """(N, S, 4) sensor-to-earth quaternions (w, x, y, z; NWU earth) of an on-device AHRS per
    sensor, run on raw SI samples (N, S, 3) at the device rate."""
    import imufusion

    n, s, _ = acc.shape
    out = np.empty((n, s, 4))
    for j in range(s):
        ahrs = imufusion.Ahrs()
        ahrs.set_settings(imufusion.AhrsSettings(
            sample_rate=float(rate_hz), convention=imufusion.CONVENTION_NWU, gain=float(gain),
            gyroscope_range=2000.0, acceleration_rejection=10.0, magnetic_rejection=10.0,
            rejection_timeout=int(5 * rate_hz)))
        ahrs.set_sample_period(1.0 / rate_hz)
        a_g, g_d, m = acc[:, j] / G, np.degrees(gyro[:, j]), mag[:, j]
        for k in range(n):
            if np.all(np.isfinite(m[k])):
                ahrs.update(g_d[k], a_g[k], m[k])
            else:
                ahrs.update_no_magnetometer(g_d[k], a_g[k])
            out[k, j] = ahrs.get_quaternion()
    return out


def _resample_quat(t_src: np.ndarray, q: np.ndarray, t_dst: np.ndarray) -> np.ndarray:
    q = continuous(q)
    flat = q.reshape(len(q), -1)
    res = np.stack([np.interp(t_dst, t_src, flat[:, c]) for c in range(flat.shape[1])], 1)
    return normalise(res.reshape((len(t_dst),) + q.shape[1:]))


def _write_imu(path: Path, frame: np.ndarray, acc_g: np.ndarray, quat: np.ndarray,
               frame_fmt: str) -> None:
    lines = [",".join(IMU_COLUMNS)]
    for k in range(len(frame)):
        vals = [0.0] * 6 + list(acc_g[k]) + list(quat[k])
        lines.append(frame_fmt.format(frame[k]) + "," + ",".join(f"{v:.8f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")


def write_take_folder(session: Path, folder: Path, provenance: dict,
                      warmup_s: float = WARMUP_S, raw_out: Path | None = None) -> Path:
    """Turn one twin session file (raw IMU stream + aligned group) into a release take,
    leaving out its first ``warmup_s`` seconds (the fusion's convergence)."""
    from imusic.capture.aligned import read_aligned
    from imusic.capture.livelink_csv import write_take
    from imusic.capture.session import SessionReader
    from imusic.capture.sync import parse_imu

    with SessionReader(session) as r:
        imu = parse_imu(r.stream("imu"))
    al = read_aligned(session)
    idx = [imu.sites.index(TWIN_SITES[i]) for i in TWIN_SITES]
    q_dev = device_ahrs(imu.acc[:, idx], imu.gyro[:, idx], imu.mag[:, idx], imu.rate_hz)
    q = _resample_quat(imu.t, q_dev, al.t)                            # (N, S, 4)
    acc_g = np.asarray(al.acc[:, [al.sites.index(TWIN_SITES[i]) for i in TWIN_SITES]],
                       np.float64) / G
    ref = 0
    q_rel = normalise(quat_multiply(quat_conjugate(q[:, ref:ref + 1]), q))
    up_in_sensor = np.einsum("nsji,j->nsi", quat_to_matrix(q), np.array([0.0, 0.0, 1.0]))
    lin_g = acc_g - up_in_sensor
    cut = int(round(warmup_s * 60.0))
    if al.n_frames - cut < 2:
        raise ValueError(f"{session}: shorter than the {warmup_s} s fusion warm-up")
    q, q_rel, acc_g, lin_g = q[cut:], q_rel[cut:], acc_g[cut:], lin_g[cut:]
    blend, pose, valid = al.blendshapes[cut:], al.pose[cut:], al.valid_arkit[cut:]
    n = al.n_frames - cut
    if raw_out is not None:
        _write_raw(raw_out, al, cut, folder.name)
    frame = FIRST_FRAME + np.arange(n)
    (folder / RAW_DIR).mkdir(parents=True, exist_ok=True)
    (folder / CALIB_DIR).mkdir(parents=True, exist_ok=True)
    (folder / ARKIT_CSV).parent.mkdir(parents=True, exist_ok=True)
    for j, sid in enumerate(TWIN_SITES):
        _write_imu(folder / RAW_DIR / f"{sid}.csv", frame, acc_g[:, j], q[:, j], "{:d}")
        _write_imu(folder / CALIB_DIR / f"{sid}.csv", frame, lin_g[:, j], q_rel[:, j], "{:.1f}")
    values = np.concatenate([blend, np.nan_to_num(pose)], axis=1)
    values[:, 52:55] = 0.0                  # the release's head rotation columns are zero
    write_take(folder / ARKIT_CSV, np.arange(n) / 60.0, values, valid)
    (folder / TWIN_MARKER).write_text(json.dumps(provenance, indent=1) + "\n")
    return folder


def _write_raw(path: Path, al, cut: int, name: str) -> None:
    """The same frames as the take, as a raw-mode session (acc/gyro/mag of the 12-site twin
    rig, no orientation), for comparing the two feature modes on identical motion."""
    import dataclasses

    import h5py

    from imusic.capture.aligned import write_aligned
    from imusic.capture.imusic_release import parse_take_name
    from imusic.capture.session import SessionWriter

    subject, take = parse_take_name(name)
    attrs = {**al.attrs, "subject": subject, "take": take}
    part = dataclasses.replace(
        al, t=al.t[cut:], blendshapes=al.blendshapes[cut:], pose=al.pose[cut:],
        acc=al.acc[cut:], gyro=al.gyro[cut:], mag=al.mag[cut:], valid_imu=al.valid_imu[cut:],
        valid_arkit=al.valid_arkit[cut:], attrs=attrs)
    with SessionWriter(path, subject=subject, attrs=attrs, swmr=False):
        pass
    with h5py.File(path, "a") as h5:
        write_aligned(h5, part)


def make_release(out: str | Path, subjects: int = 2, takes: int = 2, seconds: float = 30.0,
                 seed: int = 0, device_rate_hz: float = 100.0,
                 progress: Callable[[int, int, str], None] | None = None,
                 raw_sessions: str | Path | None = None) -> list[Path]:
    """Write ``subjects`` x ``takes`` take folders ``out/data/participant_<i>_testcase_<j>``
    (subject i wears head shape i-1; every take is fresh procedural motion). Returns them.
    ``raw_sessions``: also write each take's raw twin signals (same frames) as a session there."""
    from imusic.hardware.motion import procedural
    from imusic.model.simulate import MotionSource, _seed, write_session

    root = Path(out) / "data"
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    total = subjects * takes
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(subjects):
            for j in range(takes):
                name = f"participant_{i + 1}_testcase_{j + 1}"
                sseed = _seed(seed, "release", i, j)
                m = procedural(seconds + WARMUP_S, fps=60.0, seed=sseed)
                src = MotionSource(f"testcase_{j + 1}", m.blendshapes, np.zeros((m.n_frames, 9)),
                                   np.ones(m.n_frames, bool), procedural=True)
                sess = Path(tmp) / f"{name}.h5"
                write_session(sess, src, slice(0, m.n_frames), f"participant_{i + 1}",
                              i % 20, TWIN_RIG, seed, sseed, device_rate_hz)
                folder = root / name
                if folder.exists():
                    raise FileExistsError(f"{folder} exists: choose an empty output folder")
                prov = {"source": "twin", "generator": "model/release_twin.py",
                        "twin_rig": TWIN_RIG, "identity": i % 20, "seed": seed,
                        "session_seed": sseed, "seconds": seconds,
                        "device_rate_hz": device_rate_hz, "site_map": TWIN_SITES,
                        "orientation": "imufusion AHRS (gain 0.5, NWU) on the twin's raw "
                                       "acc/gyro/mag at the device rate, sampled at 60 Hz"}
                raw = None
                if raw_sessions is not None:
                    Path(raw_sessions).mkdir(parents=True, exist_ok=True)
                    raw = Path(raw_sessions) / f"{name}.h5"
                folders.append(write_take_folder(sess, folder, prov, raw_out=raw))
                if progress:
                    progress(len(folders), total, name)
    return folders
