"""Render one frame to a PNG without user interaction (for documentation and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imusic.viewer.colors import ERROR_COLORMAP, error_bar_image


def parse_blendshapes(text: str) -> np.ndarray:
    """``"jawOpen=0.8,mouthSmileLeft=0.5"`` -> (52,) weights (other shapes 0).

    Raises ``ValueError`` naming an unknown blendshape and listing the valid spelling.
    """
    from imusic.hardware.vocabulary import ARKIT_NAMES

    w = np.zeros(len(ARKIT_NAMES), np.float32)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in ARKIT_NAMES:
            close = [n for n in ARKIT_NAMES if n.lower() == name.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else " (names as Apple spells them)"
            raise ValueError(f"unknown blendshape {name!r}{hint}")
        try:
            w[ARKIT_NAMES.index(name)] = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"blendshape {name}: {value!r} is not a number") from None
    return w


def add_error_legend(image: np.ndarray, scale_mm: float, path: Path | str,
                     colormap: str = ERROR_COLORMAP) -> None:
    """Save ``image`` with a labelled colour bar for per-vertex error below it."""
    import matplotlib.image

    bar = error_bar_image(scale_mm, image.shape[1], left=0.55, span=0.4, colormap=colormap)
    matplotlib.image.imsave(path, np.concatenate([image[..., :3], bar], axis=0))


def snapshot(path: Path | str | None, weights: np.ndarray, second: np.ndarray | None = None,
             legend: bool = True, **window_options: Any) -> np.ndarray:
    """Render ``weights`` (52 or 61 values; with ``second``, two faces side by side) and
    save a PNG at ``path`` (skip saving with None); returns the image ``(H, W, 3)`` uint8.

    Starts a private Xvfb when ``DISPLAY`` is unset (``viewer.display.ensure_display``).
    Window options as for ``FaceWindow`` (identity, camera, full_head, markers, ...).
    """
    from imusic.viewer.display import ensure_display
    from imusic.viewer.face_view import FaceWindow

    n_faces = 1 if second is None else 2
    with ensure_display(), FaceWindow(n_faces=n_faces, **window_options) as win:
        win.set_frame(weights, second)
        win.render()
        image = win.capture()
        scale = win.error_scale_mm
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if n_faces == 2 and legend:
            add_error_legend(image, scale, path)
        else:
            import matplotlib.image

            matplotlib.image.imsave(path, image)
    return image
