"""The face model: ICT FaceKit's neutral head, 53 expression shapes and 20 identities.

``FaceModel`` turns batches of ARKit blendshape frames into vertices (metres), and gives the
position and orientation of points on the skin (where sensors sit) for those frames, from the
deformed local triangle frame.

The shipped data (``hardware/data/ict_facekit``) is a converted copy of ICT-FaceKit
(USC Institute for Creative Technologies, MIT licence, see the LICENSE beside it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imusic.hardware.vocabulary import ICT_TO_ARKIT_INDEX, N_BLENDSHAPES

DATA_PATH = Path(__file__).parent / "data" / "ict_facekit" / "ict_face.npz"
"""The packaged face model (centimetres in the file, metres in the API)."""

N_IDENTITIES = 20
N_VERTICES = 24591
"""Vertices of the packaged head (a rig's anchor indices are checked against these sizes
without loading the mesh; ``FaceModel.load`` checks that the file has them)."""
N_TRIANGLES = 48836
N_LANDMARKS = 68
"""Multi-PIE landmarks of the packaged model."""
_CM = 0.01


@dataclass(frozen=True)
class SurfacePoint:
    """A point on the mesh: a triangle and barycentric weights (summing to 1)."""

    triangle: int
    barycentric: tuple[float, float, float]


class FaceModel:
    """ICT FaceKit blendshape face, vectorised over frames.

    >>> face = FaceModel.load()
    >>> verts = face.vertices(np.zeros((10, 52)))        # (10, V, 3) metres
    """

    def __init__(self, neutral: np.ndarray, triangles: np.ndarray, expression_deltas: np.ndarray,
                 identity_deltas: np.ndarray, groups: dict[str, slice], landmarks: np.ndarray):
        self.neutral = neutral.astype(np.float32)                      # (V, 3) m
        self.triangles = triangles.astype(np.int32)                    # (F, 3)
        # ARKit (52) -> vertices directly: fold the ICT split halves into their ARKit shape.
        n_vert = neutral.shape[0]
        basis = np.zeros((N_BLENDSHAPES, n_vert * 3), dtype=np.float32)
        flat = expression_deltas.reshape(len(expression_deltas), -1).astype(np.float32)
        np.add.at(basis, ICT_TO_ARKIT_INDEX, flat)
        self._basis = basis                                            # (52, V*3) m
        self.identity_deltas = identity_deltas.astype(np.float32)      # (20, V, 3) m
        self.groups = groups
        self.landmarks = landmarks.astype(np.int64)

    @classmethod
    @functools.cache
    def load(cls, path: Path | str = DATA_PATH) -> "FaceModel":
        """Load (once per process) the face model from an ``ict_face.npz`` file."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"face model not found at {path}: reinstall imusic (the file ships with the "
                "package) or pass the path of a converted ICT FaceKit npz"
            )
        with np.load(path) as d:
            groups = {}
            for entry in d["groups"]:
                name, start, stop = str(entry).split(":")
                groups[name] = slice(int(start), int(stop))
            sizes = (len(d["neutral"]), len(d["triangles"]), len(d["landmarks_multipie68"]))
            if sizes != (N_VERTICES, N_TRIANGLES, N_LANDMARKS):
                raise ValueError(f"face model {path} has {sizes} vertices, triangles, "
                                 f"landmarks; imusic's rigs expect {N_VERTICES}, "
                                 f"{N_TRIANGLES}, {N_LANDMARKS}")
            return cls(
                neutral=d["neutral"] * _CM,
                triangles=d["triangles"],
                expression_deltas=d["expression_deltas"].astype(np.float32) * _CM,
                identity_deltas=d["identity_deltas"].astype(np.float32) * _CM,
                groups=groups,
                landmarks=d["landmarks_multipie68"],
            )

    @property
    def n_vertices(self) -> int:
        """Number of vertices of the full head."""
        return int(self.neutral.shape[0])

    def rest_shape(self, identity: int | None = None) -> np.ndarray:
        """Neutral vertices ``(V, 3)`` in metres, of the generic head or one of the 20
        identities."""
        if identity is None:
            return self.neutral
        if not 0 <= identity < N_IDENTITIES:
            raise ValueError(f"identity must be 0..{N_IDENTITIES - 1} or None, got {identity}")
        return self.neutral + self.identity_deltas[identity]

    def vertices(self, weights: np.ndarray, identity: int | None = None) -> np.ndarray:
        """Vertices ``(T, V, 3)`` float32 metres for blendshape frames ``(T, 52)``.

        A single frame ``(52,)`` gives ``(V, 3)``. Weights are used as given (no clipping).
        """
        weights = np.asarray(weights, dtype=np.float32)
        single = weights.ndim == 1
        w = np.atleast_2d(weights)
        if w.shape[-1] != N_BLENDSHAPES:
            raise ValueError(f"expected (T, 52) ARKit weights, got shape {weights.shape}")
        out = (w @ self._basis).reshape(len(w), -1, 3) + self.rest_shape(identity)
        return out[0] if single else out

    def vertex_subset(self, weights: np.ndarray, indices: np.ndarray,
                      identity: int | None = None, dtype: Any = np.float32) -> np.ndarray:
        """Like ``vertices`` but only for ``indices``: ``(T, len(indices), 3)``; cheap.
        ``dtype=np.float64`` blends in double precision (for references in tests)."""
        w = np.atleast_2d(np.asarray(weights, dtype=dtype))
        idx = np.asarray(indices, dtype=np.int64)
        cols = (idx[:, None] * 3 + np.arange(3)).ravel()
        rest = self.rest_shape(identity)[idx].astype(dtype)
        return (w @ self._basis[:, cols].astype(dtype)).reshape(len(w), len(idx), 3) + rest

    def expression_delta(self, shape: int) -> np.ndarray:
        """The displacement ``(V, 3)`` (m, float32) of ARKit shape ``shape`` at weight 1."""
        return self._basis[shape].reshape(-1, 3)

    def vertex_point(self, vertex: int) -> SurfacePoint:
        """A ``SurfacePoint`` exactly at a vertex, on the first triangle that uses it."""
        rows, cols = np.nonzero(self.triangles == vertex)
        if len(rows) == 0:
            raise ValueError(f"vertex {vertex} belongs to no triangle of the face model")
        bary = [0.0, 0.0, 0.0]
        bary[int(cols[0])] = 1.0
        return SurfacePoint(int(rows[0]), (bary[0], bary[1], bary[2]))

    def surface_frames(self, weights: np.ndarray, points: list[SurfacePoint],
                       identity: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Position ``(T, P, 3)`` (m) and orientation ``(T, P, 3, 3)`` of skin points.

        The frame of a point is its triangle's: x along the first edge, z the outward
        normal, y = z x x. Columns of each 3x3 matrix are the frame's axes in head
        coordinates (a rotation from the local skin frame to the head frame).
        """
        tri = self.triangles[[p.triangle for p in points]]                    # (P, 3)
        bary = np.array([p.barycentric for p in points], dtype=np.float64)   # (P, 3)
        corners = self.vertex_subset(weights, tri.ravel(), identity)
        corners = corners.reshape(corners.shape[0], len(points), 3, 3).astype(np.float64)
        pos = np.einsum("tpkc,pk->tpc", corners, bary)
        e1 = corners[:, :, 1] - corners[:, :, 0]
        e2 = corners[:, :, 2] - corners[:, :, 0]
        z = np.cross(e1, e2)
        z /= np.linalg.norm(z, axis=-1, keepdims=True)
        x = e1 / np.linalg.norm(e1, axis=-1, keepdims=True)
        y = np.cross(z, x)
        rot = np.stack([x, y, z], axis=-1)
        return pos, rot
