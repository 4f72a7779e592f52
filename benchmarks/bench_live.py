"""Newest-sample-to-output latency of ``imusic live`` on the emulator, with the machine's state.

A virtual imusic11 wearable (``imusic emulate``, its own process, as a user runs it) streams
over a real pseudo-terminal; the live pipeline (device session, clock map, bundled model, LSL
outlet: what ``imusic live`` runs) publishes predictions. With ``--link lsl`` the wearable goes
through ``imusic stream`` (a third process) and the pipeline reads its ``IMU`` LSL stream
(``imusic live --lsl``). Per output frame:

* newest sample -> output: LSL time at publish minus the (clock-mapped) device timestamp of the
  newest IMU sample the frame used: what the pipeline adds (the target: one 60 Hz frame);
* frame delay: publish time minus the instant the frame describes (adds the model's look-ahead);
* model compute: features + DDIM sampling for the frame;
* hand-off: how long the newest samples waited in the queue from the device session to the
  model thread (0 with ``--lsl``: computed where pulled). The rest of newest sample -> output,
  less compute and hand-off, is the link, the decoder, the clock map and the GIL.

Each is given as p50/p95/p99/max over the run (frames of the first ``--settle`` seconds left
out). The machine's state goes with the numbers: load average before and after, the share of
all cores busy during the run (``/proc/stat``, every process), this process's CPU time, and
the garbage collector's full collections during the run and their longest pause.

    .venv/bin/python benchmarks/bench_live.py [--quick] [--seconds N] [--rate HZ] [--steps N]
                                              [--link serial|lsl|both] [--max-behind-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, save  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far (``/proc/stat``)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    return sum(fields) - idle, sum(fields)


class FullCollections:
    """Full (generation 2) garbage collections while counting, and the longest pause."""

    def __init__(self) -> None:
        self.count = 0
        self.longest_ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1e3)


def _spawn(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "imusic", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)


def _pty_of(emulator: subprocess.Popen) -> str:
    """The pseudo-terminal the emulator prints in its ``ready {...}`` line."""
    assert emulator.stdout is not None
    for line in emulator.stdout:
        if line.startswith("ready "):
            return json.loads(line[len("ready "):])["path"]
    raise RuntimeError("imusic emulate ended without a ready line")


async def measure(seconds: float, rate: int, steps: int | None, link: str,
                  settle_s: float, max_behind_ms: float = 250.0) -> dict:
    """One run; the summary of its frames after ``settle_s`` and the machine's state."""
    # imported here, not at the top: the pipeline imports torch (seconds), --help should not
    from imusic.pipelines import LivePipeline
    from imusic.sources import LinkOptions

    tag = uuid.uuid4().hex[:6]
    procs = [_spawn(["emulate", "--transport", "serial", "--rate", str(rate), "--seed", "5",
                     "--seconds", str(seconds + settle_s + 30)])]
    try:
        pty = _pty_of(procs[0])
        if link == "lsl":
            procs.append(_spawn(["stream", "--serial", pty, "--name", f"bench-imu-{tag}",
                                 "--quiet"]))
            options = LinkOptions(lsl=f"bench-imu-{tag}")
        else:
            options = LinkOptions(serial=pty)
        pipe = LivePipeline(options, steps=steps, name=f"bench-live-{tag}",
                            imu_name=f"bench-live-imu-{tag}", max_behind_s=max_behind_ms / 1e3)
        stop = asyncio.Event()
        run = asyncio.create_task(pipe.run(stop))
        deadline = time.monotonic() + 60.0
        while pipe.stats.frames == 0 and time.monotonic() < deadline and not run.done():
            await asyncio.sleep(0.05)
        await asyncio.sleep(settle_s)
        pipe.loop.stats = type(pipe.stats)()   # count from here: the settled run
        collections = FullCollections()
        gc.callbacks.append(collections)
        load_before = os.getloadavg()
        busy0, total0 = cpu_busy()
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(seconds)
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        busy1, total1 = cpu_busy()
        gc.callbacks.remove(collections)
        stop.set()
        stats = await run
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
    return {"link": link, "seconds": seconds, "rate_hz": rate, "steps": pipe.runtime.steps,
            "max_behind_ms": max_behind_ms,
            **stats.summary(),
            "machine_state": {
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                "cores_busy_share": round((busy1 - busy0) / max(total1 - total0, 1.0), 3),
                "process_cpu_s": round(own1.ru_utime + own1.ru_stime
                                       - own0.ru_utime - own0.ru_stime, 2),
                "full_gc_collections": collections.count,
                "full_gc_longest_ms": round(collections.longest_ms, 1)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s instead of 60 s per link")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: model's)")
    parser.add_argument("--link", choices=("serial", "lsl", "both"), default="both",
                        help="imusic live --serial (the emulator's pty), --lsl (through imusic "
                             "stream), or both (default)")
    parser.add_argument("--max-behind-ms", type=float, default=250.0, metavar="MS",
                        help="imusic live --max-behind-ms (default 250)")
    parser.add_argument("--settle", type=float, default=3.0, metavar="S",
                        help="seconds of frames left out at the start (default 3)")
    args = parser.parse_args()
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    links = ("serial", "lsl") if args.link == "both" else (args.link,)
    results = [asyncio.run(measure(seconds, args.rate, args.steps, link, args.settle,
                                   args.max_behind_ms))
               for link in links]
    for r in results:
        rows = [{"measure": name, **{f"{q}_ms": r[f"{name}_{q}_ms"]
                                     for q in ("p50", "p95", "p99", "max")}}
                for name in ("motion_to_output", "compute", "handoff", "frame_delay")]
        ms = r["machine_state"]
        print_table(rows, f"\nimusic live --{r['link']} on the emulator: {r['frames']:.0f} frames "
                          f"in {seconds:.0f} s ({r['skipped']:.0f} skipped), {args.rate} Hz "
                          f"device, {r['steps']} DDIM steps, max behind {r['max_behind_ms']:g} "
                          f"ms; load {ms['loadavg_before'][0]} -> "
                          f"{ms['loadavg_after'][0]}, cores busy {ms['cores_busy_share']:.0%}, "
                          f"full GCs {ms['full_gc_collections']}")
    # the first link (serial with the default) is "results", as the README's Figures read it
    save("bench_live", results[0], other_links={r["link"]: r for r in results[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
