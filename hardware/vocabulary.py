"""The blendshape vocabulary: one place for every name, order and mapping.

Orders held here:

* ``ARKIT_NAMES``: Apple's 52 ARKit blendshapes in Apple's order (``eyeBlinkLeft`` ...
  ``tongueOut``). Every array of blendshapes in imusic uses this order.
* ``POSE_NAMES``: the 9 pose values that Live Link Face appends (head and eyes, radians);
  ``HEAD_EULER`` / ``head_rotation`` turn the head's three into a rotation.
* ``LIVELINK_WIRE_NAMES``: the 61 values of a Live Link Face UDP packet (Unreal's
  ``EARFaceBlendShape`` enum). The 52 blendshapes come in Apple's order, so the wire order is
  simply ``ARKIT_NAMES + POSE_NAMES`` with capitalised names.
* ``LIVELINK_CSV_NAMES``: the 61 value columns of a Live Link Face CSV take. They differ from
  the wire order: ``JawRight`` comes before ``JawLeft`` and ``MouthRight`` before
  ``MouthLeft``. Read CSV columns by name (``csv_column_index``), never by position.
* ``ICT_NAMES``: the 53 expression shapes of ICT FaceKit (``browInnerUp`` and ``cheekPuff``
  split into halves, no ``tongueOut``), with ``arkit_to_ict`` / ``ict_to_arkit``.
* ``REGIONS``: blendshapes grouped by face region for per-region metrics;
  ``IMU_BLIND_REGIONS`` (gaze, tongue) are reported apart, and ``region_summary`` makes every
  table's per-region and overall figures.
* ``FACS``: a documented ARKit to FACS action-unit table (see ``docs`` of ``FACS``).
"""

from __future__ import annotations

from typing import Final, Mapping, Sequence

import numpy as np

ARKIT_NAMES: Final[tuple[str, ...]] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
"""Apple's 52 ARKit blendshape names, in Apple's order."""

N_BLENDSHAPES: Final[int] = len(ARKIT_NAMES)

POSE_NAMES: Final[tuple[str, ...]] = (
    "headYaw", "headPitch", "headRoll",
    "leftEyeYaw", "leftEyePitch", "leftEyeRoll",
    "rightEyeYaw", "rightEyePitch", "rightEyeRoll",
)
"""The 9 pose values Live Link Face sends after the blendshapes (radians, see PROVENANCE)."""

N_POSE: Final[int] = len(POSE_NAMES)
STREAM_NAMES: Final[tuple[str, ...]] = ARKIT_NAMES + POSE_NAMES
"""The 61 channels of a ``Blendshapes`` LSL stream: 52 blendshapes then 9 pose values."""
N_STREAM_CHANNELS: Final[int] = len(STREAM_NAMES)

HEAD_ANGLES: Final[tuple[int, int, int]] = (N_BLENDSHAPES, N_BLENDSHAPES + 1, N_BLENDSHAPES + 2)
"""Stream indices of ``headYaw, headPitch, headRoll``."""

HEAD_EULER: Final[str] = "YXZ"
"""How head yaw/pitch/roll become a rotation (scipy ``Rotation.from_euler`` axes): intrinsic
yaw about +y (up), then pitch about +x (the face's left), then roll about +z (out of the face),
head frame of the ICT mesh. Positive yaw turns the face towards the performer's left, positive
pitch looks down, positive roll tips the top of the head towards the performer's right (the
twin's truth, ``model.headpose``, the glTF export and the viewer all use this)."""


def head_rotation(angles: np.ndarray):  # -> scipy.spatial.transform.Rotation
    """The head rotation(s) for ``angles (..., 3)`` = yaw, pitch, roll (radians, ``HEAD_EULER``):
    a scipy ``Rotation`` (``.as_matrix()``, ``.as_quat()``); the one angle -> rotation
    conversion of the Blendshapes stream's head channels."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(HEAD_EULER, np.asarray(angles, np.float64))


def _capitalise(name: str) -> str:
    return name[0].upper() + name[1:]


LIVELINK_WIRE_NAMES: Final[tuple[str, ...]] = tuple(_capitalise(n) for n in STREAM_NAMES)
"""The 61 values of a Live Link Face v6 packet, in wire order (``EARFaceBlendShape``)."""


def _csv_order() -> tuple[str, ...]:
    names = list(LIVELINK_WIRE_NAMES)
    for left, right in (("JawLeft", "JawRight"), ("MouthLeft", "MouthRight")):
        i, j = names.index(left), names.index(right)
        names[i], names[j] = names[j], names[i]
    return tuple(names)


LIVELINK_CSV_NAMES: Final[tuple[str, ...]] = _csv_order()
"""The 61 value columns of a Live Link Face CSV take, in the app's column order."""

CSV_TO_STREAM: Final[np.ndarray] = np.array(
    [LIVELINK_CSV_NAMES.index(n) for n in LIVELINK_WIRE_NAMES], dtype=np.intp
)
"""``stream = csv_values[..., CSV_TO_STREAM]`` reorders CSV-ordered values into stream order."""

_LOWER_TO_STREAM: Final[dict[str, int]] = {n.lower(): i for i, n in enumerate(STREAM_NAMES)}


def stream_index(name: str) -> int:
    """Index of a blendshape or pose name in stream order, matched without regard to case.

    Raises ``KeyError`` naming the unknown name and where the valid names are listed.
    """
    try:
        return _LOWER_TO_STREAM[name.strip().lower()]
    except KeyError:
        raise KeyError(
            f"unknown blendshape or pose name {name!r}: expected one of the 61 names in "
            "hardware.vocabulary.STREAM_NAMES (ARKit spelling, any case)"
        ) from None


def csv_column_index(header: Sequence[str]) -> np.ndarray:
    """Map a CSV header (any order, any case) to stream order.

    Returns ``idx`` of length 61 so that ``row[idx]`` gives the values in stream order.
    Raises ``ValueError`` listing the missing columns.
    """
    lookup = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [n for n in LIVELINK_WIRE_NAMES if n.lower() not in lookup]
    if missing:
        raise ValueError(
            f"CSV header lacks {len(missing)} of the 61 Live Link Face columns: "
            f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
        )
    return np.array([lookup[n.lower()] for n in LIVELINK_WIRE_NAMES], dtype=np.intp)


# --- ICT FaceKit -------------------------------------------------------------------------

ICT_NAMES: Final[tuple[str, ...]] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R",
    "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R",
    "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)
"""ICT FaceKit's 53 expression shapes, in the order of ``expression_deltas``."""


def _ict_name_to_arkit(ict: str) -> str:
    if ict.endswith("_L"):
        base, side = ict[:-2], "Left"
    elif ict.endswith("_R"):
        base, side = ict[:-2], "Right"
    else:
        return ict
    if base in ("browInnerUp", "cheekPuff"):  # one ARKit shape split into two halves
        return base
    return base + side


ICT_TO_ARKIT_INDEX: Final[np.ndarray] = np.array(
    [ARKIT_NAMES.index(_ict_name_to_arkit(n)) for n in ICT_NAMES], dtype=np.intp
)
"""For each ICT shape, the ARKit blendshape that drives it."""


def arkit_to_ict(weights: np.ndarray) -> np.ndarray:
    """ARKit weights ``(..., 52)`` to ICT FaceKit weights ``(..., 53)``.

    Each half of a split shape takes the full ARKit weight (the halves together make the whole
    shape); ``tongueOut`` has no ICT shape and is dropped.
    """
    weights = np.asarray(weights)
    if weights.shape[-1] != N_BLENDSHAPES:
        raise ValueError(f"expected 52 ARKit weights in the last axis, got shape {weights.shape}")
    return weights[..., ICT_TO_ARKIT_INDEX]


def ict_to_arkit(weights: np.ndarray) -> np.ndarray:
    """ICT FaceKit weights ``(..., 53)`` to ARKit ``(..., 52)``: split halves are averaged,
    ``tongueOut`` is 0."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[-1] != len(ICT_NAMES):
        raise ValueError(f"expected 53 ICT weights in the last axis, got shape {weights.shape}")
    out = np.zeros(weights.shape[:-1] + (N_BLENDSHAPES,))
    counts = np.bincount(ICT_TO_ARKIT_INDEX, minlength=N_BLENDSHAPES)
    for i, k in enumerate(ICT_TO_ARKIT_INDEX):
        out[..., k] += weights[..., i]
    return out / np.maximum(counts, 1)


# --- Regions -----------------------------------------------------------------------------

REGIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "brows": ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
              "browOuterUpRight"),
    "eyes": ("eyeBlinkLeft", "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeSquintRight",
             "eyeWideRight"),
    "gaze": ("eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
             "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight"),
    "cheeks_nose": ("cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
                    "noseSneerRight"),
    "mouth": ("mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
              "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
              "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
              "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
              "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
              "mouthUpperUpLeft", "mouthUpperUpRight"),
    "jaw": ("jawForward", "jawLeft", "jawRight", "jawOpen"),
    "tongue": ("tongueOut",),
}
"""Each of the 52 blendshapes in exactly one region, for per-region metrics."""

REGION_INDEX: Final[Mapping[str, np.ndarray]] = {
    region: np.array([ARKIT_NAMES.index(n) for n in names], dtype=np.intp)
    for region, names in REGIONS.items()
}
"""Region name to the indices of its blendshapes in Apple's order."""

IMU_BLIND_REGIONS: Final[tuple[str, ...]] = ("gaze", "tongue")
"""Regions that face-skin IMUs hardly see (the eyeballs turn under still skin, the tongue is
inside the mouth): every table reports them apart from the "all (no gaze/tongue)" figure, and
the hybrid takes them from the camera only (model/fusion.py)."""

IMU_SEEN_INDEX: Final[np.ndarray] = np.array(
    [i for i, n in enumerate(ARKIT_NAMES)
     if not any(n in REGIONS[r] for r in IMU_BLIND_REGIONS)], dtype=np.intp)
"""Indices of the 43 blendshapes outside ``IMU_BLIND_REGIONS`` (52 less 8 eyeLook, tongueOut)."""

ALL_KEY: Final[str] = "all"
"""Key of the mean over all 52 blendshapes in a ``region_summary``."""
SEEN_KEY: Final[str] = "all_no_gaze_tongue"
"""Key of the mean over ``IMU_SEEN_INDEX`` in a ``region_summary`` (and JSON results)."""
SEEN_LABEL: Final[str] = "all (no gaze/tongue)"
"""How tables head the ``SEEN_KEY`` figure."""

BLENDSHAPE_RANGE: Final[tuple[float, float]] = (0.0, 1.0)
"""The ARKit range of a blendshape: every value imusic publishes is clipped into it
(``model.runtime.stream_values``); recorded ARKit truth keeps values above 1 (DESIGN)."""


def region_summary(per_shape: np.ndarray) -> dict[str, float]:
    """Per-blendshape values ``(52,)`` (e.g. MAE) to their mean per region, then
    ``SEEN_KEY`` (the 43 shapes the IMUs see) and ``ALL_KEY`` (all 52), in that order.

    The one place every table and JSON result takes its per-region and overall figures from.
    """
    per_shape = np.asarray(per_shape, dtype=np.float64)
    if per_shape.shape != (N_BLENDSHAPES,):
        raise ValueError(f"expected 52 per-blendshape values, got shape {per_shape.shape}")
    out = {r: float(per_shape[idx].mean()) for r, idx in REGION_INDEX.items()}
    out[SEEN_KEY] = float(per_shape[IMU_SEEN_INDEX].mean())
    out[ALL_KEY] = float(per_shape.mean())
    return out


# --- FACS ----------------------------------------------------------------------------------

FACS: Final[Mapping[str, tuple[int, ...]]] = {
    "browInnerUp": (1,),            # AU1 inner brow raiser
    "browOuterUpLeft": (2,),        # AU2 outer brow raiser
    "browOuterUpRight": (2,),
    "browDownLeft": (4,),           # AU4 brow lowerer
    "browDownRight": (4,),
    "eyeWideLeft": (5,),            # AU5 upper lid raiser
    "eyeWideRight": (5,),
    "cheekSquintLeft": (6,),        # AU6 cheek raiser
    "cheekSquintRight": (6,),
    "eyeSquintLeft": (7,),          # AU7 lid tightener
    "eyeSquintRight": (7,),
    "noseSneerLeft": (9,),          # AU9 nose wrinkler
    "noseSneerRight": (9,),
    "mouthUpperUpLeft": (10,),      # AU10 upper lip raiser
    "mouthUpperUpRight": (10,),
    "mouthSmileLeft": (12,),        # AU12 lip corner puller
    "mouthSmileRight": (12,),
    "mouthDimpleLeft": (14,),       # AU14 dimpler
    "mouthDimpleRight": (14,),
    "mouthFrownLeft": (15,),        # AU15 lip corner depressor
    "mouthFrownRight": (15,),
    "mouthLowerDownLeft": (16,),    # AU16 lower lip depressor
    "mouthLowerDownRight": (16,),
    "mouthShrugLower": (17,),       # AU17 chin raiser
    "mouthPucker": (18,),           # AU18 lip pucker
    "tongueOut": (19,),             # AU19 tongue show
    "mouthStretchLeft": (20,),      # AU20 lip stretcher
    "mouthStretchRight": (20,),
    "mouthFunnel": (22,),           # AU22 lip funneler
    "mouthPressLeft": (23, 24),     # AU23 lip tightener (approximate), AU24 lip pressor
    "mouthPressRight": (23, 24),
    "jawOpen": (25, 26),            # AU25 lips part, AU26 jaw drop
    "mouthRollLower": (28,),        # AU28 lip suck
    "mouthRollUpper": (28,),
    "jawForward": (29,),            # AU29 jaw thrust
    "jawLeft": (30,),               # AU30 jaw sideways
    "jawRight": (30,),
    "cheekPuff": (34,),             # AU34 puff
    "eyeBlinkLeft": (45,),          # AU45 blink
    "eyeBlinkRight": (45,),
    "eyeLookOutLeft": (61,),        # AU61/62 eyes turn left/right (left eye looks out = left)
    "eyeLookInRight": (61,),
    "eyeLookInLeft": (62,),
    "eyeLookOutRight": (62,),
    "eyeLookUpLeft": (63,),         # AU63 eyes up
    "eyeLookUpRight": (63,),
    "eyeLookDownLeft": (64,),       # AU64 eyes down
    "eyeLookDownRight": (64,),
}
"""ARKit blendshape to FACS action units (Ekman & Friesen numbering).

The correspondence follows the muscle each ARKit shape imitates (the AU names and muscles of
Ekman, Friesen & Hager's FACS manual, 2002; the ARKit shapes as Apple's
``ARFaceAnchor.BlendShapeLocation`` documentation describes them); it is many-to-one (left and
right halves map to one bilateral AU). ``mouthClose`` (lips closed with the jaw open),
``mouthLeft/Right`` and ``mouthShrugUpper`` have no single AU and are left out; ``jawOpen``
drives both AU25 (lips part) and AU26 (jaw drop). AU23 (lip tightener) has no ARKit shape of
its own: both it and AU24 are orbicularis oris actions that narrow and press the lips, so
``mouthPress`` drives both (an approximation, stated in capture/FORMAT.md). An AU's intensity
is the mean of its shapes (see ``action_units``).
"""

OPENFACE_INTENSITY_AUS: Final[tuple[int, ...]] = (
    1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
"""The 17 AUs whose intensity OpenFace 2.0 writes (``AUxx_r``, 0..5), in its column order."""

OPENFACE_PRESENCE_AUS: Final[tuple[int, ...]] = (
    1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
"""The 18 AUs whose presence OpenFace 2.0 writes (``AUxx_c``, 0/1): the 17 and AU28."""

ACTION_UNITS: Final[tuple[int, ...]] = tuple(sorted({au for aus in FACS.values() for au in aus}))
"""Every action unit that ``FACS`` reaches, ascending."""


def action_units(weights: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """ARKit weights ``(..., 52)`` to AU intensities ``(..., len(ACTION_UNITS))`` in [0, 1].

    An AU's intensity is the mean of the ARKit shapes that map to it (so a one-sided smile is
    half an AU12). Returns ``(ACTION_UNITS, intensities)``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[-1] != N_BLENDSHAPES:
        raise ValueError(f"expected 52 ARKit weights in the last axis, got shape {weights.shape}")
    out = np.zeros(weights.shape[:-1] + (len(ACTION_UNITS),))
    counts = np.zeros(len(ACTION_UNITS))
    for name, aus in FACS.items():
        k = ARKIT_NAMES.index(name)
        for au in aus:
            j = ACTION_UNITS.index(au)
            out[..., j] += weights[..., k]
            counts[j] += 1
    return ACTION_UNITS, out / counts
