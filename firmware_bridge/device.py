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

How the pieces fit. ``DeviceSession`` runs the connection loop (open, handshake, watch,
back off, reopen) and handles each decoded message; its state is declared in ``__init__``,
and what one connection needs (the link, its read loop, run()'s stop) is passed along, not
kept. Its parts:

* device_config.py: ``SessionConfig`` (every threshold, each a documented field), ``Health``,
  ``SessionRig``, ``DeviceError``, ``check_rig`` / ``named_rig``;
* device_parts.py: ``CommandChannel`` (each command answered or retried; the read loop
  offers it every message first), ``RateMeter``, ``WarmupHold``, ``Backoff``, ``EventLog``;
* clock.py: ``ClockMap`` (device time to LSL time); outlet.py: the IMU and events outlets.

At about 470 lines the module is over the project's ~400: the connection loop and the
message handlers share the device's state (who it is, whether it streams, its last samples,
its gaps), and splitting them would hand that state around instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Callable

import numpy as np
import pylsl

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.clock import ClockMap
from imusic.firmware_bridge.device_config import (DeviceError, Health, SessionConfig, SessionRig,
                                           check_rig, named_rig)
from imusic.firmware_bridge.device_parts import Backoff, CommandChannel, EventLog, RateMeter, WarmupHold
from imusic.firmware_bridge.outlet import (EventOutlet, ImuOutlet, ImuStreamSpec, default_sites,
                                    samples_to_rows)
from imusic.firmware_bridge.transports.base import Transport, TransportError, TransportFactory

__all__ = ["DeviceError", "DeviceSession", "Health", "SessionConfig", "SessionRig"]

log = logging.getLogger(__name__)

EVENT_NAMES = {P.EVENT_TAP: "tap", P.EVENT_SYNC: "sync_pulse", P.EVENT_BUTTON: "button",
               P.EVENT_BOOTED: "booted"}


class _Silence(Exception):
    """No frames for too long: reconnect."""


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
        self.clock = ClockMap(self.config.clock)
        self.health = Health()
        self.info: P.DeviceInfo | None = None
        self.device_id: int | None = self.config.device_id
        self.outlet: ImuOutlet | None = None
        self.events: EventOutlet | None = None
        cfg = self.config
        self.event_log = EventLog(maxlen=cfg.event_log_max)
        """The newest ``event_log_max`` event records also pushed to the events stream (gaps,
        reboots, taps...), a deque; ``event_log.dropped`` counts those pushed out."""
        self.commands = CommandChannel(cfg.command_timeout_s, cfg.command_retries)
        self.rate_meter = RateMeter(cfg.rate_window_s, cfg.rate_min_span_s)
        self.warmup = WarmupHold(cfg.warmup_s, cfg.warmup_max_frames)
        self.backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.replug_poll_s)
        self._streaming = False
        self._ever_streamed = False
        self._reconfigure = False                # re-send the configuration (after a reboot)
        self._last_sample = 0.0                  # monotonic time of the last samples
        self._last_ts: float | None = None       # timestamp of the last instant published
        self._gap_open: dict | None = None       # the silence being recorded
        self._lost_seen = 0                      # the decoder's lost instants already counted
        self._last_health = 0.0
        self._heard = asyncio.Event()            # something came from our device
        self._device_addr: tuple | None = None   # where the accepted DEVICE_INFO came from
        self._rig: SessionRig | None = None
        self._auto: tuple[str, SessionRig | None] | None = None   # (rig id, rig) of "auto"

    # ------------------------------------------------------------------ the main loop

    async def run(self, stop: asyncio.Event | None = None) -> Health:
        """Stream until ``stop`` is set; returns the final health. Raises DeviceError when the
        device does not fit the configuration."""
        stop = stop or asyncio.Event()
        self.backoff.reset()
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
                    reader = asyncio.create_task(self._read_loop(link))
                    try:
                        await self._handshake(link, reader, stop)
                        self.backoff.reset()
                        await self._watch(stop, link, reader)
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
                    self.rate_meter.clear()
                    failed = link
                    if link is not None and not link.persistent:
                        await link.close()
                        link = None
                    if self._ever_streamed:
                        self.health.reconnects += 1
                    else:
                        self.health.connect_failures += 1
                    self.health.state = "reconnecting" if self._ever_streamed else "connecting"
                    await self.backoff.wait(stop, failed)
        finally:
            await self._shutdown(link)
        return self.health

    async def _shutdown(self, link: Transport | None) -> None:
        self.health.state = "stopped"
        self._flush_held()
        if link is not None:
            if link.is_open and self.info is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(link.write(P.encode(P.CmdStop(), self.device_id or 0)),
                                           self.config.stop_timeout_s)
            await link.close()
        self._close_gap()
        if self.events is not None:
            self._event({"event": "stopped", "health": self._health_record()})
            self.events.close()
        if self.outlet is not None:
            self.outlet.close()

    async def _watch(self, stop: asyncio.Event, link: Transport, reader: asyncio.Task) -> None:
        """Wait for stop; raise _Silence when frames stop; re-configure after a reboot."""
        silence = self.config.silence_s
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(self.config.watch_tick_s, silence / 4))
            if reader.done():
                reader.result()  # re-raise TransportClosed and friends
                raise TransportError(f"{self.health.transport}: reader ended")
            now = time.monotonic()
            if self._reconfigure:
                self._reconfigure = False
                await self._configure_and_start(link, reader)
            if now - self._last_sample > self.config.rate_window_s:
                self.health.rate_hz = 0.0   # the rate window is empty: nothing is arriving
            if self._streaming and now - self._last_sample > silence:
                raise _Silence(f"no samples for {now - self._last_sample:.1f} s")
            if self.events is not None and now - self._last_health >= self.config.health_every_s:
                self._last_health = now
                self._event({"event": "health", "health": self._health_record()})

    # ------------------------------------------------------------------ handshake

    async def _request(self, link: Transport, cmd: P.Command, reader: asyncio.Task) -> P.Message:
        """Send ``cmd`` and wait for its answer (DEVICE_INFO or ACK), with retries."""
        return await self.commands.request(link, cmd, self.device_id or 0, reader)

    async def _handshake(self, link: Transport, reader: asyncio.Task, stop: asyncio.Event
                         ) -> None:
        self.health.state = "handshake"
        if link.persistent and not self._heard.is_set():
            # A UDP wearable is addressed by where its datagrams come from: wait to hear it.
            self.health.state = "listening"
            waits = [asyncio.ensure_future(self._heard.wait()), reader,
                     asyncio.ensure_future(stop.wait())]
            done, _ = await asyncio.wait(waits, timeout=self.config.listen_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                if w is not reader:
                    w.cancel()
            if reader in done:
                reader.result()
            if stop.is_set():
                return
            if not self._heard.is_set():
                raise asyncio.TimeoutError(
                    f"no device heard on {self.health.transport} in {self.config.listen_s:g} s: "
                    f"is the wearable on, "
                    f"on this network and sending to this port?")
            self.health.state = "handshake"
        info = await self._request(link, P.CmdGetInfo(), reader)
        if isinstance(self.config.rig, str):
            # Loading a rig takes a second or more (the face model): off the event loop, so
            # that the frames of a device already streaming are read as they arrive.
            await asyncio.to_thread(self._auto_rig, info)
        self._accept_info(info, publish=False)   # published once configured (its rate known)
        await self._configure_and_start(link, reader)

    async def _configure_and_start(self, link: Transport, reader: asyncio.Task) -> None:
        cfg = self.config
        if cfg.rate_hz and self.info is not None and self.info.rate_hz != cfg.rate_hz:
            # A new rate takes effect at the next START: stop first (a Wi-Fi device streams
            # from boot), set it, and publish the stream at the rate the device accepted.
            await self._request(link, P.CmdStop(), reader)
            self._streaming = False
            ack = await self._request(link, P.CmdSetRate(cfg.rate_hz), reader)
            if not ack.ok:
                raise DeviceError(
                    f"device {self.info.name} refused rate {cfg.rate_hz} Hz (ACK result "
                    f"{ack.result}); it takes {P.RATE_MIN_HZ}..{P.RATE_MAX_HZ} Hz and as much "
                    f"as its link carries: choose another --rate")
            self._accept_info(dataclasses.replace(self.info, rate_hz=cfg.rate_hz), publish=False)
        self._publish()
        ack = await self._request(link, P.CmdStart(), reader)
        if not ack.ok:
            raise DeviceError(f"device {self.info.name if self.info else '?'} refused START "
                              f"(ACK result {ack.result})")
        self._streaming = True
        self._ever_streamed = True
        self._last_sample = time.monotonic()
        self.health.state = "streaming"

    def _accept_info(self, info: P.DeviceInfo, publish: bool = True) -> None:
        """Check DEVICE_INFO against the rig, notice reboots and (with ``publish``) make or
        refresh the outlets."""
        rig = self.config.rig
        if isinstance(rig, str):
            rig = self._auto_rig(info)
        check_rig(info, rig)
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
                reference=rig.reference if rig is not None else None,
                rig_description=getattr(rig, "description", ""), transport=self.health.transport,
                clock={"window_s": self.clock.window_s, "bucket_s": self.clock.bucket_s,
                       **(self.clock.fit.as_dict() if self.clock.ready else {})})
            self.outlet = ImuOutlet(spec)
            if self.events is None:
                self.events = EventOutlet(spec)

    def _auto_rig(self, info: P.DeviceInfo) -> SessionRig | None:
        """The rig the device says it is wired as, or None (generic site names) if unknown."""
        if self._auto is None or self._auto[0] != info.rig_id:
            self._auto = (info.rig_id, named_rig(info))
        return self._auto[1]

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
            sender = link.last_sender
            for dev, msg in self.decoder.feed(data):
                try:
                    self._dispatch(dev, msg, arrival, sender)
                except DeviceError:
                    raise   # the device or a consumer cannot go on as configured: no retry helps
                except Exception as err:  # noqa: BLE001 - one bad message must not end the link
                    self._bad_message(dev, msg, err)
            st, h = self.decoder.stats, self.health
            h.refused_senders = getattr(link, "refused", 0)
            # The decoder counts over the whole session (one decoder, kept across reconnects);
            # the session adds the SAMPLES it refused for their layout.
            h.crc_errors = st.crc_errors
            h.frame_errors = st.errors + h.layout_errors

    def _bad_message(self, dev: int, msg: P.Message, err: Exception) -> None:
        """Count and name a decoded message that raised while being handled; drop it."""
        self.health.message_errors += 1
        self.health.last_error = (f"{type(msg).__name__} from device {dev:08x} dropped: "
                                  f"{type(err).__name__}: {err}")
        log.warning("%s: %s", self.health.transport, self.health.last_error)

    def _dispatch(self, dev: int, msg: P.Message, arrival: float,
                  sender: tuple | None = None) -> None:
        """Handle one decoded message (``sender``: the address it came from, where the link
        tells)."""
        if self.device_id is None:
            if isinstance(msg, P.Samples) and self.info is None:
                return  # wait for DEVICE_INFO to know who this is
            self.device_id = dev
        elif dev != self.device_id:
            return
        if isinstance(msg, P.DeviceInfo) and not self._info_from_device(msg, sender):
            return
        self._heard.set()
        self.health.frames += 1
        if self.commands.offer(msg):
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

    def _info_from_device(self, msg: P.DeviceInfo, sender: tuple | None) -> bool:
        """Whether a DEVICE_INFO may be taken: a changed one must come from the address the
        device's first accepted DEVICE_INFO came from (else it is counted and refused). That
        address is the device's for the session: a copy sent from elsewhere does not move it."""
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
            self.health.layout_errors += 1
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
        rate = self.rate_meter.add(arrival, s.n_instants)
        if rate is not None:
            h.rate_hz = rate
        fit = self.clock.fit
        h.drift_ppm, h.residual_ms = fit.drift_ppm, fit.residual_ms
        # While the clock fit is young (just started, or after a reboot), hold the frames:
        # the first arrivals are often late (the host is busy with the handshake), and stamping
        # them at once would publish timestamps that later ones overtake.
        if self.warmup.hold((s, t_us, seqs, ts, self.clock.resets), fit.span_s):
            return
        self._flush_held()

    def _flush_held(self) -> None:
        """Publish held frames, stamped with the current fit (or, for frames from before a
        clock reset, with the fit they were first mapped with)."""
        for s, t_us, seqs, ts0, resets in self.warmup.release():
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
