"""``imusic stream`` end to end: a device on a real pty / UDP socket -> the command (as a
subprocess, and in-process) -> a plain pylsl inlet; clean stop on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from imusic.firmware_bridge import protocol as P
from imusic.commands import stream as stream_cmd
from .test_device import ACC, GYRO, PtyLink, ScriptedDevice, counts

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


def _pull(source_id: str, n: int, timeout: float = 20.0):
    """Blocking: resolve the stream by source id and pull ``n`` samples with a plain inlet."""
    found = pylsl.resolve_byprop("source_id", source_id, 1, timeout)
    assert found, f"no LSL stream with source_id {source_id}"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    info = inlet.info(timeout=5)
    rows, ts = [], []
    deadline = time.monotonic() + timeout
    while sum(len(r) for r in rows) < n and time.monotonic() < deadline:
        d, t = inlet.pull_chunk(timeout=0.5)
        if d:
            rows.append(np.asarray(d)); ts.extend(t)  # noqa: E702
    inlet.close_stream()
    return info, np.concatenate(rows), np.asarray(ts)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_cli_subprocess_over_pty_stops_cleanly(sig: int, tmp_path: Path,
                                                     unique_name: str) -> None:
    pty = PtyLink()
    serial = int.from_bytes(unique_name.encode()[-6:], "little") << 8
    dev = ScriptedDevice(pty.send, serial=serial, rate=100, drift_ppm=80)
    pty.attach(dev)
    stop = asyncio.Event()
    dev_task = asyncio.create_task(dev.run(stop))
    summary = tmp_path / "summary.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imusic", "stream", "--serial", pty.path, "--name", unique_name,
        "--rate", "200", "--summary-json", str(summary), "--rig", "auto",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        info, rows, ts = await asyncio.to_thread(_pull, f"{serial:016x}", 600)
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
        stop.set()
        await dev_task
        pty.close()
    assert proc.returncode == 0, err.decode()
    assert "stopped after" in out.decode() and "samples" in out.decode()
    assert info.nominal_srate() == 200 and info.type() == "IMU"
    assert info.desc().child("channels").child("channel").child_value("label") == "s00.acc.x"
    seq = rows[:, -1].astype(np.int64)
    assert len(seq) >= 600 and np.all(np.diff(seq) == 1)
    c = counts(seq, 3)
    assert np.array_equal(rows[:, 0:3], c[:, 0, 0:3] * ACC)
    assert np.array_equal(rows[:, 12:15], c[:, 1, 3:6] * GYRO)
    assert np.all(np.abs(np.diff(ts) - 0.005) < 0.002)
    rec = json.loads(summary.read_text())
    assert rec["health"]["samples"] >= len(seq) and rec["health"]["lost"] == 0
    assert isinstance(dev.commands[-1], P.CmdStop) and dev.streaming is False  # told to stop


async def test_in_process_over_udp(unique_name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev_sock.bind(("127.0.0.1", 0))
    dev_sock.setblocking(False)
    serial = int.from_bytes(unique_name.encode()[-6:], "little") << 8 | 1
    dev = ScriptedDevice(lambda b: dev_sock.sendto(b, ("127.0.0.1", port)), serial=serial,
                         drop=frozenset({80}))
    loop = asyncio.get_running_loop()
    loop.add_reader(dev_sock, lambda: dev.receive(dev_sock.recv(65536)))
    stop_dev, stop = asyncio.Event(), asyncio.Event()
    dev_task = asyncio.create_task(dev.run(stop_dev))
    parser = argparse.ArgumentParser()
    stream_cmd.add_arguments(parser)
    args = parser.parse_args(["--udp", str(port), "--udp-host", "127.0.0.1", "--name",
                              unique_name, "--quiet"])
    task = asyncio.create_task(stream_cmd.stream(args, stop))
    try:
        info, rows, _ = await asyncio.to_thread(_pull, f"{serial:016x}", 400)
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 10)
        stop_dev.set()
        await dev_task
        loop.remove_reader(dev_sock)
        dev_sock.close()
    assert code == 0
    seq = rows[:, -1].astype(np.int64)
    assert seq[0] < 320 and seq[-1] > 323
    assert set(seq.tolist()) == set(range(seq[0], seq[-1] + 1)) - {320, 321, 322, 323}
    assert np.array_equal(rows[:, 0:3], counts(seq, 3)[:, 0, 0:3] * ACC)


async def test_wrong_rig_exits_1_naming_device_and_fix(unique_name: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    pty = PtyLink()
    dev = ScriptedDevice(pty.send, n=3)
    pty.attach(dev)
    stop_dev = asyncio.Event()
    dev_task = asyncio.create_task(dev.run(stop_dev))
    parser = argparse.ArgumentParser()
    stream_cmd.add_arguments(parser)
    args = parser.parse_args(["--serial", pty.path, "--rig", "imusic6", "--name", unique_name,
                              "--quiet"])
    try:
        code = await asyncio.wait_for(stream_cmd.stream(args, asyncio.Event()), 20)
    finally:
        stop_dev.set()
        await dev_task
        pty.close()
    assert code == 1
    err = capsys.readouterr().err
    assert "scripted-def0" in err and "rig 'imusic6' has 6" in err and "--rig test3" in err
