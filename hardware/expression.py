"""The twin's facial deformation: ICT FaceKit's expression deltas, made less flattering.

``TwinFace(identity, cfg)`` blends the vertices the twin needs (``vertices(weights, ids)``)
as ``FaceModel.vertex_subset`` does, with two changes (TWIN.md, "Expressions"):

* **The jaw follows the mandible** (``jaw_hinge``). ICT's ``jawOpen`` moves the lower teeth
  rigidly (25 deg about a transverse axis, 41 mm at the incisors) but its chin skin mostly
  translates (the chin board turned 11 deg). Skin vertices are pulled toward the teeth's rigid
  motion by ``m**2``, ``m`` being how far (0..1) ICT already moves them along the mandible's
  path: the chin, which ICT moves 87 % of the bone's path, then turns with the bone.
* **Every identity is its own person** (``person``). Per identity (seeded by the identity
  alone, so the same identity is the same person in every session): a gain per ARKit shape
  (log-normal), a little mixing into other shapes of the same region (a person's jawOpen
  also stretches their lips a bit), and a smooth spatial gain field over the face (where on
  the face a shape moves most differs by person). The generic head (identity None) is ICT's
  mean person and has none of it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from imusic.hardware.face import FaceModel, SurfacePoint
from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES, REGIONS

JAW = ARKIT_NAMES.index("jawOpen")


@dataclass(frozen=True)
class PersonConfig:
    """How much the 20 identities differ in their expressions (all assumptions, TWIN.md)."""

    gain_sigma: float = 0.2
    """Std of the log gain of each ARKit shape per person (0.2: 1 sigma = -18 %/+22 %)."""
    mix_probability: float = 0.25
    """Chance that a shape leaks into another shape of its region, per pair and person."""
    mix_max: float = 0.15
    """Largest leak (weight of the other shape per unit weight), uniform in [0, mix_max]."""
    field_sigma: float = 0.08
    """Std of the log of the spatial gain field over the face."""
    field_wavelength_m: float = 0.15
    """Wavelength of the field's plane waves (m): smooth across a board, varying across a face."""
    field_waves: int = 8
    """Number of random plane waves summed into the field."""


class Person:
    """The expression style of one identity: weight transform and spatial gain field."""

    def __init__(self, identity: int, cfg: PersonConfig = PersonConfig()):
        rng = np.random.default_rng(np.random.SeedSequence([identity, 0xFACE]))
        gains = np.exp(rng.standard_normal(N_BLENDSHAPES) * cfg.gain_sigma)
        mix = np.diag(gains)
        index = {n: i for i, n in enumerate(ARKIT_NAMES)}
        for names in REGIONS.values():
            ids = [index[n] for n in names]
            for j in ids:
                for k in ids:
                    leak = rng.uniform(0.0, cfg.mix_max)
                    if j != k and rng.uniform() < cfg.mix_probability:
                        mix[j, k] += leak
        self.identity = identity
        self.mix = mix                                   # (52, 52): w_person = w @ mix
        direction = rng.standard_normal((cfg.field_waves, 3))
        self.wave = direction / np.linalg.norm(direction, axis=1, keepdims=True) * (
            2 * math.pi / cfg.field_wavelength_m)        # (K, 3) rad/m
        self.phase = rng.uniform(0.0, 2 * math.pi, cfg.field_waves)
        self.field_sigma = cfg.field_sigma

    def gain(self, x: np.ndarray) -> np.ndarray:
        """Spatial gain (n,) of the expression deltas at neutral positions ``x`` (n, 3) m."""
        k = len(self.phase)
        s = np.cos(x @ self.wave.T + self.phase).sum(axis=1) * math.sqrt(2.0 / k)
        return np.exp(self.field_sigma * s)


@functools.cache
def mandible_motion() -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3, 3) and translation t (3,) (m) that ICT's jawOpen at weight 1 gives the
    lower teeth (a rigid Kabsch fit to every teeth vertex it moves)."""
    face = FaceModel.load()
    d = face.expression_delta(JAW).astype(np.float64)
    x = face.neutral.astype(np.float64)
    g = face.groups["teeth"]
    moved = np.arange(g.start, g.stop)[np.linalg.norm(d[g], axis=1) > 1e-4]
    p, q = x[moved], x[moved] + d[moved]
    u, _, vt = np.linalg.svd((p - p.mean(0)).T @ (q - q.mean(0)))
    r = vt.T @ np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))]) @ u.T
    return r, q.mean(0) - r @ p.mean(0)


@functools.cache
def jaw_correction() -> np.ndarray:
    """(V, 3) m added to the jawOpen delta so that skin moved along the mandible's path turns
    with it: ``m**2 (rigid - ict)`` on the skin, ``m`` the fraction of the path ICT covers."""
    face = FaceModel.load()
    d = face.expression_delta(JAW).astype(np.float64)
    x = face.neutral.astype(np.float64)
    r, t = mandible_motion()
    rigid = x @ r.T + t - x
    m = np.clip((d * rigid).sum(1) / np.maximum((rigid ** 2).sum(1), 1e-12), 0.0, 1.0)
    out = np.zeros_like(d)
    g = face.groups["face"]
    out[g] = (m[g] ** 2)[:, None] * (rigid[g] - d[g])
    return out


class TwinFace:
    """The face the twin deforms: one identity, with ``jaw_hinge`` and ``person`` on or off."""

    def __init__(self, identity: int | None = None, jaw_hinge: bool = True,
                 person: PersonConfig | None = PersonConfig()):
        self.face = FaceModel.load()
        self.identity = identity
        self.rest = self.face.rest_shape(identity)                  # (V, 3) float32
        self.jaw = jaw_correction() if jaw_hinge else None
        self.person = Person(identity, person) if person is not None and identity is not None \
            else None

    def vertices(self, weights: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Vertices ``(T, len(ids), 3)`` float64 m of ``ids`` for blendshape frames (T, 52)."""
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        ids = np.asarray(ids, dtype=np.int64)
        if self.jaw is None and self.person is None:
            return self.face.vertex_subset(w, ids, self.identity).astype(np.float64)
        if self.person is not None:
            w = w @ self.person.mix
        rest = self.rest[ids].astype(np.float64)
        d = self.face.vertex_subset(w, ids, self.identity, dtype=np.float64) - rest
        if self.jaw is not None:
            d += w[:, JAW, None, None] * self.jaw[ids][None]
        if self.person is not None:
            d *= self.person.gain(self.face.neutral[ids].astype(np.float64))[None, :, None]
        return rest + d

    def points(self, weights: np.ndarray, points: list[SurfacePoint]) -> np.ndarray:
        """Positions ``(T, P, 3)`` m of surface points for blendshape frames (T, 52)."""
        tri = self.face.triangles[[p.triangle for p in points]]
        bary = np.array([p.barycentric for p in points], dtype=np.float64)
        corners = self.vertices(weights, tri.ravel()).reshape(-1, len(points), 3, 3)
        return np.einsum("tpkc,pk->tpc", corners, bary)
