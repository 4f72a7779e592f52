"""What the emulator is told (``EmulatorConfig``: the device, its motion, its faults) and
what it counts (``EmulatorStats``), apart from the emulator itself so that the twin source
(emulator_twin.py), the clock (emulator_clock.py), the fault schedule (emulator_faults.py) and
the truth recorder (emulator_recorder.py) can read the config without importing the emulator.
``check(cfg)`` refuses a config no device could run, with one line naming the flag."""

from __future__ import annotations

import os
import secrets
import zlib
from dataclasses import dataclass
from typing import Any, Callable

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator_fusion import DeviceFusionConfig

REPORTS = ("raw", "orientation")
"""What a device reports: raw readings, or on-device orientation (quaternion) + acceleration."""
TRANSPORTS = ("serial", "udp", "ble")
"""The links an emulator speaks on: a new pty, UDP datagrams, an emulated BLE peripheral."""


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
    neutral_s: float = 3.0
    """A still neutral face and head for this long at the start of a take or procedural motion,
    as a real take starts (the model's neutral-pose calibration needs it); 0: none. A
    ``Motion`` given in-process is streamed as it is."""
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


def check(cfg: EmulatorConfig) -> None:
    """Raise ValueError (one line naming the flag) for a config no device could run."""
    if cfg.transport not in TRANSPORTS:
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


def flags(cfg: EmulatorConfig) -> int:
    """The DEVICE_INFO / SAMPLES flags of the device ``cfg`` describes: which blocks it sends."""
    return ((P.FLAG_MAG if cfg.mag else 0)
            | (P.FLAG_QUAT if cfg.report == "orientation" else 0)
            | (0 if cfg.gyro else P.FLAG_NO_GYRO))


def device_serial(cfg: EmulatorConfig) -> int:
    """The device serial: ``cfg.serial``, or "IMUS" and a device id drawn for this emulator
    from its pid and a random number (never 0, which addresses every device)."""
    if cfg.serial is not None:
        return int(cfg.serial)
    low32 = zlib.crc32(f"{os.getpid()}:{secrets.token_hex(8)}".encode()) or 1
    return (0x494D5553 << 32) | low32
