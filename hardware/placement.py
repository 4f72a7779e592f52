"""Where a rig's sites sit on the face model: the twin side of a rig.

A rig (``hardware.rig``) is a small descriptor: names, chips, mountings, the reference, and
for each site an *anchor spec* (``{"landmark": 8, "offset_cm": [0, 1.2, 0]}``, checked
against the face model's published sizes but not resolved). Placing an anchor on the skin
needs the face mesh, so it happens here, lazily, the first time a site's ``anchor`` is
asked for (by the twin, the viewer or a test), and is cached per spec:

* ``resolve_anchor(spec)``: landmark(s) + offset, projected onto the nearest point of the
  skin (``project_to_skin``), or a vertex / triangle + barycentric as given;
* ``skin_patch(anchor)``: the skin triangles under a glued board;
* ``skin_frames_at_rest(face, points)``: the skin frame (outward normal, head-up in the
  tangent plane) at surface points; ``normals`` may replace the triangle normals (the twin
  passes the patch mean normals, ``patch_normals``).

Reading a rig therefore never loads the mesh (``load_rig`` takes milliseconds), and a rig
whose sites have no anchor (a real device's) loads and works everywhere but in the twin.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from imusic.hardware.face import FaceModel, SurfacePoint

TIE_TOLERANCE_M = 1e-9
"""Distances to the skin closer than this (a nanometre) are a tie in ``project_to_skin``."""


@functools.cache
def _face_triangles() -> tuple[np.ndarray, np.ndarray]:
    """Indices and centroids of the triangles of the skin (the ``face`` vertex group)."""
    face = FaceModel.load()
    g = face.groups["face"]
    tri = face.triangles
    keep = np.all((tri >= g.start) & (tri < g.stop), axis=1)
    idx = np.nonzero(keep)[0]
    cent = face.neutral[tri[idx]].mean(axis=1)
    return idx, cent


def _closest_on_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray,
                         c: np.ndarray) -> np.ndarray:
    """Barycentric weights (3,) of the point of triangle abc closest to p (Ericson's
    region tests, written out for one triangle)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = ab @ ap, ac @ ap
    if d1 <= 0 and d2 <= 0:
        return np.array([1.0, 0.0, 0.0])
    bp = p - b
    d3, d4 = ab @ bp, ac @ bp
    if d3 >= 0 and d4 <= d3:
        return np.array([0.0, 1.0, 0.0])
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        v = d1 / (d1 - d3)
        return np.array([1 - v, v, 0.0])
    cp = p - c
    d5, d6 = ab @ cp, ac @ cp
    if d6 >= 0 and d5 <= d6:
        return np.array([0.0, 0.0, 1.0])
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        w = d2 / (d2 - d6)
        return np.array([1 - w, 0.0, w])
    va = d3 * d6 - d5 * d4
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        return np.array([0.0, 1 - w, w])
    denom = 1.0 / (va + vb + vc)
    v, w = vb * denom, vc * denom
    return np.array([1 - v - w, v, w])


def project_to_skin(point: np.ndarray) -> SurfacePoint:
    """The point of the face's skin surface (neutral generic head) closest to ``point`` (m).

    A point on an edge or a vertex is as close to every triangle that shares it; the last
    bits of the distances then depend on the BLAS kernel that computed them (they differ
    with ``OPENBLAS_CORETYPE``), so distances within ``TIE_TOLERANCE_M`` are a tie and the
    lowest triangle index wins. The anchor, and with it the twin, is the same on every
    machine.
    """
    face = FaceModel.load()
    idx, cent = _face_triangles()
    p = np.asarray(point, dtype=np.float64)
    near = idx[np.argsort(np.linalg.norm(cent - p, axis=1))[:32]]
    best, best_d = None, np.inf
    for f in sorted(int(f) for f in near):
        a, b, c = face.neutral[face.triangles[f]].astype(np.float64)
        bary = _closest_on_triangle(p, a, b, c)
        d = float(np.sqrt(np.sum((bary[0] * a + bary[1] * b + bary[2] * c - p) ** 2)))
        if d < best_d - TIE_TOLERANCE_M:          # ascending ids: a tie keeps the lower one
            best, best_d = SurfacePoint(f, (float(bary[0]), float(bary[1]),
                                            float(bary[2]))), d
    assert best is not None
    return best


@functools.cache
def _resolve(key: str) -> SurfacePoint:
    spec = json.loads(key)
    face = FaceModel.load()
    if "triangle" in spec:
        b = spec["barycentric"]
        return SurfacePoint(int(spec["triangle"]), (float(b[0]), float(b[1]), float(b[2])))
    if "vertex" in spec:
        verts = [int(spec["vertex"])]
        if "offset_cm" not in spec:
            return face.vertex_point(verts[0])
    else:
        lms = [spec["landmark"]] if "landmark" in spec else spec["landmarks"]
        verts = [int(face.landmarks[i]) for i in lms]
    point = face.neutral[verts].astype(np.float64).mean(axis=0)
    if "offset_cm" in spec:
        point = point + np.asarray(spec["offset_cm"], dtype=float).reshape(3) * 0.01
    return project_to_skin(point)


def resolve_anchor(spec: dict[str, Any]) -> SurfacePoint:
    """The surface point of an anchor spec that ``hardware.rig`` has checked (cached)."""
    return _resolve(json.dumps(spec, sort_keys=True))


def skin_patch(anchor: SurfacePoint, radius_m: float = 0.005) -> list[SurfacePoint]:
    """Skin triangles (as centroid points) within ``radius_m`` of an anchor, the anchor's
    own triangle first: the patch a glued sensor board rests on. Its orientation is the
    average of the patch's triangles, which is steadier than one small triangle."""
    face = FaceModel.load()
    idx, cent = _face_triangles()
    centre = np.asarray(anchor.barycentric) @ face.neutral[face.triangles[anchor.triangle]]
    near = idx[np.linalg.norm(cent - centre, axis=1) <= radius_m]
    third = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)
    return [SurfacePoint(anchor.triangle, anchor.barycentric)] + [
        SurfacePoint(int(f), third) for f in near if int(f) != anchor.triangle]


def patch_normals(face: FaceModel, patches: list[list[SurfacePoint]], rest: np.ndarray
                  ) -> np.ndarray:
    """Area-weighted mean outward normals ``(P, 3)`` (unit) of skin patches on the rest
    vertices ``rest`` (V, 3)."""
    out = []
    for patch in patches:
        corners = rest[face.triangles[[p.triangle for p in patch]]].astype(np.float64)
        n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).sum(axis=0)
        out.append(n / np.linalg.norm(n))
    return np.array(out)


def skin_frames_at_rest(face: FaceModel, points: list[SurfacePoint],
                        identity: int | None = None,
                        normals: np.ndarray | None = None) -> np.ndarray:
    """Skin frames ``(P, 3, 3)`` (skin -> head) of surface points on the neutral face: z the
    outward normal (of the point's triangle, or ``normals`` (P, 3) when given), y the head's
    up direction in the tangent plane, x = y cross z."""
    if normals is None:
        _, tri_rot = face.surface_frames(np.zeros((1, 52)), points, identity)
        z = tri_rot[0, :, :, 2]
    else:
        z = np.asarray(normals, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0])
    y = up - (z @ up)[:, None] * z
    # Near-horizontal skin (chin underside) has no good "up": use forward instead.
    weak = np.linalg.norm(y, axis=1) < 0.2
    fwd = np.array([0.0, 0.0, 1.0])
    y[weak] = fwd - (z[weak] @ fwd)[:, None] * z[weak]
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)
