"""Colours of the viewer: skin, background, the per-vertex error colormap and its labelled colour
bar (pure functions; the snapshot and the live window both draw that bar)."""

from __future__ import annotations

import functools

import numpy as np

SKIN = (0.87, 0.72, 0.62)
"""Neutral skin tone of the face (RGB 0..1)."""

BACKGROUND = (0.95, 0.95, 0.97)
"""Light background, so that the face and error colours read well in print."""

ERROR_COLORMAP = "YlOrRd"
"""Matplotlib colormap for per-vertex error: pale yellow at zero (close to skin, so agreement
reads as calm) through orange to dark red at the scale; sequential and colour-blind safe."""

DEFAULT_ERROR_SCALE_MM = 5.0
"""Error that maps to the top of the colormap; larger errors saturate."""

REGION_COLORS = {
    "brows": (0.85, 0.33, 0.10), "eyes": (0.93, 0.69, 0.13), "gaze": (0.93, 0.69, 0.13),
    "cheeks_nose": (0.47, 0.67, 0.19), "mouth": (0.64, 0.08, 0.18), "jaw": (0.30, 0.75, 0.93),
}
"""Marker colour per face region of a sensor site (unknown regions get grey)."""


@functools.cache
def _lut(name: str, n: int = 256) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps[name](np.linspace(0.0, 1.0, n))[:, :3].astype(np.float64)


def error_colors(distance_m: np.ndarray, scale_mm: float = DEFAULT_ERROR_SCALE_MM,
                 colormap: str = ERROR_COLORMAP) -> np.ndarray:
    """RGB ``(V, 3)`` in 0..1 for per-vertex distances in metres; ``scale_mm`` saturates."""
    if scale_mm <= 0:
        raise ValueError(f"error scale must be > 0 mm, got {scale_mm}")
    lut = _lut(colormap)
    frac = np.clip(np.asarray(distance_m, np.float64) * 1000.0 / scale_mm, 0.0, 1.0)
    return lut[np.rint(frac * (len(lut) - 1)).astype(np.intp)]


def vertex_error(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Euclidean distance per vertex (same units as the inputs), for ``(..., V, 3)`` arrays."""
    return np.linalg.norm(np.asarray(prediction) - np.asarray(truth), axis=-1)


ERROR_BAR_LABEL = "per-vertex error of the right face (mm)"
"""The colour bar's label, in snapshots and in the live side-by-side window."""


def error_bar_image(scale_mm: float, width_px: int, height_px: int = 90, left: float = 0.05,
                    span: float = 0.9, paper: tuple[int, int, int] = (255, 255, 255),
                    colormap: str = ERROR_COLORMAP) -> np.ndarray:
    """``(height_px, width_px, 3)`` uint8 RGB: the labelled colour bar of per-vertex error,
    0 .. ``scale_mm``, spanning ``left .. left + span`` of the width (matplotlib). Snapshots put
    it under the picture (``add_error_legend``); the live side-by-side window shows it as an
    overlay quad (``FaceWindow.show_error_bar``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    dpi = 100
    fig = plt.figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi,
                     facecolor=tuple(c / 255.0 for c in paper))
    try:
        cax = fig.add_axes((left, 55 / 90, span, 14 / 90))
        bar = fig.colorbar(plt.cm.ScalarMappable(Normalize(0, scale_mm), colormap), cax=cax,
                           orientation="horizontal")
        bar.set_label(ERROR_BAR_LABEL, fontsize=9)
        bar.ax.tick_params(labelsize=8)
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
    finally:
        plt.close(fig)
    return np.ascontiguousarray(rgba[:height_px, :width_px, :3])
