#!/usr/bin/env python3
"""Render where each sensor site of a rig sits on the face: docs/img/rig_<id>.png.

The face is the packaged ICT FaceKit neutral head (hardware.face.FaceModel), the sites come
from the rig file (hardware.rig.load_rig), drawn with matplotlib (Agg, no display): a front view
with every site numbered and named, and a three-quarter view from the subject's right.

    .venv/bin/python scripts/render_rig.py                 # every rig -> docs/img/
    .venv/bin/python scripts/render_rig.py --rig imusic6 --out /tmp
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Mesh parts drawn: skin and eyeballs (not the mouth socket, teeth, gums or eye sockets).
DRAWN_GROUPS = ("face", "head_neck", "eyeball_left", "eyeball_right")
LIGHT = np.array([0.35, 0.45, 1.0]) / np.linalg.norm([0.35, 0.45, 1.0])
REGION_COLOURS = {"brows": "#1f77b4", "eyes": "#9467bd", "cheeks_nose": "#2ca02c",
                  "mouth": "#d62728", "jaw": "#ff7f0e", "rigid": "#111111"}


def yaw_matrix(deg: float) -> np.ndarray:
    """Rotation about the vertical (y) axis; positive turns the face to the viewer's left."""
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def drawn_triangles(face) -> np.ndarray:
    """Triangles whose three vertices all belong to DRAWN_GROUPS."""
    keep = np.zeros(face.neutral.shape[0], dtype=bool)
    for g in DRAWN_GROUPS:
        keep[face.groups[g]] = True
    tris = face.triangles
    return tris[keep[tris].all(axis=1)]


def shaded_mesh(verts: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front-facing triangles (as 2D polygons, far to near) and their grey levels."""
    p = verts[tris]                                       # (F, 3, 3)
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    front = n[:, 2] > 0                                   # the viewer looks along -z
    p, n = p[front], n[front]
    order = np.argsort(p[:, :, 2].mean(axis=1))           # painter's algorithm
    shade = 0.28 + 0.72 * np.clip(n[order] @ LIGHT, 0, 1)
    return p[order][:, :, :2], shade


def site_views(face, rig, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Site positions (P, 3) in the view and whether each faces the viewer."""
    pos, frames = face.surface_frames(np.zeros((1, 52)), [s.anchor for s in rig.sites])
    pos = pos[0] @ rot.T
    normals = frames[0][:, :, 2] @ rot.T                  # column z: outward skin normal
    return pos, normals[:, 2] > 0.15


def label_slots(ys: np.ndarray, lo: float, hi: float, gap: float) -> np.ndarray:
    """Label heights near ``ys`` (same order), at least ``gap`` apart, within [lo, hi]."""
    order = np.argsort(-ys)
    out = np.empty_like(ys)
    y_prev = hi + gap
    for i in order:
        out[i] = min(ys[i], y_prev - gap)
        y_prev = out[i]
    shift = lo - out.min()
    return out + max(shift, 0.0)


def draw_face(ax, verts: np.ndarray, tris: np.ndarray) -> None:
    """Shaded mesh into ``ax``."""
    from matplotlib.collections import PolyCollection

    polys, shade = shaded_mesh(verts, tris)
    colours = np.outer(shade, [0.96, 0.84, 0.76])         # skin tone under grey light
    ax.add_collection(PolyCollection(polys, facecolors=colours, edgecolors=colours,
                                     linewidths=0.15, antialiaseds=False))


def render(rig_id: str, out_dir: Path) -> Path:
    """Draw one rig; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imusic.hardware.face import FaceModel
    from imusic.hardware.rig import load_rig

    face = FaceModel.load()
    rig = load_rig(rig_id)
    verts = face.neutral.astype(np.float64) * 100.0       # centimetres read better on axes
    tris = drawn_triangles(face)

    fig, (ax_front, ax_side) = plt.subplots(1, 2, figsize=(13, 7.2),
                                            gridspec_kw={"width_ratios": [1.55, 1]})
    fig.patch.set_facecolor("white")

    # Front view, numbered sites, names in the margins (the subject's right on the left).
    draw_face(ax_front, verts, tris)
    pos, visible = site_views(face, rig, np.eye(3))
    pos *= 100.0
    xmin, xmax, ylo, yhi = -19.0, 19.0, -11.5, 14.0
    left = [i for i, p in enumerate(pos) if p[0] < -0.5]
    right = [i for i, p in enumerate(pos) if p[0] > 0.5]
    for i, p in enumerate(pos):                           # midline sites: to the emptier side
        if -0.5 <= p[0] <= 0.5:
            (left if len(left) <= len(right) else right).append(i)
    for side, idx in ((-1, left), (1, right)):
        if not idx:
            continue
        idx = np.array(idx)
        ys = label_slots(pos[idx, 1], ylo + 0.8, yhi - 0.8, 1.55)
        for i, y in zip(idx, ys):
            s = rig.sites[i]
            colour = REGION_COLOURS.get(s.region, "black")
            x_text = xmin + 0.3 if side < 0 else xmax - 0.3
            ax_front.annotate(
                f"{i + 1}  {s.name}" + ("  (reference)" if s.name == rig.reference else ""),
                xy=pos[i, :2], xytext=(x_text, y), ha="left" if side < 0 else "right",
                va="center", fontsize=9, color=colour,
                arrowprops=dict(arrowstyle="-", color=colour, lw=0.8, shrinkA=2, shrinkB=4))
    for i, p in enumerate(pos):
        s = rig.sites[i]
        ax_front.scatter(p[0], p[1], s=150, c=REGION_COLOURS.get(s.region, "black"),
                         edgecolors="white", linewidths=1.2, zorder=5)
        ax_front.text(p[0], p[1], str(i + 1), color="white", fontsize=7, ha="center",
                      va="center", zorder=6, fontweight="bold")
    ax_front.set_xlim(xmin, xmax)
    ax_front.set_ylim(ylo, yhi)
    ax_front.set_title(f"rig {rig.id}: front view ({rig.n_sites} sensors)", fontsize=11)

    # Three-quarter view from the subject's right: the depth of each site on the face.
    rot = yaw_matrix(40.0)
    draw_face(ax_side, verts @ rot.T, tris)
    pos3, visible3 = site_views(face, rig, rot)
    pos3 *= 100.0
    for i, p in enumerate(pos3):
        if not visible3[i]:
            continue
        s = rig.sites[i]
        ax_side.scatter(p[0], p[1], s=110, c=REGION_COLOURS.get(s.region, "black"),
                        edgecolors="white", linewidths=1.0, zorder=5)
        ax_side.text(p[0], p[1], str(i + 1), color="white", fontsize=6.5, ha="center",
                     va="center", zorder=6, fontweight="bold")
    ax_side.set_xlim(-13, 13)
    ax_side.set_ylim(ylo, yhi)
    ax_side.set_title("three-quarter view, subject's right", fontsize=11)

    for ax in (ax_front, ax_side):
        ax.set_aspect("equal")
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=r.replace("_", " / "))
               for r, c in REGION_COLOURS.items() if any(s.region == r for s in rig.sites)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               fontsize=9, title="region (hardware.vocabulary.REGIONS; rigid = reference)")
    fig.text(0.5, 0.955, "Face: ICT FaceKit neutral head (USC ICT, MIT licence). Numbers = rig "
             "order = sensor order on the wire.", ha="center", fontsize=8.5, color="#444")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.1, wspace=0.02)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"rig_{rig.id}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: render one or every rig."""
    from imusic.hardware.rig import available_rigs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rig", action="append", help="rig id or JSON path (default: every rig)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="output folder")
    args = ap.parse_args(argv)
    for rig_id in args.rig or available_rigs():
        print(render(rig_id, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
