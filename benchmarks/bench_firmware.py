#!/usr/bin/env python3
"""Firmware numbers: the portable C codec's speed (measured on this host) and the I2C time
budget of the sensor buses (computed from the bus protocol, not measured: no hardware here).

    .venv/bin/python benchmarks/bench_firmware.py [--quick]

Writes benchmarks/results/bench_firmware.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import print_table, save  # noqa: E402

FIRMWARE = REPO / "hardware" / "firmware"

# Same constants as hardware/firmware/core/imusic_i2c_budget.h (clocks per site per instant:
# mux select 20 + QMI8658 12-byte burst 138 + QMC5883P 6-byte burst 84; 3 transactions).
CLOCKS_PER_SITE = 242
TRANSACTIONS_PER_SITE = 3
OVERHEAD_US = 25.0  # assumed ESP-IDF driver time per transaction


def build(out: Path) -> Path:
    """imp_tool at -O2, no sanitizers (the speed the code has, not the checks')."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc) on PATH")
    exe = out / "imp_tool"
    srcs = [FIRMWARE / "protocol" / "imusic_protocol.c", *sorted((FIRMWARE / "core").glob("*.c")),
            *sorted((FIRMWARE / "host").glob("*.c"))]
    subprocess.run([cc, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O2",
                    f"-I{FIRMWARE / 'protocol'}", f"-I{FIRMWARE / 'core'}", *map(str, srcs),
                    "-lm", "-o", str(exe)], check=True)
    return exe


def codec_speed(exe: Path, iterations: int) -> list[dict]:
    """Encode and decode time of SAMPLES frames of a few realistic shapes."""
    rows = []
    for label, sensors, flags, k in [
        ("12 x (acc, gyro, mag), 4 instants", 12, 1, 4),
        ("12 x (acc, gyro, mag), 9 instants (max)", 12, 1, 9),
        ("12 x (acc, gyro), 4 instants", 12, 0, 4),
        ("11 x (acc, gyro, quat), 1 instant (paper)", 11, 2, 1),
    ]:
        out = subprocess.run([str(exe), "bench", str(sensors), str(flags), str(k),
                              str(iterations)], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        rows.append({"frame": label, "bytes": r["frame_bytes"],
                     "encode_us": r["encode_us"], "decode_us": r["decode_us"],
                     "encode_MB_s": r["frame_bytes"] / r["encode_us"],
                     "decode_MB_s": r["frame_bytes"] / r["decode_us"]})
    return rows


def i2c_budget() -> list[dict]:
    """Bus load for site counts, bus counts and rates at 400 kHz (computed)."""
    rows = []
    for sites, buses in [(12, 1), (12, 2), (6, 1), (6, 2)]:
        per_bus = -(-sites // buses)
        wire_us = per_bus * CLOCKS_PER_SITE / 0.4  # 400 kHz: 2.5 us per clock
        total_us = wire_us + per_bus * TRANSACTIONS_PER_SITE * OVERHEAD_US
        for rate in (60, 100, 200, 400):
            period_us = 1e6 / rate
            rows.append({"sites": sites, "buses": buses, "rate_hz": rate,
                         "wire_load_pct": 100 * wire_us / period_us,
                         "load_with_driver_pct": 100 * total_us / period_us,
                         "fits_85pct": total_us / period_us <= 0.85})
    return rows


def main() -> int:
    """Run, print, save."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        speed = codec_speed(exe, 2000 if args.quick else 50000)
    print_table(speed, "C codec on this host (-O2), per frame (measured):")
    budget = i2c_budget()
    print()
    print_table(budget, "I2C bus load at 400 kHz (computed; driver overhead 25 us/transaction "
                        "assumed):")
    save("bench_firmware", {"codec": speed, "i2c_budget": budget},
         notes="codec timings are measured on the host CPU, not on the ESP32-S3; the I2C "
               "budget is computed from the I2C protocol and an assumed driver overhead")
    return 0


if __name__ == "__main__":
    sys.exit(main())
