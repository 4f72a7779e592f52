"""Wearables that report orientation, end to end: the emulator in ``--report orientation`` mode
(on-device fusion, acceleration + quaternion, with or without gyro/mag) on a real pty, a real
UDP socket and the emulated BLE link -> ``imusic stream`` (DeviceSession, in-process) -> a plain
pylsl inlet, whose ``site.quat.w|x|y|z`` channels must equal the quaternions the emulator sent
(its truth log) within the Q14 quantisation; and ``imusic record`` of such a stream keeps the
labels and the values."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.firmware_bridge.transports.ble import HCI_ENV
from .test_stream_emulator import _stream_with, unique_serial

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RIG = "imusic6"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _labels(info) -> list[str]:
    ch = info.desc().child("channels").child("channel")
    out = []
    while not ch.empty():
        out.append((ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")))
        ch = ch.next_sibling()
    return out


def _expected_labels(sites: list[str], gyro: bool, mag: bool) -> list[str]:
    out = []
    for s in sites:
        out += [f"{s}.acc.{a}" for a in "xyz"]
        out += [f"{s}.gyro.{a}" for a in "xyz"] if gyro else []
        out += [f"{s}.mag.{a}" for a in "xyz"] if mag else []
        out += [f"{s}.quat.{a}" for a in "wxyz"]
    return out + ["device.time_us", "device.seq"]


def check_orientation_rows(emu: Emulator, labels: list[str], rows: np.ndarray) -> np.ndarray:
    """Every row carries exactly the blocks the emulator sent for its seq: acc (and gyro/mag
    when sent) as their counts, quat equal to the truth log's quaternion within half a Q14
    count. Returns the rows' seq."""
    log = emu.truth()
    seq = rows[:, labels.index("device.seq")].astype(np.int64)
    idx = np.searchsorted(log.seq, seq)
    assert np.array_equal(log.seq[idx], seq)
    sites = emu.rig.site_names
    info = emu.info
    scales = {"acc": info.accel_scale, "gyro": info.gyro_scale, "mag": info.mag_scale}
    for q, axes in (("acc", "xyz"), ("gyro", "xyz"), ("mag", "xyz"), ("quat", "wxyz")):
        cols = [[labels.index(f"{s}.{q}.{a}") for a in axes] for s in sites
                if f"{s}.{q}.{axes[0]}" in labels]
        if q not in log.counts:
            assert cols == [], f"the stream has {q} channels the device never sent"
            continue
        got = rows[:, np.asarray(cols)]                           # (n, S, axes)
        if q == "quat":
            want = log.quat[idx]
            assert np.abs(got - want).max() <= 0.5 * P.QUAT_SCALE + 1e-12
            assert np.array_equal(np.rint(got / P.QUAT_SCALE), log.counts["quat"][idx])
            # unit quaternions (up to the Q14 rounding of each component)
            assert np.allclose(np.linalg.norm(got, axis=-1), 1.0, atol=2e-4)
        else:
            assert np.array_equal(np.rint(got / scales[q]), log.counts[q][idx]), q
    return seq


# (transport, send gyro, send mag): the three transports, and the layouts between them
CASES = [("serial", True, True), ("udp", False, False), ("ble", False, True)]


@pytest.mark.parametrize("transport,gyro,mag", CASES)
async def test_orientation_device_streams_its_quaternions_on_every_transport(
        transport: str, gyro: bool, mag: bool, unique_name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_udp_port() if transport == "udp" else None
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport=transport, rig=RIG, rate_hz=100,
        seconds=None, seed=31, report="orientation", gyro=gyro, mag=mag,
        udp_target=("127.0.0.1", port or 9000))

    def link_args(e: Emulator) -> tuple[str, ...]:
        if transport == "serial":
            return ("--serial", e.serial_path, "--rig", RIG)
        if transport == "udp":
            return ("--udp", str(port), "--udp-host", "127.0.0.1")
        monkeypatch.setenv(HCI_ENV, e.ble_hci)
        return ("--ble", e.ble_address)

    emu, inlet = await _stream_with(cfg, link_args, unique_name, lambda e, i: i.n >= 250)
    assert emu.info.has_quat and emu.info.has_gyro == gyro and emu.info.has_mag == mag
    table = _labels(inlet.info)
    labels = [t[0] for t in table]
    sites = emu.rig.site_names
    assert labels == _expected_labels(sites, gyro, mag)
    quat_meta = {(u, t) for label, u, t in table if ".quat." in label}
    assert quat_meta == {("normalized", "Orientation")}
    rows, _ = inlet.arrays()
    seq = check_orientation_rows(emu, labels, rows)
    log = emu.truth()
    window = (log.seq >= seq[0]) & (log.seq <= seq[-1])
    assert np.array_equal(np.sort(seq), log.seq[window & log.sent])  # nothing lost, nothing made up
    sensors = inlet.info.desc().child("sensors")
    assert sensors.child("gyro").empty() != gyro and not sensors.child("quat").empty()


async def test_record_keeps_an_orientation_stream_labels_and_values(tmp_path: Path,
                                                                    unique_name: str) -> None:
    from imusic.capture.session import SessionReader
    from imusic.commands import stream as stream_cmd
    from .test_stream_emulator import _args, Inlet

    path = tmp_path / "orientation.h5"
    cfg = EmulatorConfig(serial=unique_serial(unique_name), transport="serial", rig=RIG,
                         rate_hz=60, seconds=None, seed=32, report="orientation", gyro=False,
                         mag=False)
    rec = subprocess.Popen([sys.executable, "-m", "imusic", "record", "-o", str(path),
                            "--streams-by", unique_name, "--types", "IMU", "--quiet"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = asyncio.Event()
    try:
        async with Emulator(cfg) as emu:
            task = asyncio.create_task(stream_cmd.stream(
                _args("--serial", emu.serial_path, "--rig", RIG, "--name", unique_name), stop))
            inlet = Inlet(f"{emu.serial:016x}")       # to know when data flows
            pull = asyncio.create_task(asyncio.to_thread(inlet.run))
            deadline = time.monotonic() + 60
            while inlet.n < 200 and time.monotonic() < deadline:
                assert not task.done(), task.result()
                assert rec.poll() is None, rec.communicate()
                await asyncio.sleep(0.1)
            assert inlet.n >= 200
            await asyncio.sleep(1.0)                   # the recorder pulls what is buffered
            stop.set()
            assert await asyncio.wait_for(task, 15) == 0
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    finally:
        rec.send_signal(signal.SIGINT)
        out, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    with SessionReader(path) as r:
        assert r.closed_cleanly
        (key,) = r.keys_of_type("IMU")
        imu = r.stream(key)
        labels = list(imu.spec.labels)
        assert labels == _expected_labels(emu.rig.site_names, False, False)
        rows = np.column_stack([imu.channel(label) for label in labels])
    assert len(rows) >= 150
    check_orientation_rows(emu, labels, rows)
