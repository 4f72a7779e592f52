"""The device emulator over a real pty and a real UDP socket: frames the core Decoder reads,
carrying the twin's values; commands answered; ground truth on LSL; the CLI."""

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
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator import BOOT_US, Emulator, EmulatorConfig
from imusic.firmware_bridge.emulator_links import UDP_MAX_DATAGRAM, _pack_frames

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


class SerialHost:
    """The host end of the emulated USB serial port: real pyserial on the pty path."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, baudrate=921600, timeout=0)
        self.decoder = P.Decoder()
        self.messages: list[tuple[float, int, object]] = []

    def send(self, msg: object) -> None:
        self.port.write(P.encode(msg, 0))

    def poll(self) -> list[object]:
        data = self.port.read(1 << 16)
        now = time.monotonic()
        got = [m for _, m in self.decoder.feed(data)] if data else []
        self.messages.extend((now, 0, m) for m in got)
        return got

    async def until(self, predicate, timeout: float = 5.0) -> object:
        """Poll until a message satisfies ``predicate``; return it (fails on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.poll():
                if predicate(m):
                    return m
            await asyncio.sleep(0.005)
        raise AssertionError(f"no matching message within {timeout} s")

    def of(self, cls: type) -> list:
        return [m for _, _, m in self.messages if isinstance(m, cls)]

    def close(self) -> None:
        self.port.close()


async def _drain(host: SerialHost, emu: Emulator, timeout: float) -> None:
    """Poll until the emulator is done and the host holds every frame it sent."""
    assert await _poll_until_done(host, emu, timeout)
    await _poll_until(host, lambda: len(host.of(P.Samples)) >= emu.stats.frames_sent -
                      emu.stats.frames_corrupted, 10)


async def _poll_until(host: SerialHost, condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        host.poll()
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def _poll_until_done(host: SerialHost, emu: Emulator, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        host.poll()
        if emu.done:
            return True
        await asyncio.sleep(0.01)
    return False


def _twin_reference(rate: int, seconds: float, seed: int):
    """The twin's signals computed directly (not through the emulator) for comparison."""
    from imusic.hardware.motion import procedural
    from imusic.hardware.physics import simulate
    from imusic.hardware.sensors import DeviceClock

    motion = procedural(seconds, fps=60.0, seed=seed)
    return simulate(motion, "imusic11", rate_hz=rate, seed=seed, errors=False,
                    clock=DeviceClock(offset_us=BOOT_US))


async def test_serial_pty_streams_the_twin_within_quantisation() -> None:
    cfg = EmulatorConfig(transport="serial", rate_hz=100, seconds=2.0, seed=3, errors=False,
                         neutral_s=0.0)
    async with Emulator(cfg) as emu:
        assert Path(emu.serial_path).resolve() == Path(emu.link_info["pty"])
        host = SerialHost(emu.serial_path)
        try:
            host.send(P.CmdGetInfo())
            info = await host.until(lambda m: isinstance(m, P.DeviceInfo))
            assert (info.rig_id, info.sensor_count, info.rate_hz) == ("imusic11", 12, 100)
            assert info.serial == emu.serial and info.has_mag
            t_start = time.monotonic()
            host.send(P.CmdStart())
            ack = await host.until(lambda m: isinstance(m, P.Ack))
            assert ack.command == P.T_START and ack.ok
            assert await _poll_until_done(host, emu, 10)
            t_done = time.monotonic()
            await _drain(host, emu, 10)
        finally:
            host.close()
    samples = host.of(P.Samples)
    assert host.decoder.stats.errors == 0 and host.decoder.stats.lost_instants == 0
    assert len(samples) == emu.stats.frames_sent > 0
    assert all(s.n_instants == info.instants_per_frame for s in samples[:-1])
    acc = np.concatenate([s.acc for s in samples]) * info.accel_scale
    gyro = np.concatenate([s.gyro for s in samples]) * info.gyro_scale
    mag = np.concatenate([s.mag for s in samples]) * info.mag_scale
    t_us = np.concatenate([s.t_us for s in samples])

    ref = _twin_reference(100, 2.0, 3)
    n = len(acc)
    assert n == len(ref.t[ref.t < 2.0 - 1e-9])
    for got, want, scale in ((acc, ref.acc, info.accel_scale), (gyro, ref.gyro, info.gyro_scale),
                             (mag, ref.mag, info.mag_scale)):
        assert np.max(np.abs(got - want[:n])) <= scale * 0.5 + 1e-9
    # device time: the twin's clock, shifted by the wait between boot and START
    assert np.all(np.diff(t_us) == 10_000)
    assert BOOT_US <= t_us[0] < BOOT_US + 2_000_000
    # real-time pacing: 2 s of motion took 2 s to stream, not a burst (and not far longer)
    assert 1.95 <= t_done - t_start <= 6.0


async def test_commands_are_answered_and_stop_start_set_rate_work() -> None:
    cfg = EmulatorConfig(transport="serial", rate_hz=100, seconds=30.0, seed=4)
    async with Emulator(cfg) as emu:
        host = SerialHost(emu.serial_path)
        try:
            host.send(P.CmdIdentify(2))
            ack = await host.until(lambda m: isinstance(m, P.Ack))
            assert (ack.command, ack.result) == (P.T_IDENTIFY, P.ACK_OK)
            host.send(P.CmdSetRate(1000))
            ack = await host.until(lambda m: isinstance(m, P.Ack))
            assert (ack.command, ack.result) == (P.T_SET_RATE, P.ACK_BAD_ARGUMENT)
            host.send(P.CmdStart())
            await host.until(lambda m: isinstance(m, P.Samples))
            host.send(P.CmdStop())
            await host.until(lambda m: isinstance(m, P.Ack) and m.command == P.T_STOP)
            last_seq = max(int(s.seqs[-1]) for s in host.of(P.Samples))
            n_before = len(host.of(P.Samples))
            t_end = time.monotonic() + 0.3
            while time.monotonic() < t_end:  # stopped: nothing more may arrive
                host.poll()
                await asyncio.sleep(0.02)
            assert len(host.of(P.Samples)) == n_before
            assert not emu.streaming

            host.send(P.CmdSetRate(50))
            ack = await host.until(lambda m: isinstance(m, P.Ack))
            assert (ack.command, ack.result) == (P.T_SET_RATE, P.ACK_OK)
            host.send(P.CmdStart())
            info = await host.until(lambda m: isinstance(m, P.DeviceInfo))
            assert info.rate_hz == 50
            first = await host.until(lambda m: isinstance(m, P.Samples))
            assert first.seq == last_seq + 1  # seq counts sent instants: no false gap
            await host.until(lambda m: isinstance(m, P.Samples) and m.seq >= last_seq + 10)
            status = await host.until(lambda m: isinstance(m, P.Status), timeout=3)
            assert 0 < status.battery_pct <= 100 and 3000 < status.battery_mv < 4300
        finally:
            host.close()
    later = [s for s in host.of(P.Samples) if s.seq > last_seq]
    dts = np.diff(np.concatenate([s.t_us for s in later]))
    assert np.all(np.abs(dts - 20_000) <= 1), "50 Hz after SET_RATE 50"
    assert host.decoder.stats.lost_instants == 0


async def test_garbage_commands_do_not_hurt_the_device() -> None:
    rng = np.random.default_rng(7)
    cfg = EmulatorConfig(transport="serial", rate_hz=50, seconds=30.0, seed=5)
    async with Emulator(cfg) as emu:
        host = SerialHost(emu.serial_path)
        try:
            for _ in range(20):
                host.port.write(rng.integers(0, 256, int(rng.integers(1, 300)),
                                             dtype=np.uint8).tobytes())
            host.port.write(P.encode(P.Ack(1, 0), 0))  # a device message sent to the device
            ack = await host.until(lambda m: isinstance(m, P.Ack))
            assert ack.result == P.ACK_UNKNOWN_COMMAND
            host.port.write(P.encode(P.CmdGetInfo(), emu.device_id + 1))  # not for us
            host.send(P.CmdGetInfo())
            info = await host.until(lambda m: isinstance(m, P.DeviceInfo))
            assert info.serial == emu.serial
        finally:
            host.close()


def _udp_host() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _recv_all(sock: socket.socket, emu: Emulator, timeout: float
                    ) -> list[tuple[float, bytes, tuple]]:
    out = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    while time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65536)
            out.append((time.monotonic(), data, addr))
            continue
        except BlockingIOError:
            pass
        if emu.done:
            quiet_until = quiet_until or time.monotonic() + 0.2
            if time.monotonic() > quiet_until:
                break
        await asyncio.sleep(0.005)
    return out


async def test_udp_datagrams_carry_whole_frames_with_the_twin_values() -> None:
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), rate_hz=200,
                             seconds=1.5, seed=6, instants_per_frame=4)
        async with Emulator(cfg) as emu:
            assert emu.autostart
            grams = await _recv_all(sock, emu, 10)
            # commands travel back to the device's source address
            sock.sendto(P.encode(P.CmdIdentify(1), 0), emu.udp_local)
            ack = None
            deadline = time.monotonic() + 3
            while ack is None and time.monotonic() < deadline:
                try:
                    got = P.Decoder().feed(sock.recvfrom(65536)[0])
                    ack = next((m for _, m in got if isinstance(m, P.Ack)), None)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            assert ack is not None and ack.command == P.T_IDENTIFY
    finally:
        sock.close()
    assert grams and all(addr == emu.udp_local for _, _, addr in grams)
    samples, dev_ids = [], set()
    for _, data, _ in grams:
        assert len(data) <= UDP_MAX_DATAGRAM
        dec = P.Decoder()  # a fresh decoder per datagram: each starts on a frame boundary
        got = dec.feed(data)
        assert got and dec.stats.errors == 0 and dec.buffered == 0
        for dev, m in got:
            dev_ids.add(dev)
            if isinstance(m, P.Samples):
                samples.append(m)
    assert dev_ids == {emu.device_id}
    truth = emu.truth()
    assert len(samples) == emu.stats.frames_sent
    assert np.array_equal(np.concatenate([s.acc for s in samples]), truth.counts["acc"])
    assert np.array_equal(np.concatenate([s.gyro for s in samples]), truth.counts["gyro"])
    assert np.array_equal(np.concatenate([s.t_us for s in samples]), truth.device_us)
    assert np.array_equal(np.concatenate([s.seqs for s in samples]), truth.seq)
    assert len(truth.seq) == 300


async def test_device_clock_drift_is_in_the_timestamps() -> None:
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), rate_hz=100,
                             seconds=1.0, seed=8, drift_ppm=2000.0, jitter_us=0.0)
        async with Emulator(cfg) as emu:
            await _recv_all(sock, emu, 10)
    finally:
        sock.close()
    truth = emu.truth()
    # device ticks are nominal (10 ms) while true instants of a fast clock come early
    assert np.all(np.diff(truth.device_us) == 10_000)
    slope = np.polyfit(truth.t, truth.device_us, 1)[0]
    assert slope == pytest.approx(1e6 * (1 + 2000e-6), rel=1e-7)


async def test_publish_truth_lsl_stream(unique_name: str) -> None:
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), rate_hz=100,
                             seconds=2.0, seed=9, publish_truth=True, truth_name=unique_name)
        async with Emulator(cfg) as emu:
            found = await asyncio.to_thread(pylsl.resolve_byprop, "name", unique_name, 1, 10)
            assert found, "the truth stream was not found on LSL"
            inlet = pylsl.StreamInlet(found[0], max_buflen=30)
            info = await asyncio.to_thread(inlet.info, 5)
            inlet.open_stream(5)
            rows, stamps = [], []
            recv = asyncio.create_task(_recv_all(sock, emu, 10))
            while not recv.done() or inlet.samples_available():
                d, t = await asyncio.to_thread(inlet.pull_chunk, 0.2)
                rows.extend(d)
                stamps.extend(t)
            await recv
            inlet.close_stream()
    finally:
        sock.close()
    assert info.type() == "Blendshapes" and info.channel_count() == 61
    assert info.channel_format() == pylsl.cf_float32
    assert info.desc().child_value("source") == "twin"
    ch = info.desc().child("channels").child("channel")
    assert ch.child_value("label") == "eyeBlinkLeft"
    truth = emu.truth()
    assert len(rows) >= 60
    rows, stamps = np.asarray(rows, np.float32), np.asarray(stamps)
    # what arrived is the tail of what was published (the inlet joined after it began)
    k = len(rows)
    assert np.array_equal(rows, truth.blendshapes[-k:])
    assert np.allclose(stamps, truth.blendshape_lsl[-k:], atol=1e-6)
    # stamps are on local_clock, 60 Hz apart, aligned with when the samples went out
    assert np.allclose(np.diff(stamps), 1 / 60, atol=1e-6)
    assert abs(stamps[-1] - pylsl.local_clock()) < 2.0


async def test_motion_from_a_real_live_link_face_take(shared_data: Path) -> None:
    take = sorted((shared_data / "arkit").rglob("*.csv"))[0]
    from imusic.capture.livelink_csv import read_take

    real = read_take(take)
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), rate_hz=100,
                             seconds=1.0, seed=1, motion=str(take), neutral_s=0.0)
        async with Emulator(cfg) as emu:
            await _recv_all(sock, emu, 10)
    finally:
        sock.close()
    truth = emu.truth()
    n = len(truth.blendshapes)
    assert abs(n - real.fps * 1.0) <= 2  # the take's own frames, at its own rate
    want = real.values[:n, :52]
    ok = np.all(np.isfinite(want), axis=1)
    assert np.allclose(truth.blendshapes[ok, :52], want[ok], atol=1e-6)
    assert emu.stats.instants == 100


async def test_bad_motion_path_is_a_clear_error(tmp_path: Path) -> None:
    emu = Emulator(EmulatorConfig(transport="udp", motion=str(tmp_path / "nope.csv")))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        await emu.start()
    await emu.close()
    with pytest.raises(ValueError, match="rate"):
        Emulator(EmulatorConfig(rate_hz=5))


async def test_cli_emulate_over_udp_as_a_subprocess() -> None:
    sock = _udp_host()
    port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imusic", "emulate", "--transport", "udp", "--udp",
        f"127.0.0.1:{port}", "--seconds", "1", "--rate", "100", "--seed", "2",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    dec = P.Decoder()
    msgs = []
    try:
        deadline = time.monotonic() + 30
        while proc.returncode is None and time.monotonic() < deadline:
            try:
                msgs += dec.feed(sock.recvfrom(65536)[0])
            except BlockingIOError:
                await asyncio.sleep(0.01)
                with_rc = proc.returncode
                if with_rc is None:
                    try:
                        await asyncio.wait_for(proc.wait(), 0.01)
                    except asyncio.TimeoutError:
                        pass
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        sock.close()
    assert proc.returncode == 0, err.decode()
    ready = [ln for ln in out.decode().splitlines() if ln.startswith("ready ")]
    info = json.loads(ready[0][6:])
    assert info["transport"] == "udp" and info["target"] == f"127.0.0.1:{port}"
    samples = [m for _, m in msgs if isinstance(m, P.Samples)]
    assert sum(s.n_instants for s in samples) == 100
    assert {d for d, _ in msgs} == {info["device_id"]}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=700), min_size=1, max_size=20),
       st.integers(min_value=64, max_value=1500))
def test_udp_packing_never_cuts_a_frame(bodies: list[bytes], limit: int) -> None:
    from cobs import cobs

    frames = [b"\x00" + cobs.encode(b) + b"\x00" for b in bodies]
    grams = _pack_frames(b"".join(frames), limit)
    parts = [p for g in grams for p in g.split(b"\x00") if p]
    assert [cobs.decode(p) for p in parts] == bodies
    for g in grams:
        assert len(g) <= limit or g.count(b"\x00") == 2  # an oversized frame goes alone


async def test_unbounded_run_is_simulated_in_chunks_with_continuous_seq_and_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import imusic.firmware_bridge.emulator_twin as emulator_twin

    monkeypatch.setattr(emulator_twin, "CHUNK_SECONDS", 0.4)
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), rate_hz=100,
                             seconds=None, seed=16)
        async with Emulator(cfg) as emu:
            dec, samples = P.Decoder(), []
            deadline = time.monotonic() + 15
            while sum(s.n_instants for s in samples) < 150 and time.monotonic() < deadline:
                try:
                    samples += [m for _, m in dec.feed(sock.recvfrom(65536)[0])
                                if isinstance(m, P.Samples)]
                except BlockingIOError:
                    await asyncio.sleep(0.005)
            assert emu._twin.k >= 4, "several chunks were simulated"
            assert not emu.done
    finally:
        sock.close()
    t_us = np.concatenate([s.t_us for s in samples])
    assert len(t_us) >= 150
    assert np.all(np.diff(t_us) == 10_000), "device time ticks on across chunk seams"
    assert dec.stats.lost_instants == 0 and dec.stats.errors == 0


async def test_a_tap_in_the_motion_becomes_an_event_at_its_device_time() -> None:
    from imusic.hardware.motion import Motion, MotionEvent

    motion = Motion.still(1.5)
    motion.events.append(MotionEvent("tap", 0.5, 0.52))
    sock = _udp_host()
    try:
        cfg = EmulatorConfig(transport="udp", udp_target=sock.getsockname(), rate_hz=100,
                             seconds=1.2, seed=17, motion=motion)
        async with Emulator(cfg) as emu:
            grams = await _recv_all(sock, emu, 10)
    finally:
        sock.close()
    dec = P.Decoder()
    msgs = [m for _, data, _ in grams for _, m in dec.feed(data)]
    taps = [m for m in msgs if isinstance(m, P.Event) and m.kind == P.EVENT_TAP]
    assert len(taps) == 1 and emu.taps_sent == [taps[0].t_us]
    truth = emu.truth()
    k = int(np.argmin(np.abs(truth.t - 0.5)))
    assert abs(taps[0].t_us - truth.device_us[k]) <= 5_000  # within half a sample period


def test_run_in_thread_for_synchronous_callers() -> None:
    cfg = EmulatorConfig(transport="serial", rate_hz=50, seconds=1.0, seed=18)
    with Emulator.run_in_thread(cfg) as emu:
        port = serial.Serial(emu.link_info["path"], timeout=0.2)
        try:
            port.write(P.encode(P.CmdStart(), 0))
            dec, samples = P.Decoder(), []
            deadline = time.monotonic() + 10
            while sum(s.n_instants for s in samples) < 50 and time.monotonic() < deadline:
                samples += [m for _, m in dec.feed(port.read(4096)) if isinstance(m, P.Samples)]
            assert emu.wait_done(5)
        finally:
            port.close()
    assert sum(s.n_instants for s in samples) == 50
    assert not emu.running


def test_chunk_seams_match_a_simulation_of_the_whole_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run is simulated a chunk at a time; across the seams the signals must equal one
    simulation of the whole motion (within one count), and the sample grid must run on."""
    import imusic.firmware_bridge.emulator_twin as emulator_twin

    monkeypatch.setattr(emulator_twin, "CHUNK_SECONDS", 0.5)
    src = emulator_twin.TwinSource(EmulatorConfig(seconds=1.6, seed=3, errors=False,
                                                  rate_hz=100, neutral_s=0.0), 100)
    chunks = []
    while (chunk := src.next_chunk()) is not None:
        chunks.append(chunk)
    assert len(chunks) == 4
    t = np.concatenate([c.t for c in chunks])
    ref = _twin_reference(100, 1.6, 3)
    n = len(t)
    assert n == 160 and np.allclose(t, ref.t[:n], atol=1e-12)
    assert np.all(np.diff(np.concatenate([c.stamp_us for c in chunks])) == 10_000)
    for q in ("acc", "gyro", "mag"):
        got = np.concatenate([getattr(c, q) for c in chunks]) * src.scales[q]
        assert np.max(np.abs(got - getattr(ref, q)[:n])) <= src.scales[q] * 1.01, q
    truth_t = np.concatenate([c.truth_t for c in chunks])
    assert len(truth_t) == 96 and np.allclose(np.diff(truth_t), 1 / 60)


@pytest.mark.parametrize("seconds", [6.0, None])
def test_a_run_starts_with_a_still_neutral_face_as_a_take_does(seconds) -> None:
    """``EmulatorConfig.neutral_s``: the face is neutral and the head still for the first
    seconds of a procedural run, bounded or not (the model calibrates there), then moves."""
    import imusic.firmware_bridge.emulator_twin as emulator_twin

    cfg = EmulatorConfig(seconds=seconds, seed=7, errors=False, rate_hz=100)
    src = emulator_twin.TwinSource(cfg, 100)
    chunks = [src.next_chunk()]   # the first chunk (30 s unbounded) holds the start
    t = np.concatenate([c.t for c in chunks])
    gyro = np.concatenate([c.gyro for c in chunks]) * src.scales["gyro"]
    truth_t = np.concatenate([c.truth_t for c in chunks])
    truth = np.concatenate([c.truth for c in chunks])
    still, moving = t < cfg.neutral_s, t > cfg.neutral_s + 1.0
    assert still.sum() >= 0.9 * cfg.neutral_s * 100 and moving.any()
    assert np.max(np.abs(gyro[still])) <= 2 * src.scales["gyro"]      # quantisation only
    assert np.max(np.abs(gyro[moving])) > 0.05
    assert np.all(truth[truth_t < cfg.neutral_s, :52] == 0)
    assert np.max(truth[truth_t > cfg.neutral_s + 1.0, :52]) > 0.1
