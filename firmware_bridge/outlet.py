"""The IMU LSL outlet: one stream per device, type ``IMU``, double64, with full metadata.

Channels, per site in rig order: ``site.acc.x|y|z`` (m/s², gravity included),
``site.gyro.x|y|z`` (rad/s, unless the device sends no gyro: FLAG_NO_GYRO), ``site.mag.x|y|z``
(µT, when the device has magnetometers), ``site.quat.w|x|y|z`` (unit "normalized", type
"Orientation", scalar first: the sensor-to-earth rotation in the device's own earth frame, when
it sends an on-device quaternion); then ``device.time_us`` (the device clock, µs, unwrapped) and
``device.seq`` (sequence number). Every sample carries its own timestamp from the clock map.
``desc`` holds per-channel label/unit/type, the device, the rig (sites, reference flag), the
sensor ranges and scales, and the clock-mapping method with the fit as it stood when the
outlet was made (LSL cannot change ``desc`` afterwards: the live fit goes to the companion
``Markers`` stream, see ``EventOutlet``).

A second, irregular stream of type ``Markers`` (``<name>-events``, source id
``<serial>-events``) carries JSON strings: device EVENTs (tap, sync pulse, button, boot),
gaps (silence, reconnect, lost instants), reboots, and a ``health`` record every few
seconds with the clock fit, so that a recorder keeps them alongside the samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
import pylsl

from imusic.firmware_bridge.protocol import QUAT_SCALE, DeviceInfo, Samples
from imusic.firmware_bridge.streams import (  # noqa: F401 - re-exported: the labels live in streams
    AXES,
    EXTRA_CHANNELS,
    QUAT_AXES,
    TYPES,
    UNITS,
    channel_table,
    imu_info,
    markers_info,
    quantities,
)


def default_sites(n: int) -> list[str]:
    """Site names when no rig definition is at hand: ``s00``, ``s01``, ..."""
    return [f"s{i:02d}" for i in range(n)]


@dataclass
class ImuStreamSpec:
    """Everything the IMU stream's metadata says, from DEVICE_INFO and the rig."""

    info: DeviceInfo
    name: str
    sites: list[str]
    reference: str | None = None
    rig_description: str = ""
    transport: str = ""
    clock: dict = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        """Stable LSL source id: the device serial (so LSL can recover a lost stream)."""
        return f"{self.info.serial:016x}"

    @property
    def channels(self) -> list[tuple[str, str, str]]:
        """(label, unit, type) per channel."""
        return channel_table(self.sites, self.info.has_mag, self.info.has_quat,
                             self.info.has_gyro)

    @property
    def channel_count(self) -> int:
        """Number of channels."""
        return len(self.channels)


def make_stream_info(spec: ImuStreamSpec) -> pylsl.StreamInfo:
    """The ``pylsl.StreamInfo`` of the IMU stream (``streams.imu_info``), with the device's
    acquisition, identity, sensor ranges and clock method in ``desc``."""
    i = spec.info
    sensors = {"acc": {"range": i.accel_range, "scale": i.accel_scale, "unit": "m/s^2",
                       "bits": 16}}
    if i.has_gyro:
        sensors["gyro"] = {"range": i.gyro_range, "scale": i.gyro_scale, "unit": "rad/s",
                           "bits": 16}
    if i.has_mag:
        sensors["mag"] = {"range": i.mag_range, "scale": i.mag_scale, "unit": "uT", "bits": 16}
    if i.has_quat:
        sensors["quat"] = {"scale": QUAT_SCALE, "unit": "normalized", "bits": 16}
    meta = {
        "acquisition": {"manufacturer": "imusic", "model": "imusic wearable",
                        "serial_number": f"{i.serial:016x}"},
        "device": {"name": i.name, "serial": f"{i.serial:016x}", "firmware": i.fw_string,
                   "boot_id": f"{i.boot_id:08x}", "transport": spec.transport,
                   "instants_per_frame": i.instants_per_frame, "protocol_version": 1},
        "sensors": sensors,
        "clock": {"method": "lower-envelope linear fit of frame arrival (local_clock) on "
                            "device time", **spec.clock}}
    return imu_info(spec.name, spec.source_id, float(i.rate_hz), spec.sites,
                    has_gyro=i.has_gyro, has_mag=i.has_mag, has_quat=i.has_quat,
                    rig_id=str(i.rig_id), reference=spec.reference,
                    rig_description=spec.rig_description, meta=meta)


def samples_to_rows(samples: Samples, info: DeviceInfo, t_us: np.ndarray,
                    seqs: np.ndarray) -> np.ndarray:
    """The (k, C) float64 rows of one SAMPLES frame in stream channel order, SI units."""
    k = samples.n_instants
    blocks = [samples.acc * np.float64(info.accel_scale)]
    if samples.gyro is not None:
        blocks.append(samples.gyro * np.float64(info.gyro_scale))
    if samples.mag is not None:
        blocks.append(samples.mag * np.float64(info.mag_scale))
    if samples.quat is not None:
        blocks.append(samples.quat * QUAT_SCALE)
    per_site = np.concatenate(blocks, axis=2).reshape(k, -1)   # (k, n * per-site channels)
    rows = np.empty((k, per_site.shape[1] + 2), np.float64)
    rows[:, :-2] = per_site
    rows[:, -2] = t_us
    rows[:, -1] = seqs
    return rows


class ImuOutlet:
    """The IMU stream of one device. Use as a context manager (closes the outlet)."""

    def __init__(self, spec: ImuStreamSpec, max_buffered_s: int = 360) -> None:
        self.spec = spec
        self.stream_info = make_stream_info(spec)
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(
            self.stream_info, 0, max_buffered_s)
        self.pushed = 0
        self.last_timestamp: float | None = None

    @property
    def closed(self) -> bool:
        """The outlet has been closed."""
        return self._outlet is None

    def push(self, samples: Samples, timestamps: np.ndarray, t_us: np.ndarray,
             seqs: np.ndarray) -> None:
        """Push one frame's instants with their own LSL timestamps."""
        if self._outlet is None:
            raise RuntimeError(f"IMU outlet {self.spec.name!r} is closed")
        rows = samples_to_rows(samples, self.spec.info, t_us, seqs)
        if rows.shape[1] != self.spec.channel_count:
            raise ValueError(
                f"device {self.spec.info.name!r} sent {samples.n_sensors} sensors with flags "
                f"0x{samples.flags:02x}; the stream has {self.spec.channel_count} channels")
        ts = np.asarray(timestamps, np.float64)
        self._outlet.push_chunk(rows, ts.tolist())
        self.pushed += rows.shape[0]
        self.last_timestamp = float(ts[-1])

    def have_consumers(self) -> bool:
        """Some inlet is connected."""
        return self._outlet is not None and self._outlet.have_consumers()

    def close(self) -> None:
        """Destroy the outlet (consumers see the stream end); idempotent."""
        if self._outlet is not None:
            del self._outlet
            self._outlet = None

    def __enter__(self) -> ImuOutlet:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class EventOutlet:
    """The companion ``Markers`` stream: JSON strings for device events, gaps and health."""

    def __init__(self, spec: ImuStreamSpec) -> None:
        info = markers_info(f"{spec.name}-events", f"{spec.source_id}-events", {
            "imu_stream": spec.name, "imu_source_id": spec.source_id,
            "format": "one JSON object per marker; key 'event' names it"})
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
        self.pushed = 0
        self.last_timestamp = float("-inf")

    def push(self, record: dict, timestamp: float | None = None) -> None:
        """Push one JSON marker at ``timestamp`` (LSL seconds; now when None).

        Marker times never go back: a record whose time is before the last marker's (a gap
        noticed after a health record went out) is stamped with the last marker's time and
        keeps its own time in the payload as ``lsl_time``."""
        if self._outlet is None:
            return
        t = timestamp if timestamp is not None else pylsl.local_clock()
        if t < self.last_timestamp:
            record = {**record, "lsl_time": t}
            t = self.last_timestamp
        self._outlet.push_sample([json.dumps(record, separators=(",", ":"))], t)
        self.last_timestamp = t
        self.pushed += 1

    def close(self) -> None:
        """Destroy the outlet; idempotent."""
        if self._outlet is not None:
            del self._outlet
            self._outlet = None

    def __enter__(self) -> EventOutlet:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
