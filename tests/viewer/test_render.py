"""Rendering in a real Open3D window under Xvfb: expressions, error colours, markers, cameras."""

from __future__ import annotations

import numpy as np
import pytest

from imusic.viewer.face_view import FaceWindow, MeshSelection
from imusic.viewer.markers import MarkerSite

MOUTH = slice(48, 68)      # Multi-PIE 68 landmark ranges
BROWS = slice(17, 27)


def _box(points: np.ndarray, margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    c0, r0 = np.floor(points.min(0)).astype(int) - margin
    c1, r1 = np.ceil(points.max(0)).astype(int) + margin
    return slice(max(r0, 0), min(r1, shape[0])), slice(max(c0, 0), min(c1, shape[1]))


def _landmarks(win: FaceWindow, face, w: np.ndarray) -> np.ndarray:
    return face.vertex_subset(w[None], face.landmarks)[0]


def test_jaw_open_changes_mouth_not_forehead(face, weights):
    neutral, jaw = np.zeros(52, np.float32), weights(jawOpen=1.0)
    with FaceWindow(markers=None) as win:
        win.set_frame(neutral)
        img_n = win.capture().astype(float)
        px_n = win.project(_landmarks(win, face, neutral))
        win.set_frame(jaw)
        img_j = win.capture().astype(float)
        px_j = win.project(_landmarks(win, face, jaw))
    diff = np.abs(img_j - img_n).mean(axis=2)
    mouth = _box(np.concatenate([px_n[MOUTH], px_j[MOUTH]]), 10, diff.shape)
    brows = px_n[BROWS]
    top = int(brows[:, 1].min())
    forehead = (slice(top - 70, top - 15), slice(int(brows[:, 0].min()), int(brows[:, 0].max())))
    assert diff[forehead].size > 1000 and diff[mouth].size > 1000
    # The face is drawn where the landmarks project (not background in the mouth box).
    assert img_n[mouth].std() > 5
    assert diff[mouth].mean() > 10 * max(diff[forehead].mean(), 0.2)
    assert diff[forehead].mean() < 1.0


def test_projection_puts_chin_below_nose(face, weights):
    with FaceWindow() as win:
        px = win.project(face.neutral[face.landmarks[[30, 8]]])
        assert px[1, 1] > px[0, 1] + 100          # chin (8) well below nose tip (30)
        assert abs(px[0, 0] - 320) < 10           # nose centred in a 640 wide window


def test_side_by_side_colours_error(face, weights):
    truth = weights(mouthSmileLeft=1.0)
    with FaceWindow(n_faces=2, error_scale_mm=5.0) as win:
        win.set_frame(truth, truth)
        same = np.asarray(win.slots[1].mesh.vertex_colors).copy()
        assert win.last_error_m.max() == 0
        win.set_frame(truth, np.zeros(52))
        colors = np.asarray(win.slots[1].mesh.vertex_colors)
        err = win.last_error_m
        image = win.capture()
    assert np.allclose(same, same[0])                           # one colour when equal
    moved, still = err > 0.004, err < 1e-5
    assert moved.sum() > 50 and still.sum() > 1000
    # Large error is darker/redder than no error under the YlOrRd map.
    assert colors[moved].sum(1).mean() < colors[still].sum(1).mean() - 0.5
    # The right half of the picture shows the error colours, the left half plain skin.
    h, w, _ = image.shape
    left, right = image[:, : w // 2].reshape(-1, 3), image[:, w // 2:].reshape(-1, 3)
    red = lambda px: ((px[:, 0] > 150) & (px[:, 1] < 90) & (px[:, 2] < 90)).sum()  # noqa: E731
    assert red(right) > 200 and red(left) < 20


def test_markers_follow_the_skin_and_toggle(face, weights):
    vertex = int(face.landmarks[57])             # lower lip: moves down with jawOpen
    site = MarkerSite("lip", face.vertex_point(vertex), np.eye(3), (0.9, 0.1, 0.1))
    with FaceWindow(markers=[site]) as win:
        win.set_frame(np.zeros(52))
        at_rest = np.asarray(win.slots[0].markers.mesh.vertices).mean(0)
        with_markers = win.capture()
        win.set_frame(weights(jawOpen=1.0))
        opened = np.asarray(win.slots[0].markers.mesh.vertices).mean(0)
        lip_drop = face.neutral[vertex, 1] - face.vertices(weights(jawOpen=1.0))[vertex, 1]
        assert lip_drop > 0.01
        assert at_rest[1] - opened[1] == pytest.approx(lip_drop, abs=0.004)
        win.set_frame(np.zeros(52))
        assert win.toggle_markers() is False
        without = win.capture()
    changed = np.abs(with_markers.astype(int) - without.astype(int)).sum(2) > 60
    assert 20 < changed.sum() < 5000      # a small marker, not the whole face


def test_camera_presets_turn_the_head(face, weights):
    with FaceWindow() as win:
        images = {}
        for name in ("front", "three-quarter", "profile"):
            win.set_camera(name)
            images[name] = win.capture().astype(int)
            nose = win.project(face.neutral[face.landmarks[[30]]])[0]
            images[name + "_nose"] = nose
    assert np.abs(images["front"] - images["profile"]).mean() > 5
    # Turning to the subject's left moves the nose tip to the right of the picture.
    assert images["front_nose"][0] < images["three-quarter_nose"][0] < images["profile_nose"][0]


def test_face_only_is_smaller_than_full_head(face, weights):
    part = MeshSelection.of_groups(face, ("face", "head_neck"))
    full = MeshSelection.of_groups(face, None)
    assert len(full.triangles) == len(face.triangles)
    assert 0 < len(part.triangles) < len(full.triangles) / 2
    assert part.triangles.max() < len(part.vertex_ids)
    with pytest.raises(ValueError, match="unknown face groups"):
        MeshSelection.of_groups(face, ("nose",))


def test_identity_changes_the_shape(face, weights):
    with FaceWindow(identity=3) as a, FaceWindow(identity=None, visible=True) as b:
        a.set_frame(np.zeros(52))
        b.set_frame(np.zeros(52))
        assert np.abs(a.slots[0].vertices - b.slots[0].vertices).max() > 0.002


def test_rig_markers_use_the_rig_skin_frames(face, weights):
    from imusic.hardware.rig import available_rigs, load_rig, skin_frames_at_rest
    from imusic.viewer.markers import sites_from_rig

    rig = load_rig(available_rigs()[0])
    sites = sites_from_rig(face, rig)
    assert [s.name for s in sites] == rig.site_names
    assert sum(s.reference for s in sites) == 1
    points = [s.point for s in sites]
    _, tri = face.surface_frames(np.zeros((1, 52)), points)
    skin = skin_frames_at_rest(face, points)
    for i, site in enumerate(rig.sites):
        # Sensor axes in head coordinates at rest: triangle frame x our mounting equals the
        # rig's skin frame x its mounting.
        assert np.allclose(tri[0, i] @ sites[i].mounting, skin[i] @ site.mounting, atol=1e-9)
    with FaceWindow(markers=sites) as win:
        win.set_frame(weights(jawOpen=1.0))
        verts = np.asarray(win.slots[0].markers.mesh.vertices)
        assert len(verts) == len(sites) * 32            # a box and three bars per site
        assert np.isfinite(verts).all()


def test_full_head_shows_the_mouth_inside(face, weights):
    jaw = weights(jawOpen=1.0)
    images = {}
    for full in (False, True):
        with FaceWindow(full_head=full) as win:
            win.set_frame(jaw)
            images[full] = win.capture().astype(float)
            px = win.project(face.vertex_subset(jaw[None], face.landmarks)[0][60:68])
    inner = _box(px, 0, images[True].shape[:2])            # inner lip contour
    diff = np.abs(images[True] - images[False]).mean(axis=2)
    outside = diff.copy()
    outside[inner] = 0
    assert diff[inner].mean() > 10                          # teeth / tongue / mouth socket
    assert outside.mean() < diff[inner].mean() / 10
