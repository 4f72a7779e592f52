"""End to end with the twin: the device emulator on a real pty / UDP socket -> ``imusic
stream`` (its async body, in-process) -> a plain pylsl inlet. Values are the twin's (the exact
quantised counts), loss is counted, never filled, timestamps are right under drift and send
jitter, and streaming recovers after a disconnect and after a reboot."""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

import numpy as np
import pylsl
import pytest

from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.commands import stream as stream_cmd

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def unique_serial(unique_name: str) -> int:
    """A device serial no other test or parallel run uses (the LSL source_id derives from it)."""
    return (0x494D5553 << 32) | int(unique_name[-8:], 16)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stream_cmd.add_arguments(parser)
    return parser.parse_args(list(argv) + ["--quiet"])


class Inlet:
    """A plain pylsl inlet pulling in a thread until stopped."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.rows: list[np.ndarray] = []
        self.ts: list[float] = []
        self.info: pylsl.StreamInfo | None = None
        self.stop = False

    def run(self) -> None:
        found = pylsl.resolve_byprop("source_id", self.source_id, 1, 30)
        assert found, f"no LSL stream {self.source_id}"
        inlet = pylsl.StreamInlet(found[0], max_buflen=120, recover=True)
        self.info = inlet.info(timeout=5)
        while not self.stop:
            d, t = inlet.pull_chunk(timeout=0.2)
            if d:
                self.rows.append(np.asarray(d))
                self.ts.extend(t)
        while True:  # drain
            d, t = inlet.pull_chunk(timeout=0.5)
            if not d:
                break
            self.rows.append(np.asarray(d))
            self.ts.extend(t)
        inlet.close_stream()

    @property
    def n(self) -> int:
        return sum(len(r) for r in self.rows)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.rows), np.asarray(self.ts)


async def _stream_with(cfg: EmulatorConfig, link_args, unique_name: str, until):
    """Run emulator + stream + inlet until ``until(emu, inlet)`` is true; returns them."""
    stop = asyncio.Event()
    async with Emulator(cfg) as emu:
        args = _args(*link_args(emu), "--name", unique_name, "--silence", "0.5")
        task = asyncio.create_task(stream_cmd.stream(args, stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            deadline = time.monotonic() + 60
            while not until(emu, inlet) and time.monotonic() < deadline:
                assert not task.done(), task.result()
                await asyncio.sleep(0.1)
            assert until(emu, inlet), "condition not reached in 60 s"
        finally:
            await asyncio.sleep(0.3)
            stop.set()
            code = await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    assert code == 0
    return emu, inlet


def _check_values(emu: Emulator, rows: np.ndarray) -> np.ndarray:
    """Rows must carry exactly the twin's quantised values for their seq; returns seq."""
    log = emu.truth()
    seq = rows[:, -1].astype(np.int64)
    s = emu.info.sensor_count
    idx = np.searchsorted(log.seq, seq)
    assert np.array_equal(log.seq[idx], seq)
    got = rows[:, :-2].reshape(len(rows), s, 9)
    i = emu.info
    # The exact counts come back (scale as DEVICE_INFO sends it, float32) ...
    for q, sl, scale in (("acc", slice(0, 3), i.accel_scale), ("gyro", slice(3, 6), i.gyro_scale),
                         ("mag", slice(6, 9), i.mag_scale)):
        assert np.array_equal(np.rint(got[:, :, sl] / scale), log.counts[q][idx]), q
        # ... and the SI values equal the twin's within well under one LSB.
        assert np.allclose(got[:, :, sl], getattr(log, q)[idx], rtol=1e-6, atol=1e-3 * scale), q
    assert np.array_equal(rows[:, -2], log.device_us[idx])
    return seq


async def test_serial_twin_values_loss_and_drift(unique_name: str) -> None:
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="serial", rig="imusic11", rate_hz=100,
        seconds=None, seed=3, loss=0.1, drift_ppm=100.0, errors=True)
    emu, inlet = await _stream_with(
        cfg, lambda e: ("--serial", e.serial_path, "--rig", "imusic11"), unique_name,
        lambda e, i: i.n >= 500)
    rows, ts = inlet.arrays()
    seq = _check_values(emu, rows)
    log = emu.truth()
    window = (log.seq >= seq[0]) & (log.seq <= seq[-1])
    assert np.array_equal(np.sort(seq), log.seq[window & log.sent])   # every sent one, only those
    assert (log.lost & window).sum() > 0                              # and loss was injected
    from imusic.hardware.rig import load_rig

    rig = load_rig("imusic11")
    ch = inlet.info.desc().child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels[0] == f"{rig.site_names[0]}.acc.x" and len(labels) == 12 * 9 + 2
    assert labels[9 * 11 + 6] == f"{rig.site_names[11]}.mag.x"
    desc_rig = inlet.info.desc().child("rig")
    assert desc_rig.child_value("id") == "imusic11"
    assert desc_rig.child_value("reference") == rig.reference


CLOCK_RMS_BOUND_S = 1.0e-3
"""Timestamp error bound (RMS beyond the link's latency floor) that holds on a loaded machine."""


async def test_timestamps_100ppm_drift_8ms_send_jitter(unique_name: str) -> None:
    """100 ppm drift, arrivals jittered by +-4 ms (frames leave 0..8 ms late): per-sample
    timestamp error after 10 s under ``CLOCK_RMS_BOUND_S``. On a quiet machine it is 0.13-0.30
    ms (the README's figure); on a loaded one the reader's wake-up latency varies too, which no
    fit of arrival times can see (0.52 ms measured with the load average near 10), so the bound
    is 1 ms: far below what a broken fit gives (the UDP burst bug read 65-137 ms).

    The error is measured against the true sampling instants, less the link's latency floor
    (the least delay any frame had: pty, event loop and reader wake-up), which no receiver can
    see from arrival times; both numbers are printed. The session is driven directly (with an
    LSL outlet and a plain inlet) so that the test can see frame arrivals."""
    from imusic.firmware_bridge.device import DeviceSession, SessionConfig
    from imusic.firmware_bridge.transports.serial import SerialTransport

    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="serial", rig="imusic6", rate_hz=100,
        seconds=None, seed=4, drift_ppm=100.0, send_jitter_ms=8.0, publish_truth=True,
        truth_name=unique_name + "-truth", instants_per_frame=2)
    arrivals: list[tuple[int, int, float]] = []
    stop = asyncio.Event()
    async with Emulator(cfg) as emu:
        session = DeviceSession(lambda: SerialTransport(emu.serial_path),
                                SessionConfig(name=unique_name),
                                on_arrival=lambda q, t, a: arrivals.append((q, t, a)))
        task = asyncio.create_task(session.run(stop))
        inlet = Inlet(f"{emu.serial:016x}")
        pull = asyncio.create_task(asyncio.to_thread(inlet.run))
        try:
            deadline = time.monotonic() + 60
            while not (len(inlet.ts) and inlet.ts[-1] - inlet.ts[0] > 12.5):
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
            inlet.stop = True
            await asyncio.wait_for(pull, 15)
    rows, ts = inlet.arrays()
    log = emu.truth()
    lsl_minus_t = np.median(log.blendshape_lsl - log.blendshape_t)
    seq = rows[:, -1].astype(np.int64)
    true_lsl = lsl_minus_t + log.t[np.searchsorted(log.seq, seq)]
    a = np.asarray(arrivals)
    t_frame = log.t[np.searchsorted(log.seq, a[:, 0].astype(np.int64))]
    delay = a[:, 2] - (lsl_minus_t + t_frame)
    floor = float(delay.min())
    t_s = log.t[np.searchsorted(log.seq, seq)]
    late = t_s > 10.0
    err = (ts - true_lsl)[late]
    rms_raw = float(np.sqrt(np.mean(err ** 2)))
    rms = float(np.sqrt(np.mean((err - floor) ** 2)))
    print(f"\nframe delay: floor {floor * 1e3:.3f} ms, median {np.median(delay) * 1e3:.3f} ms; "
          f"timestamp error after 10 s over {late.sum()} samples: RMS {rms * 1e3:.3f} ms beyond "
          f"the floor, {rms_raw * 1e3:.3f} ms raw; drift {session.clock.fit.drift_ppm:+.1f} ppm "
          f"(true {-100 / 1.0001:+.1f})")
    assert late.sum() > 200
    assert np.ptp(delay[delay < np.percentile(delay, 90)]) > 4e-3   # the jitter was there
    assert rms < CLOCK_RMS_BOUND_S


async def test_udp_dropout_recovery(unique_name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="udp", rig="imusic6", rate_hz=100,
        seconds=None, seed=5, udp_target=("127.0.0.1", port), disconnect_every=2.0,
        disconnect_for=1.0)
    emu, inlet = await _stream_with(
        cfg, lambda e: ("--udp", str(port), "--udp-host", "127.0.0.1"), unique_name,
        lambda e, i: e.stats.disconnects >= 2 and i.n > 0 and
        i.rows[-1][-1, -1] > 100 * 2 * 2.2)
    rows, _ = inlet.arrays()
    seq = _check_values(emu, rows)
    log = emu.truth()
    d = np.diff(seq)
    assert np.all(d >= 1)
    assert (d > 50).sum() >= 1           # the dropouts are gaps (about 100 instants each)...
    window = (log.seq >= seq[0]) & (log.seq <= seq[-1])
    assert len(seq) == (window & log.sent).sum()   # ...never filled, and nothing else missing


async def test_serial_disconnect_and_reboot_recovery(unique_name: str) -> None:
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="serial", rig="imusic6", rate_hz=100,
        seconds=None, seed=6, disconnect_every=1.5, disconnect_for=0.5, reboot_at=3.5)
    emu, inlet = await _stream_with(
        cfg, lambda e: ("--serial", e.serial_path), unique_name,
        lambda e, i: e.stats.reboots >= 1 and e.stats.disconnects >= 2 and i.n > 0
        and 0 < i.rows[-1][-1, -1] and _after_reboot(i) > 150)
    rows, ts = inlet.arrays()
    seq = rows[:, -1].astype(np.int64)
    restart = int(np.flatnonzero(np.diff(seq) < 0)[0]) + 1
    before, after = seq[:restart], seq[restart:]
    assert np.all(np.diff(before) > 0) and np.all(np.diff(after) > 0)
    log = emu.truth()
    boots = np.unique(log.boot_id)
    assert len(boots) == 2
    new = log.boot_id == log.boot_id[-1]
    # After the reboot: the new boot's values, and its device time restarted near 0.
    idx = np.searchsorted(log.seq[new], after)
    got = rows[restart:, :-2].reshape(len(after), emu.info.sensor_count, 9)
    assert np.array_equal(np.rint(got[:, :, 0:3] / emu.info.accel_scale), log.counts["acc"][new][idx])
    assert rows[restart, -2] < 2_000_000
    # Timestamps continue forward across the reboot (the clock map was refitted).
    assert ts[restart] > ts[restart - 1]
    assert np.all(np.abs(np.diff(ts[restart:]) - 0.01 * np.diff(after)) < 0.005)


def _after_reboot(inlet: Inlet) -> int:
    if not inlet.rows:
        return 0
    seq = np.concatenate(inlet.rows)[:, -1]
    back = np.flatnonzero(np.diff(seq) < 0)
    return 0 if len(back) == 0 else len(seq) - int(back[0]) - 1


async def test_corrupted_bytes_are_counted_and_never_published(unique_name: str, tmp_path) -> None:
    import json

    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="serial", rig="imusic6", rate_hz=100,
        seconds=None, seed=7, corrupt=0.0005)
    summary = tmp_path / "health.json"
    emu, inlet = await _stream_with(
        cfg, lambda e: ("--serial", e.serial_path, "--summary-json", str(summary)), unique_name,
        lambda e, i: i.n >= 400 and e.stats.frames_corrupted >= 3)
    rows, _ = inlet.arrays()
    seq = _check_values(emu, rows)                 # every published value is the twin's
    log = emu.truth()
    window = (log.seq >= seq[0]) & (log.seq <= seq[-1])
    assert np.array_equal(np.sort(seq), log.seq[window & log.sent])   # corrupted frames left out
    h = json.loads(summary.read_text())
    bad = h["decoder"]
    assert h["health"]["frame_errors"] >= emu.stats.frames_corrupted - 1 > 0
    assert bad["crc_errors"] + bad["cobs_errors"] + bad["truncated"] + bad["malformed"] > 0


async def test_rate_change_on_a_streaming_udp_device(unique_name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = EmulatorConfig(
        serial=unique_serial(unique_name), transport="udp", rig="imusic6", rate_hz=100,
        seconds=None, seed=8, udp_target=("127.0.0.1", port))          # streams from boot at 100 Hz
    emu, inlet = await _stream_with(
        cfg, lambda e: ("--udp", str(port), "--udp-host", "127.0.0.1", "--rate", "200"),
        unique_name, lambda e, i: i.n >= 400)
    rows, ts = inlet.arrays()
    assert inlet.info.nominal_srate() == 200 and emu.rate_hz == 200
    assert np.median(np.diff(rows[:, -2])) == 5000          # device time steps of 5 ms
    assert abs(np.median(np.diff(ts)) - 0.005) < 2e-4
    _check_values(emu, rows)


async def test_two_wearables_on_one_udp_port(unique_name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = unique_serial(unique_name)
    cfgs = [EmulatorConfig(serial=base ^ k, transport="udp", rig="imusic6",
                           rate_hz=100, seconds=None, seed=20 + k,
                           udp_target=("127.0.0.1", port), loss=0.05 * k)
            for k in range(2)]
    stop = asyncio.Event()
    async with Emulator(cfgs[0]) as emu_a, Emulator(cfgs[1]) as emu_b:
        assert emu_a.device_id != emu_b.device_id
        args = _args("--udp", str(port), "--udp-host", "127.0.0.1", "--all-devices",
                     "--name", unique_name)
        task = asyncio.create_task(stream_cmd.stream(args, stop))
        inlets = [Inlet(f"{e.serial:016x}") for e in (emu_a, emu_b)]
        pulls = [asyncio.create_task(asyncio.to_thread(i.run)) for i in inlets]
        try:
            deadline = time.monotonic() + 60
            while not all(i.n >= 300 for i in inlets):
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            code = await asyncio.wait_for(task, 15)
            for i in inlets:
                i.stop = True
            await asyncio.wait_for(asyncio.gather(*pulls), 15)
    assert code == 0
    for emu, inlet in zip((emu_a, emu_b), inlets):
        rows, _ = inlet.arrays()
        seq = _check_values(emu, rows)             # each stream carries its own device's data
        log = emu.truth()
        window = (log.seq >= seq[0]) & (log.seq <= seq[-1])
        assert np.array_equal(np.sort(seq), log.seq[window & log.sent])
        assert inlet.info.name() == f"{unique_name}-{emu.device_id:08x}"
