"""Text in the legacy Open3D window: labels and the status line as textured quads.

The legacy ``Visualizer`` draws no text, so the text is rendered into an image (PIL, which
matplotlib already needs) and shown as the texture of a two-triangle quad placed in the scene
(``TextQuad``): one above each face (its source and stream name) and one below the faces (the
status line: frame rate, latency, source). ``ImageQuad`` shows any image the same way: the live
side-by-side window's error colour bar is the snapshot's bar image (``viewer.colors.error_bar_image``).
``FaceWindow.set_labels`` / ``set_status`` / ``show_error_bar`` drive them; a new text
re-renders the image and updates the geometry only when the text changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TextStyle:
    """How overlay text looks (pixels of the texture, colours RGB 0..255)."""

    height_px: int = 48                       # texture height; width follows the quad's aspect
    font_px: int = 30                         # font size in the texture
    ink: tuple[int, int, int] = (20, 20, 30)  # text colour
    paper: tuple[int, int, int] = (242, 242, 247)  # the quad's background (near BACKGROUND)


def text_image(text: str, width_px: int, style: TextStyle = TextStyle()) -> np.ndarray:
    """``(height_px, width_px, 3)`` uint8 RGB with ``text`` drawn centred on one line."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (int(width_px), style.height_px), style.paper)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=style.font_px)
    except TypeError:                          # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max(0, (img.width - (right - left)) // 2 - left)
    y = max(0, (img.height - (bottom - top)) // 2 - top)
    draw.text((x, y), text, fill=style.ink, font=font)
    return np.asarray(img, np.uint8)


class ImageQuad:
    """A ``width_m`` x ``height_m`` quad facing +z, centred at ``centre`` (scene metres),
    textured with an RGB image (``set_image``)."""

    def __init__(self, centre: np.ndarray, width_m: float, height_m: float) -> None:
        import open3d as o3d

        cx, cy, cz = (float(v) for v in centre)
        w, h = width_m / 2.0, height_m / 2.0
        self.mesh = o3d.geometry.TriangleMesh()
        self.mesh.vertices = o3d.utility.Vector3dVector(np.array(
            [[cx - w, cy - h, cz], [cx + w, cy - h, cz], [cx + w, cy + h, cz],
             [cx - w, cy + h, cz]]))
        self.mesh.triangles = o3d.utility.Vector3iVector(np.array([[0, 1, 2], [0, 2, 3]]))
        # per-corner texture coordinates of each triangle (image row 0 at the top)
        self.mesh.triangle_uvs = o3d.utility.Vector2dVector(np.array(
            [[0, 1], [1, 1], [1, 0], [0, 1], [1, 0], [0, 0]], np.float64))
        self.mesh.triangle_material_ids = o3d.utility.IntVector([0, 0])
        self.mesh.compute_vertex_normals()

    def set_image(self, image: np.ndarray) -> None:
        """Show ``image`` ``(H, W, 3)`` uint8 RGB on the quad (the caller updates the geometry)."""
        import open3d as o3d

        self.mesh.textures = [o3d.geometry.Image(np.ascontiguousarray(image[..., :3]))]


class TextQuad(ImageQuad):
    """An ``ImageQuad`` holding one line of text (``set_text``), its texture ``style.height_px``
    high and as wide as the quad's aspect."""

    def __init__(self, centre: np.ndarray, width_m: float, height_m: float,
                 style: TextStyle = TextStyle()) -> None:
        super().__init__(centre, width_m, height_m)
        self.style = style
        self.text: str | None = None
        self.width_px = int(round(style.height_px * width_m / height_m))
        self.set_text("")

    def set_text(self, text: str) -> bool:
        """Show ``text``; True when it changed (the caller then updates the geometry)."""
        if text == self.text:
            return False
        self.text = text
        self.set_image(text_image(text, self.width_px, self.style))
        return True
