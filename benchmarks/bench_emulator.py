"""Emulator cost: CPU share of one core while the virtual wearable streams the 12-sensor
imusic11 rig at 200 Hz, per transport, and the one-off cost of simulating the twin.

Streaming CPU is process CPU time (all threads) over wall time while frames go out in real
time. Each case includes its receiving end in the same process, because a link needs one:
UDP sends to a socket read by the same event loop, serial writes a pty whose other end a
reader drains, BLE runs both bumble stacks (peripheral and host) and the BleTransport.
The first 30 s chunk of the twin is simulated before streaming (``twin_sim_*``); later chunks
are simulated in a worker thread while streaming, so runs over 30 s include that in
``stream_cpu_pct_of_core``. Target (the brief): a few % of a core for the device side.

    python benchmarks/bench_emulator.py [--quick] [--seconds S] [--rate HZ]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402


async def _case(transport: str, seconds: float, rate: int) -> dict:
    from imusic.firmware_bridge import protocol as P
    from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig

    cfg = EmulatorConfig(transport=transport, rate_hz=rate, seconds=seconds, seed=1,
                         keep_truth=False, autostart=True)
    sock = None
    if transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        cfg.udp_target = sock.getsockname()
    emu = Emulator(cfg)
    c0, w0 = time.process_time(), time.perf_counter()
    await emu.start()
    sim_cpu, sim_wall = time.process_time() - c0, time.perf_counter() - w0
    loop = asyncio.get_running_loop()
    received = 0
    link = None
    fd = -1
    if transport == "udp":
        def on_udp() -> None:
            nonlocal received
            while True:
                try:
                    received += len(sock.recv(65536))
                except BlockingIOError:
                    return
        loop.add_reader(sock.fileno(), on_udp)
    elif transport == "serial":
        fd = os.open(emu.serial_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

        def on_pty() -> None:
            nonlocal received
            try:
                received += len(os.read(fd, 1 << 16))
            except BlockingIOError:
                pass
        loop.add_reader(fd, on_pty)
    else:
        from imusic.firmware_bridge.transports.ble import BleTransport

        link = BleTransport(emu.ble_address, hci=emu.ble_hci)
        await link.open()
        await link.write(P.encode(P.CmdStart(), 0))

        async def drain() -> None:
            nonlocal received
            while True:
                received += len(await link.read())
        drainer = loop.create_task(drain())
    c1, w1 = time.process_time(), time.perf_counter()
    task = loop.create_task(emu._stream())
    await emu.wait_done(seconds * 3 + 10)
    cpu, wall = time.process_time() - c1, time.perf_counter() - w1
    await task
    if transport == "udp":
        loop.remove_reader(sock.fileno())
        sock.close()
    elif transport == "serial":
        loop.remove_reader(fd)
        os.close(fd)
    else:
        drainer.cancel()
        await link.close()
    await emu.close()
    s = emu.stats
    return {"transport": transport, "sensors": 12, "rate_hz": rate, "seconds": seconds,
            "frames": s.frames, "tx_dropped": s.tx_dropped, "kB_per_s": received / wall / 1e3,
            "stream_cpu_pct_of_core": 100.0 * cpu / wall,
            "twin_sim_cpu_s": sim_cpu, "twin_sim_wall_s": sim_wall,
            "twin_sim_cpu_pct_of_run": 100.0 * sim_cpu / seconds}


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table, save benchmarks/results/bench_emulator.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 s per transport")
    ap.add_argument("--seconds", type=float, default=20.0, help="streamed seconds per case")
    ap.add_argument("--rate", type=int, default=200, help="device rate (Hz)")
    ap.add_argument("--transports", default="udp,serial,ble")
    args = ap.parse_args(argv)
    seconds = 3.0 if args.quick else args.seconds
    rows = [asyncio.run(_case(t, seconds, args.rate)) for t in args.transports.split(",")]
    print_table(rows, f"emulator, imusic11 (12 sensors) at {args.rate} Hz, {seconds:g} s")
    save("bench_emulator", rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
