"""Recorder throughput: a long session through real LSL outlets into ``imusic record``.

One IMU stream (12 sensors x acc/gyro/mag at 200 Hz + device time and sequence: 110 double
channels, the firmware_bridge outlet's layout) and one ARKit stream (61 float32 at 60 Hz) are
played faster than real time (``--speed``) through real pylsl outlets, with session-time
stamps, into ``imusic record`` running as its own process. The signals are the twin's
(procedural face motion through hardware.physics, int16-quantised with float64 scales, so they
compress less than what ``imusic stream`` publishes: see ``--realtime``), looped. Then the file is
checked sample by sample (every IMU sequence number once, every ARKit frame once).

Reports: samples lost, the recorder's peak RSS (VmHWM), file size per hour of session, wall
time and the real-time factor.

``--realtime MINUTES`` plays the same streams in real time, as the devices do (IMU in frames
of 4 instants every 20 ms, as ``imusic stream`` pushes an emulated wearable's SAMPLES frames;
ARKit one frame each 1/60 s), optionally with ``--wearables N`` IMU streams, into ``imusic
record`` and, beside it on the same streams, LabRecorder (benchmarks/labrecorder_run.py). It
reports per recorder the CPU (% of one core, from /proc utime+stime over the recording), peak
RSS, file size, file size per real-time hour (the minutes recorded, extrapolated linearly)
and the ratios to LabRecorder. Where LabRecorder cannot run, its XDF size is computed
exactly (``xdf_bytes``) and the table says so.

    python benchmarks/bench_record.py [--quick] [--minutes M] [--speed S]
    python benchmarks/bench_record.py --realtime MINUTES [--wearables N] [--labrecorder DIR]
        [--profile FILE.svg]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, save  # noqa: E402
from benchmarks.record_streams import (  # noqa: E402
    BS_RATE, IMU_RATE, REPO, peak_rss_mb, twin_loop)


def run(minutes: float, speed: float) -> dict:
    """Record ``minutes`` of session played at ``speed`` x real time; returns the measures."""
    import pylsl

    from imusic.capture.arkit_bridge import blendshapes_info
    from imusic.capture.session import SessionReader

    imu_rows, bs_rows, labels = twin_loop()
    tag = uuid.uuid4().hex[:8]
    imu_name, bs_name = f"bench-imu-{tag}", f"bench-arkit-{tag}"
    info = pylsl.StreamInfo(imu_name, "IMU", len(labels) + 2, IMU_RATE, pylsl.cf_double64,
                            f"{imu_name}-sid")
    chans = info.desc().append_child("channels")
    for lab in labels + ["device.time_us", "device.seq"]:
        chans.append_child("channel").append_child_value("label", lab)
    imu_out = pylsl.StreamOutlet(info, 0, 360)
    bs_out = pylsl.StreamOutlet(blendshapes_info(bs_name, "twin", f"{bs_name}-sid"), 0, 360)

    tmp = Path(tempfile.mkdtemp(prefix="bench_record_"))
    path = tmp / "session.h5"
    rec = subprocess.Popen([sys.executable, "-m", "imusic", "record", "-o", str(path),
                            "--streams-by", imu_name, bs_name, "--quiet"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if not (imu_out.wait_for_consumers(30) and bs_out.wait_for_consumers(30)):
            raise RuntimeError("the recorder did not connect within 30 s")
        n_imu = int(minutes * 60 * IMU_RATE)
        n_bs = int(minutes * 60 * BS_RATE)
        t0 = pylsl.local_clock() + 1.0
        wall0 = time.perf_counter()
        step = 0.05                      # session seconds per push
        k_imu = k_bs = 0
        peak = 0.0
        next_rss = 0.0
        session_t = 0.0
        while k_imu < n_imu or k_bs < n_bs:
            session_t += step
            # Keep to --speed: session time may not run ahead of wall time x speed.
            ahead = session_t / speed - (time.perf_counter() - wall0)
            if ahead > 0:
                time.sleep(ahead)
            e_imu = min(n_imu, int(session_t * IMU_RATE))
            if e_imu > k_imu:
                k = np.arange(k_imu, e_imu)
                block = np.empty((len(k), len(labels) + 2))
                block[:, :-2] = imu_rows[k % len(imu_rows)]
                block[:, -2] = k * (1e6 / IMU_RATE)
                block[:, -1] = k
                imu_out.push_chunk(block, (t0 + k / IMU_RATE).tolist())
                k_imu = e_imu
            e_bs = min(n_bs, int(session_t * BS_RATE))
            if e_bs > k_bs:
                k = np.arange(k_bs, e_bs)
                bs_out.push_chunk(np.ascontiguousarray(bs_rows[k % len(bs_rows)]),
                                  (t0 + k / BS_RATE).tolist())
                k_bs = e_bs
            if time.perf_counter() >= next_rss:
                peak = max(peak, peak_rss_mb(rec.pid))
                next_rss = time.perf_counter() + 0.5
        push_wall = time.perf_counter() - wall0
        # Wait until the recorder has written the last sample (read the live file, SWMR).
        deadline = time.perf_counter() + 120
        got = 0
        while time.perf_counter() < deadline:
            peak = max(peak, peak_rss_mb(rec.pid))
            try:
                with SessionReader(path) as r:
                    got = r.h5[f"streams/{imu_name}/time_stamps"].shape[0]
            except Exception:  # noqa: BLE001 - between writes
                pass
            if got >= n_imu:
                break
            time.sleep(0.5)
        peak = max(peak, peak_rss_mb(rec.pid))
        caught_up = time.perf_counter() - wall0
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=120)
    if rec.returncode != 0:
        raise RuntimeError(f"imusic record failed: {err}")
    with SessionReader(path) as r:
        imu = r.stream(imu_name)
        bs = r.stream(bs_name)
        seq = imu.channel("device.seq").astype(np.int64)
        lost_imu = n_imu - len(np.unique(seq))
        dup_imu = len(seq) - len(np.unique(seq))
        lost_bs = n_bs - len(bs.time_stamps)
        gaps = int(len(imu.gaps) + len(bs.gaps))
    size_mb = path.stat().st_size / 1e6
    hours = minutes / 60
    path.unlink()
    tmp.rmdir()
    return {
        "session_min": minutes, "speed_x": speed,
        "imu_samples": n_imu, "arkit_frames": n_bs,
        "lost_imu": int(lost_imu), "dup_imu": int(dup_imu), "lost_arkit": int(lost_bs),
        "gaps": gaps, "peak_rss_mb": round(peak, 1),
        "file_mb": round(size_mb, 1), "mb_per_hour": round(size_mb / hours, 1),
        "raw_mb_per_hour": round((IMU_RATE * 110 * 8 + BS_RATE * 61 * 4 + (IMU_RATE + BS_RATE)
                                  * 8) * 3600 / 1e6, 1),
        "push_wall_s": round(push_wall, 1), "total_wall_s": round(caught_up, 1),
        "realtime_x": round(minutes * 60 / caught_up, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realtime", type=float, default=None, metavar="MINUTES",
                    help="record MINUTES in real time beside LabRecorder (see above)")
    ap.add_argument("--wearables", type=int, default=1,
                    help="with --realtime: IMU streams (12 x 200 Hz each; default 1)")
    ap.add_argument("--labrecorder", default=None, metavar="DIR",
                    help="with --realtime: the unzipped labrecorder wheel (default "
                         "$IMUSIC_LABRECORDER)")
    ap.add_argument("--settle", type=float, default=32.0, metavar="S",
                    help="with --realtime: seconds between connecting and pushing (default 32: "
                         "past the recorder's 30 s fast-resolve window)")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="with --realtime: py-spy the recorder into FILE (py-spy on PATH or "
                         "$IMUSIC_PYSPY)")
    ap.add_argument("--quick", action="store_true", help="3 minutes of session")
    ap.add_argument("--minutes", type=float, default=None, help="session length (default 60)")
    ap.add_argument("--speed", type=float, default=30.0,
                    help="playback speed, x real time (default 30)")
    args = ap.parse_args()
    if args.realtime is not None:
        from benchmarks.bench_record_rt import main_realtime
        return main_realtime(args)
    minutes = args.minutes or (3.0 if args.quick else 60.0)
    res = run(minutes, args.speed)
    print_table([res], title=f"imusic record: {minutes:g} min session at {args.speed:g}x")
    ok = res["lost_imu"] == 0 and res["lost_arkit"] == 0 and res["peak_rss_mb"] < 300
    print("zero samples lost, peak RSS under 300 MB" if ok else "TARGET MISSED")
    save("bench_record", [res], quick=bool(args.quick))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
