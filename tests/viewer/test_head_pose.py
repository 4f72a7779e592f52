"""Head pose in the viewer: the head yaw/pitch/roll channels turn the head about its neck pivot,
live and in replay, with the eyeballs and sensor markers riding along."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from imusic.hardware.vocabulary import N_BLENDSHAPES, POSE_NAMES
from imusic.viewer.app import run_live, run_replay
from imusic.viewer.face_view import FaceWindow
from imusic.viewer.live import LslSource, resolve_blendshapes
from imusic.viewer.markers import MarkerSite
from imusic.viewer.player import Player
from imusic.viewer.pose import NeckPivotConfig, neck_pivot
from imusic.viewer.sources import Track

YAW = N_BLENDSHAPES + POSE_NAMES.index("headYaw")
PITCH = N_BLENDSHAPES + POSE_NAMES.index("headPitch")


def _frame(yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    v = np.zeros(61, np.float32)
    v[YAW], v[PITCH] = yaw, pitch
    return v


def _yawed(point: np.ndarray, pivot: np.ndarray, yaw: float) -> np.ndarray:
    """``point`` turned by ``yaw`` about +y (towards the face's left, +x) through ``pivot``."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = point - pivot
    return pivot + np.array([c * d[0] + s * d[2], d[1], -s * d[0] + c * d[2]])


def _nearest_pixel(win: FaceWindow) -> np.ndarray:
    """(column, row) of the drawn surface point nearest the camera (the nose tip, front view)."""
    depth = np.asarray(win.vis.capture_depth_float_buffer(do_render=True)).copy()
    depth[depth <= 0] = np.inf
    row, col = np.unravel_index(np.argmin(depth), depth.shape)
    return np.array([col, row], float)


def test_the_neck_pivot_sits_in_the_neck_at_ear_height(face):
    p = neck_pivot(face)
    ears = face.neutral[face.landmarks[[0, 16]]]
    assert p[0] == 0.0 and p[1] == pytest.approx(ears[:, 1].mean())
    neck = face.neutral[face.groups["head_neck"]]
    chin = face.neutral[face.landmarks[8]]
    slab = neck[np.abs(neck[:, 1] - (chin[1] - NeckPivotConfig().below_chin_m)) < 0.005]
    assert slab[:, 2].min() < p[2] < slab[:, 2].max()          # inside the neck, front to back
    assert p[2] < chin[2] - 0.1                                # well behind the face


def test_yaw_moves_the_nose_sideways_by_the_expected_amount(face):
    nose = face.neutral[face.landmarks[30]]
    with FaceWindow(markers=None) as win:
        win.set_frame(np.zeros(52, np.float32))
        before_img, before_px = win.capture(), win.project(nose[None])[0]
        win.set_frame(_frame())                                 # 61 values, zero pose
        assert np.array_equal(win.capture(), before_img)        # zero pose: the face as before
        assert np.array_equal(win.project(nose[None])[0], before_px)
        drawn_before = _nearest_pixel(win)
        # The drawn nose tip is there (the nearest point sits a few pixels under landmark 30).
        assert abs(drawn_before[0] - before_px[0]) < 3 and abs(drawn_before[1] - before_px[1]) < 10
        pivot = neck_pivot(face)
        # Where the turned nose must land, projected with the unturned head's transform.
        expected = win.project(_yawed(nose, pivot, 0.3)[None])[0]
        win.set_frame(_frame(yaw=0.3))
        after_px = win.project(nose[None])[0]
        drawn_after = _nearest_pixel(win)
        turned_img = win.capture()
    # +yaw turns the face to its left (+x): the nose moves right in the picture, by
    # (nose to pivot depth) x sin(0.3) = about 50 mm, about 100 px at this zoom.
    shift_m = (nose[2] - pivot[2]) * np.sin(0.3)
    assert shift_m == pytest.approx(0.050, abs=0.003)
    assert np.allclose(after_px, expected, atol=1e-6)
    assert 90 < after_px[0] - before_px[0] < 120
    assert abs(after_px[1] - before_px[1]) < 3                  # sideways, not up or down
    assert abs(drawn_after[0] - expected[0]) < 10               # and the drawn picture agrees
    assert drawn_after[0] - drawn_before[0] > 85
    assert np.abs(turned_img.astype(int) - before_img.astype(int)).sum(2).mean() > 5


def test_markers_and_eyeballs_ride_with_the_head_and_the_shoulders_stay(face):
    vertex = int(face.landmarks[30])
    site = MarkerSite("nose", face.vertex_point(vertex), np.eye(3), (0.9, 0.1, 0.1))
    with FaceWindow(markers=[site]) as win:
        slot = win.slots[0]
        eye = win.selection.rows_in_group(face, "eyeball_left")
        win.set_frame(np.zeros(52, np.float32))
        m0 = np.asarray(slot.markers.mesh.vertices).mean(0)
        v0 = np.asarray(slot.mesh.vertices).copy()
        win.set_frame(_frame(yaw=0.3, pitch=0.2))
        m1 = np.asarray(slot.markers.mesh.vertices).mean(0)
        v1 = np.asarray(slot.mesh.vertices)
        nose0 = v0[win.selection.position_of(vertex)]
        nose1 = v1[win.selection.position_of(vertex)]
    assert np.linalg.norm(nose1 - nose0) > 0.04
    assert np.allclose(m1 - m0, nose1 - nose0, atol=0.002)     # the marker went with the nose
    # The eyeball turned rigidly (every vertex keeps its distance to the eyeball's centre)
    # and went with the head.
    radius = lambda v: np.linalg.norm(v - v.mean(0), axis=1)   # noqa: E731
    assert np.allclose(radius(v1[eye]), radius(v0[eye]), atol=1e-6)
    assert np.linalg.norm(v1[eye].mean(0) - v0[eye].mean(0)) > 0.02
    low = v0[:, 1] < v0[:, 1].min() + 0.03                      # the shoulders
    assert low.sum() > 50 and np.allclose(v1[low], v0[low])


def test_replay_turns_the_head_by_the_tracks_pose(face):
    n = 6
    values = np.zeros((n, 61), np.float32)
    values[:, YAW] = np.linspace(0.0, 0.5, n)
    track = Track.from_array(values, 600.0)
    assert np.array_equal(track.frame(3)[YAW], values[3, YAW])
    nose = face.neutral[face.landmarks[[30]]]
    seen: dict[int, float] = {}
    with FaceWindow(markers=None) as win:
        x0 = win.project(nose)[0, 0]
        run_replay(win, track, player=Player(n, 600.0, loop=False, speed=0.125),
                   stop_at_end=True, max_seconds=30,
                   on_frame=lambda i, w: seen.__setitem__(i, w.project(nose)[0, 0] - x0))
    assert seen[0] == pytest.approx(0.0, abs=1e-6)
    shifts = [seen[i] for i in sorted(seen)]
    assert np.all(np.diff(shifts) > 0) and shifts[-1] > 100   # turning further each frame


def test_live_stream_turns_the_head(face, unique_name):
    from imusic.capture.arkit_bridge import blendshapes_info

    outlet = pylsl.StreamOutlet(blendshapes_info(f"{unique_name}-bs", "twin",
                                                 f"{unique_name}-bs"))
    src = LslSource(resolve_blendshapes(f"{unique_name}-bs", 10.0)).start()
    nose = face.neutral[face.landmarks[[30]]]
    try:
        with FaceWindow(markers=None, live_triangles=9000) as win:
            x0 = win.project(nose)[0, 0]
            for _ in range(3):
                outlet.push_sample(_frame(yaw=-0.3).tolist())
            run_live(win, [src], max_seconds=5.0, max_frames=1)
            # -yaw turns the face to its right: the nose moves left in the picture.
            assert x0 - win.project(nose)[0, 0] > 90
    finally:
        src.stop()


def test_a_replay_snapshot_takes_the_frame_with_its_head_pose():
    """``imusic view TAKE --snapshot --frame N`` renders the pose channels too (it once took only
    the 52 weights, so a turned head came out straight)."""
    from imusic.commands.view import _snapshot_frames
    from imusic.viewer.sources import Track

    track = Track.from_array(np.zeros((3, 52), np.float32))
    track.pose[1, 0] = 0.3                                   # head yaw at frame 1
    extra = np.zeros(52, np.float32)
    extra[0] = 0.5
    a, b = _snapshot_frames(track, None, 1, extra)
    assert a.shape == (61,) and a[52] == np.float32(0.3) and a[0] == np.float32(0.5)
    assert b is None
