"""Viewer speed: update-and-render frames per second of the Open3D face window.

Cases: one face or two side by side; face+neck (default) or the full head; with and without
sensor markers; full detail or the decimated live mesh the window draws. Per frame it times the blend (52 weights -> vertices), the mesh update with
smooth normals, and the draw (poll_events + update_renderer, which blocks until the frame is
rendered in software GL). Runs under its own Xvfb when DISPLAY is unset.

    python benchmarks/bench_viewer.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402

CASES = [
    # name, faces, full head, markers, live (decimated) mesh
    ("one face, face+neck", 1, False, False, False),
    ("one face, face+neck, sensors", 1, False, True, False),
    ("one face, full head", 1, True, False, False),
    ("side by side, face+neck", 2, False, False, False),
    ("side by side, full head", 2, True, False, False),
    ("one face, live mesh", 1, False, False, True),
    ("one face, live mesh, sensors", 1, False, True, True),
    ("side by side, live mesh", 2, False, False, True),
]
"""The live-mesh cases are what ``imusic view`` draws in its window (``LIVE_TRIANGLES[n]`` per
face); the others are full detail, as in snapshots and with ``--full-detail``."""


def motion(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random blendshape frames (so every frame differs, like real motion)."""
    rng = np.random.default_rng(seed)
    knots = rng.uniform(0, 0.8, (n // 10 + 2, 52))
    x = np.linspace(0, len(knots) - 1, n)
    return np.stack([np.interp(x, np.arange(len(knots)), knots[:, j]) for j in range(52)], 1)


def run_case(faces: int, full_head: bool, markers: bool, live: bool, frames: int) -> dict:
    """Time ``frames`` update-and-render passes of one window configuration."""
    from imusic.hardware.face import FaceModel
    from imusic.hardware.rig import available_rigs, load_rig
    from imusic.viewer.face_view import LIVE_TRIANGLES, FaceWindow
    from imusic.viewer.markers import sites_from_rig

    face = FaceModel.load()
    sites = sites_from_rig(face, load_rig(available_rigs()[0])) if markers else None
    a, b = motion(frames + 5, 0), motion(frames + 5, 1)
    t_update, t_draw = [], []
    with FaceWindow(n_faces=faces, full_head=full_head, markers=sites,
                    live_triangles=LIVE_TRIANGLES[faces] if live else None) as win:
        tris = len(win.selection.triangles) * faces
        for i in range(frames + 5):
            t0 = time.perf_counter()
            win.set_frame(a[i], b[i] if faces == 2 else None)
            t1 = time.perf_counter()
            win.render()
            t2 = time.perf_counter()
            if i >= 5:                                   # skip warm-up frames
                t_update.append(t1 - t0)
                t_draw.append(t2 - t1)
        # Parts of the update, measured on their own: the blend and the normals.
        slot = win.slots[0]
        t0 = time.perf_counter()
        for i in range(frames):
            slot.pose(a[i])
        blend = (time.perf_counter() - t0) / frames
        t0 = time.perf_counter()
        for _ in range(frames):
            slot.mesh.compute_vertex_normals()
        normals = (time.perf_counter() - t0) / frames
    total = np.array(t_update) + np.array(t_draw)
    return {
        "triangles": tris,
        "fps": float(1.0 / total.mean()),
        "fps_p10": float(1.0 / np.percentile(total, 90)),
        "update_ms": float(np.mean(t_update) * 1e3),
        "draw_ms": float(np.mean(t_draw) * 1e3),
        "blend_ms_per_face": float(blend * 1e3),
        "normals_ms_per_face": float(normals * 1e3),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every case and print/save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 frames per case, not 200")
    args = parser.parse_args(argv)
    frames = 30 if args.quick else 200

    from imusic.viewer.display import ensure_display


    load_before = os.getloadavg()
    rows = []
    with ensure_display() as display:
        for name, faces, full, markers, live in CASES:
            r = run_case(faces, full, markers, live, frames)
            rows.append({"case": name, **r})
    load_after = os.getloadavg()
    print_table(rows, f"viewer update+render, {frames} frames per case, "
                      f"window 640x720 (1200x720 side by side), DISPLAY {display}")
    # Software GL shares the CPU with everything else: the load says how busy it was.
    print(f"1-minute load average: {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"({os.cpu_count()} cores)")
    save("bench_viewer", rows, frames=frames, renderer="Open3D legacy Visualizer, Mesa (software GL) "
         "when under Xvfb", load_average_1min=[load_before[0], load_after[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
