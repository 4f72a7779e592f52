"""``imusic devices`` finds the emulated wearables (UDP, BLE); ``imusic stream --ble`` runs
end to end over the emulated BLE link (bumble virtual controller, see firmware_bridge/BLE.md
for what that does and does not exercise)."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket

import numpy as np
import pytest

from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.firmware_bridge.transports.ble import HCI_ENV
from imusic.commands import devices as devices_cmd
from .test_stream_emulator import Inlet, _args, _check_values, unique_serial
from imusic.commands import stream as stream_cmd

pytestmark = [pytest.mark.timeout(120)]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _devices(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    devices_cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_devices_hears_a_udp_wearable(capsys: pytest.CaptureFixture, unique_name: str) -> None:
    port = _free_udp_port()
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="udp", rig="imusic6", rate_hz=50,
        seconds=None, seed=9, udp_target=("127.0.0.1", port), keep_truth=False)
    with Emulator.run_in_thread(cfg) as emu:
        code = devices_cmd.run(_devices("--udp", str(port), "--udp-host", "127.0.0.1",
                                        "--listen", "2", "--no-ble", "--no-serial", "--json"))
        serial = emu.emulator.serial
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    found = out["udp"]["devices"]
    assert len(found) == 1 and out["udp"]["error"] is None
    d = found[0]
    assert d["serial"] == f"{serial:016x}" and d["rig"] == "imusic6" and d["sensors"] == 6
    assert d["streaming"] is True and d["address"].startswith("127.0.0.1:")


def test_devices_reports_a_busy_udp_port_and_missing_ble(capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HCI_ENV, raising=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        code = devices_cmd.run(_devices("--udp", str(port), "--udp-host", "127.0.0.1",
                                        "--listen", "0.5", "--no-serial"))
    out = capsys.readouterr()
    text = out.out
    assert code == 1                 # nothing found anywhere: one line says so, and why
    assert f"cannot listen on UDP 127.0.0.1:{port}" in text
    assert "BLE wearables" in text and ("unavailable" in text or "none" in text)
    last = out.err.strip().splitlines()
    assert len(last) == 1 and last[0].startswith("imusic devices: no wearable found in 0.5 s")
    assert "Address already in use" in last[0]


def test_devices_scans_the_emulated_ble_wearable(capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 unique_name: str) -> None:
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="ble", rig="imusic6", rate_hz=50,
        seconds=None, seed=10, keep_truth=False)
    with Emulator.run_in_thread(cfg) as emu:
        monkeypatch.setenv(HCI_ENV, emu.emulator.ble_hci)
        code = devices_cmd.run(_devices("--listen", "2", "--no-udp", "--no-serial", "--json"))
        address = emu.emulator.ble_address
    assert code == 0
    ble = json.loads(capsys.readouterr().out)["ble"]
    assert ble["error"] is None
    assert [d["address"] for d in ble["devices"]] == [address]


async def test_stream_over_emulated_ble(unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="ble", rig="imusic6", rate_hz=100,
        seconds=None, seed=11, loss=0.05)
    stop = asyncio.Event()
    async with Emulator(cfg) as emu:
        monkeypatch.setenv(HCI_ENV, emu.ble_hci)
        args = _args("--ble", emu.ble_address, "--name", unique_name)
        task = asyncio.create_task(stream_cmd.stream(args, stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            for _ in range(300):
                if inlet.n >= 300:
                    break
                assert not task.done(), task.result()
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            code = await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    assert code == 0
    rows, _ = inlet.arrays()
    assert len(rows) >= 300
    seq = _check_values(emu, rows)
    log = emu.truth()
    window = (log.seq >= seq[0]) & (log.seq <= seq[-1])
    assert np.array_equal(np.sort(seq), log.seq[window & log.sent])


async def test_stream_reconnects_after_a_ble_disconnect(unique_name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="ble", rig="imusic6", rate_hz=100,
        seconds=None, seed=12, disconnect_every=1.5)
    stop = asyncio.Event()
    async with Emulator(cfg) as emu:
        monkeypatch.setenv(HCI_ENV, emu.ble_hci)
        args = _args("--ble", emu.ble_address, "--name", unique_name, "--silence", "0.5")
        task = asyncio.create_task(stream_cmd.stream(args, stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            for _ in range(400):
                if emu.stats.disconnects >= 1 and inlet.n and inlet.rows[-1][-1, -1] > 250:
                    break
                assert not task.done(), task.result()
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            code = await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    assert code == 0 and emu.stats.disconnects >= 1
    rows, _ = inlet.arrays()
    seq = _check_values(emu, rows)
    assert seq[-1] > 250 and np.all(np.diff(seq) >= 1)   # streaming went on after the drop
    assert np.any(np.diff(seq) > 1)                      # with a gap where the link was down


def test_devices_lists_an_emulated_serial_wearable(capsys: pytest.CaptureFixture,
                                                   unique_name: str) -> None:
    cfg = EmulatorConfig(serial=unique_serial(unique_name), transport="serial", rig="imusic6",
                         rate_hz=50, seconds=None, seed=13, keep_truth=False)
    with Emulator.run_in_thread(cfg) as emu:
        path = emu.emulator.serial_path
        code = devices_cmd.run(_devices("--no-udp", "--no-ble", "--json"))
    assert code == 0
    ports = [d["port"] for d in json.loads(capsys.readouterr().out)["serial"]["devices"]]
    assert path in ports
