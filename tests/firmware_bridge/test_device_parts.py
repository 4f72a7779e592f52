"""A device session's small pieces on their own: the command channel against the twin emulator
over a real pty (answers, retries, a link that goes away), the rate meter, the warm-up hold,
the reconnect backoff (a real serial path coming back) and the bounded event log."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.device import DeviceSession, SessionConfig
from imusic.firmware_bridge.device_parts import Backoff, CommandChannel, RateMeter, WarmupHold
from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.firmware_bridge.transports.base import TransportError
from imusic.firmware_bridge.transports.serial import SerialTransport

pytestmark = pytest.mark.timeout(60)


class _Host:
    """A serial host on the emulator's pty: every message read is offered to ``channel``,
    except those ``drop`` says to lose (a reply lost on the link)."""

    def __init__(self, path: str, channel: CommandChannel, drop=lambda msg: False) -> None:
        self.link = SerialTransport(path)
        self.channel = channel
        self.drop = drop
        self.decoder = P.Decoder()
        self.dropped: list[P.Message] = []
        self.reader: asyncio.Task | None = None

    async def __aenter__(self) -> "_Host":
        await self.link.open()
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.reader is not None
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.link.close()

    async def _read(self) -> None:
        while True:
            for _, msg in self.decoder.feed(await self.link.read()):
                if self.drop(msg):
                    self.dropped.append(msg)
                else:
                    self.channel.offer(msg)


def _emulator() -> Emulator:
    return Emulator(EmulatorConfig(transport="serial", rate_hz=50, seconds=None, seed=4,
                                   keep_truth=False))


async def test_a_command_is_answered_by_the_message_that_answers_it() -> None:
    channel = CommandChannel(timeout_s=2.0, retries=3)
    async with _emulator() as emu, _Host(emu.serial_path, channel) as host:
        info = await channel.request(host.link, P.CmdGetInfo(), emu.device_id, host.reader)
        assert isinstance(info, P.DeviceInfo) and info.serial == emu.serial
        ack = await channel.request(host.link, P.CmdSetRate(100), emu.device_id, host.reader)
        assert isinstance(ack, P.Ack) and ack.command == P.T_SET_RATE and ack.ok
        bad = await channel.request(host.link, P.CmdSetRate(5), emu.device_id, host.reader)
        assert bad.command == P.T_SET_RATE and bad.result == P.ACK_BAD_ARGUMENT
    assert (channel.writes, channel.unanswered) == (3, 0)


async def test_a_lost_answer_is_retried_and_the_retry_answered() -> None:
    channel = CommandChannel(timeout_s=2.0, retries=3)
    lost = []

    def lose_first_start_ack(msg: P.Message) -> bool:
        if isinstance(msg, P.Ack) and msg.command == P.T_START and not lost:
            lost.append(msg)
            return True
        return False

    async with _emulator() as emu, _Host(emu.serial_path, channel, lose_first_start_ack) as host:
        ack = await channel.request(host.link, P.CmdStart(), emu.device_id, host.reader)
        assert ack.ok and emu.streaming
        commands = emu.stats.commands
    assert len(lost) == 1
    assert channel.writes == 2 and channel.unanswered == 1
    assert commands == 2                         # the device saw START twice (idempotent)


async def test_no_answer_after_the_last_try_names_the_link() -> None:
    channel = CommandChannel(timeout_s=0.2, retries=3)
    async with _emulator() as emu, _Host(emu.serial_path, channel) as host:
        # addressed to another device (STOP: no message from this one answers it unasked, as
        # the DEVICE_INFO it sent at boot would answer a GET_INFO)
        other = (emu.device_id + 1) & 0xFFFFFFFF or 1
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError, match=r"serial:.*no answer to CmdStop "
                                                        r"after 3 tries"):
            await channel.request(host.link, P.CmdStop(), other, host.reader)
        assert time.monotonic() - t0 >= 0.6
    assert channel.writes == 3 and channel.unanswered == 3


async def test_a_link_that_goes_away_ends_the_request_at_once() -> None:
    channel = CommandChannel(timeout_s=30.0, retries=3)
    async with _emulator() as emu, _Host(emu.serial_path, channel) as host:
        other = (emu.device_id + 1) & 0xFFFFFFFF or 1
        request = asyncio.create_task(
            channel.request(host.link, P.CmdStop(), other, host.reader))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await emu.link.disconnect(5.0)           # the cable is pulled: reads fail with EIO
        with pytest.raises(TransportError):
            await asyncio.wait_for(request, 10)
        assert time.monotonic() - t0 < 5.0       # not after 3 x 30 s of retries
    assert channel.unanswered == 0


# ---- the rate meter -------------------------------------------------------------------------

def test_rate_of_a_steady_stream_and_of_a_burst() -> None:
    meter = RateMeter(window_s=2.0, min_span_s=0.1)
    assert meter.add(10.0, 2) is None            # one frame: no span yet
    rates = [meter.add(10.0 + i * 0.02, 2) for i in range(1, 300)]
    first = next(i for i, r in enumerate(rates) if r is not None)
    assert 0.1 < (first + 1) * 0.02 < 0.1 + 0.02 + 1e-9     # once the span passes 0.1 s
    assert rates[-1] == pytest.approx(100.0, rel=1e-9)
    # a burst read at once, but stamped with when the frames arrived, does not spike
    meter.clear()
    assert meter.add(20.0, 2) is None
    burst = [meter.add(20.0 + i * 0.02, 2) for i in range(1, 100)]
    assert max(r for r in burst if r is not None) == pytest.approx(100.0, rel=1e-9)


@given(st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(1, 50)), min_size=1, max_size=200))
def test_rate_counts_only_the_window(frames: list[tuple[float, int]]) -> None:
    meter = RateMeter(window_s=2.0, min_span_s=0.1)
    t, arrivals = 0.0, []
    for gap, n in frames:
        t += gap
        arrivals.append((t, n))
        rate = meter.add(t, n)
        inside = [(a, k) for a, k in arrivals if t - a <= 2.0]
        span = t - inside[0][0]
        if len(inside) > 1 and span > 0.1:
            assert rate == pytest.approx(sum(k for _, k in inside[1:]) / span)
        else:
            assert rate is None


# ---- the warm-up hold -----------------------------------------------------------------------

def test_frames_are_held_until_the_fit_spans_the_warmup_then_released_in_order() -> None:
    hold = WarmupHold(warmup_s=0.5, max_frames=200)
    assert all(hold.hold(("frame", i), span_s) for i, span_s in enumerate([0.0, 0.1, 0.49]))
    assert not hold.hold(("frame", 3), 0.5) and len(hold) == 4
    assert hold.release() == [("frame", i) for i in range(4)]
    assert len(hold) == 0 and hold.release() == []


def test_the_hold_never_grows_past_its_bound() -> None:
    hold = WarmupHold(warmup_s=0.5, max_frames=5)
    kept = [hold.hold(i, 0.0) for i in range(5)]
    assert kept == [True] * 4 + [False] and len(hold) == 5


# ---- the backoff ----------------------------------------------------------------------------

def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    b = Backoff(initial_s=0.1, max_s=1.0, poll_s=0.05)
    assert [b.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    b.reset()
    assert b.next_delay() == pytest.approx(0.1)


async def test_backoff_ends_when_an_absent_port_comes_back(tmp_path: Path) -> None:
    port = tmp_path / "ttyIMU"
    b = Backoff(initial_s=30.0, max_s=30.0, poll_s=0.02)
    stop = asyncio.Event()

    async def plug_in() -> None:
        await asyncio.sleep(0.2)
        port.write_bytes(b"")                   # the port's path is back

    plug = asyncio.create_task(plug_in())
    t0 = time.monotonic()
    await asyncio.wait_for(b.wait(stop, SerialTransport(str(port))), 20)
    assert time.monotonic() - t0 < 10            # not the 30 s backoff
    await plug
    os.unlink(port)


async def test_backoff_ends_on_stop() -> None:
    b = Backoff(initial_s=30.0, max_s=30.0, poll_s=0.02)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    await asyncio.wait_for(b.wait(stop, None), 10)


# ---- the event log --------------------------------------------------------------------------

def test_the_event_log_keeps_the_newest_and_counts_what_it_dropped() -> None:
    session = DeviceSession(lambda: None, SessionConfig(publish=False, event_log_max=3))
    for i in range(5):
        session._event({"event": "tap", "i": i})
    assert [e["i"] for e in session.event_log] == [2, 3, 4]
    assert session.event_log.dropped == 2
    assert session.event_log.maxlen == 3
    assert list(session.event_log) == [{"event": "tap", "i": i} for i in (2, 3, 4)]
