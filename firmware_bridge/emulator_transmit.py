"""The emulated device's send path: every message it puts on its link goes through one
``Transmitter``, which builds the SAMPLES frames from the twin's chunks, applies the fault
schedule (emulator_faults.py: drop, flip bytes), stamps them on the device clock
(emulator_clock.py), sends the motion's taps as EVENTs, and tells the truth recorder
(emulator_recorder.py) what went out and what the link refused or lost.

    tx = Transmitter(cfg, device_id, clock, faults, recorder, stats)
    tx.link = PtyLink()                          # or make_link(cfg, name)
    await tx.send(P.DeviceInfo(...))             # any message; False: the link refused it
    await tx.frame(chunk, i0, i1, boot_id)       # SAMPLES for instants i0:i1 (+ their taps)
    tx.lost_in_link(await tx.link.disconnect(s)) # a pull: what the host never read is lost
    tx.seq, tx.taps_sent

``device_info(...)`` makes the DEVICE_INFO the device sends. The emulator (emulator.py)
decides *when* (pacing, commands); this module decides *what*.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator_config import flags as layout

if TYPE_CHECKING:
    from imusic.firmware_bridge.emulator_clock import EmulatorClock
    from imusic.firmware_bridge.emulator_config import EmulatorConfig, EmulatorStats
    from imusic.firmware_bridge.emulator_faults import FaultSchedule
    from imusic.firmware_bridge.emulator_recorder import TruthRecorder
    from imusic.firmware_bridge.emulator_twin import TwinChunk, TwinSource

FW_VERSION = (1, 0, 0)
"""Firmware version the emulator reports."""


def make_link(cfg: "EmulatorConfig", name: str) -> Any:
    """The device side of the link ``cfg.transport`` names (emulator_links.py), not started."""
    from imusic.firmware_bridge import emulator_links as links

    if cfg.transport == "serial":
        return links.PtyLink()
    if cfg.transport == "udp":
        return links.UdpLink(cfg.udp_target)
    return links.BleLink(name, max_chunk=cfg.ble_max_chunk, cut=cfg.ble_cut)


def device_info(cfg: "EmulatorConfig", twin: "TwinSource", serial: int, boot_id: int,
                rate_hz: int, name: str) -> P.DeviceInfo:
    """The DEVICE_INFO the device sends: its identity, rate, layout (``flags``), the twin's
    scales and ranges (0 for blocks it does not send) and instants per frame (about 50 frames
    a second unless ``cfg.instants_per_frame``; never more than a packet holds)."""
    ipf = cfg.instants_per_frame or max(1, round(rate_hz / 50))
    flags = layout(cfg)
    per_instant = P.sample_dtype(twin.rig.n_sites, flags).itemsize
    fit = (P.MAX_PACKET - P.MIN_PACKET - 15) // per_instant
    ipf = int(max(1, min(ipf, fit, P.MAX_INSTANTS)))
    gyro, mag = cfg.gyro, cfg.mag
    return P.DeviceInfo(
        fw_version=FW_VERSION, serial=serial, boot_id=boot_id, rate_hz=rate_hz,
        sensor_count=twin.rig.n_sites, flags=flags, accel_scale=twin.scales["acc"],
        gyro_scale=twin.scales["gyro"] if gyro else 0.0,
        mag_scale=twin.scales["mag"] if mag else 0.0, accel_range=twin.ranges["acc"],
        gyro_range=twin.ranges["gyro"] if gyro else 0.0,
        mag_range=twin.ranges["mag"] if mag else 0.0,
        instants_per_frame=ipf, rig_id=twin.rig.id, name=name)


class Transmitter:
    """What the device sends, frame by frame (see the module docstring)."""

    def __init__(self, cfg: "EmulatorConfig", device_id: int, clock: "EmulatorClock",
                 faults: "FaultSchedule", recorder: "TruthRecorder",
                 stats: "EmulatorStats") -> None:
        self.config = cfg
        self.device_id = device_id
        self.link: Any = None
        """The device side of the link (emulator_links.py); set before the first send."""
        self.seq = 0
        """Sequence number of the next instant (0 after a boot)."""
        self.taps_sent: list[int] = []
        """Device times (us) of the EVENT taps sent."""
        self._clock, self._faults, self._recorder, self._stats = clock, faults, recorder, stats
        self._tap_i = 0                  # next tap of the current chunk

    def new_chunk(self) -> None:
        """The emulator moved to a new twin chunk (its taps and truth frames start at 0)."""
        self._tap_i = 0
        self._recorder.new_chunk()

    async def send(self, msg: Any) -> bool:
        """Encode and send one message; False where the link refused it (down)."""
        data = P.encode(msg, self.device_id)
        ok = await self.link.send(data)
        if ok:
            self._recorder.took(len(data))
        else:
            self._recorder.refused()
        return ok

    def lost_in_link(self, unread: int) -> None:
        """The last ``unread`` bytes the link took never reached the host (a pulled cable
        discards what is in flight): their SAMPLES frames count as tx_dropped, not sent."""
        frames = self._recorder.unread(unread)
        self._stats.frames_sent -= frames
        self._stats.tx_dropped += frames

    async def frame(self, chunk: "TwinChunk", i0: int, i1: int, boot_id: int) -> None:
        """SAMPLES for instants ``i0:i1`` of ``chunk`` (dropped or corrupted as the fault
        schedule says), then the taps by its last instant."""
        stats = self._stats
        stamps = np.maximum(chunk.stamp_us[i0:i1] + self._clock.offset_us(), 0)
        t0 = int(stamps[0])
        blocks = self._blocks(chunk, i0, i1)
        msg = P.Samples(seq=self.seq, t0_us=t0, dt_us=(stamps - t0).astype(np.uint32),
                        **blocks)
        data = P.encode(msg, self.device_id)
        n = i1 - i0
        rec = self._recorder.new_frame()
        lost = self._faults.drop()
        corrupted = ok = False
        if lost:
            stats.frames_lost += 1
        else:
            data, flipped = self._faults.corrupt(data)
            if flipped:
                corrupted = True
                stats.frames_corrupted += 1
                stats.bytes_flipped += flipped
            ok = await self.link.send(data)
            if ok:
                stats.frames_sent += 1
                self._recorder.took(len(data), rec, samples=True)
            else:
                self._recorder.refused()
                stats.tx_dropped += 1
        stats.frames += 1
        stats.instants += n
        await self._taps(chunk, i0, i1, t0)
        self._recorder.keep_frame(
            rec, seq=self.seq, n=n, stamps=stamps.astype(np.int64), t=chunk.t[i0:i1].copy(),
            boot_id=boot_id, blocks=blocks, sent=ok and not corrupted, lost=lost,
            corrupted=corrupted, tx_dropped=(not lost and not ok))
        self.seq = (self.seq + n) % P.SEQ_MOD

    async def _taps(self, chunk: "TwinChunk", i0: int, i1: int, t0: int) -> None:
        """EVENT tap for each tap of the motion by instant ``i1 - 1``, stamped on the device
        clock (``t0``: the device time of instant ``i0``)."""
        t_last = float(chunk.t[i1 - 1])
        while self._tap_i < len(chunk.taps) and chunk.taps[self._tap_i] <= t_last:
            tap = chunk.taps[self._tap_i]
            self._tap_i += 1
            tap_us = max(0, t0 + int(round(self._clock.us(tap - float(chunk.t[i0])))))
            await self.send(P.Event(t_us=tap_us, kind=P.EVENT_TAP, sensor=255, value=0))
            self._stats.events_sent += 1
            self.taps_sent.append(tap_us)

    def _blocks(self, chunk: "TwinChunk", i0: int, i1: int) -> dict[str, np.ndarray]:
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
