"""``imusic stream`` / ``emulate`` / ``live`` against hostile senders and missing devices, over
real UDP sockets, real ptys and real subprocesses: a valid-CRC datagram with an out-of-range
time does not end the stream; another sender cannot rename the device (and ``--allow`` keeps
everyone else out); an emulator exits when its time is up even if the host stopped it first;
two emulators get distinct serials; a bare ``--lsl`` refuses to choose among several IMU
streams; a run with nothing received ends non-zero with one line saying why."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.commands import stream as stream_cmd
from .test_stream_emulator import Inlet, _args, unique_serial

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lines(err: bytes) -> list[str]:
    """stderr without liblsl's own log lines."""
    return [ln for ln in err.decode(errors="replace").splitlines()
            if ln.strip() and "INFO|" not in ln and "WARN|" not in ln]


async def _wait(cond, what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not in {timeout:.0f} s"
        await asyncio.sleep(0.05)


def _udp_emulator(unique_name: str, port: int, **kw) -> EmulatorConfig:
    return EmulatorConfig(serial=unique_serial(unique_name), transport="udp", rig="imusic6",
                          rate_hz=100, seconds=None, seed=11, udp_target=("127.0.0.1", port),
                          keep_truth=False, **kw)


async def test_a_deadly_datagram_does_not_end_imusic_stream(unique_name: str,
                                                            tmp_path: Path) -> None:
    """SAMPLES for the streaming device, valid CRC, t0_us = 2**63, from another socket."""
    port = _free_port()
    summary = tmp_path / "summary.json"
    async with Emulator(_udp_emulator(unique_name, port)) as emu:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imusic", "stream", "--udp", str(port), "--udp-host",
            "127.0.0.1", "--rig", "imusic6", "--name", unique_name, "--seconds", "12",
            "--summary-json", str(summary), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            await _wait(lambda: inlet.n >= 100, "samples before the datagram")
            n = emu.info.sensor_count
            deadly = P.Samples(seq=5, t0_us=2**63, dt_us=np.zeros(1, np.uint32),
                               acc=np.zeros((1, n, 3), np.int16),
                               gyro=np.zeros((1, n, 3), np.int16),
                               mag=np.zeros((1, n, 3), np.int16))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                attacker.sendto(P.encode(deadly, emu.device_id), ("127.0.0.1", port))
            after = inlet.n
            await _wait(lambda: inlet.n >= after + 200 or proc.returncode is not None,
                        "samples after the datagram")
            out, err = await asyncio.wait_for(proc.communicate(), 40)
        finally:
            if proc.returncode is None:
                proc.kill()
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    assert proc.returncode == 0, "\n".join(_lines(err))
    assert "Traceback" not in err.decode()
    assert inlet.n >= after + 200                         # it went on streaming
    rec = json.loads(summary.read_text())
    assert rec["decoder"]["malformed"] >= 1               # counted at parse time


async def test_another_sender_cannot_rename_the_device(unique_name: str, tmp_path: Path) -> None:
    """A changed DEVICE_INFO with the device's id from another address is refused, counted and
    named; the stream keeps its name and serial."""
    port = _free_port()
    summary = tmp_path / "summary.json"
    stop = asyncio.Event()
    async with Emulator(_udp_emulator(unique_name, port)) as emu:
        args = _args("--udp", str(port), "--udp-host", "127.0.0.1", "--name", unique_name,
                     "--summary-json", str(summary))
        task = asyncio.create_task(stream_cmd.stream(args, stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            await _wait(lambda: inlet.n >= 100, "samples before the rename")
            fake = P.DeviceInfo(**{**emu.info.__dict__, "serial": 0xBAD0BAD0BAD0BAD0,
                                   "name": "evil", "boot_id": emu.info.boot_id ^ 1})
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                for _ in range(3):
                    attacker.sendto(P.encode(fake, emu.device_id), ("127.0.0.1", port))
            after = inlet.n
            await _wait(lambda: inlet.n >= after + 150, "samples after the rename")
        finally:
            stop.set()
            code = await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    assert code == 0
    rec = json.loads(summary.read_text())
    h = rec["health"]
    assert h["refused_info"] == 3 and h["reboots"] == 0 and h["device"] == emu.name
    assert "refused DEVICE_INFO" in h["last_error"]
    assert not pylsl.resolve_byprop("source_id", f"{0xBAD0BAD0BAD0BAD0:016x}", 1, 1.0)


async def test_allow_accepts_only_the_given_senders(unique_name: str, tmp_path: Path) -> None:
    """``--allow 127.0.0.1``: a sender on 127.0.0.2 is dropped and counted (frames and all);
    ``--allow 127.0.0.2`` only: the wearable on 127.0.0.1 is never heard (exit 1)."""
    port = _free_port()
    summary = tmp_path / "summary.json"
    stop = asyncio.Event()
    async with Emulator(_udp_emulator(unique_name, port)) as emu:
        args = _args("--udp", str(port), "--udp-host", "127.0.0.1", "--name", unique_name,
                     "--allow", "127.0.0.1", "--summary-json", str(summary))
        task = asyncio.create_task(stream_cmd.stream(args, stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            await _wait(lambda: inlet.n >= 100, "samples")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.2", 0))
                for _ in range(5):
                    other.sendto(P.encode(P.Status(1, 3700, 1, 2000), emu.device_id),
                                 ("127.0.0.1", port))
            after = inlet.n
            await _wait(lambda: inlet.n >= after + 100, "samples after")
        finally:
            stop.set()
            code = await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
        assert code == 0
        h = json.loads(summary.read_text())["health"]
        assert h["refused_senders"] == 5 and h["battery_pct"] != 1   # its STATUS never taken
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imusic", "stream", "--udp", str(port), "--udp-host",
            "127.0.0.1", "--allow", "127.0.0.2", "--seconds", "3", "--quiet", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 1
    last = _lines(err)[-1]
    assert last.startswith(f"imusic stream: nothing received on udp:127.0.0.1:{port} in ")
    assert "no device heard" in last


async def test_emulate_udp_seconds_ends_even_when_the_host_stopped_it() -> None:
    """The host sends STOP at once; ``--seconds 2`` still ends the emulator, rc 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
        host.bind(("127.0.0.1", 0))
        host.setblocking(False)
        port = host.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imusic", "emulate", "--transport", "udp", "--udp",
            f"127.0.0.1:{port}", "--rig", "imusic6", "--seconds", "2", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        loop = asyncio.get_running_loop()
        try:
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(host, 65536), 40)
            host.sendto(P.encode(P.CmdStop(), 0), addr)     # the host stops first
            heard = time.monotonic()
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, "\n".join(_lines(err))
    assert time.monotonic() - heard < 10 and "done:" in out.decode()


def test_two_emulators_get_distinct_serials() -> None:
    a, b = (Emulator(EmulatorConfig(transport="udp", rig="imusic6", seed=0)) for _ in range(2))
    assert a.serial != b.serial and a.device_id != b.device_id
    assert a.device_id != 0 and b.device_id != 0


async def test_bare_lsl_refuses_to_choose_among_several_imu_streams(unique_name: str) -> None:
    outlets = [pylsl.StreamOutlet(pylsl.StreamInfo(f"{unique_name}-{k}", "IMU", 3, 100,
                                                   "double64", f"{unique_name}-{k}"))
               for k in range(2)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imusic", "live", "--lsl", "--seconds", "20", "--quiet", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
        del outlets
    assert proc.returncode == 1
    line = next(ln for ln in _lines(err) if ln.startswith("imusic live:") and "match" in ln)
    assert f"{unique_name}-0" in line and f"{unique_name}-1" in line
    assert "--lsl NAME" in line and "Traceback" not in err.decode()


@pytest.mark.parametrize("kind", ["missing serial path", "UDP port in use"])
async def test_stream_with_nothing_received_says_why_and_exits_1(kind: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        link = (["--serial", "/nonexistent/imusic-tty"] if kind.startswith("missing")
                else ["--udp", str(busy.getsockname()[1]), "--udp-host", "127.0.0.1"])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imusic", "stream", *link, "--seconds", "2", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 40)
    lines = _lines(err)
    why = "No such file" if kind.startswith("missing") else "Address already in use"
    assert proc.returncode == 1 and "Traceback" not in err.decode()
    assert any(why in ln and " connecting " in ln for ln in lines[:-1])   # the status line
    assert lines[-1].startswith("imusic stream: nothing received on ") and why in lines[-1]
