"""Rigs: where the sensors sit on the face, which parts they are, how they are mounted.

A rig is a JSON data file in ``hardware/rigs/`` (see TWIN.md for the format and for how
each anchor was chosen). ``load_rig("imusic11")`` or ``load_rig(path)`` reads one, checks it,
and resolves every site's anchor to a point on the face model's surface. A bad file raises
``RigError`` naming the file, the site and what to change.

Two kinds of rig. A *twin rig* (imusic11, imusic6) anchors every site on the face model and
names its chips, so the digital twin can simulate it. A *device rig* describes a real device
whose sensors are known only by id (``imusic_release``: the IMUSIC authors' 11 sensors
``000``..``020``): sites without ``anchor`` (and optionally without region, muscle, part),
and the ``quantities`` the device reports (``acc``, ``gyro``, ``mag``, ``quat``). Everything
but the twin works with either; ``Rig.require_twin`` says in one line why the twin cannot
simulate a device rig.

Frames. The *skin frame* of a site is built on the face surface at its anchor: z the outward
normal, y the head's up direction projected onto the skin's tangent plane, x = y cross z (so
on the forehead the skin frame is roughly the head frame: x to the subject's left, y up, z
forward). It deforms with the mesh. ``Site.mounting`` is the rotation from the *sensor frame*
to the skin frame (its columns are the chip's x, y, z axes in skin coordinates).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware.face import FaceModel, SurfacePoint
from hardware.vocabulary import REGIONS

RIGS_DIR = Path(__file__).parent / "rigs"
"""Where the shipped rig files live."""

RIG_SCHEMA = "imusic.rig"
SITE_REGIONS = tuple(REGIONS) + ("rigid",)
"""Allowed site regions: the blendshape regions, or ``rigid`` for the reference."""

QUANTITIES = ("acc", "gyro", "mag")
"""What a nine-axis part measures (and what the twin simulates)."""
REPORTED_QUANTITIES = QUANTITIES + ("quat",)
"""What a device may report per site: ``quat`` is the sensor's orientation (unit quaternion,
scalar first, sensor-to-earth) from on-device fusion."""

_SITE_KEYS = {"name", "muscle", "region", "side", "anchor", "anchor_note", "part", "mounting",
              "note", "quantities"}
_ANCHOR_KEYS = {"landmark", "landmarks", "vertex", "triangle", "barycentric", "offset_cm"}


class RigError(ValueError):
    """A rig file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Site:
    """One sensor site of a rig."""

    name: str
    muscle: str                    # "" when unknown (a device rig)
    region: str                    # "" when unknown (a device rig)
    anchor: SurfacePoint | None    # resolved point on the face surface; None: not on the model
    part: str                      # parts joined by "+", e.g. "QMI8658C+QMC5883P"; "" unknown
    mounting: np.ndarray           # (3, 3) sensor frame -> skin frame
    side: str = "center"           # "left" | "right" | "center" (the subject's side)
    anchor_spec: dict = field(default_factory=dict, compare=False)
    anchor_note: str = ""
    quantities: tuple[str, ...] = QUANTITIES   # what the site reports, canonical order

    @property
    def parts(self) -> tuple[str, ...]:
        """The individual part names of ``part``."""
        return tuple(p.strip() for p in self.part.split("+")) if self.part else ()


@dataclass(frozen=True)
class Rig:
    """A validated rig: sites in their wire/stream order, and the reference site's name."""

    id: str
    sites: list[Site]
    reference: str
    description: str = ""
    path: Path | None = None
    settings: dict = field(default_factory=dict)    # range settings per quantity

    @property
    def site_names(self) -> list[str]:
        """Site names in rig order (the order of channels on the wire and in LSL)."""
        return [s.name for s in self.sites]

    @property
    def n_sites(self) -> int:
        """Number of sensors, reference included."""
        return len(self.sites)

    @property
    def reference_index(self) -> int:
        """Index of the reference site in ``sites``."""
        return self.site_names.index(self.reference)

    @property
    def quantities(self) -> tuple[str, ...]:
        """Every quantity some site reports, in canonical order."""
        have = {q for s in self.sites for q in s.quantities}
        return tuple(q for q in REPORTED_QUANTITIES if q in have)

    @property
    def unanchored(self) -> list[str]:
        """Sites with no anchor on the face model (the twin cannot place them)."""
        return [s.name for s in self.sites if s.anchor is None]

    @property
    def simulatable(self) -> bool:
        """True when the digital twin can simulate the rig (every site anchored, with parts)."""
        return not self.unanchored and all(s.part for s in self.sites)

    def require_twin(self, what: str = "the twin") -> None:
        """Raise a one-line ``RigError`` when the twin cannot simulate this rig."""
        if self.unanchored:
            raise RigError(f"rig {self.id}: {what} cannot simulate it: sites "
                           f"{', '.join(self.unanchored)} have no anchor on the face model "
                           "(a device rig; give each site an 'anchor' and a 'part' to "
                           "simulate it, or use a twin rig such as imusic11)")

    def site(self, name: str) -> Site:
        """The site called ``name``."""
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(f"rig {self.id} has no site {name!r}; sites: {', '.join(self.site_names)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for LSL desc and session attributes)."""
        return {
            "id": self.id,
            "reference": self.reference,
            "quantities": list(self.quantities),
            "sites": [{"name": s.name, "muscle": s.muscle, "region": s.region, "side": s.side,
                       "part": s.part, "reference": s.name == self.reference,
                       "anchored": s.anchor is not None, "quantities": list(s.quantities),
                       "mounting": np.round(s.mounting, 6).tolist()} for s in self.sites],
        }


def available_rigs(twin: bool | None = None) -> list[str]:
    """Names of the rigs shipped in ``hardware/rigs``; ``twin=True`` only those the twin (and
    the project's own firmware) can run, ``twin=False`` only device rigs."""
    names = sorted(p.stem for p in RIGS_DIR.glob("*.json"))
    if twin is None:
        return names
    return [n for n in names if load_rig(n).simulatable == twin]


# --- geometry helpers -----------------------------------------------------------------------

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


TIE_TOLERANCE_M = 1e-9
"""Distances to the skin closer than this (a nanometre) are a tie in ``project_to_skin``."""


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


def skin_frames_at_rest(face: FaceModel, points: list[SurfacePoint],
                        identity: int | None = None) -> np.ndarray:
    """Skin frames ``(P, 3, 3)`` (skin -> head) of surface points on the neutral face: z the
    outward normal, y the head's up direction in the tangent plane, x = y cross z."""
    _, tri_rot = face.surface_frames(np.zeros((1, 52)), points, identity)
    z = tri_rot[0, :, :, 2]
    up = np.array([0.0, 1.0, 0.0])
    y = up - (z @ up)[:, None] * z
    # Near-horizontal skin (chin underside) has no good "up": use forward instead.
    weak = np.linalg.norm(y, axis=1) < 0.2
    fwd = np.array([0.0, 0.0, 1.0])
    y[weak] = fwd - (z[weak] @ fwd)[:, None] * z[weak]
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)


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


# --- loading --------------------------------------------------------------------------------

def _fail(path: Path | str, msg: str) -> RigError:
    return RigError(f"rig file {path}: {msg}")


def _resolve_anchor(spec: Any, where: str, path: Path | str) -> SurfacePoint:
    face = FaceModel.load()
    if not isinstance(spec, dict):
        raise _fail(path, f"{where}: anchor must be an object such as "
                          '{"landmark": 8, "offset_cm": [0, 1, 0]}')
    unknown = set(spec) - _ANCHOR_KEYS
    if unknown:
        raise _fail(path, f"{where}: unknown anchor key(s) {sorted(unknown)}; "
                          f"allowed: {sorted(_ANCHOR_KEYS)}")
    n_lm = len(face.landmarks)
    kinds = [k for k in ("landmark", "landmarks", "vertex", "triangle") if k in spec]
    if len(kinds) != 1:
        raise _fail(path, f"{where}: anchor needs exactly one of landmark, landmarks, vertex, "
                          f"triangle (got {kinds or 'none'})")
    kind = kinds[0]

    def landmark(i: Any) -> int:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n_lm:
            raise _fail(path, f"{where}: unknown anchor landmark {i!r}: the face model has "
                              f"Multi-PIE landmarks 0..{n_lm - 1}")
        return int(face.landmarks[i])

    if kind == "triangle":
        f, bary = spec["triangle"], spec.get("barycentric")
        if not isinstance(f, int) or not 0 <= f < len(face.triangles):
            raise _fail(path, f"{where}: unknown anchor triangle {f!r} "
                              f"(0..{len(face.triangles) - 1})")
        try:
            b = np.asarray(bary, dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise _fail(path, f"{where}: triangle anchor needs barycentric [u, v, w]") from None
        if np.any(b < -1e-9) or abs(b.sum() - 1) > 1e-6:
            raise _fail(path, f"{where}: barycentric {b.tolist()} must be >= 0 and sum to 1")
        if "offset_cm" in spec:
            raise _fail(path, f"{where}: a triangle anchor takes no offset_cm")
        return SurfacePoint(int(f), (float(b[0]), float(b[1]), float(b[2])))
    if kind == "vertex":
        v = spec["vertex"]
        if not isinstance(v, int) or not 0 <= v < face.n_vertices:
            raise _fail(path, f"{where}: unknown anchor vertex {v!r} (0..{face.n_vertices - 1})")
        verts = [v]
    elif kind == "landmark":
        verts = [landmark(spec["landmark"])]
    else:
        lms = spec["landmarks"]
        if not isinstance(lms, list) or not lms:
            raise _fail(path, f"{where}: landmarks must be a non-empty list of landmark numbers")
        verts = [landmark(i) for i in lms]
    point = face.neutral[verts].astype(np.float64).mean(axis=0)
    if "offset_cm" in spec:
        try:
            off = np.asarray(spec["offset_cm"], dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise _fail(path, f"{where}: offset_cm must be [dx, dy, dz] in cm") from None
        if not np.all(np.isfinite(off)) or np.linalg.norm(off) > 6.0:
            raise _fail(path, f"{where}: offset_cm {off.tolist()} must be finite and under 6 cm")
        point = point + off * 0.01
    if kind == "vertex" and "offset_cm" not in spec:
        return face.vertex_point(verts[0])
    sp = project_to_skin(point)
    return sp


def _rotation(spec: Any, where: str, path: Path | str) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    if spec is None:
        return np.eye(3)
    if not isinstance(spec, dict) or len(spec) == 0:
        raise _fail(path, f"{where}: mounting must be an object with 'matrix' (3x3) or "
                          "'euler_deg' [a, b, c] (+ optional 'seq', default 'xyz')")
    if "matrix" in spec:
        try:
            m = np.asarray(spec["matrix"], dtype=float)
        except (TypeError, ValueError):
            raise _fail(path, f"{where}: mounting matrix must be 3 rows of 3 numbers") from None
        if m.shape != (3, 3) or not np.all(np.isfinite(m)):
            raise _fail(path, f"{where}: mounting matrix must be 3x3 finite, got shape {m.shape}")
        err = np.abs(m.T @ m - np.eye(3)).max()
        if err > 1e-4:
            raise _fail(path, f"{where}: bad rotation: mounting matrix is not orthonormal "
                              f"(max |M^T M - I| = {err:.3g}); give a proper rotation matrix")
        if np.linalg.det(m) < 0:
            raise _fail(path, f"{where}: bad rotation: mounting matrix has determinant -1 (a "
                              "reflection); swap the sign of one axis")
        return m
    if "euler_deg" in spec:
        seq = spec.get("seq", "xyz")
        try:
            ang = np.asarray(spec["euler_deg"], dtype=float).reshape(3)
            return Rotation.from_euler(seq, ang, degrees=True).as_matrix()
        except (TypeError, ValueError) as e:
            raise _fail(path, f"{where}: bad rotation: euler_deg/seq ({e})") from None
    raise _fail(path, f"{where}: mounting needs 'matrix' or 'euler_deg', got keys {sorted(spec)}")


def _quantities(spec: Any, where: str, path: Path | str) -> tuple[str, ...]:
    """A checked list of reported quantities, in canonical order."""
    if not isinstance(spec, list) or not spec or not all(isinstance(q, str) for q in spec):
        raise _fail(path, f"{where} must be a non-empty list of {list(REPORTED_QUANTITIES)}")
    bad = sorted(set(spec) - set(REPORTED_QUANTITIES))
    if bad:
        raise _fail(path, f"{where}: unknown quantities {bad}; allowed: "
                          f"{list(REPORTED_QUANTITIES)}")
    if "acc" not in spec:
        raise _fail(path, f"{where}: every site must report 'acc' (got {spec})")
    return tuple(q for q in REPORTED_QUANTITIES if q in spec)


def _parse(data: Any, path: Path | str) -> Rig:
    from hardware.sensors import load_parts

    if not isinstance(data, dict):
        raise _fail(path, "top level must be a JSON object")
    if data.get("schema") != RIG_SCHEMA:
        raise _fail(path, f"schema must be {RIG_SCHEMA!r}, got {data.get('schema')!r}")
    rig_id = data.get("id")
    if not isinstance(rig_id, str) or not rig_id:
        raise _fail(path, "missing rig 'id' (a non-empty string)")
    sites_raw = data.get("sites")
    if not isinstance(sites_raw, list) or not sites_raw:
        raise _fail(path, "missing 'sites' (a non-empty list)")
    parts = load_parts()
    default_part = data.get("default_part")
    rig_quantities = _quantities(data.get("quantities", list(QUANTITIES)), "quantities", path)
    sites: list[Site] = []
    seen: set[str] = set()
    for i, s in enumerate(sites_raw):
        where = f"site #{i}"
        if not isinstance(s, dict):
            raise _fail(path, f"{where} must be an object")
        name = s.get("name")
        if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
            raise _fail(path, f"{where}: name must be a non-empty identifier "
                              f"(letters, digits, _), got {name!r}")
        where = f"site {name!r}"
        if name in seen:
            raise _fail(path, f"duplicate site name {name!r}: site names must be unique")
        seen.add(name)
        unknown = set(s) - _SITE_KEYS
        if unknown:
            raise _fail(path, f"{where}: unknown key(s) {sorted(unknown)}; "
                              f"allowed: {sorted(_SITE_KEYS)}")
        anchored = "anchor" in s
        region = s.get("region", "" if not anchored else None)
        if region not in SITE_REGIONS and not (region == "" and not anchored):
            raise _fail(path, f"{where}: unknown region {region!r}; one of {SITE_REGIONS}")
        side = s.get("side", "center")
        if side not in ("left", "right", "center"):
            raise _fail(path, f"{where}: side must be left, right or center, got {side!r}")
        muscle = s.get("muscle", "" if not anchored else None)
        if not isinstance(muscle, str) or (anchored and not muscle):
            raise _fail(path, f"{where}: missing 'muscle'")
        quantities = _quantities(s.get("quantities", list(rig_quantities)), f"{where}: quantities",
                                 path)
        part = s.get("part", default_part)
        if anchored and (not isinstance(part, str) or not part):
            raise _fail(path, f"{where}: no 'part' and no rig 'default_part'")
        if part is not None and not isinstance(part, str):
            raise _fail(path, f"{where}: part must be a string such as 'QMI8658C+QMC5883P'")
        covered: list[str] = []
        for p in (part.split("+") if part else []):
            p = p.strip()
            if p not in parts:
                raise _fail(path, f"{where}: unknown part {p!r}; known parts: "
                                  f"{', '.join(sorted(parts))} (hardware/data/sensor_parts.json)")
            covered += parts[p].quantities
        if part and sorted(covered) != sorted(QUANTITIES):
            raise _fail(path, f"{where}: part {part!r} must measure acc, gyro and mag exactly "
                              f"once each, it measures {covered}")
        anchor = _resolve_anchor(s["anchor"], where, path) if anchored else None
        mounting = _rotation(s.get("mounting"), where, path)
        sites.append(Site(name=name, muscle=muscle, region=region, anchor=anchor,
                          part=part or "", mounting=mounting, side=side,
                          anchor_spec=dict(s["anchor"]) if anchored else {},
                          anchor_note=str(s.get("anchor_note", "")), quantities=quantities))
    ref = data.get("reference")
    if not isinstance(ref, str) or not ref:
        raise _fail(path, "missing 'reference': name the site on a rigid spot (nasal bridge "
                          "or temple) that cancels head motion")
    if ref not in seen:
        raise _fail(path, f"reference {ref!r} is not one of the sites {sorted(seen)}")
    ref_site = next(s for s in sites if s.name == ref)
    if ref_site.region == "" and ref_site.anchor is None:
        sites = [dataclasses.replace(s, region="rigid") if s is ref_site else s
                 for s in sites]     # a device rig's reference is rigid by definition
        ref_site = next(s for s in sites if s.name == ref)
    if ref_site.region != "rigid":
        raise _fail(path, f"reference site {ref!r} must have region 'rigid', "
                          f"has {ref_site.region!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or set(settings) - set(QUANTITIES):
        raise _fail(path, f"settings must map some of {QUANTITIES} to a range, got {settings!r}")
    for q, rng in settings.items():
        for s in sites:
            if not s.part:
                raise _fail(path, f"settings.{q}: site {s.name!r} names no part to check the "
                                  "range against; drop 'settings' or give every site a 'part'")
            spec = next(parts[p] for p in s.parts if q in parts[p].quantities).spec(q)
            if rng not in spec.ranges:
                raise _fail(path, f"settings.{q} = {rng!r} is not a range of {s.part}; "
                                  f"choose one of {spec.ranges} ({spec.unit})")
    return Rig(id=rig_id, sites=sites, reference=ref, description=str(data.get("description",
                                                                                 "")),
               path=Path(path) if not isinstance(path, Path) else path, settings=settings)


def load_rig(name_or_path: str | Path) -> Rig:
    """Load and validate a rig by name (``imusic11``, ``imusic6``) or by file path.

    Raises ``RigError`` naming the file and the problem (unknown anchor, duplicate name,
    bad rotation, unknown part, missing reference, ...).
    """
    p = Path(name_or_path)
    if p.suffix == "" and not p.exists():
        p = RIGS_DIR / f"{name_or_path}.json"
        if not p.exists():
            raise RigError(f"no rig named {name_or_path!r}: shipped rigs are "
                           f"{', '.join(available_rigs())}; or pass the path of a rig JSON file")
    if not p.exists():
        raise RigError(f"rig file {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise _fail(p, f"not valid JSON ({e})") from None
    return _parse(data, p)


def parse_rig(data: dict, source: str = "<dict>") -> Rig:
    """Validate a rig given as an already-parsed JSON object (``source`` names it in errors)."""
    return _parse(data, source)
