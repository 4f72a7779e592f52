"""The BLE path end to end, with no radio: the emulator's bumble GATT peripheral on a virtual
link -> HCI over a local TCP socket -> bumble host -> bleak's front end (BleakScanner /
BleakClient with the bumble backend) -> BleTransport -> the core Decoder.
What is and is not exercised is written down in firmware_bridge/BLE.md."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from bleak import BleakClient
from bleak.exc import BleakError
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.firmware_bridge.transports.base import TransportClosed, TransportError
from imusic.firmware_bridge.transports.ble import (COMMANDS_UUID, FRAMES_UUID, SERVICE_UUID,
                                            BleTransport, scan)
from imusic.firmware_bridge.transports.ble_bumble import BumbleBleakClient

pytestmark = pytest.mark.timeout(60)


async def _read_until(link: BleTransport, dec: P.Decoder, out: list, predicate,
                      timeout: float = 5.0):
    """Read and decode until a message satisfies ``predicate``; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no matching message within {timeout} s")
        chunk = await asyncio.wait_for(link.read(), left)
        for _, m in dec.feed(chunk):
            out.append(m)
            if predicate(m):
                return m


async def test_scan_finds_the_emulated_wearable_by_service_and_name() -> None:
    async with Emulator(EmulatorConfig(transport="ble", seconds=5, seed=21)) as emu:
        found = await scan(1.0, hci=emu.ble_hci)
        assert [d.address for d in found] == [emu.ble_address]
        assert SERVICE_UUID in found[0].service_uuids
        assert found[0].name and emu.name.startswith(found[0].name)
        by_name = await scan(1.0, name="imusic", hci=emu.ble_hci)
        assert [d.address for d in by_name] == [emu.ble_address]
        assert await scan(0.5, name="someone-else", hci=emu.ble_hci) == []


async def test_gatt_layout_mtu_and_bleak_front_end() -> None:
    async with Emulator(EmulatorConfig(transport="ble", seconds=5, seed=22)) as emu:
        async with BleakClient(emu.ble_address, backend=BumbleBleakClient,
                               hci=emu.ble_hci, timeout=5) as client:
            assert client.is_connected and client.mtu_size == 247
            service = client.services.get_service(SERVICE_UUID)
            assert service is not None
            frames = service.get_characteristic(FRAMES_UUID)
            commands = service.get_characteristic(COMMANDS_UUID)
            assert frames.properties == ["notify"]
            assert set(commands.properties) == {"write", "write-without-response"}
            assert commands.max_write_without_response_size == 244
            with pytest.raises(BleakError):
                await client.pair()


async def test_end_to_end_frames_split_at_arbitrary_points_are_reassembled() -> None:
    cut_rng = random.Random(5)
    cfg = EmulatorConfig(transport="ble", rate_hz=100, seconds=1.5, seed=23,
                         ble_cut=lambda limit: cut_rng.randint(1, limit))
    async with Emulator(cfg) as emu:
        dec, msgs = P.Decoder(), []
        async with BleTransport(emu.ble_address, hci=emu.ble_hci) as link:
            assert link.mtu == 247 and link.is_open
            await link.write(P.encode(P.CmdGetInfo(), 0))
            info = await _read_until(link, dec, msgs, lambda m: isinstance(m, P.DeviceInfo))
            await link.write(P.encode(P.CmdStart(), 0))
            await _read_until(link, dec, msgs, lambda m: isinstance(m, P.Ack))
            assert await emu.wait_done(15)
            # the last frames are already notified; collect them
            last = emu.truth().seq[-1]
            await _read_until(link, dec, msgs,
                              lambda m: isinstance(m, P.Samples) and m.seqs[-1] == last)
    samples = [m for m in msgs if isinstance(m, P.Samples)]
    truth = emu.truth()
    assert info.serial == emu.serial and info.sensor_count == 12
    assert dec.stats.errors == 0 and dec.stats.lost_instants == 0
    assert len(samples) == emu.stats.frames_sent and truth.sent.all()
    assert np.array_equal(np.concatenate([m.acc for m in samples]), truth.counts["acc"])
    assert np.array_equal(np.concatenate([m.mag for m in samples]), truth.counts["mag"])
    assert np.array_equal(np.concatenate([m.t_us for m in samples]), truth.device_us)
    # the stream really was cut into many more notifications than frames
    assert link.notifications > 2 * len(samples)


async def test_disconnect_is_detected_and_a_new_connection_streams_again() -> None:
    cfg = EmulatorConfig(transport="ble", rate_hz=100, seconds=30, seed=24,
                         disconnect_every=0.6)
    async with Emulator(cfg) as emu:
        dec, msgs = P.Decoder(), []
        link = BleTransport(emu.ble_address, hci=emu.ble_hci)
        await link.open()
        try:
            await link.write(P.encode(P.CmdStart(), 0))
            first = await _read_until(link, dec, msgs, lambda m: isinstance(m, P.Samples))
            with pytest.raises(TransportClosed, match="link lost"):
                while True:
                    chunk = await asyncio.wait_for(link.read(), 5)
                    msgs.extend(m for _, m in dec.feed(chunk))
            assert not link.is_open
            with pytest.raises(TransportClosed):
                await link.write(P.encode(P.CmdStop(), 0))
        finally:
            await link.close()
        assert emu.stats.disconnects == 1
        # the host reconnects (the device advertises again at once) and streaming goes on
        dec.reset()
        async with BleTransport(emu.ble_address, hci=emu.ble_hci) as link2:
            await link2.write(P.encode(P.CmdStart(), 0))
            again = await _read_until(link2, dec, msgs, lambda m: isinstance(m, P.Samples))
    before = max(int(m.seqs[-1]) for m in msgs if isinstance(m, P.Samples) and m.seq < again.seq)
    assert again.seq > before >= first.seq


async def test_connecting_to_an_absent_device_fails_clearly() -> None:
    async with Emulator(EmulatorConfig(transport="ble", seconds=5, seed=25)) as emu:
        link = BleTransport("C0:FF:EE:00:00:99", hci=emu.ble_hci, connect_timeout=1.0)
        with pytest.raises(TransportError, match="ble:C0:FF:EE:00:00:99: cannot connect"):
            await link.open()
        await link.close()
    with pytest.raises(TransportError, match="IMUSIC_BLE_HCI"):
        await scan(0.2, hci="tcp-client:127.0.0.1:1")


async def test_device_session_over_ble_reconnects_after_a_dropped_link() -> None:
    """The core's DeviceSession (what ``imusic stream --ble`` runs) on the BLE transport:
    handshake, samples, the link drop noticed, a reconnect, samples again."""
    from imusic.firmware_bridge.device import DeviceSession, SessionConfig

    cfg = EmulatorConfig(transport="ble", rate_hz=100, seconds=30, seed=26,
                         disconnect_every=1.0)
    async with Emulator(cfg) as emu:
        session = DeviceSession(lambda: BleTransport(emu.ble_address, hci=emu.ble_hci),
                                SessionConfig(publish=False, backoff_initial_s=0.05))
        stop = asyncio.Event()
        task = asyncio.create_task(session.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while (session.health.reconnects < 1 or session.health.samples < 250) and \
                    asyncio.get_running_loop().time() < deadline and not task.done():
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    h = session.health
    assert h.reconnects >= 1 and emu.stats.disconnects >= 1
    assert h.samples >= 250 and h.crc_errors == 0 and h.frame_errors == 0


async def test_cli_emulate_ble_reached_from_another_process() -> None:
    """``imusic emulate --transport ble`` in its own process; this process is the host and
    reaches the virtual controller over the HCI socket the emulator printed."""
    import json
    import sys
    from pathlib import Path

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imusic", "emulate", "--transport", "ble", "--seconds", "30",
        "--seed", "27", cwd=Path(__file__).resolve().parents[2],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        info = None
        while info is None:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, (await proc.stderr.read()).decode()
            if line.startswith(b"ready "):
                info = json.loads(line[6:])
        dec, msgs = P.Decoder(), []
        async with BleTransport(info["address"], hci=info["hci"]) as link:
            await link.write(P.encode(P.CmdGetInfo(), 0) + P.encode(P.CmdStart(), 0))
            got = await _read_until(link, dec, msgs, lambda m: isinstance(m, P.Samples))
        device_info = next(m for m in msgs if isinstance(m, P.DeviceInfo))
        assert device_info.serial == int(info["serial"], 16)
        assert got.n_sensors == 12 and dec.stats.errors == 0
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0  # SIGTERM is a clean stop


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12),
       st.lists(st.integers(min_value=1, max_value=244), min_size=1, max_size=50),
       st.integers(min_value=0, max_value=60))
def test_notifications_cut_anywhere_reach_the_decoder_whole(
        bodies: list[bytes], cuts: list[int], drop_after: int) -> None:
    """Notification payloads cut at any points, read in any grouping, give the Decoder every
    frame; a link loss hands over what came before it, then raises."""
    frames = [P.encode(P.Event(t_us=i, kind=P.EVENT_SYNC, value=len(b)), 7)
              for i, b in enumerate(bodies)]
    stream = b"".join(frames)
    pieces, pos, i = [], 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        pieces.append(stream[pos:pos + n])
        pos += n
        i += 1

    async def scenario() -> tuple[bytes, bool]:
        link = BleTransport("C0:FF:EE:00:00:01", hci="tcp-client:127.0.0.1:1")
        got, closed = b"", False
        for k, piece in enumerate(pieces):
            link._on_notify(None, bytearray(piece))
            if k == drop_after:
                link._on_disconnect(None)
            if k % 3 == 2:  # the reader sometimes keeps up, sometimes lags behind
                try:
                    got += await link.read()
                except TransportClosed:
                    closed = True
                    break
        while not closed and not link._queue.empty():  # drain what is left
            try:
                got += await link.read()
            except TransportClosed:
                closed = True
        return got, closed

    got, closed = asyncio.run(scenario())
    dropped = drop_after < len(pieces)
    expect = stream if not dropped else b"".join(pieces[:drop_after + 1])
    assert got == expect and closed == dropped
    msgs = P.Decoder().feed(got)
    assert len(msgs) == (len(frames) if not dropped else
                         sum(1 for f in frames if stream.index(f) + len(f) <= len(expect)))


async def test_a_stalled_reader_does_not_grow_memory_without_bound() -> None:
    from imusic.firmware_bridge.transports.ble import QUEUE_LIMIT

    link = BleTransport("C0:FF:EE:00:00:01", hci="tcp-client:127.0.0.1:1")
    for k in range(QUEUE_LIMIT + 100):
        link._on_notify(None, bytearray(k.to_bytes(4, "little")))
    assert link._queue.qsize() == QUEUE_LIMIT and link.dropped_notifications == 100
    data = await link.read()
    assert data[:4] == (100).to_bytes(4, "little")  # the oldest went first
