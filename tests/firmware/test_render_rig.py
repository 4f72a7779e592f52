"""scripts/render_rig.py draws the rig's sites on the face model (the assembly guide's picture)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_rig.py"


def _load():
    spec = importlib.util.spec_from_file_location("render_rig", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_render_marks_every_site_in_its_region_colour(tmp_path):
    import matplotlib.image as mpimg

    mod = _load()
    path = mod.render("imusic6", tmp_path)
    img = mpimg.imread(path)[:, :, :3]
    assert path.name == "rig_imusic6.png" and img.shape[0] > 500 and img.shape[1] > 1000
    # every region of the rig shows up in its marker colour (more than a legend dot's worth)
    for region in ("brows", "eyes", "cheeks_nose", "jaw", "rigid"):
        rgb = np.array([int(mod.REGION_COLOURS[region][i:i + 2], 16) for i in (1, 3, 5)]) / 255
        hits = (np.abs(img - rgb).max(axis=2) < 0.02).sum()
        assert hits > 150, (region, hits)


def test_front_view_puts_the_subjects_left_on_the_viewers_right():
    from imusic.hardware.face import FaceModel
    from imusic.hardware.rig import load_rig

    mod = _load()
    rig = load_rig("imusic11")
    pos, visible = mod.site_views(FaceModel.load(), rig, np.eye(3))
    assert visible.all()
    x = dict(zip(rig.site_names, pos[:, 0]))
    assert x["zygomaticus_l"] > 0 > x["zygomaticus_r"]
    # turned 40 degrees, the subject's right cheek faces the camera, the left one turns away
    pos3, _ = mod.site_views(FaceModel.load(), rig, mod.yaw_matrix(40.0))
    z3 = dict(zip(rig.site_names, pos3[:, 2]))
    assert z3["zygomaticus_r"] > z3["zygomaticus_l"]
