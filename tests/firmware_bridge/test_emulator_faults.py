"""Fault injection in the emulator does what its flags say: loss, corrupt bytes, reboot,
disconnects (pty closed and back at the same path; UDP silence)."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest
import serial

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator import BOOT_US, Emulator, EmulatorConfig
from .test_emulator import SerialHost, _drain, _recv_all, _udp_host

pytestmark = pytest.mark.timeout(60)


async def _udp_run(cfg_kwargs: dict) -> tuple[Emulator, list, P.Decoder]:
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), **cfg_kwargs)
        async with Emulator(cfg) as emu:
            grams = await _recv_all(sock, emu, 15)
    finally:
        sock.close()
    dec = P.Decoder()
    msgs = [(t, m) for t, data, _ in grams for _, m in dec.feed(data)]
    return emu, msgs, dec


async def test_loss_drops_that_fraction_of_frames_and_seq_shows_it() -> None:
    emu, msgs, dec = await _udp_run(dict(rate_hz=200, seconds=2.0, seed=11, loss=0.3,
                                         instants_per_frame=2))
    samples = [m for _, m in msgs if isinstance(m, P.Samples)]
    truth = emu.truth()
    s = emu.stats
    assert s.frames == 200 and s.frames_lost + s.frames_sent == s.frames
    # binomial(200, 0.3): mean 60, sd 6.5
    assert 35 <= s.frames_lost <= 85
    assert len(samples) == s.frames_sent
    # every instant the device dropped is counted lost by the receiver (except a lost tail)
    lost_instants = int(truth.lost.sum())
    tail = int(np.argmax(~truth.lost[::-1])) if truth.lost[-1] else 0
    assert dec.stats.lost_instants == lost_instants - tail
    received_seq = np.concatenate([m.seqs for m in samples])
    assert np.array_equal(received_seq, truth.seq[truth.sent])
    assert np.array_equal(np.concatenate([m.acc for m in samples]),
                          truth.counts["acc"][truth.sent])


async def test_corrupt_bytes_are_counted_as_errors_and_good_frames_survive() -> None:
    cfg = EmulatorConfig(transport="serial", rate_hz=100, seconds=2.0, seed=12,
                         corrupt=0.0005)
    async with Emulator(cfg) as emu:
        host = SerialHost(emu.serial_path)
        try:
            host.send(P.CmdStart())
            await _drain(host, emu, 15)
        finally:
            host.close()
    s = emu.stats
    st = host.decoder.stats
    samples = host.of(P.Samples)
    assert s.frames_corrupted >= 5, "the test needs some corrupted frames"
    # each frame sits between its own 0x00 delimiters: a flip kills only its own frame
    assert len(samples) == s.frames_sent - s.frames_corrupted
    assert st.crc_errors > 0
    assert s.frames_corrupted <= st.errors <= s.frames_corrupted + s.bytes_flipped
    truth = emu.truth()
    assert np.array_equal(np.concatenate([m.seqs for m in samples]), truth.seq[truth.sent])
    assert np.array_equal(np.concatenate([m.gyro for m in samples]),
                          truth.counts["gyro"][truth.sent])


async def test_reboot_gives_new_boot_id_restarts_seq_and_device_time() -> None:
    emu, msgs, dec = await _udp_run(dict(rate_hz=100, seconds=2.0, seed=13, reboot_at=1.0))
    infos = [m for _, m in msgs if isinstance(m, P.DeviceInfo)]
    boots = [m for _, m in msgs if isinstance(m, P.Event) and m.kind == P.EVENT_BOOTED]
    assert len(infos) == 2 and infos[0].boot_id != infos[1].boot_id
    assert len(boots) == 2 and emu.stats.reboots == 1
    samples = [m for _, m in msgs if isinstance(m, P.Samples)]
    restart = next(i for i, m in enumerate(samples) if i and m.seq < samples[i - 1].seq)
    before, after = samples[:restart], samples[restart:]
    assert after[0].seq == 0
    assert before[-1].t_us[-1] > 1_000_000 > BOOT_US + 20_000 >= after[0].t0_us >= BOOT_US
    # the decoder sees a reset, not a loss
    assert dec.stats.seq[emu.device_id].resets == 1 and dec.stats.lost_instants == 0
    # the DEVICE_INFO of the new boot comes before its samples
    order = [m for _, m in msgs if isinstance(m, (P.DeviceInfo, P.Samples))]
    assert isinstance(order[order.index(after[0]) - 1], P.DeviceInfo)
    assert sum(m.n_instants for m in samples) == 200


async def test_serial_disconnect_closes_the_pty_and_it_comes_back_at_the_same_path() -> None:
    cfg = EmulatorConfig(transport="serial", rate_hz=100, seconds=2.5, seed=14,
                         disconnect_every=0.8, disconnect_for=0.3)
    async with Emulator(cfg) as emu:
        path = emu.serial_path
        host = SerialHost(path)
        host.send(P.CmdStart())
        before = await host.until(lambda m: isinstance(m, P.Samples))
        with pytest.raises(serial.SerialException):  # the cable is pulled: reads fail
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                host.poll()
                await asyncio.sleep(0.01)
        host.close()
        # wait (on the condition, with a timeout) for the port to come back
        deadline = time.monotonic() + 5
        while not emu.link._up and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert os.path.exists(path), "the port path must survive the disconnect"
        host = SerialHost(path)
        try:
            after = await host.until(lambda m: isinstance(m, P.Samples))
        finally:
            host.close()
    assert emu.stats.disconnects >= 1 and emu.stats.tx_dropped >= 1
    assert after.seq > before.seq + 10  # instants taken while unplugged never arrive


async def test_udp_disconnect_is_silence_then_streaming_resumes() -> None:
    emu, msgs, dec = await _udp_run(dict(rate_hz=100, seconds=2.5, seed=15,
                                         disconnect_every=0.9, disconnect_for=0.4))
    # measured on the device clock (host arrival times would also show a loaded CPU)
    t_us = np.concatenate([m.t_us for _, m in msgs if isinstance(m, P.Samples)])
    gaps = np.diff(t_us)
    assert np.sum(gaps > 300_000) == emu.stats.disconnects == 2
    assert np.all(gaps[gaps > 300_000] <= 800_000)  # --disconnect-for 0.4 s (+ a loaded CPU)
    truth = emu.truth()
    assert dec.stats.lost_instants == int(truth.tx_dropped[:np.flatnonzero(truth.sent)[-1]].sum())
    assert dec.stats.seq_gaps == 2


async def test_serial_pull_counts_what_the_host_never_read_and_removes_the_path() -> None:
    """Bytes still in the pty when the cable is pulled never reach the host (the hang-up
    discards them): the truth counts their frames as tx_dropped, not sent, so that what it
    calls sent is exactly what a host can receive."""
    cfg = EmulatorConfig(transport="serial", rate_hz=100, seconds=None, seed=16,
                         disconnect_every=1.0, disconnect_for=1.0)
    async with Emulator(cfg) as emu:
        path = emu.serial_path
        host = SerialHost(path)
        host.send(P.CmdStart())
        await host.until(lambda m: isinstance(m, P.Samples) and m.seq >= 40)
        # the host stalls (more than the pty's 4 KiB input queue piles up) until the pull
        deadline = time.monotonic() + 5
        while emu.stats.disconnects < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert emu.stats.disconnects == 1
        assert not os.path.exists(path), "an unplugged port has no path"
        with pytest.raises(serial.SerialException):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                host.poll()
                await asyncio.sleep(0.01)
        host.close()
        await emu.stop()
    truth = emu.truth()
    got = np.concatenate([m.seqs for m in host.of(P.Samples)])
    before = truth.seq < got[-1] + 100          # up to the pull and a little after
    assert np.array_equal(got, truth.seq[truth.sent & before])
    unread = truth.tx_dropped & (truth.seq > got[-1]) & (truth.seq < 100)
    assert unread.sum() > 20, "the stall left frames unread in the pty"
