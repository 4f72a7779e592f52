"""``imusic hybrid``: occlusion-robust tracking, ARKit fused with the IMU estimate per region."""

from __future__ import annotations

import argparse

from imusic.commands._link import add_link_arguments, allow_error, link_options

HELP = "hybrid tracking: ARKit when the face is visible, the IMUs when it is not (per region)"
EXAMPLE = "imusic hybrid --arkit-listen 11111 --serial /dev/ttyACM0 --view"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic hybrid``."""
    arkit = parser.add_mutually_exclusive_group(required=True)
    arkit.add_argument("--arkit-listen", metavar="PORT", type=int,
                       help="receive Live Link Face packets from the phone on this UDP port")
    arkit.add_argument("--arkit-lsl", metavar="NAME", nargs="?", const="",
                       help="use an ARKit Blendshapes LSL stream ('imusic arkit'); NAME or the "
                            "first with desc/source arkit")
    add_link_arguments(parser)
    parser.add_argument("--name", default="imusic-hybrid",
                        help="name of the fused Blendshapes stream (state: NAME-state)")
    parser.add_argument("--view", action="store_true", help="open the viewer on the fused stream")
    parser.add_argument("--quiet", action="store_true", help="no live status line")


def state_line(pipe) -> str:
    """Which source each region is on right now."""
    from imusic.model.fusion import REGION_NAMES

    fuser = pipe.fuser
    parts = []
    for region, w in zip(REGION_NAMES, fuser._weight):  # noqa: SLF001 - read-only display
        parts.append(f"{region} {'ARKit' if w >= 0.999 else 'IMU' if w <= 0.001 else f'{w:.0%} ARKit'}")
    return f"fused {pipe.fused_frames} | " + ", ".join(parts)


async def _main(args: argparse.Namespace) -> int:
    import sys

    from imusic.keys import RECALIBRATE_KEY, usable_terminal
    from imusic.pipelines import HybridPipeline
    from imusic.runner import Runner

    bad_allow = allow_error(args, "hybrid")
    if bad_allow:
        print(bad_allow, file=sys.stderr)
        return 2
    try:
        pipe = HybridPipeline(link_options(args), arkit_listen=args.arkit_listen,
                              arkit_lsl=args.arkit_lsl, model=args.model, steps=args.steps,
                              name=args.name, max_behind_s=args.max_behind_ms / 1000.0,
                              recalibrate_on_marker=args.recalibrate_on_marker)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"imusic hybrid: {err}", file=sys.stderr)
        return 2
    viewer = None
    if args.view:
        from imusic.viewer.launch import launch_view

        viewer = launch_view(["--lsl", args.name])
    print("imusic hybrid: ARKit from "
          + (f"Live Link UDP {args.arkit_listen}" if args.arkit_listen is not None
             else f"LSL {args.arkit_lsl or '(source arkit)'}")
          + f" + IMU from {link_options(args).describe()} -> LSL '{args.name}' and "
          f"'{args.name}-state'. Ctrl-C stops"
          + (f", '{RECALIBRATE_KEY}' recalibrates the neutral pose." if usable_terminal()
             else "."), file=sys.stderr)
    code = 0
    try:
        runner = Runner(args.seconds, status=lambda: state_line(pipe), quiet=args.quiet,
                        keys={RECALIBRATE_KEY: lambda: pipe.live.loop.request_recalibration(
                            f"key '{RECALIBRATE_KEY}'")})
        pipe.live.loop.say = runner.say   # calibration lines end the status line first
        await runner.run(pipe.run(runner.stop))
    except (LookupError, OSError) as err:
        print(f"imusic hybrid: {err}", file=sys.stderr)
        code = 1
    finally:
        if viewer is not None:
            viewer.terminate()
    print(f"fused frames {pipe.fused_frames}")
    return code


def run(args: argparse.Namespace) -> int:
    """Entry point."""
    import asyncio

    return asyncio.run(_main(args))
