"""``imusic demo``: the whole system on the emulator, no hardware.

A virtual wearable (the digital twin, procedural motion or a real Live Link Face take) speaks the
wire protocol over a real pseudo-terminal (or UDP socket); the device session decodes it and maps
its clock; the bundled model runs live; the viewer shows the twin's ground truth beside the
prediction. A live line shows latency and error; at the end a summary (frames, latency p50/p99,
MAE without gaze and tongue and per region, gaze and tongue apart, all on twin data).
"""

from __future__ import annotations

import argparse

HELP = "the live demo on the emulator (no hardware): twin -> wire -> model -> viewer"
EXAMPLE = "imusic demo --headless --seconds 20 --snapshot demo.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic demo``."""
    parser.add_argument("--motion", default="procedural", metavar="procedural|TAKE.csv",
                        help="facial motion of the virtual wearer (default procedural)")
    parser.add_argument("--transport", choices=("serial", "udp"), default="serial",
                        help="link between the emulator and the host (default serial, a pty)")
    parser.add_argument("--rate", type=int, default=100, help="device sample rate, Hz")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="stop after N seconds (default: until Ctrl-C or the window closes; "
                             "30 with --headless)")
    parser.add_argument("--headless", action="store_true", help="no window: print a summary")
    parser.add_argument("--snapshot", metavar="PNG", default=None,
                        help="at the end, save truth and prediction side by side as a PNG")
    parser.add_argument("--model", default=None, metavar="CKPT", help="checkpoint (default bundled)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps per frame")
    parser.add_argument("--seed", type=int, default=0, help="seed of the virtual wearer")
    parser.add_argument("--summary-json", default=None, metavar="PATH",
                        help="write the final summary here as JSON")


class DemoScore:
    """Running comparison of predictions with the twin's ground truth: a running sum for the
    whole run (bounded memory however long the demo runs) and the last ``RECENT`` frames for
    the live line. Written by the model thread, read by the status line."""

    RECENT = 120

    def __init__(self, truth) -> None:
        from collections import deque

        import numpy as np

        self.truth = truth
        self.frames = 0
        self.sum = np.zeros(52)
        self.recent: deque = deque(maxlen=self.RECENT)
        self.last = (np.zeros(52), np.zeros(52))

    def on_frame(self, frame, now: float) -> None:
        """Compare one predicted frame with the truth at the instant it describes."""
        import numpy as np

        truth, _ = self.truth.at(frame.t, 0.5 / 60.0)
        if truth is None or not frame.valid:
            return
        err = np.abs(frame.blendshapes[:52] - truth[:52])
        self.sum += err
        self.frames += 1
        self.recent.append(err)
        self.last = (truth[:52], frame.blendshapes[:52])

    def mae(self, recent: bool = False) -> dict[str, float]:
        """MAE x100 per region, without gaze and tongue, and over all 52
        (``hardware.vocabulary.region_summary``), over the whole run or the last ``RECENT``
        frames."""
        import numpy as np

        from imusic.hardware.vocabulary import region_summary

        if not self.frames:
            return {}
        per_shape = np.mean(self.recent, axis=0) if recent else self.sum / self.frames
        return region_summary(per_shape * 100)


def _truth_reader(name: str, buffer, halt) -> None:
    from imusic.sources import open_inlet, read_frames

    try:
        inlet = open_inlet(f"name='{name}'", f"ground-truth stream {name!r}",
                           "the emulator did not publish its truth")
    except LookupError:
        return   # the demo runs on; only the live error is missing
    read_frames(inlet, buffer, halt)


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _main(args: argparse.Namespace) -> int:
    import json
    import os
    import shutil
    import sys
    import threading
    import uuid

    from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
    from imusic.hardware.vocabulary import ALL_KEY, IMU_BLIND_REGIONS, SEEN_KEY, SEEN_LABEL
    from imusic.pipelines import LivePipeline
    from imusic.runner import Runner
    from imusic.sources import FrameBuffer, LinkOptions

    headless = args.headless
    if not headless and not os.environ.get("DISPLAY"):
        print("imusic demo: no display (DISPLAY is unset), so running headless; on a desktop "
              "the viewer opens, or run under 'xvfb-run -a imusic demo'", file=sys.stderr)
        headless = True
    seconds = args.seconds if args.seconds is not None else (30.0 if headless else None)
    tag = uuid.uuid4().hex[:6]
    truth_name, pred_name = f"imusic-demo-truth-{tag}", f"imusic-demo-model-{tag}"
    udp_port = _free_udp_port() if args.transport == "udp" else None
    config = EmulatorConfig(
        transport=args.transport, motion=args.motion, rate_hz=args.rate,
        seconds=None if seconds is None else seconds + 5.0, seed=args.seed,
        publish_truth=True, truth_name=truth_name, keep_truth=False,
        udp_target=("127.0.0.1", udp_port or 9000))
    say = lambda text: print(f"[demo] {text}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"starting the emulator: a virtual {config.rig} wearable, {args.motion} motion, "
        f"{args.rate} Hz, over a {'pseudo-terminal' if args.transport == 'serial' else 'UDP socket'}")
    try:
        emulator = Emulator.run_in_thread(config).__enter__()
    except (FileNotFoundError, ValueError) as err:
        print(f"imusic demo: cannot start the emulator: {err}", file=sys.stderr)
        return 2
    link = (LinkOptions(serial=emulator.emulator.serial_path) if args.transport == "serial"
            else LinkOptions(udp=udp_port, udp_host="127.0.0.1"))
    say(f"emulator up: {emulator.link_info}")
    truth = FrameBuffer(span_s=5.0)
    score = DemoScore(truth)
    try:
        pipe = LivePipeline(link, model=args.model, steps=args.steps, name=pred_name,
                            on_frame=score.on_frame, imu_name=f"imusic-demo-imu-{tag}")
    except (FileNotFoundError, KeyError, ValueError) as err:
        emulator.stop()
        print(f"imusic demo: cannot load the model: {err}", file=sys.stderr)
        return 2
    say(f"model: {pipe.runtime.trained.path} ({pipe.runtime.steps} DDIM steps, "
        f"look-ahead {pipe.runtime.delay_s * 1000:.0f} ms); device session on {link.describe()}")
    halt = threading.Event()
    reader = threading.Thread(target=_truth_reader, args=(truth_name, truth, halt), daemon=True)
    reader.start()
    viewer = None
    if not headless:
        from imusic.viewer.launch import launch_view

        say("opening the viewer: twin ground truth (left) and IMU prediction (right, coloured "
            "by error); close it or press Ctrl-C to stop")
        viewer = launch_view(["--lsl", truth_name, "--lsl", pred_name])
    def status() -> str:
        if viewer is not None and viewer.poll() is not None:
            runner.stop.set()   # the window was closed
        st = pipe.stats
        lat = st.motion_to_output.recent_median()
        recent = score.mae(recent=True).get(SEEN_KEY)
        return (f"[demo] {runner.elapsed:5.1f} s | frames {st.frames} | latency p50 "
                + (f"{lat:.1f} ms" if lat is not None else "-")
                + (f" | MAE x100 (last 2 s, {SEEN_LABEL}) {recent:.2f}" if recent is not None
                   else "")
                + (f" | {pipe.health.line()}" if pipe.health is not None else ""))

    runner = Runner(seconds, status=status)
    code = 0
    try:
        await runner.run(pipe.run(runner.stop))
    except (LookupError, OSError) as err:
        print(f"imusic demo: {err}", file=sys.stderr)
        code = 1
    finally:
        halt.set()
        reader.join(5)     # close the truth inlet before its outlet goes away
        emulator.stop()
        if viewer is not None and viewer.poll() is None:
            viewer.terminate()
    summary = {"frames": pipe.stats.frames, **pipe.stats.summary(),
               "mae_x100_per_region": score.mae(), "data": "twin (synthetic)",
               "motion": args.motion, "transport": args.transport,
               "health": pipe.health.as_dict() if pipe.health is not None else None}
    print("\nimusic demo summary (twin data: the emulator's ground truth vs the live prediction)")
    print(f"  frames {summary['frames']}   samples {pipe.stats.samples}")
    print(f"  latency, newest sample to output: p50 {summary['motion_to_output_p50_ms']:.1f} ms"
          f"  p99 {summary['motion_to_output_p99_ms']:.1f} ms;  model compute p50 "
          f"{summary['compute_p50_ms']:.1f} ms  p99 {summary['compute_p99_ms']:.1f} ms")
    mae = summary["mae_x100_per_region"]
    if mae:
        seen = [k for k in mae if k not in (*IMU_BLIND_REGIONS, SEEN_KEY, ALL_KEY)]
        print(f"  MAE x100, {SEEN_LABEL}: {mae[SEEN_KEY]:.2f};  per region: "
              + "  ".join(f"{k} {mae[k]:.2f}" for k in seen))
        print("  apart (the IMUs hardly see them): "
              + "  ".join(f"{k} {mae[k]:.2f}" for k in IMU_BLIND_REGIONS)
              + f";  all 52: {mae[ALL_KEY]:.2f}")
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    if args.snapshot:
        if score.frames:
            from imusic.viewer.snapshot import snapshot

            gt, pred = score.last
            try:
                snapshot(args.snapshot, gt, second=pred)
                say(f"snapshot saved to {args.snapshot}")
            except Exception as err:  # the demo's result stands even if the picture fails
                print(f"imusic demo: snapshot failed: {err}"
                      + ("" if shutil.which("Xvfb") else " (install xvfb)"), file=sys.stderr)
                code = code or 1
        else:
            print("imusic demo: no frame to snapshot", file=sys.stderr)
    if pipe.stats.frames == 0:
        print("imusic demo: the model produced no frame; see the messages above", file=sys.stderr)
        code = code or 1
    return code


def run(args: argparse.Namespace) -> int:
    """Entry point."""
    import asyncio

    return asyncio.run(_main(args))
