"""Signal statistics of the twin (TWIN.md, "Statistics"): how far each board turns for one
blendshape at weight 1, per head shape, and how much the 20 head shapes differ.

    PYTHONPATH=. python scripts/twin_stats.py [--twin ideal|geometry|all] [--json out.json]

``--twin ideal``: the twin before issue 13 (``TwinConfig.ideal()``); ``geometry``: the new
face deformation only (person, jaw hinge, patch normal; no compliance); ``all``: the default
twin (board coupling drawn with seed 0).

Per board and shape it prints the rotation (deg) of the board from the neutral face to the
shape at weight 1 (the twin's ``sensor_frames``, no errors), as mean / min / max over the 20
identities, and the between-identity spread: the RMS over identities of the angle between each
identity's rotation and the mean rotation (deg).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.spatial.transform import Rotation

from imusic.hardware.face import N_IDENTITIES
from imusic.hardware.motion import Motion
from imusic.hardware.physics import TwinConfig, sensor_frames
from imusic.hardware.rig import load_rig
from imusic.hardware.vocabulary import ARKIT_NAMES

SHAPES = ("jawOpen", "mouthPucker", "mouthSmileLeft", "browInnerUp", "cheekPuff")


TWINS = {"ideal": TwinConfig.ideal(), "geometry": TwinConfig(compliance=False),
         "all": TwinConfig()}


def board_turns(rig, shape: str, identity: int | None, twin: TwinConfig) -> np.ndarray:
    """(S, 3) rotation vectors (rad, head frame) of each board, neutral -> shape at 1."""
    w = np.zeros((4, 52))
    w[2:, ARKIT_NAMES.index(shape)] = 1.0
    m = Motion(fps=1.0, blendshapes=w, head_rotvec=np.zeros((4, 3)),
               head_position=np.zeros((4, 3)))
    _, rot = sensor_frames(m, rig, identity, twin=twin)
    rel = rot[-1] @ np.swapaxes(rot[0], -1, -2)
    return Rotation.from_matrix(rel).as_rotvec()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--twin", choices=sorted(TWINS), default="all")
    args = ap.parse_args()
    rig = load_rig("imusic11")
    out: dict = {}
    for shape in SHAPES:
        rv = np.stack([board_turns(rig, shape, i, TWINS[args.twin]) for i in range(N_IDENTITIES)])  # (I, S, 3)
        ang = np.degrees(np.linalg.norm(rv, axis=-1))
        mean_rv = rv.mean(axis=0)
        dev = np.degrees(np.linalg.norm(rv - mean_rv, axis=-1))
        spread = np.sqrt((dev ** 2).mean(axis=0))
        out[shape] = {}
        print(f"\n{shape}: board rotation at weight 1 (deg) over {N_IDENTITIES} identities")
        print(f"  {'site':22s} {'mean':>6s} {'min':>6s} {'max':>6s} {'spread':>7s}")
        for s, name in enumerate(rig.site_names):
            row = dict(mean=float(ang[:, s].mean()), min=float(ang[:, s].min()),
                       max=float(ang[:, s].max()), spread=float(spread[s]))
            out[shape][name] = row
            print(f"  {name:22s} {row['mean']:6.1f} {row['min']:6.1f} {row['max']:6.1f} "
                  f"{row['spread']:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
