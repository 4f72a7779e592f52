"""What a device session (device.py) is told and what it reports: ``SessionConfig`` (the
device to expect, what to publish, and every threshold of the session's pieces, each with a
one-line doc), ``Health`` (the counters and state a health line shows), ``SessionRig`` (what
the session needs of a rig; ``check_rig``, ``named_rig``) and ``DeviceError`` (the device
cannot be used as configured).
device.py re-exports them, so ``from firmware_bridge.device import SessionConfig`` stays."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from imusic.firmware_bridge.clock import ClockConfig

if TYPE_CHECKING:
    from imusic.firmware_bridge.protocol import DeviceInfo

log = logging.getLogger("imusic.firmware_bridge.device")


class DeviceError(RuntimeError):
    """The device cannot be used as configured (wrong rig, refused rate, a consumer that cannot
    read its channels...): no retry helps. A sample callback may raise it to end the session."""


class SessionRig(Protocol):
    """What a session needs of a rig (``hardware.rig.Rig`` has it; a ``description`` is used
    when there is one)."""

    @property
    def id(self) -> str:
        """The rig's id (DEVICE_INFO's ``rig_id`` names it)."""

    @property
    def site_names(self) -> Sequence[str]:
        """Site names in wire order (one per sensor)."""

    @property
    def reference(self) -> str | None:
        """The reference site's name."""


@dataclass
class SessionConfig:
    """How to talk to the device, what to publish, and the session's thresholds."""

    rate_hz: int | None = None
    """Ask for this sample rate (None: keep the device's)."""
    rig: SessionRig | str | None = None
    """A ``hardware.rig.Rig`` (or anything with ``id``, ``site_names``, ``reference``) the device
    must match; ``"auto"``: the rig the device names in DEVICE_INFO, if it is a known one;
    None: trust the device (sites named s00, s01, ...)."""
    name: str | None = None
    """LSL stream name (default ``imusic-<serial>``)."""
    device_id: int | None = None
    """Talk to this device id only (links with several devices); None: the first one heard."""
    silence_s: float = 1.0
    """No samples for this long while streaming: record a gap and reconnect (s)."""
    watch_tick_s: float = 0.1
    """The watchdog looks at most this often (s; a quarter of ``silence_s`` when shorter)."""
    command_timeout_s: float = 0.3
    """Wait this long for a command's answer (DEVICE_INFO or ACK) before sending it again (s)."""
    command_retries: int = 3
    """Tries per command before the handshake gives up (and the session reconnects)."""
    listen_s: float = 5.0
    """A link that outlives its device (UDP) waits this long to hear it before the handshake."""
    stop_timeout_s: float = 0.5
    """At shutdown, STOP is written to the device within this deadline (s), or skipped."""
    backoff_initial_s: float = 0.1
    """First wait before reopening a failed link (s); doubled per failure in a row."""
    backoff_max_s: float = 5.0
    """Longest wait before reopening a failed link (s)."""
    replug_poll_s: float = 0.05
    """While waiting to reopen a link whose device was absent (a serial port's path gone),
    look this often whether it is back, and reopen at once when it is."""
    warmup_s: float = 0.5
    """Hold frames until the clock fit spans this much device time (after a start or reboot),
    then publish them stamped with that fit."""
    warmup_max_frames: int = 200
    """Frames held at most while the clock fit warms up (then they are published anyway)."""
    clock: ClockConfig = field(default_factory=ClockConfig)
    """The device clock fit's thresholds (window, bucket, floor band, slope gate, stalls)."""
    rate_window_s: float = 2.0
    """The achieved rate is counted over this much arrival time; no samples for as long: 0 Hz."""
    rate_min_span_s: float = 0.1
    """The rate is shown once the frames in its window span this much arrival time (s)."""
    health_every_s: float = 5.0
    """Period of the ``health`` markers in the events stream."""
    event_log_max: int = 10_000
    """Event records kept in ``DeviceSession.event_log`` (the newest; the events stream has
    all of them): about 14 h of health markers every 5 s."""
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
    """Bad frames over the whole session, across reconnects: every frame the decoder dropped
    (``DecoderStats.errors``: CRC, COBS, truncated, overlong, version, type, malformed) plus
    every SAMPLES whose layout differs from the device's DEVICE_INFO (``layout_errors``)."""
    layout_errors: int = 0
    """SAMPLES frames with another sensor count or flags than DEVICE_INFO said (dropped)."""
    crc_errors: int = 0
    """Frames dropped for a bad CRC (the decoder's count, over the whole session)."""
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


def check_rig(info: "DeviceInfo", rig: SessionRig | None) -> None:
    """Raise DeviceError (naming the device, the rig and the fix) when the device has another
    sensor count than ``rig``; warn when it names another rig of the same size."""
    if rig is None:
        return
    sites = list(rig.site_names)
    if info.sensor_count != len(sites):
        raise DeviceError(
            f"device {info.name} ({info.serial:016x}) reports {info.sensor_count} "
            f"sensors but rig {rig.id!r} has {len(sites)}: pass the rig the device is "
            f"wired as (--rig {info.rig_id}) or re-flash the device")
    if info.rig_id and info.rig_id != rig.id:
        log.warning("device %s says rig %r, using rig %r (same sensor count)",
                    info.name, info.rig_id, rig.id)


def named_rig(info: "DeviceInfo") -> SessionRig | None:
    """The rig the device says it is wired as (``--rig auto``), or None (generic site names)
    when it is unknown or has another sensor count. Loading one takes a second or more."""
    try:
        from imusic.hardware.rig import load_rig

        rig = load_rig(info.rig_id)
    except Exception as err:  # unknown rig id, or hardware/ unavailable
        log.warning("device %s names rig %r, which cannot be loaded (%s): sites will be "
                    "named s00..; pass --rig", info.name, info.rig_id, err)
        return None
    return rig if len(rig.site_names) == info.sensor_count else None
