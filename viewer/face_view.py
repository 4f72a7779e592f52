"""The face window: one or two ICT faces in an Open3D legacy ``Visualizer``.

Open3D's Filament renderer takes seconds per frame in software GL, so the viewer uses the
legacy OpenGL ``VisualizerWithKeyCallback`` in a non-blocking loop: each frame rewrites the
mesh vertices in place, recomputes smooth normals and calls ``update_geometry``; the caller
polls events and renders. All GLFW calls must come from the thread that made the window.

Over 400 lines because the window's state (meshes, markers, overlays, camera) is one
Open3D ``Visualizer`` that only its own thread may touch; the pure parts (colours, overlays,
eyes, pose, markers) are already modules of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imusic.hardware.face import FaceModel
from imusic.viewer.colors import BACKGROUND, DEFAULT_ERROR_SCALE_MM, SKIN, error_colors, vertex_error
from imusic.viewer.eyes import eye_rotation, gaze_angles
from imusic.viewer.markers import MarkerSet, MarkerSite
from imusic.viewer.pose import HeadTurn, head_matrix

FACE_GROUPS: tuple[str, ...] = (
    "face", "head_neck", "eye_socket_left", "eye_socket_right", "eyeball_left", "eyeball_right",
)
"""Default parts: the skin of face and neck, eye sockets and eyeballs (about 30k triangles)."""

SIDE_BY_SIDE_GAP_M = 0.30
"""Distance between the centres of two faces shown side by side."""


CAMERAS: dict[str, float] = {"front": 0.0, "three-quarter": 40.0, "profile": 90.0}
"""Camera presets by name: how far (degrees) each head is turned to its left about its own
vertical axis, seen by a fixed front camera. Turning the heads rather than orbiting the camera
keeps two faces side by side the same size (keys 1, 2, 3; ``--camera``)."""

FIELD_OF_VIEW_DEG = 15.0
CAMERA_ZOOM = {1: 0.55, 2: 0.4}
"""Open3D view zoom by number of faces (smaller is closer)."""


def yaw_matrix(degrees: float) -> np.ndarray:
    """Rotation about the head's vertical (y) axis; positive turns the face to its left."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


class WindowError(RuntimeError):
    """Open3D could not open its window (no usable X display or OpenGL)."""


EYEBALLS: tuple[str, ...] = ("eyeball_left", "eyeball_right")
"""The eyeball groups, turned by gaze (``viewer.eyes``) rather than by blendshapes."""

LIVE_TRIANGLES: dict[int, int] = {1: 6000, 2: 5000}
"""Triangles per face of the decimated live mesh (``MeshSelection.decimated``), by number of
faces in the window, chosen by benchmarks/bench_viewer.py for its targets (30 frames/s for one
face, 20 side by side, software GL on 2 cores): 9,000 drew one face at 20 frames/s, 6,000 at
34."""


@dataclass(frozen=True)
class MeshSelection:
    """A subset of the face model: which vertices are drawn and their re-indexed triangles.

    A decimated selection draws fewer vertices than it takes from the model: each drawn vertex
    rides on its nearest model vertex (``vertex_ids``, whose blendshape deltas it takes), moved
    by ``rest_offset`` (its own rest position minus that vertex's, on the generic head)."""

    vertex_ids: np.ndarray     # (v,) indices into the full model's vertices
    triangles: np.ndarray      # (f, 3) indices into vertex_ids
    rest_offset: np.ndarray | None = None   # (v, 3) metres, decimated selections only

    @classmethod
    def of_groups(cls, face: FaceModel, groups: Sequence[str] | None) -> "MeshSelection":
        """The vertices of ``groups`` (all groups when None) and the triangles inside them."""
        names = list(face.groups) if groups is None else list(groups)
        unknown = [g for g in names if g not in face.groups]
        if unknown:
            raise ValueError(f"unknown face groups {unknown}; known: {sorted(face.groups)}")
        keep = np.zeros(face.n_vertices, bool)
        for g in names:
            keep[face.groups[g]] = True
        ids = np.flatnonzero(keep)
        remap = np.full(face.n_vertices, -1, np.int64)
        remap[ids] = np.arange(len(ids))
        tris = face.triangles[keep[face.triangles].all(axis=1)]
        return cls(ids, remap[tris].astype(np.int32))

    @classmethod
    def decimated(cls, face: FaceModel, groups: Sequence[str] | None,
                  triangles: int) -> "MeshSelection":
        """``of_groups`` simplified to about ``triangles`` triangles by quadric edge collapse
        (Open3D), for drawing live. The skin (every group but the eyeballs) is simplified as
        one mesh so that its seams stay closed; each eyeball on its own so that its vertices
        stay eyeball vertices. Cached per arguments (simplifying takes about a second)."""
        names = tuple(face.groups) if groups is None else tuple(groups)
        return _decimated(face, names, int(triangles))

    def rows_in_group(self, face: FaceModel, group: str) -> np.ndarray:
        """Rows of the drawn vertices that belong to a model group (may be empty)."""
        part = face.groups[group]
        return np.flatnonzero((self.vertex_ids >= part.start) & (self.vertex_ids < part.stop))

    def position_of(self, vertex: int) -> int:
        """Row of a full-model vertex id in this selection (ValueError if not drawn)."""
        hit = np.flatnonzero(self.vertex_ids == vertex)
        if len(hit) == 0:
            raise ValueError(f"vertex {vertex} is not part of the drawn mesh")
        return int(hit[0])


@functools.cache
def _decimated(face: FaceModel, names: tuple[str, ...], triangles: int) -> MeshSelection:
    import open3d as o3d
    from scipy.spatial import cKDTree

    skin = tuple(g for g in names if g not in EYEBALLS)
    units = [u for u in [skin] + [(g,) for g in EYEBALLS if g in names] if u]
    full = [MeshSelection.of_groups(face, u) for u in units]
    total = sum(len(f.triangles) for f in full)
    ids, offsets, tris, base = [], [], [], 0
    for part in full:
        rest = face.neutral[part.vertex_ids].astype(np.float64)
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(rest),
                                         o3d.utility.Vector3iVector(part.triangles))
        target = max(8, round(triangles * len(part.triangles) / total))
        small = mesh.simplify_quadric_decimation(target_number_of_triangles=target)
        small.remove_unreferenced_vertices()
        verts = np.asarray(small.vertices)
        _, nearest = cKDTree(rest).query(verts)
        ids.append(part.vertex_ids[nearest])
        offsets.append(verts - rest[nearest])
        tris.append(np.asarray(small.triangles) + base)
        base += len(verts)
    return MeshSelection(np.concatenate(ids), np.concatenate(tris).astype(np.int32),
                         np.concatenate(offsets).astype(np.float32))


_IDENTITY = np.eye(3)
"""The head pose of a frame without head angles (``FaceSlot.to_scene`` skips the turn)."""


class FaceSlot:
    """One face in the scene: its mesh, identity and horizontal offset."""

    def __init__(self, face: FaceModel, selection: MeshSelection, identity: int | None,
                 offset_x: float, markers: list[MarkerSite] | None = None):
        import open3d as o3d

        self.face, self.selection, self.identity = face, selection, identity
        self.offset = np.array([offset_x, 0.0, 0.0])
        # The blend basis of the drawn vertices only, gathered once: per frame the blend is
        # then one (52) x (52, 3v) product instead of a gather over the whole head.
        ids = selection.vertex_ids
        self._rest = face.vertex_subset(np.zeros((1, 52)), ids, identity)[0]
        self._basis = (face.vertex_subset(np.eye(52), ids, identity) - self._rest).reshape(52, -1)
        if selection.rest_offset is not None:
            self._rest = self._rest + selection.rest_offset
        # Eyeballs: their rows and centres (ICT's shapes never move them; gaze turns them).
        self._eyes = [(rows, (self._rest[rows].min(0) + self._rest[rows].max(0)) / 2)
                      for rows in (selection.rows_in_group(face, g) for g in EYEBALLS)]
        self.gaze = np.zeros((2, 2))     # (left, right) x (towards the face's left, up), rad
        self.vertices = self._rest.copy()
        # Heads turn about the centre of their rest shape's bounding box.
        self.pivot = ((self.vertices.min(0) + self.vertices.max(0)) / 2).astype(np.float64)
        self.turn = np.eye(3)
        # Head pose (the frame's head yaw/pitch/roll) turns the head about its neck pivot.
        self.neck = HeadTurn(face, face.rest_shape(identity))
        self.head = _IDENTITY
        self.weights = np.zeros(52, np.float32)
        self.mesh = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(self.to_scene(self.vertices)),
            o3d.utility.Vector3iVector(selection.triangles))
        self.mesh.paint_uniform_color(SKIN)
        self.mesh.compute_vertex_normals()
        self.markers = MarkerSet(face, markers, identity, self.to_scene) if markers else None

    def to_scene(self, points: np.ndarray) -> np.ndarray:
        """Head-frame points to scene coordinates: turned by the head pose about the neck
        pivot (``viewer.pose.HeadTurn``; the shoulders stay), then by the camera preset about
        the head's centre, then offset."""
        p = np.asarray(points, np.float64)
        if self.head is not _IDENTITY:
            p = self.neck.apply(p, self.head)
        return (p - self.pivot) @ self.turn.T + self.pivot + self.offset

    def pose(self, weights: np.ndarray) -> np.ndarray:
        """Drawn vertices ``(v, 3)`` for one frame of 52 weights, or 61 values with the pose
        channels (head coordinates, metres); the eyeballs turn by ``viewer.eyes.gaze_angles``.
        Sets the head pose (``head``, used by ``to_scene``) from the head channels."""
        values = np.asarray(weights, np.float32)
        head = head_matrix(values)
        self.head = _IDENTITY if np.array_equal(head, _IDENTITY) else head
        # Real ARKit values may leave 0..1 slightly and face-lost rows are NaN: clip for display.
        w = np.clip(np.nan_to_num(values[:52], nan=0.0), 0.0, 1.0)
        self.weights = w
        verts = (w @ self._basis).reshape(-1, 3) + self._rest
        self.gaze = gaze_angles(np.concatenate([w, values[52:]]))
        for (rows, centre), (left, up) in zip(self._eyes, self.gaze):
            if len(rows):
                verts[rows] = (verts[rows] - centre) @ eye_rotation(left, up).T.astype(
                    np.float32) + centre
        return verts

    def show(self, vertices: np.ndarray, colors: np.ndarray | None = None) -> None:
        """Write new vertices (and optionally per-vertex colours) into the mesh."""
        import open3d as o3d

        self.vertices = vertices
        self.mesh.vertices = o3d.utility.Vector3dVector(self.to_scene(vertices))
        if colors is not None:
            self.mesh.vertex_colors = o3d.utility.Vector3dVector(colors)
        self.mesh.compute_vertex_normals()


LABEL_WIDTH_M = 0.2
"""Width of a face's label quad in the scene (m; a face is about 0.25 m wide)."""
LABEL_ROW_M = 0.03
"""Height of one row of overlay text in the scene (m)."""
ERROR_BAR_M = (0.24, 0.036)
"""Width and height of the error colour bar's quad in the scene (m), above the right face."""
ERROR_BAR_PX_PER_M = 2500.0
"""Texture pixels per scene metre of the error bar (600 x 90 px, the snapshot legend's height)."""


def _title(base: str, keys: dict[str, str]) -> str:
    listed = "  ".join(f"{k}: {v}" for k, v in keys.items())
    return f"{base}  |  {listed}" if listed else base


class FaceWindow:
    """An Open3D window with one face, or two side by side (the second coloured by error).

    >>> with FaceWindow(n_faces=2) as win:           # doctest: +SKIP
    ...     win.set_frame(truth_52, prediction_52)
    ...     win.render()
    ...     image = win.capture()
    """

    def __init__(self, n_faces: int = 1, identity: int | None = None, full_head: bool = False,
                 width: int | None = None, height: int = 720, title: str = "imusic view",
                 camera: str = "front", markers: list[MarkerSite] | None = None,
                 show_markers: bool = True, error_scale_mm: float = DEFAULT_ERROR_SCALE_MM,
                 keys: dict[str, str] | None = None, visible: bool = True,
                 live_triangles: int | None = None):
        import open3d as o3d

        if n_faces not in (1, 2):
            raise ValueError(f"the viewer shows 1 or 2 faces, not {n_faces}")
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; choose one of {list(CAMERAS)}")
        self.face = FaceModel.load()
        groups = None if full_head else FACE_GROUPS
        # Full detail by default (snapshots, tests); ``live_triangles`` draws a decimated mesh.
        self.selection = (MeshSelection.of_groups(self.face, groups) if live_triangles is None
                          else MeshSelection.decimated(self.face, groups, live_triangles))
        self.error_scale_mm = error_scale_mm
        gap = SIDE_BY_SIDE_GAP_M
        offsets = [0.0] if n_faces == 1 else [-gap / 2, gap / 2]
        self.slots = [FaceSlot(self.face, self.selection, identity, x, markers)
                      for x in offsets]
        self.frames_drawn = 0
        self.last_error_m: np.ndarray | None = None
        width = width or (640 if n_faces == 1 else 1200)
        self.vis = o3d.visualization.VisualizerWithKeyCallback()
        self.title = _title(title, keys or {})
        if not self.vis.create_window(self.title, width, height, visible=visible):
            raise WindowError(
                "Open3D could not open a window (no usable OpenGL on the X display "
                f"{_display()!r}): run under Xvfb ('xvfb-run -a imusic view ...') or unset "
                "DISPLAY so that the viewer starts its own Xvfb")
        self._closed = False
        for slot in self.slots:
            self.vis.add_geometry(slot.mesh)
        self.markers_on = False
        if show_markers:
            self.toggle_markers()
        opt = self.vis.get_render_option()
        opt.background_color = np.asarray(BACKGROUND)
        opt.mesh_show_back_face = True
        self.camera = camera
        self.set_camera(camera)
        self.labels: list[Any] = []
        """One ``TextQuad`` per face (source and stream name), made by ``set_labels``."""
        self.status: Any = None
        """The status line's ``TextQuad`` (frame rate, latency, source), made by ``set_status``."""
        self.error_bar: Any = None
        """The error colour bar's ``ImageQuad`` (side by side), made by ``show_error_bar``."""

    # -- text --------------------------------------------------------------------------------

    def _quad(self, x: float, row: int, width_m: float) -> Any:
        """A text quad in front of the shoulders, ``row`` 0 lowest (status), 1 above it."""
        from imusic.viewer.overlay import TextQuad

        scene = self.slots[0].to_scene(self.slots[0].vertices)
        y = float(scene[:, 1].min()) + LABEL_ROW_M * (row + 0.5) + 0.003
        quad = TextQuad(np.array([x, y, float(scene[:, 2].max()) + 0.02]), width_m,
                        LABEL_ROW_M * 0.9)
        self.vis.add_geometry(quad.mesh, reset_bounding_box=False)
        return quad

    def set_labels(self, labels: list[str]) -> None:
        """Label each face (e.g. ``"arkit: iphone-arkit"``); a face's label quad is made on the
        first call and redrawn only when its text changes."""
        if len(labels) != len(self.slots):
            raise ValueError(f"{len(self.slots)} faces need {len(self.slots)} labels, "
                             f"got {len(labels)}")
        if not self.labels:
            self.labels = [self._quad(float(s.offset[0]), 1, LABEL_WIDTH_M) for s in self.slots]
        for quad, text in zip(self.labels, labels):
            if quad.set_text(text):
                self.vis.update_geometry(quad.mesh)

    def set_status(self, text: str) -> None:
        """Show the status line (one line under the labels)."""
        if self.status is None:
            centre = float(np.mean([s.offset[0] for s in self.slots]))
            self.status = self._quad(centre, 0, LABEL_WIDTH_M * len(self.slots))
        if self.status.set_text(text):
            self.vis.update_geometry(self.status.mesh)

    def show_error_bar(self) -> None:
        """Show the labelled colour bar of the error colours (0 .. ``error_scale_mm``, the
        snapshot legend's image) above the right face; side by side only, once."""
        from imusic.viewer.overlay import ImageQuad, TextStyle
        from imusic.viewer.colors import error_bar_image

        if len(self.slots) != 2:
            raise ValueError("the error colour bar belongs to two faces side by side")
        if self.error_bar is not None:
            return
        width_m, height_m = ERROR_BAR_M
        right = self.slots[1]
        scene = right.to_scene(right.vertices)
        top = scene[int(np.argmax(scene[:, 1]))]
        # Just above the crown, at the crown's depth (in front of it the perspective would
        # lift it out of the picture).
        centre = np.array([float(right.offset[0]), float(top[1]) + height_m / 2 + 0.004,
                           float(top[2])])
        self.error_bar = ImageQuad(centre, width_m, height_m)
        self.error_bar.set_image(error_bar_image(
            self.error_scale_mm, int(round(width_m * ERROR_BAR_PX_PER_M)),
            int(round(height_m * ERROR_BAR_PX_PER_M)), paper=TextStyle().paper))
        self.vis.add_geometry(self.error_bar.mesh, reset_bounding_box=False)

    # -- scene -------------------------------------------------------------------------------

    def set_camera(self, name: str) -> None:
        """Apply a camera preset (``front``, ``three-quarter``, ``profile``)."""
        if name not in CAMERAS:
            raise ValueError(f"unknown camera {name!r}; choose one of {list(CAMERAS)}")
        self.camera = name
        for slot in self.slots:
            slot.turn = yaw_matrix(CAMERAS[name])
            slot.show(slot.vertices)
            self.vis.update_geometry(slot.mesh)
            if slot.markers is not None and self.markers_on:
                slot.markers.update(slot.weights)
                self.vis.update_geometry(slot.markers.mesh)
        centre = self.slots[0].pivot.copy()
        centre[0] = np.mean([s.offset[0] for s in self.slots])
        vc = self.vis.get_view_control()
        # A narrow field of view (a long lens) so that two faces side by side are seen from
        # the same angle, not each from its own side of a wide perspective.
        # (Open3D moves the field of view in steps of 5 degrees; 5 itself means orthographic.)
        vc.change_field_of_view(step=(FIELD_OF_VIEW_DEG - vc.get_field_of_view()) / 5.0)
        vc.set_lookat(centre)
        vc.set_front(np.array([0.0, 0.0, 1.0]))
        vc.set_up(np.array([0.0, 1.0, 0.0]))
        vc.set_zoom(CAMERA_ZOOM[len(self.slots)])

    def toggle_markers(self) -> bool:
        """Show or hide the sensor markers; returns whether they are now shown."""
        sets = [s.markers for s in self.slots if s.markers is not None]
        if not sets:
            return False
        self.markers_on = not self.markers_on
        for slot in self.slots:
            m = slot.markers
            if m is None:
                continue
            if self.markers_on:
                m.update(slot.weights)
                self.vis.add_geometry(m.mesh, reset_bounding_box=False)
            else:
                self.vis.remove_geometry(m.mesh, reset_bounding_box=False)
        return self.markers_on

    def set_frame(self, weights_a: np.ndarray, weights_b: np.ndarray | None = None) -> None:
        """Pose the faces for one frame (52 or 61 values each: the head and eye pose channels
        turn the head and the eyeballs).

        With two faces, the second is coloured by its per-vertex distance to the first, in the
        head frame (a different head pose turns the head; it is not counted as error).
        """
        weights_a = np.asarray(weights_a, np.float32)
        verts_a = self.slots[0].pose(weights_a)
        self.slots[0].show(verts_a)
        if len(self.slots) == 2:
            if weights_b is None:
                raise ValueError("this window shows two faces: pass a second set of weights")
            verts_b = self.slots[1].pose(np.asarray(weights_b, np.float32))
            self.last_error_m = vertex_error(verts_a, verts_b)
            self.slots[1].show(verts_b, error_colors(self.last_error_m, self.error_scale_mm))
        for i, slot in enumerate(self.slots):
            self.vis.update_geometry(slot.mesh)
            if slot.markers is not None and self.markers_on:
                slot.markers.update(slot.weights)
                self.vis.update_geometry(slot.markers.mesh)

    def render(self) -> bool:
        """Process window events and draw; False once the user has closed the window."""
        if self._closed:
            return False
        alive = self.vis.poll_events()
        self.vis.update_renderer()
        self.frames_drawn += 1
        return bool(alive)

    def capture(self) -> np.ndarray:
        """The window's current picture as ``(H, W, 3)`` uint8 RGB (renders first)."""
        buf = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        return (np.clip(buf, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def project(self, points: np.ndarray, face_index: int = 0) -> np.ndarray:
        """Pixel coordinates ``(P, 2)`` (column, row) of head-frame points on one face."""
        params = self.vis.get_view_control().convert_to_pinhole_camera_parameters()
        k = np.asarray(params.intrinsic.intrinsic_matrix)
        ext = np.asarray(params.extrinsic)
        p = self.slots[face_index].to_scene(points)
        cam = p @ ext[:3, :3].T + ext[:3, 3]
        uvw = cam @ k.T
        return uvw[:, :2] / uvw[:, 2:3]

    def bind(self, key: int | str, action: Callable[[], Any]) -> None:
        """Call ``action()`` when ``key`` (a character or a GLFW key code) is pressed."""
        code = ord(key.upper()) if isinstance(key, str) else int(key)

        def callback(_vis: Any) -> bool:
            action()
            return True   # redraw

        self.vis.register_key_callback(code, callback)

    def close(self) -> None:
        """Destroy the window (idempotent)."""
        if not self._closed:
            self._closed = True
            self.vis.clear_geometries()
            self.vis.destroy_window()

    def __enter__(self) -> "FaceWindow":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _display() -> str:
    import os

    return os.environ.get("DISPLAY", "")
