"""The error colour bar: the snapshot legend's image, and the same bar in live side by side."""

from __future__ import annotations

import numpy as np
import pylsl

from imusic.viewer.app import run_live
from imusic.viewer.colors import error_colors
from imusic.viewer.face_view import FaceWindow
from imusic.viewer.live import LslSource, resolve_blendshapes
from imusic.viewer.colors import error_bar_image


def _near(image: np.ndarray, rgb01: np.ndarray, tol: int = 12) -> np.ndarray:
    """Pixels within ``tol`` (per channel, 0..255) of a colour."""
    return (np.abs(image.astype(int) - np.rint(np.asarray(rgb01) * 255)).max(axis=2) <= tol)


def test_error_bar_image_runs_from_no_error_to_the_scale():
    img = error_bar_image(5.0, 600, 90)
    assert img.shape == (90, 600, 3) and img.dtype == np.uint8
    low, high = error_colors(np.array([0.0, 0.005]), 5.0)
    assert _near(img, low).sum() > 100 and _near(img, high).sum() > 100
    cols_low = np.flatnonzero(_near(img, low).any(axis=0))
    cols_high = np.flatnonzero(_near(img, high).any(axis=0))
    assert cols_low.mean() < cols_high.mean()               # 0 on the left, the scale right


def test_live_side_by_side_shows_the_error_bar(unique_name):
    from imusic.capture.arkit_bridge import blendshapes_info

    outlets = [pylsl.StreamOutlet(blendshapes_info(f"{unique_name}-{k}", "twin",
                                                   f"{unique_name}-{k}")) for k in "ab"]
    sources = [LslSource(resolve_blendshapes(f"{unique_name}-{k}", 10.0)).start() for k in "ab"]
    high = error_colors(np.array([1.0]), 5.0)[0]              # saturated: the bar's right end
    try:
        with FaceWindow(n_faces=2, markers=None, live_triangles=5000) as win:
            win.set_frame(np.zeros(52), np.zeros(52))        # equal faces: no error colour
            bare = win.capture()
            for outlet in outlets:
                for _ in range(3):
                    outlet.push_sample([0.0] * 61)
            run_live(win, sources, max_seconds=5.0, max_frames=1)
            assert win.error_bar is not None
            shown = win.capture()
    finally:
        for src in sources:
            src.stop()
    h, w, _ = shown.shape
    red = _near(shown, high, tol=25)
    assert not _near(bare, high, tol=25).any()
    # The bar's dark red end is drawn above the right face (the faces show no error).
    rows, cols = np.nonzero(red)
    assert len(rows) > 50
    assert rows.max() < h // 4 and cols.min() > w // 2
