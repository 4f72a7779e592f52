"""Eyeballs turned by gaze, and the decimated live mesh that keeps the viewer's frame rate up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from imusic.hardware.vocabulary import N_BLENDSHAPES, POSE_NAMES, stream_index
from imusic.viewer.eyes import eye_rotation, gaze_angles
from imusic.viewer.face_view import EYEBALLS, LIVE_TRIANGLES, FaceSlot, FaceWindow, MeshSelection


def _eye_front(slot: FaceSlot, face, verts: np.ndarray, group: str) -> np.ndarray:
    """The point of an eyeball furthest out of the face at rest (the cornea), as posed now."""
    rows = slot.selection.rows_in_group(face, group)
    rest = slot._rest[rows]
    return verts[rows][np.argmax(rest[:, 2])]


def test_gaze_from_pose_channels_matches_gaze_from_blendshapes_on_a_real_take(shared_data):
    from imusic.capture.livelink_csv import read_take

    take = read_take(shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv")
    rows = np.flatnonzero(take.face_found)[::25]
    for i in rows:
        v = take.values[i]
        from_pose = gaze_angles(v)
        from_shapes = gaze_angles(v[:N_BLENDSHAPES])
        np.testing.assert_allclose(from_pose, from_shapes, atol=0.05)
    # The take looks around: the angles are not all zero.
    assert np.abs([gaze_angles(take.values[i]) for i in rows]).max() > 0.2


@settings(max_examples=50, deadline=None)
@given(left=st.floats(-1.2, 1.2), up=st.floats(-1.2, 1.2))
def test_eye_rotation_is_a_rotation_that_turns_the_gaze(left, up):
    r = eye_rotation(left, up)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    g = r @ np.array([0.0, 0.0, 1.0])
    assert np.sign(g[0]) == np.sign(np.round(left, 12)) or abs(left) < 1e-9
    assert g[1] == pytest.approx(np.sin(up))


def test_eyeballs_follow_the_gaze_blendshapes_and_the_eye_pose(face, weights):
    selection = MeshSelection.of_groups(face, None)
    slot = FaceSlot(face, selection, None, 0.0)
    rest = slot.pose(np.zeros(52))
    front = {g: _eye_front(slot, face, rest, g) for g in EYEBALLS}
    # Both eyes look towards the face's left (+x): the left eye looks out, the right eye in.
    look_left = slot.pose(weights(eyeLookOutLeft=1.0, eyeLookInRight=1.0))
    for g in EYEBALLS:
        moved = _eye_front(slot, face, look_left, g) - front[g]
        assert moved[0] > 0.004 and abs(moved[1]) < 0.001, (g, moved)
    # Looking up moves the corneas up; the lids and the rest of the face do not turn.
    up = slot.pose(weights(eyeLookUpLeft=1.0, eyeLookUpRight=1.0))
    for g in EYEBALLS:
        assert (_eye_front(slot, face, up, g) - front[g])[1] > 0.003
    skin = selection.rows_in_group(face, "head_neck")
    np.testing.assert_allclose(up[skin], rest[skin], atol=1e-5)
    # The same gaze from Live Link's eye pose channels (radians; +yaw looks right).
    frame = np.zeros(61, np.float32)
    frame[N_BLENDSHAPES + POSE_NAMES.index("leftEyeYaw")] = -0.60
    frame[N_BLENDSHAPES + POSE_NAMES.index("rightEyeYaw")] = -0.60
    # (and each eye on its own: Live Link's rightEye* turns the performer's left eyeball)
    only = np.zeros(61, np.float32)
    only[N_BLENDSHAPES + POSE_NAMES.index("rightEyeYaw")] = -0.60
    one = slot.pose(only)
    np.testing.assert_allclose(one[selection.rows_in_group(face, "eyeball_left")],
                               look_left[selection.rows_in_group(face, "eyeball_left")], atol=2e-4)
    np.testing.assert_allclose(one[selection.rows_in_group(face, "eyeball_right")],
                               rest[selection.rows_in_group(face, "eyeball_right")], atol=1e-6)
    from_pose = slot.pose(frame)
    for g in EYEBALLS:
        rows = selection.rows_in_group(face, g)
        np.testing.assert_allclose(from_pose[rows], look_left[rows], atol=2e-4)


def test_gaze_shows_in_the_picture(face, weights):
    with FaceWindow(markers=None) as win:
        win.set_frame(np.zeros(52))
        ahead = win.capture().astype(float)
        eyes = win.project(face.neutral[face.landmarks[36:48]])
        win.set_frame(weights(eyeLookOutLeft=1.0, eyeLookInRight=1.0))
        aside = win.capture().astype(float)
    diff = np.abs(aside - ahead).mean(axis=2)
    c0, r0 = np.floor(eyes.min(0)).astype(int) - 8
    c1, r1 = np.ceil(eyes.max(0)).astype(int) + 8
    in_eyes = diff[r0:r1, c0:c1]
    outside = diff.copy()
    outside[r0:r1, c0:c1] = 0
    # The eyes change; elsewhere only the lids around them move a little (eyeLook* moves lids).
    assert in_eyes.mean() > 5.0 and in_eyes.mean() > 20 * outside.mean()


def test_decimated_mesh_keeps_the_shape_and_the_blendshapes(face, weights):
    full = MeshSelection.of_groups(face, ("face", "head_neck", "eye_socket_left",
                                          "eye_socket_right", *EYEBALLS))
    live = MeshSelection.decimated(face, ("face", "head_neck", "eye_socket_left",
                                          "eye_socket_right", *EYEBALLS), LIVE_TRIANGLES[1])
    assert len(full.triangles) == 30168
    assert 0.9 * LIVE_TRIANGLES[1] <= len(live.triangles) <= 1.02 * LIVE_TRIANGLES[1]
    assert live.triangles.max() < len(live.vertex_ids)
    for g in EYEBALLS:   # each eyeball is still there, made only of eyeball vertices
        assert len(live.rows_in_group(face, g)) > 50
    a, b = FaceSlot(face, full, 5, 0.0), FaceSlot(face, live, 5, 0.0)
    # Each drawn vertex stays as close to the full surface (its nearest full vertex) when the
    # face moves as at rest: the decimated mesh deforms with the full one.
    at_rest, _ = cKDTree(a.pose(np.zeros(52))).query(b.pose(np.zeros(52)))
    assert at_rest.mean() < 0.0015      # 1.3 mm at 6,000 triangles (1.1 mm at 9,000)
    for w in (weights(jawOpen=1.0, mouthSmileLeft=0.8), weights(eyeBlinkLeft=1.0),
              weights(eyeLookUpLeft=1.0, eyeLookOutRight=0.7)):
        dist, _ = cKDTree(a.pose(w)).query(b.pose(w))
        assert dist.mean() < at_rest.mean() + 0.0002
        assert np.percentile(dist, 99) < np.percentile(at_rest, 99) + 0.0005
    assert MeshSelection.decimated(face, None, 4000) is MeshSelection.decimated(face, None, 4000)


def test_live_window_draws_the_decimated_face(face, weights):
    with FaceWindow(markers=None, live_triangles=LIVE_TRIANGLES[1]) as live, \
            FaceWindow(markers=None) as full:
        assert len(live.selection.triangles) < len(full.selection.triangles) / 3
        for win in (live, full):
            win.set_frame(weights(jawOpen=0.6))
        a, b = live.capture().astype(float), full.capture().astype(float)
    # The same face in the same place: the pictures differ only along edges.
    assert np.abs(a - b).mean() < 4.0   # 3.3 of 255 at 6,000 triangles (2.6 at 9,000)
    assert a.std() > 10
