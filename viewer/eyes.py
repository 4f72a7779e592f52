"""Gaze for the viewer: eyeball rotations from the eyeLook* blendshapes or the eye pose channels.

ICT FaceKit's expression shapes move the lids but leave the eyeballs where they are, so the
viewer turns each eyeball about its own centre (``FaceSlot`` calls ``eye_rotations`` per frame).
The angles come from the 9 pose channels when a frame carries non-zero eye angles (Live Link
Face sends them), else from the 8 gaze blendshapes with gains measured on real takes: in all
four Live Link Face takes of ``../shared/data/arkit`` an eye's yaw is -0.60 rad x (looking
towards the performer's left: ``eyeLookOut - eyeLookIn`` of the left eye, ``In - Out`` of the
right) and its pitch -0.50 rad x (``eyeLookUp - eyeLookDown``), correlation -1.0. So a positive
Live Link eye yaw looks towards the performer's right and a positive pitch looks down. The app's
eye names are mirrored relative to ARKit's blendshapes: ``leftEyeYaw`` follows the
``...Right`` gaze shapes (residual 0.0003-0.002 rad against 0.0015-0.005 for the ``...Left``
ones, in all four takes) and ``rightEyeYaw`` the ``...Left`` ones, so the performer's left
eyeball (``eyeball_left``, driven by ``eyeLook*Left``) takes ``rightEye*``.

Head frame: x towards the face's left, y up, z out of the face (towards the viewer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imusic.hardware.vocabulary import N_BLENDSHAPES, POSE_NAMES, stream_index


@dataclass(frozen=True)
class GazeConfig:
    """How blendshape gaze becomes eyeball angles."""

    yaw_rad_per_unit: float = 0.60      # eye yaw (rad) at eyeLookOut/In = 1 (measured, see above)
    pitch_rad_per_unit: float = 0.50    # eye pitch (rad) at eyeLookUp/Down = 1 (measured)


_LOOK = {side: [stream_index(f"eyeLook{d}{side}") for d in ("Out", "In", "Up", "Down")]
         for side in ("Left", "Right")}
_MIRROR = {"Left": "right", "Right": "left"}   # Live Link's eye names vs ARKit's (see above)
_POSE = {side: [N_BLENDSHAPES + POSE_NAMES.index(f"{_MIRROR[side]}Eye{a}") for a in ("Yaw", "Pitch")]
         for side in ("Left", "Right")}


def gaze_angles(values: np.ndarray, config: GazeConfig = GazeConfig()) -> np.ndarray:
    """``(2, 2)`` radians: rows left eye, right eye; columns (turn towards the face's left,
    turn up). From the eye pose channels of a 61-value frame when they are non-zero, else
    from the gaze blendshapes. NaN counts as 0."""
    v = np.nan_to_num(np.asarray(values, np.float64), nan=0.0)
    out = np.zeros((2, 2))
    pose = v[N_BLENDSHAPES + 3:N_BLENDSHAPES + 9] if len(v) > N_BLENDSHAPES else np.zeros(0)
    use_pose = pose.size == 6 and np.any(pose != 0.0)
    for row, side in enumerate(("Left", "Right")):
        if use_pose:
            yaw, pitch = v[_POSE[side]]
            out[row] = (-yaw, -pitch)       # Live Link: +yaw looks right, +pitch looks down
            continue
        look_out, look_in, up, down = v[_LOOK[side]]
        # The left eye looking out turns towards the face's left; the right eye looking in does.
        left = (look_out - look_in) if side == "Left" else (look_in - look_out)
        out[row] = (left * config.yaw_rad_per_unit, (up - down) * config.pitch_rad_per_unit)
    return out


def eye_rotation(towards_left: float, up: float) -> np.ndarray:
    """The 3x3 rotation that turns the gaze (+z) towards the face's left (+x) by
    ``towards_left`` and up (+y) by ``up`` radians."""
    cy, sy = np.cos(towards_left), np.sin(towards_left)
    cp, sp = np.cos(up), np.sin(up)
    yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])
    return yaw @ pitch
