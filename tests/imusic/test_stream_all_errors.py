"""``imusic stream --all-devices``: a device whose session fails is reported once (it was
printed again every 0.5 s until the command stopped)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.commands import stream as stream_cmd


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stream_cmd.add_arguments(parser)
    return parser.parse_args(list(argv) + ["--quiet"])


async def test_a_failed_device_is_reported_once(unique_name, capsys):
    """A 6-sensor wearable on a port streamed as rig imusic11: its session ends with one line
    naming the mismatch, and the command exits 1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serial = (0x494D5553 << 32) | int(unique_name[-8:], 16)
    cfg = EmulatorConfig(serial=serial, transport="udp", rig="imusic6", rate_hz=100,
                         seconds=None, udp_target=("127.0.0.1", port))
    stop = asyncio.Event()
    async with Emulator(cfg):
        task = asyncio.create_task(stream_cmd.stream(
            _args("--udp", str(port), "--udp-host", "127.0.0.1", "--all-devices",
                  "--rig", "imusic11", "--name", unique_name), stop))
        deadline = time.monotonic() + 30
        while "reports 6 sensors" not in capsys.readouterr().err:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)      # four more rounds of the command's 0.5 s loop
        stop.set()
        code = await asyncio.wait_for(task, 15)
    err = capsys.readouterr().err
    assert code == 1
    assert "reports 6 sensors" not in err, err   # said once, above; never again
