"""Serial (real pty) and UDP (real sockets) transports: bytes both ways, end of link, errors
that name the link, bounded datagrams, several devices on one UDP port."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import tty

import pytest

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.transports.base import TransportClosed, TransportError
from imusic.firmware_bridge.transports.serial import SerialTransport
from imusic.firmware_bridge.transports.udp import MAX_DATAGRAM, UdpTransport

pytestmark = pytest.mark.timeout(30)


async def _read_until(link, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        buf += await asyncio.wait_for(link.read(), 5)
    return buf


async def test_serial_both_ways_and_unplug_over_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        async with SerialTransport(path) as link:
            assert link.is_open and link.name == f"serial:{path}"
            frames = b"".join(P.encode(P.Status(i, 3800, 50, 0), 7) for i in range(50))
            os.write(master, frames)
            got = await _read_until(link, len(frames))
            assert got == frames
            await link.write(P.encode(P.CmdStart(), 7))
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, os.read, master, 100)
            assert P.decode_frame(data)[1] == P.CmdStart()
            os.close(master)          # the device goes away
            master = -1
            os.close(slave)
            slave = -1
            with pytest.raises(TransportClosed, match=path):
                for _ in range(10):
                    await asyncio.wait_for(link.read(), 5)
    finally:
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)


async def test_serial_arrival_is_when_the_bytes_came_not_when_read() -> None:
    """Bytes that wait in the host while its read loop is busy (a loaded machine) arrived
    when they reached the port's protocol, not when read() got round to them: the clock fit
    must not see them as late."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        async with SerialTransport(os.ttyname(slave)) as link:
            sent = time.monotonic()
            os.write(master, P.encode(P.Status(1, 3800, 50, 0), 7))
            deadline = sent + 5
            while link._protocol.last_received < sent:      # the event loop took them in
                assert time.monotonic() < deadline
                await asyncio.sleep(0.001)
            came = link._protocol.last_received
            await asyncio.sleep(0.1)                          # the read loop is busy elsewhere
            await asyncio.wait_for(link.read(), 5)
            arrival = time.monotonic() - link.arrival_age()
            assert link.arrival_age() >= 0.1
            assert sent <= arrival <= came + 1e-3
    finally:
        os.close(master)
        os.close(slave)


async def test_serial_open_error_names_port_and_fix() -> None:
    with pytest.raises(TransportError, match="/dev/nope-imusic.*imusic devices"):
        await SerialTransport("/dev/nope-imusic").open()


async def test_udp_devices_told_apart_commands_to_each_peer() -> None:
    async with UdpTransport(0, "127.0.0.1") as link:
        host, port = link.address
        devs = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for i, s in enumerate(devs):
                s.bind(("127.0.0.1", 0))
                s.settimeout(5)
                # two whole frames in one datagram, as a device may pack them
                s.sendto(P.encode(P.Status(1, 3700, 60, 0), 100 + i)
                         + P.encode(P.Event(2, P.EVENT_TAP), 100 + i), (host, port))
            dec = P.Decoder()
            got = []
            while len(got) < 4:
                got += dec.feed(await asyncio.wait_for(link.read(), 5))
            assert sorted(d for d, _ in got) == [100, 100, 101, 101]
            assert len(link.peers) == 2
            await link.write(P.encode(P.CmdGetInfo(), 101))
            for s in devs:  # both hear it; the device id inside says whom it is for
                assert P.decode_frame(s.recv(100)) == (101, P.CmdGetInfo())
        finally:
            for s in devs:
                s.close()


async def test_udp_truncated_datagram_cannot_swallow_the_next() -> None:
    async with UdpTransport(0, "127.0.0.1") as link:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            frame = P.encode(P.Status(1, 3700, 60, 0), 5)
            # a device that sends no leading 0x00, and a datagram cut short
            s.sendto(frame[1:len(frame) // 2], link.address)
            s.sendto(frame[1:], link.address)
            s.sendto(b"\x01" * (MAX_DATAGRAM + 1), link.address)
            s.sendto(frame, link.address)
            dec = P.Decoder()
            got = []
            while len(got) < 2:
                got += dec.feed(await asyncio.wait_for(link.read(), 5))
            assert [m for _, m in got] == [P.Status(1, 3700, 60, 0)] * 2
            assert dec.stats.errors == 1   # only the cut one
            await asyncio.sleep(0.05)
            assert link.oversize == 1


async def test_udp_busy_port_is_a_clear_error_and_close_ends_reads() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        with pytest.raises(TransportError, match="cannot listen on UDP 127.0.0.1:.*--udp PORT"):
            await UdpTransport(busy.getsockname()[1], "127.0.0.1").open()
    link = UdpTransport(0, "127.0.0.1")
    await link.open()
    reader = asyncio.create_task(link.read())
    await asyncio.sleep(0.05)
    await link.close()
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(reader, 5)
    await link.close()  # idempotent


async def test_udp_hub_routes_frames_by_device_id() -> None:
    from imusic.firmware_bridge.transports.udp import UdpHub

    async with UdpHub(0, "127.0.0.1") as hub:
        addr = hub.link.address
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for i, s in enumerate(socks):
                s.bind(("127.0.0.1", 0))
                s.settimeout(5)
                s.sendto(P.encode(P.Status(i, 3700, 60, 0), 0xA0 + i) + b"\x05\x01\x00",
                         addr)   # a whole frame, then a piece too broken to name its device
            chans = [await asyncio.wait_for(hub.new_devices.get(), 5) for _ in range(2)]
            assert sorted(c.device_id for c in chans) == [0xA0, 0xA1]
            for ch in chans:
                got = P.Decoder().feed(await asyncio.wait_for(ch.read(), 5))
                assert got == [(ch.device_id, P.Status(ch.device_id - 0xA0, 3700, 60, 0))]
                await ch.write(P.encode(P.CmdStart(), ch.device_id))
            assert hub.unroutable == 2
            for i, s in enumerate(socks):  # each device got only its own command
                assert P.decode_frame(s.recv(100)) == (0xA0 + i, P.CmdStart())
        finally:
            for s in socks:
                s.close()
