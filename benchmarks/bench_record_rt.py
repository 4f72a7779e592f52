"""bench_record --realtime: imusic record beside LabRecorder, on the same streams, in real time.

The pusher (this process) publishes N IMU streams (110 double channels at 200 Hz, pushed in
frames of 4 instants every 20 ms, as ``imusic stream`` pushes an emulated wearable) and one
ARKit stream (61 float32 at 60 Hz, a frame each 1/60 s) through real pylsl outlets. ``imusic
record`` (its own process) and LabRecorder (benchmarks/labrecorder_run.py, its own process)
record them at the same time. CPU is each process's utime+stime from /proc over the pushing
time, in % of one core; RSS is VmHWM (``imports_rss_mb``: a Python that only imported numpy,
h5py and pylsl, the floor under the recorder's own memory); the load average is recorded at
the start and the end of the pushing time; file sizes are taken after both have closed their files
and are extrapolated linearly to an hour. The imusic file is checked sample by sample.

XDF size, computed (``xdf_bytes``; the XDF 1.0 specification, github.com/sccn/xdf wiki
"Specifications", Samples chunk): every sample is a 1-byte timestamp-length tag, an optional
8-byte timestamp (LabRecorder writes all of them) and its values (channels x item size); each
Samples chunk adds its own header (length field 1+4 or 1+8 bytes, tag 2, stream id 4, sample
count 1+4). Used to judge the measured XDF, or in its place where LabRecorder is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record_streams import BS_RATE, IMU_RATE, REPO, peak_rss_mb, twin_loop
from benchmarks.common import print_table, save

IMU_FRAME = 4                  # instants per pushed IMU frame (the emulator's 200 Hz default)
IMU_CHANNELS, BS_CHANNELS = 110, 61
DEFAULT_LABRECORDER = "/tmp/lr/x"


def xdf_sample_bytes(channels: int, itemsize: int) -> int:
    """Bytes one numeric sample takes in an XDF Samples chunk, timestamp written."""
    return 1 + 8 + channels * itemsize


def xdf_bytes(seconds: float, streams: list[tuple[int, int, float]],
              chunk_s: float = 0.5) -> float:
    """XDF bytes of ``seconds`` of ``streams`` ((channels, itemsize, srate)) with a Samples
    chunk every ``chunk_s`` per stream (headers, footers, offsets are a few KB: left out)."""
    chunk_head = 1 + 8 + 2 + 4 + 1 + 4
    per_s = sum(r * xdf_sample_bytes(c, i) + chunk_head / chunk_s for c, i, r in streams)
    return per_s * seconds


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def imports_rss_mb() -> float:
    """Resident set of a Python that has only imported what the recorder must (numpy, h5py,
    pylsl), MB: the floor under the recorder's own memory."""
    code = ("import numpy, h5py, pylsl\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1]) / 1024


def wire_rows(seconds: float = 60.0) -> np.ndarray:
    """(N, 108) IMU values at 200 Hz as ``imusic stream`` publishes them: the twin's int16
    counts times the scales the device sends (float32 on the wire, widened to float64), as
    firmware_bridge.outlet.samples_to_rows computes them."""
    from imusic.hardware.motion import procedural
    from imusic.hardware.physics import simulate

    sig = simulate(procedural(seconds, fps=BS_RATE, seed=11), "imusic11", rate_hz=IMU_RATE,
                   seed=11)
    blocks = [sig.counts(q) * np.float32(sig.scales[q][0]).astype(np.float64)[None, None]
              for q in ("acc", "gyro", "mag")]
    return np.concatenate(blocks, axis=2).reshape(len(sig.t), -1)


def _outlets(tag: str, wearables: int) -> tuple[list[Any], Any, list[str], list[str]]:
    import pylsl

    from imusic.capture.arkit_bridge import blendshapes_info

    _, _, labels = twin_loop(1.0)
    imus, names = [], []
    for w in range(wearables):
        name = f"rt-imu{w}-{tag}"
        info = pylsl.StreamInfo(name, "IMU", IMU_CHANNELS, IMU_RATE, pylsl.cf_double64,
                                f"{name}-sid")
        chans = info.desc().append_child("channels")
        for lab in labels + ["device.time_us", "device.seq"]:
            chans.append_child("channel").append_child_value("label", lab)
        imus.append(pylsl.StreamOutlet(info, 0, 360))
        names.append(name)
    bs_name = f"rt-arkit-{tag}"
    bs = pylsl.StreamOutlet(blendshapes_info(bs_name, "twin", f"{bs_name}-sid"), 0, 360)
    return imus, bs, names, [f"name='{n}'" for n in names + [bs_name]]


def run_realtime(minutes: float, wearables: int, lr_dir: str | None,
                 profile: str | None, settle_s: float) -> dict[str, Any]:
    """Push ``minutes`` in real time into both recorders, ``settle_s`` after both have
    connected (past the recorder's fast-resolve window: the steady state an hour is made
    of); the measures as one dict."""
    import pylsl

    from imusic.capture.session import SessionReader
    from imusic.capture.xdf import scan_xdf

    _, bs_rows, _ = twin_loop()
    imu_rows = wire_rows()
    tag = uuid.uuid4().hex[:8]
    imus, bs_out, imu_names, preds = _outlets(tag, wearables)
    bs_name = preds[-1][6:-1]
    tmp = Path(tempfile.mkdtemp(prefix="bench_record_rt_"))
    h5, xdf = tmp / "session.h5", tmp / "session.xdf"
    rec = subprocess.Popen([sys.executable, "-m", "imusic", "record", "-o", str(h5),
                            "--streams-by", *imu_names, bs_name, "--quiet"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lr = lr_base = None
    if lr_dir and Path(lr_dir, "labrecorder.cpython-311-x86_64-linux-gnu.so").is_file():
        lr = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "labrecorder_run.py"),
                               lr_dir, str(xdf), *preds], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = lr.stdout.readline().split()
        if line[:1] != ["ready"]:
            raise RuntimeError("LabRecorder did not start")
        lr_base = int(line[1]) / 1024
    procs = {"imusic": rec} | ({"labrecorder": lr} if lr else {})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                o.have_consumers() for o in imus + [bs_out]):
            time.sleep(0.1)
        # Both recorders connected (LabRecorder connects before 'ready'); let them settle.
        time.sleep(settle_s)
        spy = None
        if profile:
            pyspy = os.environ.get("IMUSIC_PYSPY", "py-spy")
            spy = subprocess.Popen([pyspy, "record", "-p", str(rec.pid), "-o", profile,
                                    "-f", "raw", "-r", "200", "-d", str(int(minutes * 60)),
                                    "--threads", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        load0 = os.getloadavg()[0]
        n_imu, n_bs = int(minutes * 60 * IMU_RATE), int(minutes * 60 * BS_RATE)
        t0 = pylsl.local_clock()
        wall0 = time.monotonic()
        k_imu = k_bs = 0
        peak = {k: 0.0 for k in procs}
        next_rss = 0.0
        while k_imu < n_imu or k_bs < n_bs:
            now = time.monotonic() - wall0
            e_imu = min(n_imu, int(now * IMU_RATE) // IMU_FRAME * IMU_FRAME)
            while k_imu < e_imu:
                k = np.arange(k_imu, k_imu + IMU_FRAME)
                block = np.empty((IMU_FRAME, IMU_CHANNELS))
                block[:, :-2] = imu_rows[k % len(imu_rows)]
                block[:, -2] = k * (1e6 / IMU_RATE)
                block[:, -1] = k
                stamps = (t0 + k / IMU_RATE).tolist()
                for o in imus:
                    o.push_chunk(block, stamps)
                k_imu += IMU_FRAME
            e_bs = min(n_bs, int(now * BS_RATE))
            while k_bs < e_bs:
                bs_out.push_sample(bs_rows[k_bs % len(bs_rows)].tolist(), t0 + k_bs / BS_RATE)
                k_bs += 1
            if time.monotonic() >= next_rss:
                peak = {k: max(v, peak_rss_mb(procs[k].pid)) for k, v in peak.items()}
                next_rss = time.monotonic() + 1.0
            time.sleep(0.004)
        wall = time.monotonic() - wall0
        cpu = {k: cpu_seconds(p.pid) - cpu0[k] for k, p in procs.items()}
        peak = {k: max(v, peak_rss_mb(procs[k].pid)) for k, v in peak.items()}
        time.sleep(1.5)            # the last pushes reach both recorders
        if spy:
            spy.wait(60)
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=120)
        if lr:
            lr.communicate("stop\n", timeout=60)
    if rec.returncode != 0:
        raise RuntimeError(f"imusic record failed: {err}")
    hours = minutes / 60
    lost = 0
    data_bytes = 0
    with SessionReader(h5) as r:
        for name in imu_names:
            seq = r.stream(name).channel("device.seq").astype(np.int64)
            lost += n_imu - len(np.unique(seq))
        lost += n_bs - len(r.stream(bs_name).time_stamps)
        for key in r.keys:
            for ds in ("time_series", "time_stamps"):
                data_bytes += r.h5[f"streams/{key}/{ds}"].id.get_storage_size()
    h5_mb = h5.stat().st_size / 1e6
    computed = xdf_bytes(minutes * 60, [(IMU_CHANNELS, 8, IMU_RATE)] * wearables
                         + [(BS_CHANNELS, 4, BS_RATE)]) / 1e6
    res: dict[str, Any] = {
        "minutes": minutes, "wearables": wearables, "settle_s": settle_s,
        "load_1min_start": round(load0, 2), "load_1min_end": round(os.getloadavg()[0], 2),
        "wall_s": round(wall, 1),
        "lost_samples": int(lost),
        "imusic_cpu_pct": round(100 * cpu["imusic"] / wall, 2),
        "imusic_peak_rss_mb": round(peak["imusic"], 1),
        "imports_rss_mb": round(imports_rss_mb(), 1),
        "imusic_file_mb": round(h5_mb, 2),
        "imusic_mb_per_hour": round(h5_mb / hours, 1),
        "imusic_chunk_mb_per_hour": round(data_bytes / 1e6 / hours, 1),
        "xdf_computed_mb_per_hour": round(computed / hours, 1),
        "labrecorder": "ran" if lr else "not run (XDF size computed)",
    }
    if lr:
        scan = scan_xdf(xdf)
        xdf_mb = xdf.stat().st_size / 1e6
        res |= {
            "lr_cpu_pct": round(100 * cpu["labrecorder"] / wall, 2),
            "lr_peak_rss_mb": round(peak["labrecorder"], 1),
            "lr_python_rss_mb": round(lr_base, 1),
            "lr_samples": int(sum(scan.announced.values())),
            "lr_file_mb": round(xdf_mb, 2),
            "lr_mb_per_hour": round(xdf_mb / hours, 1),
            "ratio_file": round(h5_mb / xdf_mb, 3),
            "ratio_cpu": round(cpu["imusic"] / max(cpu["labrecorder"], 1e-9), 2),
            "ratio_rss": round(peak["imusic"] / peak["labrecorder"], 2),
        }
    else:
        res["ratio_file"] = round(h5_mb / computed, 3)
    for p in (h5, xdf):
        p.unlink(missing_ok=True)
    tmp.rmdir()
    return res


def main_realtime(args: Any) -> int:
    """bench_record --realtime: run, print the table, save JSON."""
    lr_dir = args.labrecorder or os.environ.get("IMUSIC_LABRECORDER") or DEFAULT_LABRECORDER
    res = run_realtime(args.realtime, args.wearables, lr_dir, args.profile, args.settle)
    rows = [{"measure": k, "value": v} for k, v in res.items()]
    print_table(rows, title=f"imusic record vs LabRecorder: {args.realtime:g} min real time, "
                            f"{args.wearables} wearable(s) + ARKit (per hour: linear "
                            "extrapolation)")
    ok = res["lost_samples"] == 0 and res["ratio_file"] <= 0.6
    print("no sample lost, file <= 0.6x XDF" if ok else "TARGET MISSED")
    if "ratio_cpu" in res:
        print(f"CPU {res['ratio_cpu']}x LabRecorder (target <= 3x), peak RSS "
              f"{res['imusic_peak_rss_mb']} MB (target < 40 MB; Python with numpy, h5py and "
              f"pylsl imported: {res['imports_rss_mb']} MB), load {res['load_1min_start']} -> "
              f"{res['load_1min_end']}")
    load = os.getloadavg()
    save(f"bench_record_realtime_w{args.wearables}", [res],
         load_1min=round(load[0], 2), cores=os.cpu_count())
    return 0 if ok else 1
