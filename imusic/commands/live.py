"""``imusic live``: camera-free live capture, wearable -> model -> blendshapes."""

from __future__ import annotations

import argparse

from imusic.commands._link import add_link_arguments, allow_error, link_options

HELP = "camera-free live capture: wearable -> model -> LSL blendshapes (+ Live Link, viewer, recording)"
EXAMPLE = "imusic live --serial /dev/ttyACM0 --livelink 127.0.0.1:11111 --view --record take.h5 --no-raw"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic live``."""
    add_link_arguments(parser)
    parser.add_argument("--name", default="imusic-model",
                        help="name of the predictions' Blendshapes LSL stream")
    parser.add_argument("--livelink", metavar="HOST:PORT", default=None,
                        help="also send Live Link Face packets there (Unreal's Live Link Face "
                             "source, or any Live Link receiver)")
    parser.add_argument("--view", action="store_true", help="open the face viewer")
    parser.add_argument("--record", metavar="SESSION.h5", default=None,
                        help="record the session (predictions, health, and raw IMU unless --no-raw)")
    parser.add_argument("--no-raw", action="store_true",
                        help="with --record: keep only predicted blendshapes and health, no raw IMU")
    parser.add_argument("--quiet", action="store_true", help="no live status line")


def status_line(pipe, elapsed: float) -> str:
    """Frames, rate and latency so far (the median of the last 2 s), plus the device's health
    when there is one."""
    st = pipe.stats
    el = max(elapsed, 1e-9)
    recent = st.motion_to_output.recent_median()
    p50 = f"{recent:5.1f}" if recent is not None else "  -  "
    health = f" | {pipe.health.line()}" if pipe.health is not None else ""
    return f"{el:6.1f} s | frames {st.frames} ({st.frames / el:4.1f}/s) | latency p50 {p50} ms{health}"


async def _main(args: argparse.Namespace) -> int:
    import sys

    from imusic.capture.arkit_bridge import parse_host_port
    from imusic.capture.session import mark_no_raw
    from imusic.keys import RECALIBRATE_KEY, usable_terminal
    from imusic.pipelines import LivePipeline
    from imusic.runner import Runner

    if args.no_raw and not args.record:
        print("imusic live: --no-raw only applies with --record SESSION.h5", file=sys.stderr)
        return 2
    livelink = parse_host_port(args.livelink) if args.livelink else None
    bad_allow = allow_error(args, "live")
    if bad_allow:
        print(bad_allow, file=sys.stderr)
        return 2
    link = link_options(args)
    try:
        pipe = LivePipeline(link, model=args.model, steps=args.steps, name=args.name,
                            livelink=livelink, imu_name=f"{args.name}-imu",
                            max_behind_s=args.max_behind_ms / 1000.0,
                            recalibrate_on_marker=args.recalibrate_on_marker)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"imusic live: cannot load the model: {err}", file=sys.stderr)
        return 2
    recorder = viewer = None
    if args.record:
        from imusic.capture.recorder import Recorder
        from imusic.capture.session import SessionError

        names = [args.name, f"{args.name}-imu-events"] + ([] if args.no_raw else [f"{args.name}-imu"])
        types = ("Blendshapes", "Markers") if args.no_raw else ("IMU", "Blendshapes", "Markers")
        try:
            recorder = Recorder(args.record, types=types, names=names).start()
        except (SessionError, OSError) as err:
            print(f"imusic live: cannot record to {args.record}: {err}", file=sys.stderr)
            return 2
    if args.view:
        from imusic.viewer.launch import launch_view

        viewer = launch_view(["--lsl", args.name])
    print(f"imusic live: {link.describe()} -> model ({pipe.runtime.steps} DDIM steps) -> LSL "
          f"'{args.name}'" + (f" + Live Link to {args.livelink}" if livelink else "")
          + (f" + recording {args.record}" + (" (no raw IMU)" if args.no_raw else "")
             if args.record else "") + "; no camera is used. Ctrl-C stops"
          + (f", '{RECALIBRATE_KEY}' recalibrates the neutral pose." if usable_terminal()
             else "."), file=sys.stderr)
    keys = {RECALIBRATE_KEY: lambda: pipe.loop.request_recalibration(f"key '{RECALIBRATE_KEY}'")}
    runner = Runner(args.seconds, status=lambda: status_line(pipe, runner.elapsed),
                    quiet=args.quiet, keys=keys)
    pipe.loop.say = runner.say   # calibration lines end the in-place status line first
    code = 0
    try:
        await runner.run(pipe.run(runner.stop))
    except (LookupError, OSError) as err:
        print(f"imusic live: {err}", file=sys.stderr)
        code = 1
    finally:
        if recorder is not None:
            recorder.stop()
            if args.no_raw:
                mark_no_raw(args.record)
        if viewer is not None:
            viewer.terminate()
    if code == 0 and args.seconds is not None and pipe.stats.samples == 0:
        why = pipe.health.last_error if pipe.health is not None and pipe.health.last_error \
            else "no device answered"
        print(f"imusic live: nothing received from {link.describe()} in {args.seconds:g} s: "
              f"{why}", file=sys.stderr)
        code = 1
    s = pipe.stats.summary()
    print(f"frames {s['frames']:.0f}  samples {s['samples']:.0f}  motion-to-output latency "
          f"p50 {s['motion_to_output_p50_ms']:.1f} ms  p99 {s['motion_to_output_p99_ms']:.1f} ms"
          f"  (model compute p50 {s['compute_p50_ms']:.1f} ms)")
    return code


def run(args: argparse.Namespace) -> int:
    """Entry point."""
    import asyncio

    return asyncio.run(_main(args))
