"""A device session: one wearable, from handshake to LSL, surviving silences and reboots.

``DeviceSession(factory, config).run(stop)`` opens the link from ``factory`` (a callable that
makes a fresh Transport), runs the handshake (GET_INFO -> DEVICE_INFO, checked against the
rig; SET_RATE; START), then turns every SAMPLES frame into LSL samples with timestamps from
the clock map, until ``stop`` is set. Meanwhile it keeps ``health`` (rate achieved, loss from
sequence gaps, CRC and other frame errors, reconnects, reboots, clock drift and fit residual,
battery) and a watchdog: after ``silence_s`` without samples it records a gap, closes and
reopens the link with exponential backoff (a persistent UDP socket stays bound) and re-sends
the configuration and START. Samples are never invented: a gap stays a gap, marked in the
events stream and visible in the ``device.seq`` channel.

A reboot (DEVICE_INFO with a new ``boot_id``, or device time running backwards) restarts the
clock fit and the sequence tracking, is recorded as an event, and is followed by the
configuration and START again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pylsl

from firmware_bridge import protocol as P
from firmware_bridge.clock import ClockMap
from firmware_bridge.outlet import (EventOutlet, ImuOutlet, ImuStreamSpec, default_sites,
                                    samples_to_rows)
from firmware_bridge.transports.base import Transport, TransportError, TransportFactory

log = logging.getLogger(__name__)

MAX_HELD_FRAMES = 200
"""Frames held at most while the clock fit warms up."""
EVENT_NAMES = {P.EVENT_TAP: "tap", P.EVENT_SYNC: "sync_pulse", P.EVENT_BUTTON: "button",
               P.EVENT_BOOTED: "booted"}


class DeviceError(RuntimeError):
    """The device cannot be used as configured (wrong rig, refused rate, a consumer that cannot
    read its channels...): no retry helps. A sample callback may raise it to end the session."""


class _Silence(Exception):
    """No frames for too long: reconnect."""


@dataclass
class SessionConfig:
    """How to talk to the device and what to publish."""

    rate_hz: int | None = None
    """Ask for this sample rate (None: keep the device's)."""
    rig: Any = None
    """A ``hardware.rig.Rig`` (or anything with ``id``, ``site_names``, ``reference``) the device
    must match; ``"auto"``: the rig the device names in DEVICE_INFO, if it is a known one;
    None: trust the device (sites named s00, s01, ...)."""
    name: str | None = None
    """LSL stream name (default ``imusic-<serial>``)."""
    device_id: int | None = None
    """Talk to this device id only (links with several devices); None: the first one heard."""
    silence_s: float = 1.0
    command_timeout_s: float = 0.3
    command_retries: int = 3
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    replug_poll_s: float = 0.05
    """While waiting to reopen a link whose device was absent (a serial port's path gone),
    look this often whether it is back, and reopen at once when it is."""
    warmup_s: float = 0.5
    """Hold frames until the clock fit spans this much device time (after a start or reboot),
    then publish them stamped with that fit."""
    health_every_s: float = 5.0
    """Period of the ``health`` markers in the events stream."""
    publish: bool = True
    """Make the LSL outlets (False: decode and keep health only, e.g. for benchmarks)."""


@dataclass
class Health:
    """Per-device health, updated as frames arrive."""

    state: str = "connecting"
    device: str = ""
    transport: str = ""
    samples: int = 0
    lost: int = 0
    frames: int = 0
    frame_errors: int = 0
    crc_errors: int = 0
    refused_info: int = 0
    """DEVICE_INFO frames refused: a changed DEVICE_INFO for this device id from an address
    other than the one the device's accepted DEVICE_INFO came from (someone else renaming it)."""
    refused_senders: int = 0
    """Datagrams dropped because their sender is not one of ``--allow`` (UDP)."""
    message_errors: int = 0
    """Decoded messages the session could not handle (an exception in their accessors):
    each is dropped, counted here and named in ``last_error``; the session goes on."""
    reconnects: int = 0
    connect_failures: int = 0
    reboots: int = 0
    gaps: int = 0
    rate_hz: float = 0.0
    nominal_hz: float = 0.0
    drift_ppm: float | None = None
    residual_ms: float | None = None
    battery_pct: int | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None
    device_errors: dict = field(default_factory=dict)
    last_error: str = ""

    @property
    def loss(self) -> float:
        """Fraction of sample instants lost (from sequence gaps)."""
        total = self.samples + self.lost
        return self.lost / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-friendly."""
        d = {k: v for k, v in self.__dict__.items()}
        d["loss"] = self.loss
        return d

    def line(self) -> str:
        """A one-line summary for a live status display."""
        drift = (f"{self.drift_ppm:+.1f} ppm (res {self.residual_ms:.2f} ms)"
                 if self.drift_ppm is not None else "-")
        batt = f"{self.battery_pct}%" if self.battery_pct not in (None, 255) else "-"
        return (f"{self.device or '?'} {self.state} | {self.rate_hz:6.1f}/{self.nominal_hz:.0f} Hz"
                f" | loss {100 * self.loss:.2f}% ({self.lost}) | crc {self.crc_errors}"
                f" (bad frames {self.frame_errors}"
                + (f", bad messages {self.message_errors}" if self.message_errors else "")
                + (f", refused DEVICE_INFO {self.refused_info}" if self.refused_info else "")
                + f") | drift {drift} | batt {batt}"
                f" | reconnects {self.reconnects} reboots {self.reboots}"
                + (f" | {self.last_error}" if self.state != "streaming" and self.last_error else ""))


class DeviceSession:
    """One device over one link, published as an IMU LSL stream (see the module doc)."""

    def __init__(self, factory: TransportFactory, config: SessionConfig | None = None,
                 on_samples: Callable[[np.ndarray, np.ndarray], None] | None = None,
                 clock: Callable[[], float] = pylsl.local_clock,
                 on_arrival: Callable[[int, int, float], None] | None = None) -> None:
        self.factory = factory
        self.config = config or SessionConfig()
        self.on_samples = on_samples
        """Called with (rows (k, C) float64, timestamps (k,)) for every frame, after the push."""
        self.now = clock
        self.on_arrival = on_arrival
        """Called per SAMPLES frame with (seq of its newest instant, its raw device time µs, its
        arrival time): the clock map's input, for diagnostics and tests."""
        self.decoder = P.Decoder()
        self.clock = ClockMap()
        self.health = Health()
        self.info: P.DeviceInfo | None = None
        self.device_id: int | None = self.config.device_id
        self.outlet: ImuOutlet | None = None
        self.events: EventOutlet | None = None
        self.event_log: list[dict] = []
        """Every event record also pushed to the events stream (gaps, reboots, taps...)."""
        self._link: Transport | None = None
        self._waiters: list[tuple[Callable[[P.Message], bool], asyncio.Future]] = []
        self._streaming = False
        self._reconfigure = False
        self._last_frame = 0.0          # monotonic time of the last frame from our device
        self._last_sample = 0.0
        self._last_ts: float | None = None
        self._gap_open: dict | None = None
        self._rate_window: deque[tuple[float, int]] = deque()
        self._lost_seen = 0
        self._last_health = 0.0
        self._ever_streamed = False
        self._held: list[tuple] = []
        self._heard = asyncio.Event()
        self._sender: tuple | None = None        # source address of the bytes being handled
        self._device_addr: tuple | None = None   # where the accepted DEVICE_INFO came from
        self._reader: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._rig: Any = None
        self._auto: tuple | None = None

    # ------------------------------------------------------------------ the main loop

    async def run(self, stop: asyncio.Event | None = None) -> Health:
        """Stream until ``stop`` is set; returns the final health. Raises DeviceError when the
        device does not fit the configuration."""
        stop = stop or asyncio.Event()
        self._stop = stop
        attempt = 0
        link: Transport | None = None
        try:
            while not stop.is_set():
                try:
                    if link is None or not link.is_open:
                        self.health.state = "connecting"
                        link = self.factory()
                        self.health.transport = link.name
                        await link.open()
                        self.decoder.reset()
                    self._link = link
                    reader = asyncio.create_task(self._read_loop(link))
                    try:
                        await self._handshake(reader)
                        attempt = 0
                        await self._watch(stop, reader)
                    finally:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await reader
                except DeviceError:
                    raise
                except (OSError, _Silence, asyncio.TimeoutError) as err:
                    # OSError covers TransportError and any I/O error a link lets through.
                    if stop.is_set():
                        break
                    self.health.last_error = str(err) or type(err).__name__
                    log.info("%s: %s", self.health.transport, self.health.last_error)
                    self._flush_held()
                    self._open_gap(self.health.last_error)
                    self._streaming = False
                    self.health.rate_hz = 0.0
                    self._rate_window.clear()
                    failed = link
                    if link is not None and not getattr(link, "persistent", False):
                        await link.close()
                        link = None
                    if self._ever_streamed:
                        self.health.reconnects += 1
                    else:
                        self.health.connect_failures += 1
                    self.health.state = "reconnecting" if self._ever_streamed else "connecting"
                    delay = min(self.config.backoff_max_s,
                                self.config.backoff_initial_s * 2 ** attempt)
                    attempt += 1
                    await self._backoff(stop, delay, failed)
        finally:
            await self._shutdown(link)
        return self.health

    async def _backoff(self, stop: asyncio.Event, delay: float, link: Transport | None) -> None:
        """Wait ``delay`` s (or until ``stop``) before reopening; but where the link can tell
        whether its device is there (``present()``: a serial port's path), end the wait as
        soon as a device that was absent is back. A re-plugged wearable streams at once, and
        what it sends before the host opens the port waits in a bounded buffer: waiting out
        an exponential backoff after the port came back lost up to that long of instants."""
        present = link.present if link is not None else (lambda: None)
        end = time.monotonic() + delay
        absent = present() is False
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            step = min(left, self.config.replug_poll_s) if present() is not None else left
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), step)
            now_present = present()
            if now_present is False:
                absent = True
            elif now_present and absent:
                return

    async def _shutdown(self, link: Transport | None) -> None:
        self.health.state = "stopped"
        self._flush_held()
        if link is not None:
            if link.is_open and self.info is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(link.write(self._cmd(P.CmdStop())), 0.5)
            await link.close()
        self._close_gap()
        if self.events is not None:
            self._event({"event": "stopped", "health": self._health_record()})
            self.events.close()
        if self.outlet is not None:
            self.outlet.close()

    async def _watch(self, stop: asyncio.Event, reader: asyncio.Task) -> None:
        """Wait for stop; raise _Silence when frames stop; re-configure after a reboot."""
        silence = self.config.silence_s
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(0.1, silence / 4))
            if reader.done():
                reader.result()  # re-raise TransportClosed and friends
                raise TransportError(f"{self.health.transport}: reader ended")
            now = time.monotonic()
            if self._reconfigure:
                self._reconfigure = False
                await self._configure_and_start()
            if now - self._last_sample > 2.0:
                self.health.rate_hz = 0.0   # the rate window is empty: nothing is arriving
            if self._streaming and now - self._last_sample > silence:
                raise _Silence(f"no samples for {now - self._last_sample:.1f} s")
            if self.events is not None and now - self._last_health >= self.config.health_every_s:
                self._last_health = now
                self._event({"event": "health", "health": self._health_record()})

    # ------------------------------------------------------------------ handshake

    def _cmd(self, cmd: P.Command) -> bytes:
        return P.encode(cmd, self.device_id or 0)

    async def _request(self, cmd: P.Command, reader: asyncio.Task | None = None) -> P.Message:
        """Send ``cmd`` and wait for its answer (DEVICE_INFO or ACK), with retries."""
        want_info = isinstance(cmd, P.CmdGetInfo)

        def match(m: P.Message) -> bool:
            return isinstance(m, P.DeviceInfo) if want_info else (
                isinstance(m, P.Ack) and m.command == cmd.TYPE)

        assert self._link is not None
        for _ in range(self.config.command_retries):
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._waiters.append((match, fut))
            try:
                await self._link.write(self._cmd(cmd))
                waits = [fut] + ([reader] if reader is not None else [])
                done, _ = await asyncio.wait(waits, timeout=self.config.command_timeout_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if fut in done:
                    return fut.result()
                if reader is not None and reader in done:
                    reader.result()
                    raise TransportError(f"{self.health.transport}: reader ended")
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove((match, fut))
        raise asyncio.TimeoutError(
            f"{self.health.transport}: no answer to {type(cmd).__name__} after "
            f"{self.config.command_retries} tries (is the device on and on this link?)")

    async def _handshake(self, reader: asyncio.Task) -> None:
        self.health.state = "handshake"
        self._reader = reader
        if getattr(self._link, "persistent", False) and not self._heard.is_set():
            # A UDP wearable is addressed by where its datagrams come from: wait to hear it.
            self.health.state = "listening"
            waits = [asyncio.ensure_future(self._heard.wait()), reader]
            if self._stop is not None:
                waits.append(asyncio.ensure_future(self._stop.wait()))
            done, _ = await asyncio.wait(waits, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                if w is not reader:
                    w.cancel()
            if reader in done:
                reader.result()
            if self._stop is not None and self._stop.is_set():
                return
            if not self._heard.is_set():
                raise asyncio.TimeoutError(
                    f"no device heard on {self.health.transport} in 5 s: is the wearable on, "
                    f"on this network and sending to this port?")
            self.health.state = "handshake"
        info = await self._request(P.CmdGetInfo(), reader)
        if isinstance(self.config.rig, str):
            # Loading a rig takes a second or more (the face model): off the event loop, so
            # that the frames of a device already streaming are read as they arrive.
            await asyncio.to_thread(self._auto_rig, info)
        self._accept_info(info, publish=False)   # published once configured (its rate known)
        await self._configure_and_start()

    async def _configure_and_start(self) -> None:
        reader = self._reader
        cfg = self.config
        if cfg.rate_hz and self.info is not None and self.info.rate_hz != cfg.rate_hz:
            # A new rate takes effect at the next START: stop first (a Wi-Fi device streams
            # from boot), set it, and publish the stream at the rate the device accepted.
            await self._request(P.CmdStop(), reader)
            self._streaming = False
            ack = await self._request(P.CmdSetRate(cfg.rate_hz), reader)
            if not ack.ok:
                raise DeviceError(
                    f"device {self.info.name} refused rate {cfg.rate_hz} Hz (ACK result "
                    f"{ack.result}); it takes {P.RATE_MIN_HZ}..{P.RATE_MAX_HZ} Hz and as much "
                    f"as its link carries: choose another --rate")
            self._accept_info(dataclasses.replace(self.info, rate_hz=cfg.rate_hz), publish=False)
        self._publish()
        ack = await self._request(P.CmdStart(), reader)
        if not ack.ok:
            raise DeviceError(f"device {self.info.name if self.info else '?'} refused START "
                              f"(ACK result {ack.result})")
        self._streaming = True
        self._ever_streamed = True
        self._last_sample = self._last_frame = time.monotonic()
        self.health.state = "streaming"

    def _accept_info(self, info: P.DeviceInfo, publish: bool = True) -> None:
        """Check DEVICE_INFO against the rig, notice reboots and (with ``publish``) make or
        refresh the outlets."""
        rig = self.config.rig
        if isinstance(rig, str):
            rig = self._auto_rig(info)
        if rig is not None:
            sites = list(rig.site_names)
            if info.sensor_count != len(sites):
                raise DeviceError(
                    f"device {info.name} ({info.serial:016x}) reports {info.sensor_count} "
                    f"sensors but rig {rig.id!r} has {len(sites)}: pass the rig the device is "
                    f"wired as (--rig {info.rig_id}) or re-flash the device")
            if info.rig_id and info.rig_id != rig.id:
                log.warning("device %s says rig %r, using rig %r (same sensor count)",
                            info.name, info.rig_id, rig.id)
        old = self.info
        if old is not None and old.serial == info.serial and old.boot_id != info.boot_id:
            self._on_reboot("boot_id changed")
        self.info = info
        self._rig = rig
        self.health.device = info.name
        self.health.nominal_hz = float(info.rate_hz)
        if publish:
            self._publish()

    def _publish(self) -> None:
        """Make the outlets for ``self.info``, or remake the IMU outlet if its layout changed
        (same source_id, so LSL inlets with recovery move over)."""
        info, rig = self.info, self._rig
        if not self.config.publish or info is None:
            return
        def layout(i: P.DeviceInfo) -> tuple:
            return (i.serial, i.sensor_count, i.flags, i.rate_hz)
        if self.outlet is not None and layout(self.outlet.spec.info) != layout(info):
            self.outlet.close()
            self.outlet = None
        if self.outlet is None:
            spec = ImuStreamSpec(
                info=info, name=self.config.name or f"imusic-{info.serial:016x}",
                sites=(list(rig.site_names) if rig is not None
                       else default_sites(info.sensor_count)),
                reference=getattr(rig, "reference", None),
                rig_description=getattr(rig, "description", ""), transport=self.health.transport,
                clock={"window_s": self.clock.window_s, "bucket_s": self.clock.bucket_s,
                       **(self.clock.fit.as_dict() if self.clock.ready else {})})
            self.outlet = ImuOutlet(spec)
            if self.events is None:
                self.events = EventOutlet(spec)

    def _auto_rig(self, info: P.DeviceInfo) -> Any:
        """The rig the device says it is wired as, or None (generic site names) if unknown."""
        if self._auto is not None and self._auto[0] == info.rig_id:
            return self._auto[1]
        rig = None
        try:
            from hardware.rig import load_rig

            rig = load_rig(info.rig_id)
            if len(rig.site_names) != info.sensor_count:
                rig = None
        except Exception as err:  # unknown rig id, or hardware/ unavailable
            log.warning("device %s names rig %r, which cannot be loaded (%s): sites will be "
                        "named s00..; pass --rig", info.name, info.rig_id, err)
        self._auto = (info.rig_id, rig)
        return rig

    def _on_reboot(self, why: str) -> None:
        self.health.reboots += 1
        self.clock.reset()
        if self.device_id is not None:
            self.decoder.reset_seq(self.device_id)
        self._lost_seen = self.decoder.stats.lost_instants
        self._event({"event": "reboot", "reason": why})

    # ------------------------------------------------------------------ receiving

    async def _read_loop(self, link: Transport) -> None:
        while True:
            data = await link.read()
            # When the bytes reached the host (UDP: the kernel's receive time), not when this
            # loop got to them: frames read late after a busy spell are not late arrivals.
            arrival = self.now() - link.arrival_age()
            self._sender = link.last_sender
            for dev, msg in self.decoder.feed(data):
                try:
                    self._dispatch(dev, msg, arrival)
                except DeviceError:
                    raise   # the device or a consumer cannot go on as configured: no retry helps
                except Exception as err:  # noqa: BLE001 - one bad message must not end the link
                    self._bad_message(dev, msg, err)
            st = self.decoder.stats
            self.health.refused_senders = getattr(link, "refused", 0)
            self.health.crc_errors = st.crc_errors
            self.health.frame_errors = st.errors

    def _bad_message(self, dev: int, msg: P.Message, err: Exception) -> None:
        """Count and name a decoded message that raised while being handled; drop it."""
        self.health.message_errors += 1
        self.health.last_error = (f"{type(msg).__name__} from device {dev:08x} dropped: "
                                  f"{type(err).__name__}: {err}")
        log.warning("%s: %s", self.health.transport, self.health.last_error)

    def _dispatch(self, dev: int, msg: P.Message, arrival: float) -> None:
        if self.device_id is None:
            if isinstance(msg, P.Samples) and self.info is None:
                return  # wait for DEVICE_INFO to know who this is
            self.device_id = dev
        elif dev != self.device_id:
            return
        if isinstance(msg, P.DeviceInfo) and not self._info_from_device(msg):
            return
        self._last_frame = time.monotonic()
        self._heard.set()
        self.health.frames += 1
        for match, fut in list(self._waiters):
            if not fut.done() and match(msg):
                fut.set_result(msg)
                return
        if isinstance(msg, P.Samples):
            self._on_samples(msg, arrival)
        elif isinstance(msg, P.DeviceInfo):
            # Unasked DEVICE_INFO: the device (re)booted and announces itself, or tells of a
            # new configuration (a rate applied at START): refresh what we publish.
            if self.info is not None and msg != self.info:
                rebooted = msg.boot_id != self.info.boot_id
                try:
                    self._accept_info(msg)
                except DeviceError as err:
                    self.health.last_error = str(err)
                    return
                if rebooted:
                    self._reconfigure = True
        elif isinstance(msg, P.Status):
            h = self.health
            h.battery_pct, h.battery_mv = msg.battery_pct, msg.battery_mv
            h.temperature_c = msg.temperature_c
            h.device_errors = {"sensor_errors": msg.sensor_errors, "overruns": msg.overruns,
                               "tx_dropped": msg.tx_dropped}
        elif isinstance(msg, P.Event):
            rec = {"event": EVENT_NAMES.get(msg.kind, f"kind{msg.kind}"), "sensor": msg.sensor,
                   "value": msg.value, "device_time_us": msg.t_us}
            ts = None
            if self.clock.ready and msg.kind != P.EVENT_BOOTED:
                ts = float(self.clock.map(msg.t_us))
            self._event(rec, ts)

    def _info_from_device(self, msg: P.DeviceInfo) -> bool:
        """Whether a DEVICE_INFO may be taken: a changed one must come from the address the
        device's first accepted DEVICE_INFO came from (else it is counted and refused). That
        address is the device's for the session: a copy sent from elsewhere does not move it."""
        sender = self._sender
        if (self.info is not None and msg != self.info and sender is not None
                and self._device_addr is not None and sender != self._device_addr):
            self.health.refused_info += 1
            self.health.last_error = (
                f"refused DEVICE_INFO for device {self.device_id or 0:08x} from "
                f"{sender[0]}:{sender[1]}: the device sends from {self._device_addr[0]}:"
                f"{self._device_addr[1]} (use --allow HOST to accept only the wearable)")
            log.warning("%s: %s", self.health.transport, self.health.last_error)
            return False
        if sender is not None and self._device_addr is None:
            self._device_addr = sender
        return True

    def _on_samples(self, s: P.Samples, arrival: float) -> None:
        info = self.info
        if info is None or (self.config.publish and self.outlet is None):
            return  # before the handshake has made the stream: not part of the session
        if s.n_sensors != info.sensor_count or s.flags != info.flags:
            self.health.frame_errors += 1
            self.health.last_error = (f"SAMPLES with {s.n_sensors} sensors/flags 0x{s.flags:02x} "
                                      f"from a device that said {info.sensor_count}/0x{info.flags:02x}")
            return
        raw_t = s.t_us
        if self.on_arrival is not None:
            self.on_arrival((s.seq + s.n_instants - 1) % P.SEQ_MOD, int(raw_t[-1]), arrival)
        if self.clock.observe(int(raw_t[-1]), arrival):
            self._on_reboot("device time ran backwards")
            self.clock.observe(int(raw_t[-1]), arrival)
        t_us = self.clock.unwrap(raw_t)
        ts = self.clock.map(t_us, unwrapped=True)
        seqs = s.seqs
        now = time.monotonic()
        h = self.health
        lost_total = self.decoder.stats.lost_instants
        new_lost = lost_total - self._lost_seen
        if new_lost < 0:
            new_lost = 0  # a tracker was reset by a reboot
        self._lost_seen = lost_total
        if new_lost:
            h.lost += new_lost
            self._event({"event": "gap", "lost": new_lost, "seq_next": int(seqs[0]),
                         "t_before": self._last_ts, "t_after": float(ts[0])}, float(ts[0]))
        if self._gap_open is not None:
            self._close_gap(float(ts[0]))
        h.samples += s.n_instants
        self._last_sample = now
        self._last_ts = float(ts[-1])
        # The rate over the last 2 s of arrivals (when frames reached the host, so that a
        # burst read at once after a busy spell does not read as thousands of Hz).
        rw = self._rate_window
        rw.append((arrival, s.n_instants))
        while rw and arrival - rw[0][0] > 2.0:
            rw.popleft()
        if len(rw) > 1 and arrival - rw[0][0] > 0.1:
            h.rate_hz = sum(n for _, n in list(rw)[1:]) / (arrival - rw[0][0])
        fit = self.clock.fit
        h.drift_ppm, h.residual_ms = fit.drift_ppm, fit.residual_ms
        # While the clock fit is young (just started, or after a reboot), hold the frames:
        # the first arrivals are often late (the host is busy with the handshake), and stamping
        # them at once would publish timestamps that later ones overtake.
        self._held.append((s, t_us, seqs, ts, self.clock.resets))
        if fit.span_s < self.config.warmup_s and len(self._held) < MAX_HELD_FRAMES:
            return
        self._flush_held()

    def _flush_held(self) -> None:
        """Publish held frames, stamped with the current fit (or, for frames from before a
        clock reset, with the fit they were first mapped with)."""
        held, self._held = self._held, []
        for s, t_us, seqs, ts0, resets in held:
            ts = self.clock.map(t_us, unwrapped=True) if (
                resets == self.clock.resets and self.clock.ready) else ts0
            if self.outlet is not None:
                self.outlet.push(s, ts, t_us, seqs)
            if self.on_samples is not None:
                self.on_samples(samples_to_rows(s, self.info, t_us, seqs), ts)

    # ------------------------------------------------------------------ events

    def _health_record(self) -> dict:
        d = self.health.as_dict()
        if self.clock.ready:
            d["clock"] = self.clock.fit.as_dict()
        d["decoder"] = self.decoder.stats.as_dict()
        return d

    def _event(self, record: dict, ts: float | None = None) -> None:
        self.event_log.append(record)
        if self.events is not None:
            self.events.push(record, ts)

    def _open_gap(self, reason: str) -> None:
        if self._gap_open is None and self._streaming:
            self.health.gaps += 1
            self._gap_open = {"event": "silence", "reason": reason, "t_start": self._last_ts}

    def _close_gap(self, t_end: float | None = None) -> None:
        if self._gap_open is not None:
            rec, self._gap_open = self._gap_open, None
            rec["t_end"] = t_end
            self._event(rec, t_end)
