"""Head pose in the viewer: the head's rotation from a frame's pose channels, and its neck pivot.

A Blendshapes frame of 61 values carries ``headYaw, headPitch, headRoll`` (radians) after the
52 blendshapes. ``head_matrix`` turns them into a rotation with the stream's one convention
(``hardware.vocabulary.head_rotation``, which the glTF export uses too); ``FaceSlot.to_scene``
turns the whole head (skin, eyeballs, sensor markers) by it about ``neck_pivot`` before the
camera preset's turn, so expressions and their error colours stay in the head frame.

The pivot is taken from the ICT mesh itself (``NeckPivotConfig``): in the middle of the neck,
front to back, just below the chin, and at the height of the ears (Multi-PIE landmarks 0 and
16, where the jaw line meets the ear), which is about where the skull sits on the spine. On the
generic head that is (0, 0.037, -0.040) m: turns and nods swing the face about a point behind
it, as a real neck does, rather than about the face's own centre. The head above the chin turns
rigidly (``HeadTurn``); the neck takes less of the turn the lower it is, and the shoulders none,
so a turned head does not swing the bust with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imusic.hardware.face import FaceModel
from imusic.hardware.vocabulary import HEAD_ANGLES, head_rotation


@dataclass(frozen=True)
class NeckPivotConfig:
    """Where the neck pivot is measured on the mesh."""

    below_chin_m: float = 0.02     # the neck slab's height below the chin landmark (8)
    slab_half_m: float = 0.005     # half-height of that slab of neck vertices
    ear_landmarks: tuple[int, int] = (0, 16)   # Multi-PIE jaw-line ends at the ears: pivot height
    full_turn_below_chin_m: float = 0.0    # above this height (below the chin) the turn is whole
    no_turn_below_chin_m: float = 0.07     # below this the neck and shoulders stay put


class HeadTurn:
    """Turns head-frame points by a head rotation about the neck pivot: the head (everything
    above the chin, so the face, eyeballs and sensors) rigidly, the neck by a weight fading
    linearly with height to 0 at the shoulders, which stay where they are (linear blend
    skinning with one joint)."""

    def __init__(self, face: FaceModel, rest: np.ndarray | None = None,
                 config: NeckPivotConfig = NeckPivotConfig()) -> None:
        v = face.neutral if rest is None else np.asarray(rest, np.float64)
        chin_y = float(v[face.landmarks[8], 1])
        self.pivot = neck_pivot(face, v, config)
        self.full_y = chin_y - config.full_turn_below_chin_m
        self.none_y = chin_y - config.no_turn_below_chin_m

    def weights(self, points: np.ndarray) -> np.ndarray:
        """How much of the turn each point ``(P, 3)`` takes, 0..1 by its height."""
        y = np.asarray(points, np.float64)[:, 1]
        return np.clip((y - self.none_y) / (self.full_y - self.none_y), 0.0, 1.0)

    def apply(self, points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """``points (P, 3)`` turned by ``rotation`` (3x3) about the pivot, weighted by height."""
        p = np.asarray(points, np.float64)
        turned = (p - self.pivot) @ np.asarray(rotation).T + self.pivot
        w = self.weights(p)[:, None]
        return p + w * (turned - p)


def neck_pivot(face: FaceModel, rest: np.ndarray | None = None,
               config: NeckPivotConfig = NeckPivotConfig()) -> np.ndarray:
    """The neck pivot ``(3,)`` m in the head frame of ``rest`` (the full model's rest vertices;
    default the generic head): x = 0 (the mid-plane), y = the ears' height, z = the middle of
    the neck's front-to-back extent ``below_chin_m`` under the chin."""
    v = face.neutral if rest is None else np.asarray(rest, np.float64)
    neck = v[face.groups["head_neck"]]
    chin_y = float(v[face.landmarks[8], 1])
    slab = neck[np.abs(neck[:, 1] - (chin_y - config.below_chin_m)) < config.slab_half_m]
    if len(slab) == 0:
        raise ValueError("no neck vertices below the chin: cannot place the neck pivot")
    z = (float(slab[:, 2].min()) + float(slab[:, 2].max())) / 2.0
    y = float(np.mean(v[face.landmarks[list(config.ear_landmarks)], 1]))
    return np.array([0.0, y, z])


def head_matrix(values: np.ndarray) -> np.ndarray:
    """The head's 3x3 rotation for one frame: from its head yaw/pitch/roll when it has the
    pose channels (61 values), identity for 52 values; NaN (face lost) counts as 0."""
    v = np.asarray(values, np.float64)
    if len(v) <= HEAD_ANGLES[-1]:
        return np.eye(3)
    angles = np.nan_to_num(v[list(HEAD_ANGLES)], nan=0.0)
    if not np.any(angles):
        return np.eye(3)
    return head_rotation(angles).as_matrix()
