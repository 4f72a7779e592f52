"""Sensor markers: a small box and a tiny coordinate frame per rig site, riding on the skin.

All markers of a face are merged into one Open3D mesh whose vertices are rewritten each frame
from the skin frames that ``FaceModel.surface_frames`` gives (one geometry update per frame,
not one per sensor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imusic.hardware.face import FaceModel, SurfacePoint
from imusic.viewer.colors import REGION_COLORS

BOX_MM = (7.0, 7.0, 2.0)
"""Marker box size (x, y, thickness along the skin normal), about a QMI8658 breakout."""

AXIS_MM = 12.0
"""Length of each marker's axis arrows (x red, y green, z blue)."""


@dataclass(frozen=True)
class MarkerSite:
    """Where one sensor sits: a skin point, the sensor axes in the skin frame, a colour."""

    name: str
    point: SurfacePoint
    mounting: np.ndarray            # (3, 3): columns = sensor axes in the triangle frame
    color: tuple[float, float, float]
    reference: bool = False
    board: np.ndarray | None = None  # (3, 3): columns = board edges in the triangle frame


def _as_point(face: FaceModel, anchor: Any) -> SurfacePoint:
    if isinstance(anchor, SurfacePoint):
        return anchor
    if isinstance(anchor, (int, np.integer)):
        return face.vertex_point(int(anchor))
    if hasattr(anchor, "triangle") and hasattr(anchor, "barycentric"):
        return SurfacePoint(int(anchor.triangle), tuple(float(b) for b in anchor.barycentric))
    raise TypeError(f"cannot place a marker at {anchor!r}: expected a vertex id or SurfacePoint")


def _as_rotation(mounting: Any) -> np.ndarray:
    """A 3x3 matrix from a matrix, a scipy Rotation, or None (sensor axes = skin axes)."""
    if mounting is None:
        return np.eye(3)
    if hasattr(mounting, "as_matrix"):
        return np.asarray(mounting.as_matrix(), np.float64)
    m = np.asarray(mounting, np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"sensor mounting must be a 3x3 rotation, got shape {m.shape}")
    return m


def sites_from_rig(face: FaceModel, rig: Any, identity: int | None = None) -> list[MarkerSite]:
    """Marker sites for a ``hardware.rig.Rig`` (its ``.sites`` with ``.name``, ``.anchor``,
    ``.region``, ``.mounting``; ``.reference`` names the reference site).

    The rig's mounting is sensor -> *skin* frame (y = head up in the tangent plane, from
    ``hardware.rig.skin_frames_at_rest``); the face model's frames are triangle frames, so
    the constant skin -> triangle rotation at rest is put in front of it and then carried
    along with the triangle as the face moves.
    """
    from imusic.hardware.rig import skin_frames_at_rest

    reference = getattr(rig, "reference", None)
    points = [_as_point(face, site.anchor) for site in rig.sites]
    offsets = np.zeros((0, 3, 3))
    if points:
        skin = skin_frames_at_rest(face, points, identity)                   # skin -> head
        _, tri = face.surface_frames(np.zeros((1, 52)), points, identity)    # tri -> head
        offsets = np.einsum("pji,pjk->pik", tri[0], skin)                   # skin -> tri
    out = []
    for site, point, skin in zip(rig.sites, points, offsets):
        ref = site.name == reference
        color = (0.15, 0.15, 0.15) if ref else REGION_COLORS.get(
            getattr(site, "region", ""), (0.5, 0.5, 0.5))
        mounting = skin @ _as_rotation(getattr(site, "mounting", None))
        out.append(MarkerSite(site.name, point, mounting, color, ref, board=skin))
    return out


def _box(size_mm: tuple[float, float, float], shift_mm: tuple[float, float, float] = (0, 0, 0)
         ) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (8, 3) m and outward-wound triangles (12, 3) of a box centred at ``shift``."""
    half = np.asarray(size_mm, np.float64) / 2000.0
    centre = np.asarray(shift_mm, np.float64) / 1000.0
    corners = np.array([[x, y, z] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)]) * half
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return corners + centre, np.array(tris, np.int32)


def _axes(length_mm: float, width_mm: float = 0.7
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three thin bars along x, y, z (vertices, triangles, colours), starting at the origin."""
    verts, tris, cols = [], [], []
    for axis, color in enumerate(((0.9, 0.1, 0.1), (0.1, 0.7, 0.1), (0.1, 0.2, 0.9))):
        size, shift = [width_mm] * 3, [0.0] * 3
        size[axis], shift[axis] = length_mm, length_mm / 2
        v, t = _box(tuple(size), tuple(shift))
        tris.append(t + sum(len(x) for x in verts))
        verts.append(v)
        cols.append(np.tile(color, (len(v), 1)))
    return np.concatenate(verts), np.concatenate(tris), np.concatenate(cols)


class MarkerSet:
    """The markers of one face as one mesh: local geometry per site, posed each frame."""

    def __init__(self, face: FaceModel, sites: list[MarkerSite], identity: int | None = None,
                 to_scene: Callable[[np.ndarray], np.ndarray] | None = None):
        import open3d as o3d

        self.face, self.sites, self.identity = face, sites, identity
        self.to_scene = to_scene or (lambda p: p)
        box_v, box_t = _box(BOX_MM, (0.0, 0.0, BOX_MM[2] / 2))
        ax_v, ax_t, ax_c = _axes(AXIS_MM)
        local, tris, cols, owner = [], [], [], []
        for i, site in enumerate(sites):
            base = sum(len(x) for x in local)
            # The box lies in the skin frame; the axes show the sensor frame (mounting).
            board = np.eye(3) if site.board is None else site.board
            local += [box_v @ board.T, ax_v @ site.mounting.T]
            tris += [box_t + base, ax_t + base + len(box_v)]
            cols += [np.tile(site.color, (len(box_v), 1)), ax_c]
            owner += [np.full(len(box_v) + len(ax_v), i)]
        self._local = np.concatenate(local) if local else np.zeros((0, 3))
        self._owner = np.concatenate(owner) if owner else np.zeros(0, np.intp)
        self._points = [s.point for s in sites]
        self.mesh = o3d.geometry.TriangleMesh()
        self.mesh.vertices = o3d.utility.Vector3dVector(self._local.copy())
        self.mesh.triangles = o3d.utility.Vector3iVector(
            np.concatenate(tris) if tris else np.zeros((0, 3), np.int32))
        self.mesh.vertex_colors = o3d.utility.Vector3dVector(
            np.concatenate(cols) if cols else np.zeros((0, 3)))

    def poses(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Skin positions ``(P, 3)`` and rotations ``(P, 3, 3)`` of the sites for one frame."""
        pos, rot = self.face.surface_frames(np.asarray(weights)[None, :52], self._points,
                                            self.identity)
        return pos[0], rot[0]

    def update(self, weights: np.ndarray) -> None:
        """Move every marker to the skin pose of this frame (52 weights)."""
        import open3d as o3d

        if not self.sites:
            return
        pos, rot = self.poses(weights)
        world = np.einsum("nij,nj->ni", rot[self._owner], self._local) + pos[self._owner]
        self.mesh.vertices = o3d.utility.Vector3dVector(self.to_scene(world))
        self.mesh.compute_vertex_normals()
