"""Orientation quaternions: the one place for their conventions and small maths.

Convention (the IMU contract): unit quaternions ``w, x, y, z`` (scalar first), the rotation
from the sensor's frame to the device's earth frame (sensor-to-earth). A device reports them
as ``site.quat.w|x|y|z``; an AHRS on raw acc/gyro/mag gives the same thing. ``q`` and ``-q``
are the same rotation: :func:`continuous` picks signs so that consecutive rows are close, which
interpolation needs. :func:`angular_rate` gives the sensor-frame angular rate that a
quaternion-only device implies (its gyro, as seen through its own fusion), so that the sync
and the features treat a quat-only stream like one with a gyroscope.
"""

from __future__ import annotations

import numpy as np


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) in w, x, y, z order."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of (..., 4) w-first quaternions (apply b, then a)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], -1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """The inverse rotation of unit quaternions (..., 4)."""
    return np.asarray(q, np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def continuous(q: np.ndarray) -> np.ndarray:
    """Quaternions (N, ..., 4) with signs flipped so that each row is in the same hemisphere as
    the one before (NaN rows are skipped and keep their NaN)."""
    q = np.array(q, np.float64)
    prev = None
    for k in range(len(q)):
        row = q[k]
        if not np.all(np.isfinite(row)):
            continue
        if prev is not None:
            flip = np.sum(row * prev, axis=-1) < 0
            row[flip] *= -1.0
        prev = row
    return q


def normalise(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4); all-zero or non-finite rows become NaN."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = q / n
    out[~np.isfinite(n[..., 0]) | (n[..., 0] < 1e-9)] = np.nan
    return out


def angular_rate(q: np.ndarray, rate_hz: float) -> np.ndarray:
    """Sensor-frame angular rate (N, ..., 3) rad/s of sensor-to-earth quaternions (N, ..., 4)
    sampled at ``rate_hz``: the rotation from each row to the next, as a rotation vector per
    period (central, so not delayed; the ends repeat their neighbour). NaN where undefined."""
    q = continuous(normalise(q))
    n = len(q)
    out = np.full(q.shape[:-1] + (3,), np.nan)
    if n < 2:
        return out
    d = quat_multiply(quat_conjugate(q[:-1]), q[1:])            # (N-1, ..., 4) body-frame step
    d = np.where((d[..., :1] < 0), -d, d)
    vec = d[..., 1:]
    s = np.linalg.norm(vec, axis=-1, keepdims=True)
    ang = 2.0 * np.arctan2(s[..., 0], d[..., 0])[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        rv = np.where(s > 1e-12, vec / s * ang, 2.0 * vec)
    step = rv * rate_hz                                          # rate over each interval
    out[1:-1] = 0.5 * (step[:-1] + step[1:])
    out[0], out[-1] = step[0], step[-1]
    return out
