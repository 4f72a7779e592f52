"""ARKit ground-truth path speed: Live Link Face CSV read/write, packet parse/build, the UDP
receiver into LSL, and exporting an hour of aligned blendshapes.

Cases: ``read_take`` and ``write_take`` on the shipped real take excerpt
hardware/data/takes/alex_rom_3.csv (240 rows, or ``--take``); ``parse_packet`` /
``build_packet`` on v6 packets built from that take's frames (61 values, a 36-character device
id, as the app sends them); ``LiveLinkReceiver`` throughput over localhost UDP with parsing
and LSL pushes (and datagrams lost); the export of an aligned session of ``--minutes`` at 60 Hz
to each format. Everything it reads ships with the repository.

    python benchmarks/bench_arkit.py [--quick] [--minutes M]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402

REPEAT = 5
"""Timed repetitions per case (best kept); --quick: 2."""


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


async def _receiver_rate(packets: list[bytes], n: int) -> tuple[float, int]:
    from imusic.capture.arkit_bridge import LiveLinkReceiver

    async with LiveLinkReceiver(name=f"bench-arkit-{time.time_ns()}", host="127.0.0.1",
                                port=0) as rx:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.connect(("127.0.0.1", rx.port))
            t0, sent = time.perf_counter(), 0
            while sent < n:
                for p in packets[:50]:
                    tx.send(p)
                sent += 50
                deadline = time.monotonic() + 2.0
                while rx.stats.datagrams < sent and time.monotonic() < deadline:
                    await asyncio.sleep(0)
            dt = time.perf_counter() - t0
        return sent / dt, sent - rx.stats.datagrams


def _packets(take, device_id: str = "6B1F5C7E-2A4D-4E8B-9C3A-1D2E3F405162",
             subject: str = "iPhone") -> list[bytes]:
    """The take's tracked frames as Live Link Face v6 packets (as the phone would send them)."""
    from imusic.capture.livelink import LiveLinkPacket, build_packet, frame_time_fields

    out = []
    for t, values, found in zip(take.t, take.values, take.face_found):
        if found:
            n, sub, num, den = frame_time_fields(take.start_timecode_s + float(t))
            out.append(build_packet(LiveLinkPacket(device_id, subject, n, sub, num, den,
                                                   values)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table, save benchmarks/results/bench_arkit.json."""
    import h5py
    import numpy as np

    from imusic.capture.aligned import Aligned, write_aligned
    from imusic.capture.export import export_session
    from imusic.capture.livelink import build_packet, parse_packet
    from imusic.capture.livelink_csv import read_take, shipped_take, write_take

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: 2 minutes of export, fewer packets")
    ap.add_argument("--minutes", type=float, default=60.0, help="aligned minutes to export")
    ap.add_argument("--take", type=Path, default=shipped_take("alex_rom_3"),
                    help="Live Link Face CSV take to read, write and packetise "
                         "(default: the shipped alex_rom_3 excerpt)")
    args = ap.parse_args(argv)
    minutes = 2.0 if args.quick else args.minutes
    repeat = 2 if args.quick else REPEAT
    rows = []

    take = read_take(args.take)
    dt = _best(lambda: read_take(args.take), repeat)
    rows.append({"case": f"read_take ({args.take.name}, {take.n_frames} rows)", "seconds": dt,
                 "rate": take.n_frames / dt, "unit": "rows/s"})
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "t.csv"
        dt = _best(lambda: (out.unlink(missing_ok=True),
                            write_take(out, take.t, take.values, take.face_found)), repeat)
    rows.append({"case": f"write_take ({take.n_frames} rows)", "seconds": dt,
                 "rate": take.n_frames / dt, "unit": "rows/s"})

    packets = _packets(take)
    reps = 10 if args.quick else 100
    dt = _best(lambda: [parse_packet(p) for _ in range(reps) for p in packets], 1)
    rows.append({"case": "parse_packet", "seconds": dt, "rate": reps * len(packets) / dt,
                 "unit": "packets/s"})
    parsed = [parse_packet(p) for p in packets]
    dt = _best(lambda: [build_packet(p) for _ in range(reps) for p in parsed], 1)
    rows.append({"case": "build_packet", "seconds": dt, "rate": reps * len(packets) / dt,
                 "unit": "packets/s"})

    n = 5000 if args.quick else 30000
    rate, lost = asyncio.run(_receiver_rate(packets, n))
    rows.append({"case": f"receiver UDP->LSL ({n} packets, {lost} lost)", "seconds": n / rate,
                 "rate": rate, "unit": "packets/s"})

    frames = int(minutes * 60 * 60)
    rng = np.random.default_rng(0)
    sites = [f"s{i}" for i in range(12)]
    with tempfile.TemporaryDirectory() as d:
        session = Path(d) / "s.h5"
        a = Aligned(rate_hz=60.0, t=np.arange(frames) / 60.0,
                    blendshapes=rng.uniform(0, 1, (frames, 52)).astype(np.float32),
                    pose=rng.normal(0, 0.1, (frames, 9)).astype(np.float32),
                    acc=rng.normal(size=(frames, 12, 3)).astype(np.float32),
                    gyro=rng.normal(size=(frames, 12, 3)).astype(np.float32),
                    mag=rng.normal(size=(frames, 12, 3)).astype(np.float32),
                    valid_imu=np.ones(frames, bool), valid_arkit=rng.uniform(size=frames) > 0.05,
                    sites=sites, reference="s0", rig_id="bench")
        with h5py.File(session, "w") as h5:
            write_aligned(h5, a)
        for fmt in ("livelink-csv", "au-csv", "csv"):
            t0 = time.perf_counter()
            out, _ = export_session(session, fmt, Path(d) / f"out.{fmt}")
            dt = time.perf_counter() - t0
            rows.append({"case": f"export {fmt} ({minutes:g} min at 60 Hz, "
                                 f"{out.stat().st_size / 2**20:.0f} MiB)",
                         "seconds": dt, "rate": frames / dt, "unit": "frames/s"})

    print_table(rows, "ARKit path speed")
    save("bench_arkit", rows, quick=args.quick, minutes=minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
