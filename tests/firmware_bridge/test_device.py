"""Device sessions over a real pty and a real UDP socket, driven by a scripted device that
speaks the wire protocol (``ScriptedDevice``): handshake, values, timestamps under drift,
loss, silence and reboot recovery."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import tty
from dataclasses import dataclass

import numpy as np
import pylsl
import pytest

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.device import DeviceError, DeviceSession, SessionConfig
from imusic.firmware_bridge.emulator_recorder import lsl_minus_monotonic
from imusic.firmware_bridge.transports.serial import SerialTransport
from imusic.firmware_bridge.transports.udp import UdpTransport

pytestmark = pytest.mark.timeout(60)

ACC, GYRO, MAG = 2.0 ** -11, 2.0 ** -13, 0.0625


def counts(seqs: np.ndarray, n: int) -> np.ndarray:
    """The scripted device's deterministic counts (k, n, 9) for sequence numbers ``seqs``."""
    s = np.asarray(seqs, np.int64)[:, None, None]
    j = np.arange(n)[None, :, None]
    a = np.arange(9)[None, None, :]
    return ((s * 37 + j * 1000 + a * 101) % 60000 - 30000).astype(np.int16)


@dataclass
class _Boot:
    boot_id: int
    mono: float
    local: float


class ScriptedDevice:
    """A minimal wearable: answers commands, streams paced SAMPLES with a drifting clock,
    sends STATUS every second, can drop frames, go silent and reboot. ``send`` writes bytes
    to the link (pty master or UDP socket)."""

    def __init__(self, send, n: int = 3, rate: int = 200, k: int = 4, drift_ppm: float = 0.0,
                 serial: int = 0x1234_5678_9ABC_DEF0, drop: frozenset = frozenset()) -> None:
        self.send, self.n, self.rate, self.k = send, n, rate, k
        self.drift = drift_ppm * 1e-6
        self.serial = serial
        self.device_id = serial & 0xFFFFFFFF
        self.drop = drop
        self.dec = P.Decoder()
        self.streaming = False
        self.silent_until = 0.0
        self.frames_sent = 0
        self.frame_index = 0
        self.boots: list[_Boot] = []
        self.commands: list[P.Message] = []
        self.boot()

    def info(self) -> P.DeviceInfo:
        return P.DeviceInfo((1, 0, 0), self.serial, self.boots[-1].boot_id, self.rate, self.n,
                            P.FLAG_MAG, ACC, GYRO, MAG, 16.0, 4.0, 2048.0, self.k, "test3",
                            "scripted-def0")

    def boot(self) -> None:
        # The boot's LSL time from its monotonic one by a bracketed offset: two reads in a row
        # can be a preemption apart on a loaded machine, shifting every true time by it.
        mono = time.monotonic()
        self.boots.append(_Boot(0x1000 + len(self.boots), mono, mono + lsl_minus_monotonic()))
        self.streaming = False
        self.next_seq = 0
        self._out(P.encode(self.info(), self.device_id) + P.encode(
            P.Event(0, P.EVENT_BOOTED), self.device_id))

    def _out(self, data: bytes) -> None:
        if time.monotonic() >= self.silent_until:
            self.send(data)

    def receive(self, data: bytes) -> None:
        for dev, cmd in self.dec.feed(data):
            if dev not in (0, self.device_id):
                continue
            self.commands.append(cmd)
            if isinstance(cmd, P.CmdGetInfo):
                self._out(P.encode(self.info(), self.device_id))
                continue
            result = P.ACK_OK
            if isinstance(cmd, P.CmdStart):
                if not self.streaming:
                    self.streaming = True
                    b = self.boots[-1]
                    # Instants are due on the device clock from now on.
                    self.start_dev_us = int((time.monotonic() - b.mono) * 1e6 * (1 + self.drift))
                    self.start_seq = self.next_seq
            elif isinstance(cmd, P.CmdStop):
                self.streaming = False
            elif isinstance(cmd, P.CmdSetRate):
                if P.RATE_MIN_HZ <= cmd.rate_hz <= P.RATE_MAX_HZ:
                    self.rate = cmd.rate_hz
                else:
                    result = P.ACK_BAD_ARGUMENT
            self._out(P.encode(P.Ack(cmd.TYPE, result), self.device_id))

    def true_local(self, seq: np.ndarray, boot: int = -1) -> np.ndarray:
        """LSL time at which instants ``seq`` of a boot were sampled (device time / (1+drift))."""
        b = self.boots[boot]
        dev_s = self.dev_us_of(seq) * 1e-6
        return b.local + dev_s / (1 + self.drift)

    def dev_us_of(self, seq: np.ndarray) -> np.ndarray:
        return self.start_dev_us + (np.asarray(seq) - self.start_seq) * (1_000_000 // self.rate)

    async def run(self, stop: asyncio.Event) -> None:
        last_status = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - last_status >= 1.0:
                last_status = now
                b = self.boots[-1]
                self._out(P.encode(P.Status(int((now - b.mono) * 1e6), 3900, 77, 3000),
                                   self.device_id))
            if self.streaming:
                b = self.boots[-1]
                seqs = self.next_seq + np.arange(self.k)
                t_us = self.dev_us_of(seqs)
                due = b.mono + t_us[-1] * 1e-6 / (1 + self.drift)
                if now >= due:
                    c = counts(seqs, self.n)
                    s = P.Samples(int(seqs[0]) % P.SEQ_MOD, int(t_us[0]),
                                  (t_us - t_us[0]).astype(np.uint32),
                                  c[:, :, 0:3], c[:, :, 3:6], c[:, :, 6:9])
                    if self.frame_index not in self.drop:
                        self._out(P.encode(s, self.device_id))
                        self.frames_sent += 1
                    self.frame_index += 1
                    self.next_seq += self.k
                    continue
                await asyncio.sleep(max(0.0, min(due - now, 0.01)))
            else:
                await asyncio.sleep(0.01)


class PtyLink:
    """A real pseudo-terminal: the device holds the master, the host opens the slave path."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def attach(self, device: ScriptedDevice) -> None:
        asyncio.get_running_loop().add_reader(
            self.master, lambda: device.receive(os.read(self.master, 4096)))

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


class Collector:
    """Rows and timestamps the session produced (the same arrays it pushes to LSL)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []
        self.event = asyncio.Event()
        self.count = 0
        self.want = 0

    def __call__(self, rows: np.ndarray, ts: np.ndarray) -> None:
        self.rows.append(rows.copy())
        self.ts.append(np.asarray(ts).copy())
        self.count += len(rows)
        if self.count >= self.want:
            self.event.set()

    async def until(self, n: int, timeout: float = 15.0) -> None:
        self.want = n
        if self.count < n:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), timeout)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.rows), np.concatenate(self.ts)


async def _session(factory, device: ScriptedDevice, config: SessionConfig, collector: Collector):
    stop = asyncio.Event()
    dev_task = asyncio.create_task(device.run(stop))
    session = DeviceSession(factory, config, on_samples=collector)
    task = asyncio.create_task(session.run(stop))
    return session, stop, task, dev_task


async def _finish(stop, task, dev_task):
    stop.set()
    health = await asyncio.wait_for(task, 10)
    await dev_task
    return health


async def test_pty_handshake_values_rate_and_drift(unique_name: str) -> None:
    pty = PtyLink()
    dev = ScriptedDevice(pty.send, drift_ppm=150.0, rate=100)
    pty.attach(dev)
    col = Collector()
    cfg = SessionConfig(rate_hz=200, name=unique_name, publish=True)
    session, stop, task, dev_task = await _session(
        lambda: SerialTransport(pty.path), dev, cfg, col)
    try:
        inlet_info = await asyncio.to_thread(pylsl.resolve_byprop, "name", unique_name, 1, 10)
        assert inlet_info and inlet_info[0].source_id() == f"{dev.serial:016x}"
        await col.until(200 * 6)
    finally:
        health = await _finish(stop, task, dev_task)
        pty.close()
    rows, ts = col.arrays()
    seq = rows[:, -1].astype(np.int64)
    assert np.array_equal(seq, np.arange(len(seq)))        # nothing lost, in order
    c = counts(seq, 3)
    assert np.array_equal(rows[:, 0:3], c[:, 0, 0:3] * ACC)
    assert np.array_equal(rows[:, 3:6], c[:, 0, 3:6] * GYRO)
    assert np.array_equal(rows[:, 9 * 2 + 6:9 * 3], c[:, 2, 6:9] * MAG)
    assert np.array_equal(rows[:, -2], dev.dev_us_of(seq))
    assert health.nominal_hz == 200 and dev.rate == 200
    assert any(isinstance(m, P.CmdSetRate) for m in dev.commands)
    assert isinstance(dev.commands[-1], P.CmdStop)          # clean stop tells the device
    # Increasing from the very first sample (the young fit's frames were held, then stamped).
    assert np.all(np.diff(ts) > 0.004)
    # Timestamps against the true sampling instants, after the fit has settled.
    err = ts - dev.true_local(seq)
    late = err[seq > 200 * 3]
    assert np.sqrt(np.mean(late ** 2)) < 2e-3, np.sqrt(np.mean(late ** 2))
    # 6 s of data on a shared machine: the sign and size, not the last ppm.
    assert abs(health.drift_ppm - (-150 / 1.000150)) < 100, health.drift_ppm
    assert health.battery_pct == 77 and health.crc_errors == 0 and health.lost == 0


async def test_udp_loss_is_counted_never_filled(unique_name: str) -> None:
    host = UdpTransport(0, "127.0.0.1")
    await host.open()
    port = host.address[1]
    dev_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev_sock.bind(("127.0.0.1", 0))
    dev_sock.setblocking(False)
    dev = ScriptedDevice(lambda b: dev_sock.sendto(b, ("127.0.0.1", port)),
                         drop=frozenset({10, 11, 30}))
    asyncio.get_running_loop().add_reader(dev_sock, lambda: dev.receive(dev_sock.recv(65536)))
    col = Collector()
    session, stop, task, dev_task = await _session(
        lambda: host, dev, SessionConfig(name=unique_name), col)
    try:
        await col.until(4 * 60)
    finally:
        health = await _finish(stop, task, dev_task)
        asyncio.get_running_loop().remove_reader(dev_sock)
        dev_sock.close()
    rows, _ = col.arrays()
    seq = rows[:, -1].astype(np.int64)
    dropped = {s for f in (10, 11, 30) for s in range(f * 4, f * 4 + 4)}
    assert set(seq.tolist()) == set(range(seq.max() + 1)) - dropped
    assert health.lost == 12 and health.samples == len(seq)
    gaps = [e for e in session.event_log if e["event"] == "gap"]
    assert [g["lost"] for g in gaps] == [8, 4]
    assert np.array_equal(rows[:, 0:3], counts(seq, 3)[:, 0, 0:3] * ACC)


async def test_silence_then_recovery_and_reboot_over_pty(unique_name: str) -> None:
    pty = PtyLink()
    dev = ScriptedDevice(pty.send)
    pty.attach(dev)
    col = Collector()
    cfg = SessionConfig(name=unique_name, silence_s=0.5)
    session, stop, task, dev_task = await _session(
        lambda: SerialTransport(pty.path), dev, cfg, col)
    try:
        await col.until(200)
        dev.silent_until = time.monotonic() + 1.5        # the cable glitches: nothing arrives
        await asyncio.sleep(1.6)
        n_before = col.count
        await col.until(n_before + 200)
        assert session.health.reconnects >= 1
        dev.boot()                                       # reboot: new boot_id, seq and time restart
        boot_seen = len(col.rows)
        await col.until(col.count + 300)
    finally:
        health = await _finish(stop, task, dev_task)
        pty.close()
    assert health.reboots == 1
    events = [e["event"] for e in session.event_log]
    assert "silence" in events and "reboot" in events
    rows = np.concatenate(col.rows[:boot_seen])
    seq = rows[:, -1].astype(np.int64)
    assert np.all(np.diff(seq) > 0)                     # a gap, never invented samples
    assert health.lost == int(seq[-1] + 1 - len(seq))
    after = np.concatenate(col.rows[boot_seen:])
    seq2 = after[:, -1].astype(np.int64)
    assert seq2[0] == 0 and np.all(np.diff(seq2) == 1)
    _, ts = col.arrays()
    # After the reboot the clock was refitted: timestamps are right for the new boot too.
    ts2 = np.concatenate(col.ts[boot_seen:])
    assert np.max(np.abs(ts2 - dev.true_local(seq2))) < 5e-3


async def test_rig_mismatch_is_a_clear_error(unique_name: str) -> None:
    pty = PtyLink()
    dev = ScriptedDevice(pty.send, n=3)
    pty.attach(dev)

    class Rig:
        id = "imusic11"
        site_names = [f"s{i}" for i in range(11)]
        reference = "s0"

    stop = asyncio.Event()
    dev_task = asyncio.create_task(dev.run(stop))
    session = DeviceSession(lambda: SerialTransport(pty.path), SessionConfig(rig=Rig(), name=unique_name))
    try:
        with pytest.raises(DeviceError, match="reports 3 sensors but rig 'imusic11' has 11"):
            await asyncio.wait_for(session.run(stop), 10)
    finally:
        stop.set()
        await dev_task
        pty.close()


async def test_missing_port_backs_off_and_names_the_port(unique_name: str) -> None:
    stop = asyncio.Event()
    session = DeviceSession(lambda: SerialTransport("/dev/does-not-exist-imusic"),
                            SessionConfig(name=unique_name, backoff_initial_s=0.05))
    task = asyncio.create_task(session.run(stop))
    t0 = time.monotonic()
    while session.health.connect_failures < 3 and time.monotonic() - t0 < 10:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert session.health.connect_failures >= 3 and session.health.reconnects == 0
    assert "/dev/does-not-exist-imusic" in session.health.last_error
    assert "/dev/does-not-exist-imusic" in session.health.line()


async def _until_true(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_bad_frames_accumulate_across_reconnects(unique_name: str) -> None:
    """``frame_errors`` counts every bad frame of the session: the decoder's (a bad CRC) and
    the SAMPLES the session refused for their layout, before and after a reconnect. It used
    to be overwritten with the decoder's count after every read, losing the layout errors."""
    pty = PtyLink()
    dev = ScriptedDevice(pty.send, n=3)
    pty.attach(dev)
    col = Collector()
    cfg = SessionConfig(name=unique_name, silence_s=0.5, publish=False)
    session, stop, task, dev_task = await _session(
        lambda: SerialTransport(pty.path), dev, cfg, col)

    def wrong_layout() -> bytes:   # 2 sensors from a device that said 3 (a good CRC)
        z = np.zeros((1, 2, 3), np.int16)
        return P.encode(P.Samples(dev.next_seq % P.SEQ_MOD, 0, np.zeros(1, np.uint32), z, z, z),
                        dev.device_id)

    bad_crc = bytearray(P.encode(P.Status(1, 3900, 77, 3000), dev.device_id))
    bad_crc[-3] ^= 0x01 if bad_crc[-3] != 0x01 else 0x02    # never makes a 0x00 delimiter
    try:
        await col.until(200)
        pty.send(bytes(bad_crc))
        pty.send(wrong_layout())
        await _until_true(lambda: session.health.layout_errors == 1, 10, "the layout error")
        await col.until(col.count + 40)
        assert session.health.frame_errors == 2, session.health
        dev.silent_until = time.monotonic() + 1.0              # silence: the session reconnects
        await _until_true(lambda: session.health.reconnects >= 1, 10, "a reconnect")
        await col.until(col.count + 200)
        pty.send(wrong_layout())
        await _until_true(lambda: session.health.layout_errors == 2, 10, "the second one")
        await col.until(col.count + 40)
    finally:
        health = await _finish(stop, task, dev_task)
        pty.close()
    st = session.decoder.stats
    assert health.crc_errors == st.crc_errors >= 1
    assert health.layout_errors == 2
    assert health.frame_errors == st.errors + 2 >= 3
    assert "bad frames" in health.line() and f"bad frames {health.frame_errors}" in health.line()
