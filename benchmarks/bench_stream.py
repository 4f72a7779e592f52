"""CPU share of ``imusic stream`` for the 12-sensor rig (imusic11) at 200 Hz (target: under
10 % of one core), with the twin emulator as the device (its own process, on a real pty or a
real UDP socket) and a plain pylsl inlet consuming the stream.

CPU time is read from /proc/<pid>/stat over a steady-state window (after start-up), so imports
and the handshake are not counted; ``cpu_total_%`` includes them (whole run, getrusage).

    .venv/bin/python benchmarks/bench_stream.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table, save  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Consumer(threading.Thread):
    """A plain pylsl inlet pulling everything, as a recorder would."""

    def __init__(self, source_id: str) -> None:
        super().__init__(daemon=True)
        self.source_id, self.n, self.stop = source_id, 0, False

    def run(self) -> None:
        import pylsl

        found = pylsl.resolve_byprop("source_id", self.source_id, 1, 30)
        if not found:
            return
        inlet = pylsl.StreamInlet(found[0], max_buflen=60)
        while not self.stop:
            d, _ = inlet.pull_chunk(timeout=0.2)
            self.n += len(d)


def run_case(transport: str, rate: int, measure_s: float, warmup_s: float = 4.0) -> dict:
    """One emulator + stream + consumer run; returns the measured figures."""
    py = sys.executable
    total = warmup_s + measure_s + 5
    emu_cmd = [py, "-m", "imusic", "emulate", "--transport", transport, "--rig", "imusic11",
               "--rate", str(rate), "--seconds", str(total + 10), "--seed", "1"]
    port = _free_udp_port()
    if transport == "udp":
        emu_cmd += ["--udp", f"127.0.0.1:{port}"]
    emu = subprocess.Popen(emu_cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    stream = None
    try:
        info = None
        for line in emu.stdout:
            if line.startswith("ready "):
                info = json.loads(line[6:])
                break
        if info is None:
            raise RuntimeError("the emulator did not start")
        link = ["--serial", info["path"]] if transport == "serial" else [
            "--udp", str(port), "--udp-host", "127.0.0.1"]
        summary = Path(tempfile.mkdtemp()) / "summary.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stream = subprocess.Popen(
            [py, "-m", "imusic", "stream", *link, "--rig", "imusic11", "--quiet",
             "--name", f"bench-{os.getpid()}-{transport}-{rate}", "--summary-json", str(summary)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        consumer = Consumer(info["serial"])
        consumer.start()
        time.sleep(warmup_s)
        c0, e0, w0, n0 = cpu_seconds(stream.pid), cpu_seconds(emu.pid), time.monotonic(), consumer.n
        time.sleep(measure_s)
        c1, e1, w1, n1 = cpu_seconds(stream.pid), cpu_seconds(emu.pid), time.monotonic(), consumer.n
        stream.send_signal(signal.SIGTERM)
        stream.wait(20)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        consumer.stop = True
        consumer.join(5)
        rec = json.loads(summary.read_text())
        wall = w1 - w0
        total_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        h = rec["health"]
        return {"transport": transport, "rig": "imusic11 (12 sensors)", "rate_hz": rate,
                "cpu_%_of_core": 100 * (c1 - c0) / wall,
                "cpu_total_%": 100 * total_cpu / rec["seconds"],
                "emulator_cpu_%": 100 * (e1 - e0) / wall,
                "consumer_samples/s": (n1 - n0) / wall, "lost": h["lost"],
                "crc_errors": h["crc_errors"], "measured_s": wall}
    finally:
        for p in (stream, emu):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)  # lets the emulator remove its pty link
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


def main() -> None:
    """Run the cases, print the table, save JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one short case")
    args = ap.parse_args()
    cases = [("serial", 200)] if args.quick else [("serial", 200), ("udp", 200), ("serial", 100)]
    measure = 5.0 if args.quick else 20.0
    rows = [run_case(t, r, measure) for t, r in cases]
    print_table(rows, "imusic stream, imusic11 (12 sensors, acc+gyro+mag), CPU share of one core")
    save("bench_stream", rows, quick=args.quick, target_cpu_percent=10)


if __name__ == "__main__":
    main()
