"""Decoder throughput: protocol frames -> messages, and the full per-frame host path (decode,
clock map, rows in SI units), in sensor-samples per second (one sensor's acc+gyro+mag at one
instant is one sensor-sample).

    .venv/bin/python benchmarks/bench_decoder.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402
from imusic.firmware_bridge import protocol as P  # noqa: E402
from imusic.firmware_bridge.clock import ClockMap  # noqa: E402
from imusic.firmware_bridge.outlet import samples_to_rows  # noqa: E402


def make_stream(n_frames: int, sensors: int, k: int, flags: int, seed: int = 0) -> bytes:
    """A byte stream of SAMPLES frames with realistic (non-zero) counts."""
    rng = np.random.default_rng(seed)
    frames = []
    for f in range(n_frames):
        c = lambda d: rng.integers(-4000, 4000, (k, sensors, d)).astype(np.int16)  # noqa: E731
        frames.append(P.encode(P.Samples(
            f * k, 1_000_000 + f * k * 5000, np.arange(k, dtype=np.uint32) * 5000, c(3), c(3),
            c(3) if flags & P.FLAG_MAG else None, c(4) if flags & P.FLAG_QUAT else None), 1))
    return b"".join(frames)


def bench(stream: bytes, chunk: int, full: bool, info: P.DeviceInfo, repeat: int) -> tuple[float, int]:
    """Best seconds over ``repeat`` runs to consume ``stream`` in ``chunk``-byte reads."""
    best = float("inf")
    samples = 0
    for _ in range(repeat):
        dec = P.Decoder()
        cm = ClockMap()
        n = 0
        t0 = time.perf_counter()
        arrival = 0.0
        for i in range(0, len(stream), chunk):
            arrival += 0.001
            for _, msg in dec.feed(stream[i:i + chunk]):
                n += msg.n_instants * msg.n_sensors
                if full:
                    t = msg.t_us
                    cm.observe(int(t[-1]), arrival)
                    tu = cm.unwrap(t)
                    cm.map(tu, unwrapped=True)
                    samples_to_rows(msg, info, tu, msg.seqs)
        best = min(best, time.perf_counter() - t0)
        samples = n
        assert dec.stats.errors == 0
    return best, samples


def main() -> None:
    """Run the cases, print the table, save JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run")
    args = ap.parse_args()
    n_frames = 500 if args.quick else 4000
    repeat = 2 if args.quick else 5
    rows = []
    for sensors, k, flags, label in ((12, 4, P.FLAG_MAG, "acc+gyro+mag"),
                                     (12, 1, P.FLAG_MAG, "acc+gyro+mag"),
                                     (12, 8, P.FLAG_MAG, "acc+gyro+mag"),
                                     (11, 1, P.FLAG_QUAT, "acc+gyro+quat")):
        stream = make_stream(n_frames, sensors, k, flags)
        info = P.DeviceInfo((1, 0, 0), 1, 1, 200, sensors, flags, 2.0 ** -11, 2.0 ** -13, 0.0625,
                            16.0, 4.0, 2048.0, k, "imusic11", "bench")
        for chunk in (256, 4096):
            for full in (False, True):
                secs, n = bench(stream, chunk, full, info, repeat)
                rows.append({"sensors": sensors, "payload": label, "instants/frame": k,
                             "read bytes": chunk, "path": "decode+clock+rows" if full else "decode",
                             "Msensor-samples/s": n / secs / 1e6,
                             "frames/s": n_frames / secs,
                             "x realtime (12x200Hz)": n / secs / (12 * 200)})
    print_table(rows, "decoder throughput (best of %d)" % repeat)
    save("bench_decoder", rows, quick=args.quick, frames=n_frames)


if __name__ == "__main__":
    main()
