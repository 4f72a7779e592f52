"""Rigs: where the sensors sit on the face, which parts they are, how they are mounted.

A rig is a JSON data file in ``hardware/rigs/`` (see TWIN.md for the format and for how
each anchor was chosen): a small descriptor, as a board descriptor is (sites, chips,
mountings, reference, what each site reports). ``load_rig("imusic11")`` or ``load_rig(path)``
reads one and checks it without loading the face mesh (anchor indices are checked against
the face model's published sizes, ``hardware.face.N_VERTICES`` ...); a bad file raises
``RigError`` naming the file, the site and what to change. A site's ``anchor`` (its point on
the skin) is resolved by ``hardware.placement`` the first time it is asked for, and cached:
only the twin, the viewer and the rig's own geometry tests need it.

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

from imusic.hardware.face import N_LANDMARKS, N_TRIANGLES, N_VERTICES, SurfacePoint
# re-exported for callers of the older rig module (viewer, tests); they live in these modules
from imusic.hardware.mounting import euler_matrix, mounting_matrix  # noqa: F401
from imusic.hardware.placement import (TIE_TOLERANCE_M, project_to_skin, resolve_anchor,  # noqa: F401
                                skin_frames_at_rest, skin_patch)
from imusic.hardware.vocabulary import REGIONS

__all__ = ["RIGS_DIR", "RIG_SCHEMA", "SITE_REGIONS", "QUANTITIES", "REPORTED_QUANTITIES",
           "RigError", "Site", "Rig", "available_rigs", "load_rig", "parse_rig",
           "euler_matrix", "mounting_matrix", "TIE_TOLERANCE_M", "project_to_skin",
           "resolve_anchor", "skin_frames_at_rest", "skin_patch"]

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
    part: str                      # parts joined by "+", e.g. "QMI8658C+QMC5883P"; "" unknown
    mounting: np.ndarray           # (3, 3) sensor frame -> skin frame
    side: str = "center"           # "left" | "right" | "center" (the subject's side)
    anchor_spec: dict = field(default_factory=dict, compare=False)   # checked; {}: none
    anchor_note: str = ""
    quantities: tuple[str, ...] = QUANTITIES   # what the site reports, canonical order

    @property
    def anchored(self) -> bool:
        """True when the site has an anchor on the face model."""
        return bool(self.anchor_spec)

    @functools.cached_property
    def anchor(self) -> SurfacePoint | None:
        """The site's point on the face surface (resolved on first use, which loads the
        face mesh); None for a site with no anchor."""
        return resolve_anchor(self.anchor_spec) if self.anchor_spec else None

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
        return [s.name for s in self.sites if not s.anchored]

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
                       "anchored": s.anchored, "quantities": list(s.quantities),
                       "mounting": np.round(s.mounting, 6).tolist()} for s in self.sites],
        }


def available_rigs(twin: bool | None = None) -> list[str]:
    """Names of the rigs shipped in ``hardware/rigs``; ``twin=True`` only those the twin (and
    the project's own firmware) can run, ``twin=False`` only device rigs."""
    names = sorted(p.stem for p in RIGS_DIR.glob("*.json"))
    if twin is None:
        return names
    return [n for n in names if load_rig(n).simulatable == twin]


# --- loading --------------------------------------------------------------------------------

def _fail(path: Path | str, msg: str) -> RigError:
    return RigError(f"rig file {path}: {msg}")


def _check_anchor(spec: Any, where: str, path: Path | str) -> dict:
    """A checked copy of an anchor spec (resolved later by ``hardware.placement``)."""
    if not isinstance(spec, dict):
        raise _fail(path, f"{where}: anchor must be an object such as "
                          '{"landmark": 8, "offset_cm": [0, 1, 0]}')
    unknown = set(spec) - _ANCHOR_KEYS
    if unknown:
        raise _fail(path, f"{where}: unknown anchor key(s) {sorted(unknown)}; "
                          f"allowed: {sorted(_ANCHOR_KEYS)}")
    kinds = [k for k in ("landmark", "landmarks", "vertex", "triangle") if k in spec]
    if len(kinds) != 1:
        raise _fail(path, f"{where}: anchor needs exactly one of landmark, landmarks, vertex, "
                          f"triangle (got {kinds or 'none'})")
    kind = kinds[0]

    def landmark(i: Any) -> None:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < N_LANDMARKS:
            raise _fail(path, f"{where}: unknown anchor landmark {i!r}: the face model has "
                              f"Multi-PIE landmarks 0..{N_LANDMARKS - 1}")

    if kind == "triangle":
        f, bary = spec["triangle"], spec.get("barycentric")
        if not isinstance(f, int) or not 0 <= f < N_TRIANGLES:
            raise _fail(path, f"{where}: unknown anchor triangle {f!r} (0..{N_TRIANGLES - 1})")
        try:
            b = np.asarray(bary, dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise _fail(path, f"{where}: triangle anchor needs barycentric [u, v, w]") from None
        if np.any(b < -1e-9) or abs(b.sum() - 1) > 1e-6:
            raise _fail(path, f"{where}: barycentric {b.tolist()} must be >= 0 and sum to 1")
        if "offset_cm" in spec:
            raise _fail(path, f"{where}: a triangle anchor takes no offset_cm")
        return {"triangle": f, "barycentric": [float(x) for x in b]}
    if kind == "vertex":
        v = spec["vertex"]
        if not isinstance(v, int) or not 0 <= v < N_VERTICES:
            raise _fail(path, f"{where}: unknown anchor vertex {v!r} (0..{N_VERTICES - 1})")
    elif kind == "landmark":
        landmark(spec["landmark"])
    else:
        lms = spec["landmarks"]
        if not isinstance(lms, list) or not lms:
            raise _fail(path, f"{where}: landmarks must be a non-empty list of landmark numbers")
        for i in lms:
            landmark(i)
    out = {kind: spec[kind]}
    if "offset_cm" in spec:
        try:
            off = np.asarray(spec["offset_cm"], dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise _fail(path, f"{where}: offset_cm must be [dx, dy, dz] in cm") from None
        if not np.all(np.isfinite(off)) or np.linalg.norm(off) > 6.0:
            raise _fail(path, f"{where}: offset_cm {off.tolist()} must be finite and under 6 cm")
        out["offset_cm"] = [float(x) for x in off]
    return out


def _rotation(spec: Any, where: str, path: Path | str) -> np.ndarray:
    try:
        return mounting_matrix(spec)
    except ValueError as e:
        raise _fail(path, f"{where}: {e}") from None


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
    from imusic.hardware.sensors import load_parts

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
        anchor = _check_anchor(s["anchor"], where, path) if anchored else {}
        mounting = _rotation(s.get("mounting"), where, path)
        sites.append(Site(name=name, muscle=muscle, region=region,
                          part=part or "", mounting=mounting, side=side, anchor_spec=anchor,
                          anchor_note=str(s.get("anchor_note", "")), quantities=quantities))
    ref = data.get("reference")
    if not isinstance(ref, str) or not ref:
        raise _fail(path, "missing 'reference': name the site on a rigid spot (nasal bridge "
                          "or temple) that cancels head motion")
    if ref not in seen:
        raise _fail(path, f"reference {ref!r} is not one of the sites {sorted(seen)}")
    ref_site = next(s for s in sites if s.name == ref)
    if ref_site.region == "" and not ref_site.anchored:
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
