"""A chip's mounting on the skin, from a rig file's ``mounting`` object.

``mounting_matrix(spec)`` reads ``{"matrix": 3x3}`` (a proper rotation) or
``{"euler_deg": [a, b, c], "seq": "xyz"}`` and returns the rotation sensor frame -> skin frame
(``hardware.rig.Site.mounting``); a spec it cannot use raises ``ValueError`` with the reason,
which ``hardware.rig`` prefixes with the file and the site. Plain numpy: reading a rig must
not import scipy (0.6 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def euler_matrix(seq: Any, angles_deg: Any) -> np.ndarray:
    """Rotation matrix of three Euler angles (deg) about the axes of ``seq``: lower case
    (``"xyz"``) about the fixed axes, upper case (``"XYZ"``) about the turning ones, as
    scipy's ``Rotation.from_euler`` reads them."""
    if (not isinstance(seq, str) or len(seq) != 3 or not (set(seq) <= set("xyz")
                                                          or set(seq) <= set("XYZ"))
            or seq[0] == seq[1] or seq[1] == seq[2]):
        raise ValueError(f"seq must be 3 axes from xyz (fixed) or XYZ (turning), no axis twice "
                         f"in a row, got {seq!r}")
    ang = np.radians(np.asarray(angles_deg, dtype=float).reshape(3))
    if not np.all(np.isfinite(ang)):
        raise ValueError(f"euler_deg must be finite, got {np.degrees(ang).tolist()}")
    mats = []
    for axis, a in zip(seq.lower(), ang):
        c, s = np.cos(a), np.sin(a)
        i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        mats.append(m)
    if seq.islower():
        mats.reverse()                       # fixed axes: the first turn is applied first
    return mats[0] @ mats[1] @ mats[2]


def mounting_matrix(spec: Any) -> np.ndarray:
    """The rotation (3, 3) sensor -> skin of a mounting spec (None: square to the skin)."""
    if spec is None:
        return np.eye(3)
    if not isinstance(spec, dict) or len(spec) == 0:
        raise ValueError("mounting must be an object with 'matrix' (3x3) or "
                         "'euler_deg' [a, b, c] (+ optional 'seq', default 'xyz')")
    if "matrix" in spec:
        try:
            m = np.asarray(spec["matrix"], dtype=float)
        except (TypeError, ValueError):
            raise ValueError("mounting matrix must be 3 rows of 3 numbers") from None
        if m.shape != (3, 3) or not np.all(np.isfinite(m)):
            raise ValueError(f"mounting matrix must be 3x3 finite, got shape {m.shape}")
        err = np.abs(m.T @ m - np.eye(3)).max()
        if err > 1e-4:
            raise ValueError(f"bad rotation: mounting matrix is not orthonormal "
                             f"(max |M^T M - I| = {err:.3g}); give a proper rotation matrix")
        if np.linalg.det(m) < 0:
            raise ValueError("bad rotation: mounting matrix has determinant -1 (a "
                             "reflection); swap the sign of one axis")
        return m
    if "euler_deg" in spec:
        try:
            return euler_matrix(spec.get("seq", "xyz"), spec["euler_deg"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad rotation: euler_deg/seq ({e})") from None
    raise ValueError(f"mounting needs 'matrix' or 'euler_deg', got keys {sorted(spec)}")
