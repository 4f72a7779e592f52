"""The device emulator: a virtual imusic wearable that runs the digital twin and speaks the wire
protocol (hardware/PROTOCOL.md) on a real pseudo-terminal, a real UDP socket or an emulated BLE
peripheral, paced in real time, with fault injection. ``imusic emulate`` is its command line.

In-process use (tests, the demo, ``imusic stream`` end-to-end tests)::

    from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig

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
``seconds`` is streamed motion time. From another thread: ``Emulator.run_in_thread(cfg)``
(emulator_thread.py).

How the pieces fit. ``Emulator`` answers commands (``_commands``) and paces SAMPLES frames in
real time (``_stream``); what it keeps apart:

* emulator_config.py: ``EmulatorConfig`` (the device, its motion, its faults), ``check``,
  ``EmulatorStats`` (its counters);
* emulator_twin.py: ``TwinSource``, the signals in chunks (true time, base device stamps);
* emulator_clock.py: ``EmulatorClock``, the device's counter across STOP/START, rate changes
  and reboots, and when each instant is due (the one place drift becomes a rate);
* emulator_faults.py: ``FaultSchedule``, which frames are dropped, corrupted or late, when
  the cable is pulled and when the device reboots;
* emulator_transmit.py: ``Transmitter``, the send path: SAMPLES frames built, faulted,
  stamped and recorded, taps as EVENTs, every other message;
* emulator_recorder.py: ``TruthRecorder``, what was generated and what became of it
  (``truth()``), and the twin's ground truth on LSL;
* emulator_thread.py: ``ThreadedEmulator``, the emulator on its own loop in a thread;
* emulator_links.py / emulator_ble.py: the pty, UDP and BLE links.

Nothing here imports emulator.py back (the twin reads the config module). The module is over
the project's ~400 lines (about 470): answering commands and pacing frames share the device's
state (boot, rate, streaming, the twin's chunks), and a third of it is the public interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator_clock import BOOT_US, EmulatorClock, first_sample_us
from imusic.firmware_bridge.emulator_config import (EmulatorConfig, EmulatorStats, check, device_serial,
                                             flags)
from imusic.firmware_bridge.emulator_faults import FaultSchedule
from imusic.firmware_bridge.emulator_recorder import TruthRecorder
from imusic.firmware_bridge.emulator_thread import ThreadedEmulator
from imusic.firmware_bridge.emulator_transmit import Transmitter, device_info, make_link
from imusic.firmware_bridge.emulator_truth import TruthLog
from imusic.firmware_bridge.emulator_twin import CHUNK_SECONDS, TRUTH_FPS, TwinChunk, TwinSource

__all__ = ["BOOT_US", "CHUNK_SECONDS", "Emulator", "EmulatorConfig", "EmulatorStats",
           "ThreadedEmulator", "TruthLog", "ready_line"]

log = logging.getLogger(__name__)

STATUS_PERIOD_S = 1.0
"""STATUS about once a second."""


class Emulator:
    """A virtual wearable. ``async with Emulator(cfg) as emu`` brings the link up and starts
    streaming in the background; ``await emu.run()`` does the same in the foreground until
    ``seconds`` are streamed (or ``stop()``). See the module docstring."""

    def __init__(self, config: EmulatorConfig) -> None:
        check(config)
        cfg = self.config = config
        self.flags = flags(cfg)
        """The DEVICE_INFO / SAMPLES flags: which blocks each sensor sends."""
        self.serial = device_serial(cfg)
        self.device_id = self.serial & 0xFFFFFFFF
        self.name = f"imusic-wearable-{self.device_id & 0xFFFF:04x}"
        self.stats = EmulatorStats()
        self.autostart = cfg.autostart if cfg.autostart is not None else cfg.transport == "udp"
        self.rate_hz = int(cfg.rate_hz)
        self.boot_id = 0
        self.info: P.DeviceInfo | None = None
        self._rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xE1]))
        self.clock = EmulatorClock(cfg.drift_ppm, first_sample_us(cfg.clock_offset_us))
        self.faults = FaultSchedule(cfg, self._rng)
        self.recorder = TruthRecorder(keep=cfg.keep_truth)
        self.tx = Transmitter(cfg, self.device_id, self.clock, self.faults, self.recorder,
                              self.stats)
        self._pending_rate = self.rate_hz
        self._twin: TwinSource | None = None
        self._chunk: TwinChunk | None = None
        self._next_chunk: asyncio.Future | None = None
        self._i = 0                      # next instant in the current chunk
        self._start_event = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cmd_task: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None
        self._booted_mono = 0.0
        self._first_start: float | None = None   # monotonic time streaming first began

    # ---- properties for hosts and tests ------------------------------------------------------

    @property
    def link_info(self) -> dict[str, Any]:
        """What a host needs to reach the device (path / address / HCI spec) and who it is."""
        d = dict(self.link.describe()) if self.link is not None else {}
        d.update(device_id=self.device_id, serial=f"{self.serial:016x}", name=self.name,
                 rig=self.config.rig, rate_hz=self.rate_hz)
        return d

    @property
    def link(self) -> Any:
        """The device side of the link (emulator_links.py; None before ``start``)."""
        return self.tx.link

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
        return self.clock.running

    @property
    def done(self) -> bool:
        """Whether streaming is over (all ``seconds`` streamed, or stopped)."""
        return self._done.is_set()

    @property
    def rig(self) -> Any:
        """The ``hardware.rig.Rig`` the device is wired as (None before ``start``)."""
        return self._twin.rig if self._twin is not None else None

    @property
    def seq(self) -> int:
        """The sequence number of the next instant to be sent."""
        return self.tx.seq

    @property
    def taps_sent(self) -> list[int]:
        """Device times (us) of the EVENT taps sent."""
        return self.tx.taps_sent

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the twin, bring the link up and boot (DEVICE_INFO, EVENT booted)."""
        cfg = self.config
        self.tx.link = make_link(cfg, self.name)
        self._twin = TwinSource(cfg, self.rate_hz)
        self._chunk = await asyncio.to_thread(self._twin.next_chunk)
        if self._chunk is None:
            raise ValueError(f"--seconds {cfg.seconds}: nothing to stream")
        self._prefetch()
        await self.link.start()
        if cfg.publish_truth:
            self._open_truth_outlet()
        await self._boot()
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
        try:
            await self.start()
        except BaseException:
            await self.close()   # a link brought up before the failure goes down again
            raise
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
        self.recorder.close()

    @classmethod
    def run_in_thread(cls, config: EmulatorConfig) -> ThreadedEmulator:
        """An emulator on its own event loop in a daemon thread (for synchronous callers)."""
        return ThreadedEmulator(cls(config))

    # ---- the device ----------------------------------------------------------------------------

    def _device_info(self) -> P.DeviceInfo:
        assert self._twin is not None
        return device_info(self.config, self._twin, serial=self.serial, boot_id=self.boot_id,
                           rate_hz=self.rate_hz, name=self.name)

    def device_us_now(self) -> int:
        """The device clock now (us since boot)."""
        return self.clock.read_us(time.monotonic())

    async def _boot(self) -> None:
        self.boot_id = int(self._rng.integers(1, 2**32 - 1))
        self.tx.seq = 0
        self._booted_mono = time.monotonic()
        self.info = self._device_info()
        self.clock.hold(time.monotonic())
        await self.tx.send(self.info)
        await self.tx.send(P.Event(t_us=max(0, self.device_us_now()), kind=P.EVENT_BOOTED))
        self.stats.events_sent += 1
        if self.autostart:
            self._begin_streaming()

    def _begin_streaming(self) -> None:
        if self.clock.running:
            return
        now = time.monotonic()
        chunk = self._chunk
        t_next = float(chunk.t[self._i]) if chunk is not None and self._i < len(chunk.t) \
            else self.clock.t_sent
        # the next instant is due one sample period from now (the timer's first tick)
        self.clock.resume(now, t_next, 1.0 / self.rate_hz)
        if self._first_start is None:
            self._first_start = now
        self._start_event.set()

    def _end_streaming(self) -> None:
        if not self.clock.running:
            return
        self.clock.pause(time.monotonic())
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
            await self.tx.send(self.info)
        elif isinstance(msg, P.CmdStart):
            await self._apply_rate()
            await self.tx.send(P.Ack(P.T_START, P.ACK_OK))
            self._begin_streaming()
        elif isinstance(msg, P.CmdStop):
            self._end_streaming()
            await self.tx.send(P.Ack(P.T_STOP, P.ACK_OK))
        elif isinstance(msg, P.CmdSetRate):
            ok = P.RATE_MIN_HZ <= msg.rate_hz <= P.RATE_MAX_HZ
            if ok:
                self._pending_rate = int(msg.rate_hz)
            await self.tx.send(P.Ack(P.T_SET_RATE, P.ACK_OK if ok else P.ACK_BAD_ARGUMENT))
        elif isinstance(msg, P.CmdIdentify):
            log.info("%s: IDENTIFY: blinking the LED for %d s", self.name, msg.seconds)
            await self.tx.send(P.Ack(P.T_IDENTIFY, P.ACK_OK))
        else:  # a device-to-host message sent to the device
            mtype = getattr(msg, "TYPE", 0)
            await self.tx.send(P.Ack(mtype, P.ACK_UNKNOWN_COMMAND))

    async def _apply_rate(self) -> None:
        """A new rate takes effect at START: the twin is simulated afresh at that rate."""
        if self._pending_rate == self.rate_hz or self.clock.running:
            return
        self.rate_hz = self._pending_rate
        if self._next_chunk is not None:
            self._next_chunk.cancel()
        self._twin = TwinSource(self.config, self.rate_hz)
        self._chunk = await asyncio.to_thread(self._twin.next_chunk)
        self._i = 0
        self.tx.new_chunk()
        self.clock.rebase()   # the twin's timeline restarts at 0; the device clock must not
        self._prefetch()
        self.info = self._device_info()
        await self.tx.send(self.info)

    async def _status_loop(self) -> None:
        """STATUS about once a second, battery draining ~1 %/min, board near 31 °C."""
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            uptime_min = (time.monotonic() - self._booted_mono) / 60.0
            pct = max(0, 100 - int(uptime_min))
            temp = 3100 + int(self._rng.normal(0, 20)) + (300 if self.clock.running else 0)
            await self.tx.send(P.Status(
                t_us=max(0, self.device_us_now()), battery_mv=3500 + int(6.5 * pct),
                battery_pct=pct, temperature_cdeg=temp, sensor_errors=0, overruns=0,
                tx_dropped=self.recorder.tx_dropped & 0xFFFFFFFF))
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
        self.tx.new_chunk()
        self._prefetch()
        return True

    async def _stream(self) -> None:
        """Pace the frames: each leaves when its last instant is sampled (plus the fault
        schedule's send delay); reboots and cable pulls happen at their streaming times."""
        clock, faults = self.clock, self.faults
        try:
            while not self._stop_requested.is_set():
                left = self._wall_left()
                if left is not None and left <= 0:
                    break
                if not clock.running:
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
                if faults.reboot_due(t_last):
                    self.stats.reboots += 1
                    clock.restart(float(chunk.t[i0]), BOOT_US)   # the next instant reads BOOT_US
                    await self._boot()
                    continue
                pull = faults.pull_due(t_last)
                if pull is not None:
                    # pulled at its time on the streaming timeline, not right after the frame
                    # before went out (which left that frame no time to reach the host)
                    await _sleep_until(clock.due(pull))
                    self.stats.disconnects += 1
                    self.tx.lost_in_link(await self.link.disconnect(faults.pull_for))
                await _sleep_until(clock.due(t_last) + faults.send_delay())
                if not clock.running or self._stop_requested.is_set():
                    continue
                await self.tx.frame(chunk, i0, i1, self.boot_id)
                self._i = i1
                clock.sent(t_last)
                self.stats.truth_frames += self.recorder.publish(chunk, t_last, clock.anchor)
        finally:
            self._done.set()

    def _wall_left(self) -> float | None:
        """Seconds left of ``wall_seconds`` (None: unbounded, or streaming not begun yet)."""
        if self.config.wall_seconds is None or self._first_start is None:
            return None
        return self._first_start + self.config.wall_seconds - time.monotonic()

    # ---- ground truth --------------------------------------------------------------------------

    def _open_truth_outlet(self) -> None:
        twin = self._twin
        source = (twin.take if twin.take is not None else twin.motion_obj) if twin else None
        motion = self.config.motion
        self.recorder.open_outlet(
            name=self.config.truth_name or f"imusic-twin-{self.device_id:08x}",
            source_id=f"twin-{self.serial:016x}",
            fps=float(source.fps) if source is not None else TRUTH_FPS,
            rig=self.config.rig, serial=f"{self.serial:016x}",
            motion=str(motion) if isinstance(motion, (str, Path)) else "in-process Motion")

    def _blocks_sent(self) -> tuple[str, ...]:
        from imusic.firmware_bridge.outlet import quantities

        cfg = self.config
        return quantities(cfg.gyro, cfg.mag, cfg.report == "orientation")

    def truth(self) -> TruthLog:
        """Everything generated so far (needs ``keep_truth``)."""
        twin = self._twin
        return self.recorder.log(twin.rig.n_sites if twin else 0, self._blocks_sent(),
                                 twin.scales if twin else {})


async def _sleep_until(when: float) -> None:
    """Sleep until monotonic time ``when`` (at once if it has passed)."""
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def ready_line(emu: Emulator) -> str:
    """The one-line JSON the CLI prints once the link is up (for scripts and tests)."""
    return "ready " + json.dumps(emu.link_info, sort_keys=True)
