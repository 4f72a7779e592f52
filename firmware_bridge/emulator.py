"""The device emulator: a virtual imusic wearable that runs the digital twin and speaks the wire
protocol (hardware/PROTOCOL.md) on a real pseudo-terminal, a real UDP socket or an emulated BLE
peripheral, paced in real time, with fault injection. ``imusic emulate`` is its command line.

In-process use (tests, the demo, ``imusic stream`` end-to-end tests)::

    from firmware_bridge.emulator import Emulator, EmulatorConfig

    cfg = EmulatorConfig(transport="serial", rig="imusic11", rate_hz=100, seconds=5, seed=1)
    async with Emulator(cfg) as emu:        # link up, DEVICE_INFO sent, streaming task running
        emu.link_info                       # {"transport": "serial", "path": ".../tty", ...}
        emu.serial_path                     # serial: open this with pyserial
        emu.udp_local                       # udp: (host, port) the datagrams come from
        emu.ble_hci, emu.ble_address        # ble: BleTransport(emu.ble_address, hci=emu.ble_hci)
        emu.device_id, emu.serial, emu.boot_id, emu.info   # what DEVICE_INFO says
        await emu.wait_done(timeout=10)     # all ``seconds`` streamed (or emu.stop())
    log = emu.truth()                       # TruthLog: every instant generated, sent or not
    log.seq, log.device_us, log.t, log.acc / log.gyro / log.mag (SI, quantised), log.counts
    log.quat                                # orientation mode: the quaternions sent (Q14 -> float)
    log.sent, log.lost, log.corrupted       # per instant; log.blendshapes (twin truth, 61 ch)
    emu.stats                               # frames sent / lost / corrupted / tx_dropped ...

``report="orientation"`` (``imusic emulate --report orientation``) makes a device that fuses on
board (emulator_fusion.py) and sends acceleration + quaternion, plus gyro and mag unless
``gyro=False`` / ``mag=False`` (``--no-gyro`` / ``--no-mag``); the truth log then holds exactly
the blocks that went on the wire.

Serial and BLE devices wait for CMD_START (as the firmware does); UDP devices stream at boot
(``autostart``), like the paper's ESP32. The twin's timeline runs while streaming, so
``seconds`` is streamed motion time. From another thread: ``Emulator.run_in_thread(cfg)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.emulator_fusion import DeviceFusionConfig
from firmware_bridge.emulator_truth import TruthLog, truth_outlet
from firmware_bridge.emulator_twin import BOOT_US, CHUNK_SECONDS, TRUTH_FPS, TwinChunk, TwinSource

__all__ = ["BOOT_US", "CHUNK_SECONDS", "Emulator", "EmulatorConfig", "EmulatorStats",
           "ThreadedEmulator", "TruthLog", "ready_line"]

log = logging.getLogger(__name__)

FW_VERSION = (1, 0, 0)
"""Firmware version the emulator reports."""
STATUS_PERIOD_S = 1.0
"""STATUS about once a second."""
IN_LINK_MAX = 8192
"""Messages remembered as possibly still in the link (a pty holds at most 64 KiB pending plus
its 4 KiB input queue, and the smallest message is over 8 bytes)."""
REPORTS = ("raw", "orientation")
"""What a device reports: raw readings, or on-device orientation (quaternion) + acceleration."""


@dataclass
class EmulatorConfig:
    """What to emulate and which faults to inject (``imusic emulate --help`` for the flags)."""

    transport: str = "serial"
    """``serial`` (a new pty), ``udp`` (datagrams to ``udp_target``) or ``ble``."""
    rig: str = "imusic11"
    motion: Any = "procedural"
    """``procedural``, the path of a Live Link Face CSV take, or a ``hardware.motion.Motion``
    (in-process: e.g. a motion with a ``tap`` event, sent as EVENT tap)."""
    rate_hz: int = 100
    seconds: float | None = 10.0
    """Streamed motion time; None runs until stopped."""
    seed: int = 0
    report: str = "raw"
    """``raw`` (acc, gyro, mag) or ``orientation`` (on-device fusion: acc + quaternion)."""
    gyro: bool = True
    """Send the gyro block (False needs ``report="orientation"``; the fusion still uses it)."""
    mag: bool = True
    """The device has a magnetometer: send its block and fuse with it (False: 6-axis fusion)."""
    fusion: DeviceFusionConfig | None = None
    """The on-device AHRS settings in orientation mode (None: the defaults)."""
    udp_target: tuple[str, int] = ("127.0.0.1", 9000)
    instants_per_frame: int | None = None
    """Sample instants per SAMPLES frame (default: about 50 frames per second)."""
    drift_ppm: float = 0.0
    """Device crystal error: the device clock runs this much fast (negative: slow)."""
    clock_offset_us: float | None = None
    """Device time at the first sample (default BOOT_US: the device just booted)."""
    jitter_us: float = 0.0
    """Gaussian jitter of the device's own timestamps."""
    send_jitter_ms: float = 0.0
    """Each frame leaves up to this much late (uniform), as radios and USB bunch frames."""
    loss: float = 0.0
    """Fraction of SAMPLES frames dropped before sending (their instants are lost)."""
    corrupt: float = 0.0
    """Fraction of sent bytes flipped (each byte independently)."""
    disconnect_every: float | None = None
    """Seconds of streaming between link drops (see ``disconnect_for``)."""
    disconnect_for: float = 1.0
    """How long a serial/UDP link stays down (BLE: the host reconnects when it can)."""
    reboot_at: float | None = None
    """Streaming seconds at which the device reboots (new boot_id, seq and device time
    restart, DEVICE_INFO re-sent)."""
    publish_truth: bool = False
    """Publish the twin's ground truth as an LSL ``Blendshapes`` stream (desc/source twin)."""
    truth_name: str | None = None
    """Name of that stream (default ``imusic-twin-<device id>``)."""
    autostart: bool | None = None
    """Stream without waiting for CMD_START (default: True for UDP, False otherwise)."""
    serial: int | None = None
    """Device serial (default: drawn for this emulator from its pid and a random number, so
    that two emulators never share a stream name or source id; kept across its reboots)."""
    wall_seconds: float | None = None
    """Also stop once this much wall time has passed since streaming first began, even if a
    host stopped the stream (``imusic emulate --seconds``); None: streamed time only."""
    identity: int | None = None
    """Face model head shape 0..19 (None: generic head)."""
    errors: bool = True
    """Twin sensor error model (noise, bias, misalignment) on; False: ideal sensors."""
    keep_truth: bool = True
    """Keep every generated instant for ``truth()`` (turn off for long CLI runs)."""
    ble_max_chunk: int | None = None
    """BLE: cut notifications smaller than the MTU allows (tests of reassembly)."""
    ble_cut: Callable[[int], int] | None = None
    """BLE: choose each notification's size (tests)."""
    linger: float = 0.5
    """Seconds the link stays up after the last frame (so the host reads the tail)."""


@dataclass
class EmulatorStats:
    """Counters of what the emulator did."""

    frames: int = 0
    instants: int = 0
    frames_sent: int = 0
    frames_lost: int = 0
    frames_corrupted: int = 0
    bytes_flipped: int = 0
    tx_dropped: int = 0
    status_sent: int = 0
    events_sent: int = 0
    commands: int = 0
    disconnects: int = 0
    reboots: int = 0
    truth_frames: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counters as a dict."""
        return dict(self.__dict__)


class Emulator:
    """A virtual wearable. ``async with Emulator(cfg) as emu`` brings the link up and starts
    streaming in the background; ``await emu.run()`` does the same in the foreground until
    ``seconds`` are streamed (or ``stop()``). See the module docstring."""

    def __init__(self, config: EmulatorConfig) -> None:
        cfg = self.config = config
        if cfg.transport not in ("serial", "udp", "ble"):
            raise ValueError(f"transport must be serial, udp or ble, not {cfg.transport!r}")
        if not P.RATE_MIN_HZ <= cfg.rate_hz <= P.RATE_MAX_HZ:
            raise ValueError(f"rate {cfg.rate_hz} Hz is outside {P.RATE_MIN_HZ}..{P.RATE_MAX_HZ}")
        for name in ("loss", "corrupt"):
            v = getattr(cfg, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"--{name} is a fraction in [0, 1), got {v}")
        if cfg.report not in REPORTS:
            raise ValueError(f"--report is raw or orientation, not {cfg.report!r}")
        if not cfg.gyro and cfg.report != "orientation":
            raise ValueError("--no-gyro needs --report orientation: a raw device must send its "
                             "gyroscope (the host's orientation filter runs on it)")
        self.flags = ((P.FLAG_MAG if cfg.mag else 0)
                      | (P.FLAG_QUAT if cfg.report == "orientation" else 0)
                      | (0 if cfg.gyro else P.FLAG_NO_GYRO))
        """The DEVICE_INFO / SAMPLES flags: which blocks each sensor sends."""
        self.serial = int(cfg.serial if cfg.serial is not None else
                          (0x494D5553 << 32) | _unique_low32())
        self.device_id = self.serial & 0xFFFFFFFF
        self.name = f"imusic-wearable-{self.device_id & 0xFFFF:04x}"
        self.stats = EmulatorStats()
        self.autostart = cfg.autostart if cfg.autostart is not None else cfg.transport == "udp"
        self._rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xE1]))
        self.rate_hz = int(cfg.rate_hz)
        self._pending_rate = self.rate_hz
        self.boot_id = 0
        self.link: Any = None
        self._twin: TwinSource | None = None
        self._chunk: TwinChunk | None = None
        self._next_chunk: asyncio.Future | None = None
        self._i = 0                      # next instant in the current chunk
        self._seq = 0
        self._adj_us = 0.0               # device time added by pauses and reboots
        self._anchor = 0.0               # monotonic time of true time 0
        self._streaming = False
        self._start_event = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cmd_task: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None
        self._booted_mono = 0.0
        self._pause_mono: float | None = None
        self._t_now = 0.0                # true time of the last instant sent
        self._next_disconnect: float | None = cfg.disconnect_every
        self._rebooted = False
        self._first_start: float | None = None   # monotonic time streaming first began
        self._truth_i = 0
        self._tap_i = 0
        self.taps_sent: list[int] = []
        """Device times (us) of the EVENT taps sent."""
        self._outlet: Any = None
        self._lsl_minus_mono = 0.0
        self._log: list[dict[str, Any]] = []
        self._truth_log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._tx_dropped = 0
        self._in_link: deque[tuple[int, bool, dict | None]] = deque(maxlen=IN_LINK_MAX)
        """(bytes, is SAMPLES, its truth record or None) of each message the link took, newest last:
        those the host had not read when a pull closed the link are marked lost."""
        self.info: P.DeviceInfo | None = None

    # ---- properties for hosts and tests ------------------------------------------------------

    @property
    def link_info(self) -> dict[str, Any]:
        """What a host needs to reach the device (path / address / HCI spec) and who it is."""
        d = dict(self.link.describe()) if self.link is not None else {}
        d.update(device_id=self.device_id, serial=f"{self.serial:016x}", name=self.name,
                 rig=self.config.rig, rate_hz=self.rate_hz)
        return d

    @property
    def serial_path(self) -> str:
        """Serial: the port path to open (a stable symlink to the current pty)."""
        return self.link.path

    @property
    def udp_local(self) -> tuple[str, int]:
        """UDP: the address the device sends from (and takes commands on)."""
        return tuple(self.link.local_address)

    @property
    def ble_hci(self) -> str:
        """BLE: the bumble HCI spec a host uses (``BleTransport(hci=...)``, IMUSIC_BLE_HCI)."""
        return self.link.peripheral.hci_spec

    @property
    def ble_address(self) -> str:
        """BLE: the peripheral's address."""
        return self.link.peripheral.address

    @property
    def streaming(self) -> bool:
        """Whether SAMPLES are being sent now."""
        return self._streaming

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the twin, bring the link up and boot (DEVICE_INFO, EVENT booted)."""
        cfg = self.config
        if cfg.transport == "serial":
            from firmware_bridge.emulator_links import PtyLink
            self.link = PtyLink()
        elif cfg.transport == "udp":
            from firmware_bridge.emulator_links import UdpLink
            self.link = UdpLink(cfg.udp_target)
        else:
            from firmware_bridge.emulator_links import BleLink
            self.link = BleLink(self.name, max_chunk=cfg.ble_max_chunk, cut=cfg.ble_cut)
        self._twin = TwinSource(cfg, self.rate_hz)
        self._chunk = await asyncio.to_thread(self._twin.next_chunk)
        if self._chunk is None:
            raise ValueError(f"--seconds {cfg.seconds}: nothing to stream")
        self._prefetch()
        await self.link.start()
        if cfg.publish_truth:
            self._open_truth_outlet()
        await self._boot(first=True)
        self._cmd_task = asyncio.get_running_loop().create_task(self._commands())
        self._status_task = asyncio.get_running_loop().create_task(self._status_loop())

    def _prefetch(self) -> None:
        if self._twin is not None and (self.config.seconds is None or
                                       self._twin.t_done < self.config.seconds):
            self._next_chunk = asyncio.ensure_future(asyncio.to_thread(self._twin.next_chunk))
        else:
            self._next_chunk = None

    async def run(self) -> None:
        """Start (if needed) and stream until ``seconds`` are done or ``stop()``; then close."""
        if self.link is None:
            await self.start()
        try:
            await self._stream()
            if not self._stop_requested.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), self.config.linger)
        finally:
            await self.close()

    async def __aenter__(self) -> "Emulator":
        await self.start()
        self._task = asyncio.get_running_loop().create_task(self._stream())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        await self.close()

    async def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until all ``seconds`` were streamed (True) or ``timeout`` passed (False)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout)
        return self._done.is_set()

    async def stop(self) -> None:
        """Stop streaming (the link stays until ``close``)."""
        self._stop_requested.set()
        self._start_event.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def close(self) -> None:
        """Stop everything and close the link and the truth outlet; never raises."""
        self._stop_requested.set()
        self._start_event.set()
        for task in (self._cmd_task, self._status_task, self._next_chunk):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._cmd_task = self._status_task = self._next_chunk = None
        if self.link is not None:
            with contextlib.suppress(Exception):
                await self.link.close()
        self._outlet = None

    @classmethod
    def run_in_thread(cls, config: EmulatorConfig) -> "ThreadedEmulator":
        """An emulator on its own event loop in a daemon thread (for synchronous callers)."""
        return ThreadedEmulator(config)

    # ---- the device ----------------------------------------------------------------------------

    def _device_info(self) -> P.DeviceInfo:
        twin = self._twin
        assert twin is not None
        ipf = self.config.instants_per_frame or max(1, round(self.rate_hz / 50))
        per_instant = P.sample_dtype(twin.rig.n_sites, self.flags).itemsize
        fit = (P.MAX_PACKET - P.MIN_PACKET - 15) // per_instant
        ipf = int(max(1, min(ipf, fit, P.MAX_INSTANTS)))
        gyro, mag = self.config.gyro, self.config.mag   # absent blocks: scale and range 0
        return P.DeviceInfo(
            fw_version=FW_VERSION, serial=self.serial, boot_id=self.boot_id,
            rate_hz=self.rate_hz, sensor_count=twin.rig.n_sites, flags=self.flags,
            accel_scale=twin.scales["acc"], gyro_scale=twin.scales["gyro"] if gyro else 0.0,
            mag_scale=twin.scales["mag"] if mag else 0.0, accel_range=twin.ranges["acc"],
            gyro_range=twin.ranges["gyro"] if gyro else 0.0,
            mag_range=twin.ranges["mag"] if mag else 0.0,
            instants_per_frame=ipf, rig_id=twin.rig.id, name=self.name)

    def device_us_now(self) -> int:
        """The device clock now (us since boot)."""
        now = time.monotonic()
        drift = 1.0 + self.config.drift_ppm * 1e-6
        twin = self._twin
        base = twin.base_offset_us if twin is not None else 0.0
        if self._streaming:
            t = now - self._anchor
            return int(base + t * 1e6 * drift + self._adj_us)
        paused = now - (self._pause_mono if self._pause_mono is not None else now)
        return int(base + self._t_now * 1e6 * drift + self._adj_us + paused * 1e6 * drift)

    async def _send(self, msg: Any) -> bool:
        data = P.encode(msg, self.device_id)
        ok = await self.link.send(data)
        if ok:
            self._in_link.append((len(data), False, None))
        else:
            self._tx_dropped += 1
        return ok

    def _lost_in_link(self, unread: int) -> None:
        """The last ``unread`` bytes the link took never reached the host (a pulled cable
        discards what is in flight): their SAMPLES frames count as tx_dropped, not sent."""
        while unread > 0 and self._in_link:
            n, frame, rec = self._in_link.pop()
            unread -= n
            self._tx_dropped += 1
            if frame:
                self.stats.frames_sent -= 1
                self.stats.tx_dropped += 1
            if rec is not None:
                rec["sent"], rec["tx_dropped"] = False, True
        self._in_link.clear()   # the next link starts empty

    async def _boot(self, first: bool) -> None:
        self.boot_id = int(self._rng.integers(1, 2**32 - 1))
        self._seq = 0
        self._booted_mono = time.monotonic()
        self.info = self._device_info()
        self._streaming = False
        self._pause_mono = time.monotonic()
        await self._send(self.info)
        await self._send(P.Event(t_us=max(0, self.device_us_now()), kind=P.EVENT_BOOTED))
        self.stats.events_sent += 1
        if self.autostart:
            self._begin_streaming()

    def _begin_streaming(self) -> None:
        if self._streaming:
            return
        now = time.monotonic()
        drift = 1.0 + self.config.drift_ppm * 1e-6
        if self._pause_mono is not None:
            self._adj_us += (now - self._pause_mono) * 1e6 * drift
        self._pause_mono = None
        chunk = self._chunk
        t_next = float(chunk.t[self._i]) if chunk is not None and self._i < len(chunk.t) \
            else self._t_now
        # the next instant is due one sample period from now (the timer's first tick)
        self._anchor = now + 1.0 / self.rate_hz - t_next
        if self._first_start is None:
            self._first_start = now
        self._streaming = True
        self._start_event.set()

    def _end_streaming(self) -> None:
        if not self._streaming:
            return
        self._streaming = False
        self._pause_mono = time.monotonic()
        # keep the device clock continuous: it reads t_now + the time since, while paused
        self._adj_us += (self._pause_mono - self._anchor - self._t_now) * 1e6 * (
            1.0 + self.config.drift_ppm * 1e-6)
        self._start_event.clear()

    async def _commands(self) -> None:
        dec = P.Decoder()
        while True:
            data = await self.link.commands.get()
            for device_id, msg in dec.feed(data):
                if device_id not in (0, self.device_id):
                    continue  # meant for another device on the same link
                self.stats.commands += 1
                await self._answer(msg)

    async def _answer(self, msg: Any) -> None:
        if isinstance(msg, P.CmdGetInfo):
            self.info = self._device_info()
            await self._send(self.info)
        elif isinstance(msg, P.CmdStart):
            await self._apply_rate()
            await self._send(P.Ack(P.T_START, P.ACK_OK))
            self._begin_streaming()
        elif isinstance(msg, P.CmdStop):
            self._end_streaming()
            await self._send(P.Ack(P.T_STOP, P.ACK_OK))
        elif isinstance(msg, P.CmdSetRate):
            ok = P.RATE_MIN_HZ <= msg.rate_hz <= P.RATE_MAX_HZ
            if ok:
                self._pending_rate = int(msg.rate_hz)
            await self._send(P.Ack(P.T_SET_RATE, P.ACK_OK if ok else P.ACK_BAD_ARGUMENT))
        elif isinstance(msg, P.CmdIdentify):
            log.info("%s: IDENTIFY: blinking the LED for %d s", self.name, msg.seconds)
            await self._send(P.Ack(P.T_IDENTIFY, P.ACK_OK))
        else:  # a device-to-host message sent to the device
            mtype = getattr(msg, "TYPE", 0)
            await self._send(P.Ack(mtype, P.ACK_UNKNOWN_COMMAND))

    async def _apply_rate(self) -> None:
        """A new rate takes effect at START: the twin is simulated afresh at that rate."""
        if self._pending_rate == self.rate_hz or self._streaming:
            return
        self.rate_hz = self._pending_rate
        if self._next_chunk is not None:
            self._next_chunk.cancel()
        self._twin = TwinSource(self.config, self.rate_hz)
        self._chunk = await asyncio.to_thread(self._twin.next_chunk)
        self._i = 0
        # the twin's timeline restarts at 0; the device clock must not
        self._adj_us += self._t_now * 1e6 * (1.0 + self.config.drift_ppm * 1e-6)
        self._t_now = 0.0
        self._truth_i = 0
        self._prefetch()
        self.info = self._device_info()
        await self._send(self.info)

    async def _status_loop(self) -> None:
        """STATUS about once a second, battery draining ~1 %/min, board near 31 °C."""
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            uptime_min = (time.monotonic() - self._booted_mono) / 60.0
            pct = max(0, 100 - int(uptime_min))
            temp = 3100 + int(self._rng.normal(0, 20)) + (300 if self._streaming else 0)
            await self._send(P.Status(
                t_us=max(0, self.device_us_now()), battery_mv=3500 + int(6.5 * pct),
                battery_pct=pct, temperature_cdeg=temp, sensor_errors=0, overruns=0,
                tx_dropped=self._tx_dropped & 0xFFFFFFFF))
            self.stats.status_sent += 1

    # ---- streaming -----------------------------------------------------------------------------

    async def _next(self) -> bool:
        """Move to the next chunk; False when the run is over."""
        if self._next_chunk is None:
            return False
        chunk = await self._next_chunk
        if chunk is None:
            self._next_chunk = None
            return False
        self._chunk, self._i = chunk, 0
        self._truth_i = 0
        self._tap_i = 0
        self._prefetch()
        return True

    async def _stream(self) -> None:
        cfg = self.config
        try:
            while not self._stop_requested.is_set():
                left = self._wall_left()
                if left is not None and left <= 0:
                    break
                if not self._streaming:
                    self._start_event.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._start_event.wait(), left)
                    continue
                chunk = self._chunk
                if chunk is None or self._i >= len(chunk.t):
                    if not await self._next():
                        break
                    continue
                ipf = self.info.instants_per_frame if self.info else 1
                i0, i1 = self._i, min(self._i + ipf, len(chunk.t))
                t_last = float(chunk.t[i1 - 1])
                # faults scheduled on the streaming timeline
                if cfg.reboot_at is not None and not self._rebooted and t_last >= cfg.reboot_at:
                    self._rebooted = True
                    self.stats.reboots += 1
                    drift = 1.0 + cfg.drift_ppm * 1e-6
                    # device time restarts: the next instant is stamped BOOT_US
                    self._adj_us = BOOT_US - (self._twin.base_offset_us
                                              + float(chunk.t[i0]) * 1e6 * drift)
                    await self._boot(first=False)
                    continue
                if self._next_disconnect is not None and t_last >= self._next_disconnect:
                    # pulled at its time on the streaming timeline, not right after the frame
                    # before went out (which left that frame no time to reach the host)
                    pull = self._anchor + self._next_disconnect - time.monotonic()
                    if pull > 0:
                        await asyncio.sleep(pull)
                    self._next_disconnect += cfg.disconnect_every
                    self.stats.disconnects += 1
                    self._lost_in_link(await self.link.disconnect(cfg.disconnect_for))
                due = self._anchor + t_last
                if cfg.send_jitter_ms > 0:
                    due += float(self._rng.uniform(0, cfg.send_jitter_ms * 1e-3))
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not self._streaming or self._stop_requested.is_set():
                    continue
                await self._send_frame(chunk, i0, i1)
                self._i = i1
                self._t_now = t_last
                self._publish_truth(chunk, t_last)
        finally:
            self._done.set()

    def _wall_left(self) -> float | None:
        """Seconds left of ``wall_seconds`` (None: unbounded, or streaming not begun yet)."""
        if self.config.wall_seconds is None or self._first_start is None:
            return None
        return self._first_start + self.config.wall_seconds - time.monotonic()

    async def _send_frame(self, chunk: TwinChunk, i0: int, i1: int) -> None:
        cfg = self.config
        stamps = chunk.stamp_us[i0:i1] + int(round(self._adj_us))
        stamps = np.maximum(stamps, 0)
        t0 = int(stamps[0])
        blocks = self._blocks(chunk, i0, i1)
        msg = P.Samples(seq=self._seq, t0_us=t0, dt_us=(stamps - t0).astype(np.uint32),
                        **blocks)
        frame = P.encode(msg, self.device_id)
        n = i1 - i0
        lost = cfg.loss > 0 and self._rng.random() < cfg.loss
        corrupted = False
        ok = False
        rec: dict | None = None
        if not lost:
            if cfg.corrupt > 0:
                flips = np.flatnonzero(self._rng.random(len(frame)) < cfg.corrupt)
                if len(flips):
                    buf = np.frombuffer(frame, np.uint8).copy()
                    buf[flips] ^= self._rng.integers(1, 256, len(flips), dtype=np.uint8)
                    frame = buf.tobytes()
                    corrupted = True
                    self.stats.frames_corrupted += 1
                    self.stats.bytes_flipped += len(flips)
            ok = await self.link.send(frame)
            if ok:
                self.stats.frames_sent += 1
                rec = {} if cfg.keep_truth else None
                self._in_link.append((len(frame), True, rec))
            else:
                self._tx_dropped += 1
                self.stats.tx_dropped += 1
        else:
            self.stats.frames_lost += 1
        self.stats.frames += 1
        self.stats.instants += n
        while self._tap_i < len(chunk.taps) and chunk.taps[self._tap_i] <= float(chunk.t[i1 - 1]):
            # the tap happened by this frame's last instant: stamp it on the device clock
            tap = chunk.taps[self._tap_i]
            self._tap_i += 1
            drift = 1.0 + cfg.drift_ppm * 1e-6
            tap_us = max(0, t0 + int(round((tap - float(chunk.t[i0])) * 1e6 * drift)))
            await self._send(P.Event(t_us=tap_us, kind=P.EVENT_TAP, sensor=255, value=0))
            self.stats.events_sent += 1
            self.taps_sent.append(tap_us)
        if cfg.keep_truth:
            if rec is None:
                rec = {}
            rec.update(
                seq=self._seq, n=n, stamps=stamps.astype(np.int64), t=chunk.t[i0:i1].copy(),
                boot_id=self.boot_id, blocks=blocks, sent=ok and not corrupted, lost=lost,
                corrupted=corrupted, tx_dropped=(not lost and not ok))
            self._log.append(rec)
        self._seq = (self._seq + n) % P.SEQ_MOD

    def _blocks(self, chunk: TwinChunk, i0: int, i1: int) -> dict[str, np.ndarray]:
        """The per-sensor blocks this device sends for instants ``i0:i1`` (wire order)."""
        cfg = self.config
        out = {"acc": chunk.acc[i0:i1]}
        if cfg.gyro:
            out["gyro"] = chunk.gyro[i0:i1]
        if cfg.mag:
            out["mag"] = chunk.mag[i0:i1]
        if chunk.quat is not None:
            out["quat"] = chunk.quat[i0:i1]
        return out

    # ---- ground truth --------------------------------------------------------------------------

    def _open_truth_outlet(self) -> None:
        import pylsl

        twin = self._twin
        source = (twin.take if twin.take is not None else twin.motion_obj) if twin else None
        motion = self.config.motion
        self._outlet = truth_outlet(
            name=self.config.truth_name or f"imusic-twin-{self.device_id:08x}",
            source_id=f"twin-{self.serial:016x}",
            fps=float(source.fps) if source is not None else TRUTH_FPS,
            rig=self.config.rig, serial=f"{self.serial:016x}",
            motion=str(motion) if isinstance(motion, (str, Path)) else "in-process Motion")
        self._lsl_minus_mono = pylsl.local_clock() - time.monotonic()

    def _publish_truth(self, chunk: TwinChunk, t_now: float) -> None:
        j0 = self._truth_i
        j1 = int(np.searchsorted(chunk.truth_t, t_now, side="right"))
        if j1 <= j0:
            return
        self._truth_i = j1
        stamps = self._anchor + self._lsl_minus_mono + chunk.truth_t[j0:j1]
        if self.config.keep_truth:
            self._truth_log.append((chunk.truth_t[j0:j1].copy(), chunk.truth[j0:j1], stamps))
        self.stats.truth_frames += j1 - j0
        if self._outlet is not None:
            self._outlet.push_chunk(np.ascontiguousarray(chunk.truth[j0:j1]), stamps.tolist())

    def _blocks_sent(self) -> tuple[str, ...]:
        from firmware_bridge.outlet import quantities

        cfg = self.config
        return quantities(cfg.gyro, cfg.mag, cfg.report == "orientation")

    def truth(self) -> TruthLog:
        """Everything generated so far (needs ``keep_truth``)."""
        recs = self._log
        s = self._twin.rig.n_sites if self._twin else 0
        if recs:
            seq = np.concatenate([(r["seq"] + np.arange(r["n"])) % P.SEQ_MOD for r in recs])
            per = lambda key: np.concatenate([np.full(r["n"], r[key]) for r in recs])  # noqa: E731
            counts = {q: np.concatenate([r["blocks"][q] for r in recs]) for q in recs[0]["blocks"]}
            dev = np.concatenate([r["stamps"] for r in recs])
            t = np.concatenate([r["t"] for r in recs])
            flags = {k: per(k).astype(bool) for k in ("sent", "lost", "corrupted", "tx_dropped")}
            boot = per("boot_id").astype(np.int64)
        else:
            seq = dev = boot = np.zeros(0, np.int64)
            t = np.zeros(0)
            counts = {q: np.zeros((0, s, 4 if q == "quat" else 3), np.int16)
                      for q in self._blocks_sent()}
            flags = {k: np.zeros(0, bool) for k in ("sent", "lost", "corrupted", "tx_dropped")}
        if self._truth_log:
            bt = np.concatenate([x[0] for x in self._truth_log])
            bv = np.concatenate([x[1] for x in self._truth_log])
            bl = np.concatenate([x[2] for x in self._truth_log])
        else:
            bt, bv, bl = np.zeros(0), np.zeros((0, 61), np.float32), np.zeros(0)
        scales = dict(self._twin.scales) if self._twin else {}
        scales["quat"] = P.QUAT_SCALE
        return TruthLog(seq=seq.astype(np.int64), device_us=dev, t=t, boot_id=boot,
                        counts=counts, scales=scales, blendshape_t=bt, blendshapes=bv,
                        blendshape_lsl=bl, **flags)


class ThreadedEmulator:
    """An ``Emulator`` running on its own event loop in a daemon thread.

    ``with Emulator.run_in_thread(cfg) as emu:`` returns once the link is up; ``emu.link_info``,
    ``emu.emulator`` (the Emulator), ``emu.wait_done(timeout)``; leaving the block stops it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.emulator = Emulator(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="imusic-emulator", daemon=True)

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._amain())
        finally:
            loop.close()

    async def _amain(self) -> None:
        try:
            await self.emulator.__aenter__()
        except BaseException as err:  # hand start-up errors to the caller
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        try:
            await self.emulator._stop_requested.wait()
        finally:
            await self.emulator.__aexit__(None, None, None)

    def __enter__(self) -> "ThreadedEmulator":
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def link_info(self) -> dict[str, Any]:
        """See ``Emulator.link_info``."""
        return self.emulator.link_info

    def wait_done(self, timeout: float | None = None) -> bool:
        """Block until all ``seconds`` were streamed."""
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self.emulator.wait_done(timeout), self._loop)
        return bool(fut.result(None if timeout is None else timeout + 5))

    def stop(self) -> None:
        """Stop and close, then join the thread."""
        if self._loop is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self.emulator._stop_requested.set)
                self._loop.call_soon_threadsafe(self.emulator._start_event.set)
            except RuntimeError:
                pass   # the loop closed between the check and the call: already stopped
        self._thread.join(10)


def _unique_low32() -> int:
    """A device id (the serial's low 32 bits) for one emulator: from its pid and a random
    number, never 0 (which addresses every device)."""
    return zlib.crc32(f"{os.getpid()}:{secrets.token_hex(8)}".encode()) or 1


def ready_line(emu: Emulator) -> str:
    """The one-line JSON the CLI prints once the link is up (for scripts and tests)."""
    return "ready " + json.dumps(emu.link_info, sort_keys=True)


