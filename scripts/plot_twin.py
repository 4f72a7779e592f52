#!/usr/bin/env python
"""Plot what the twin's 12 sensors read for one real Live Link Face take.

    .venv/bin/python scripts/plot_twin.py                       # the shipped alex_rom_3 excerpt
    .venv/bin/python scripts/plot_twin.py --take hardware/data/takes/S07-001.csv \
        --start 1 --seconds 4 --out /tmp/twin_s07.png

The take's blendshapes drive the face model (head still: these takes carry no head pose);
``hardware.physics.simulate`` gives accelerometer, gyroscope and magnetometer readings of the
``imusic11`` rig at 100 Hz with the full sensor error model. The top panel shows a few of the
driving blendshapes; below, one row per sensor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_TAKE = REPO / "hardware" / "data" / "takes" / "alex_rom_3.csv"
"""The shipped 8 s excerpt of a real take (hardware/data/takes/PROVENANCE.md)."""


def main(argv: list[str] | None = None) -> int:
    """Simulate and plot; returns an exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--take", type=Path, default=DEFAULT_TAKE, help="Live Link Face CSV take")
    ap.add_argument("--rig", default="imusic11", help="rig name or file")
    ap.add_argument("--start", type=float, default=0.0, help="start of the window (s)")
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="length of the window (s; the take's end cuts it short)")
    ap.add_argument("--rate", type=float, default=100.0, help="device rate (Hz)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("twin_signals.png"),
                    help="PNG to write (default twin_signals.png here)")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from imusic.capture.livelink_csv import LiveLinkCSVError, read_take
    from imusic.hardware.motion import Motion
    from imusic.hardware.physics import simulate
    from imusic.hardware.rig import load_rig
    from imusic.hardware.vocabulary import ARKIT_NAMES

    if not args.take.exists():
        print(f"take not found: {args.take} (pass --take PATH to a Live Link Face CSV)",
              file=sys.stderr)
        return 2
    try:
        take = read_take(args.take)
    except LiveLinkCSVError as err:
        print(err, file=sys.stderr)
        return 2
    sel = (take.t >= args.start) & (take.t <= args.start + args.seconds)
    if sel.sum() < 4:
        print(f"{args.take}: window {args.start}+{args.seconds} s has no frames "
              f"(take is {take.t[-1]:.1f} s long)", file=sys.stderr)
        return 2
    motion = Motion.from_blendshapes(take.t[sel], take.values[sel])
    rig = load_rig(args.rig)
    sig = simulate(motion, rig, rate_hz=args.rate, seed=args.seed)

    shown = ["jawOpen", "mouthSmileLeft", "mouthFunnel", "eyeBlinkLeft", "browInnerUp",
             "cheekSquintLeft"]
    n = rig.n_sites
    fig, axes = plt.subplots(n + 1, 3, figsize=(16, 2.0 * (n + 1)), sharex=True,
                             gridspec_kw={"hspace": 0.35, "wspace": 0.18})
    top = plt.subplot2grid((n + 1, 3), (0, 0), colspan=3, fig=fig)
    for ax in axes[0]:
        ax.remove()
    for name in shown:
        top.plot(motion.t, motion.blendshapes[:, ARKIT_NAMES.index(name)], lw=1, label=name)
    top.set_ylabel("weight")
    top.set_title(f"{args.take.name}: {take.t[sel][0]:.0f}-{take.t[sel][-1]:.0f} s, rig "
                  f"{rig.id}, {args.rate:g} Hz, full error model (twin data, not a recording)")
    top.legend(ncol=len(shown), fontsize=8, loc="upper right")
    top.set_xlim(motion.t[0], motion.t[-1])
    units = {"acc": "m/s²", "gyro": "rad/s", "mag": "µT"}
    colours = ["tab:red", "tab:green", "tab:blue"]
    for s, site in enumerate(rig.sites):
        for c, q in enumerate(("acc", "gyro", "mag")):
            ax = axes[s + 1, c]
            data = getattr(sig, q)[:, s]
            for k in range(3):
                ax.plot(sig.t, data[:, k], lw=0.6, color=colours[k], label="xyz"[k])
            if s == 0:
                ax.set_title(f"{q} ({units[q]})")
            if c == 0:
                tag = " (ref)" if site.name == rig.reference else ""
                ax.set_ylabel(site.name + tag, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlim(motion.t[0], motion.t[-1])
    axes[1, 2].legend(fontsize=7, loc="upper right", ncol=3)
    for ax in axes[-1]:
        ax.set_xlabel("time in take (s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70, bbox_inches="tight")
    print(f"wrote {args.out} ({len(sig.t)} samples x {n} sensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
