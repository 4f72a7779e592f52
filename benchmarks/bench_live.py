"""Motion-to-output latency of ``imusic live`` on the emulator.

A virtual imusic11 wearable streams over a real pseudo-terminal; the live pipeline (device
session, clock map, bundled model, LSL outlet) publishes predictions. Per output frame:

* newest sample -> output: LSL time at publish minus the (clock-mapped) device timestamp of the
  newest IMU sample the frame used: what the pipeline adds;
* frame delay: publish time minus the instant the frame describes (adds the model's look-ahead);
* model compute: features + DDIM sampling for the frame.

    .venv/bin/python benchmarks/bench_live.py [--quick] [--seconds N] [--rate HZ] [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, save  # noqa: E402


async def measure(seconds: float, rate: int, steps: int | None) -> dict:
    from firmware_bridge.emulator import Emulator, EmulatorConfig
    from imusic.pipelines import LinkOptions, LivePipeline, stop_after

    cfg = EmulatorConfig(transport="serial", rate_hz=rate, seconds=seconds + 10, seed=5,
                         keep_truth=False)
    with Emulator.run_in_thread(cfg) as emu:
        pipe = LivePipeline(LinkOptions(serial=emu.emulator.serial_path), steps=steps,
                            name="bench-live", imu_name="bench-live-imu")
        stop = asyncio.Event()
        timer = asyncio.create_task(stop_after(stop, seconds))
        stats = await pipe.run(stop)
        await timer
    return {"seconds": seconds, "rate_hz": rate, "steps": pipe.runtime.steps, **stats.summary()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s instead of 60 s")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: model's)")
    args = parser.parse_args()
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    result = asyncio.run(measure(seconds, args.rate, args.steps))
    rows = [{"measure": k.replace("_p50_ms", ""), "p50_ms": result[k],
             "p99_ms": result[k.replace("p50", "p99")]}
            for k in result if k.endswith("_p50_ms")]
    print_table(rows, f"imusic live on the emulator: {result['frames']:.0f} frames in "
                      f"{seconds:.0f} s, {args.rate} Hz device, {result['steps']} DDIM steps")
    save("bench_live", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
