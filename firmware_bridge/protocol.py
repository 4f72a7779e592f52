"""The wire protocol v1 codec (hardware/PROTOCOL.md): message dataclasses, ``encode`` and a
streaming ``Decoder``.

One file on purpose (654 lines): the wire contract is read beside PROTOCOL.md as one unit,
a dataclass per message with its encoder and decoder, and splitting it would put the two halves
of each message's layout in different files.

A frame on the wire is ``0x00 COBS(header | body | crc32) 0x00`` with ``header = version:u8 type:u8
device_id:u32``, little-endian throughout and CRC-32 (zlib) over header and body.

Typical use::

    frame = encode(CmdSetRate(100), device_id=0)        # bytes, ready to write
    dec = Decoder()
    for device_id, msg in dec.feed(chunk):              # any chunking, any garbage
        if isinstance(msg, Samples): ...
    dec.stats                                           # error counters

Sample payloads are parsed with numpy structured dtypes: no per-sample Python loops.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, fields
from typing import ClassVar, Union

import numpy as np
from cobs import cobs

VERSION = 1
"""Protocol version byte."""
MAX_PACKET = 2048
"""Largest packet (header, body and CRC, before COBS) a receiver accepts."""
MAX_ENCODED = MAX_PACKET + MAX_PACKET // 254 + 1
"""Largest COBS-encoded packet (without the 0x00 delimiter)."""
HEADER = struct.Struct("<BBI")
CRC = struct.Struct("<I")
MIN_PACKET = HEADER.size + CRC.size
SEQ_MOD = 1 << 32
"""Sequence numbers wrap here."""

FLAG_MAG = 0x01
"""DEVICE_INFO / SAMPLES flag: a magnetometer block follows each sensor's acc (and gyro)."""
FLAG_QUAT = 0x02
"""DEVICE_INFO / SAMPLES flag: an on-device orientation quaternion (w, x, y, z × 2⁻¹⁴) follows."""
FLAG_NO_GYRO = 0x04
"""DEVICE_INFO / SAMPLES flag: there is *no* gyroscope block (a device that reports orientation
and acceleration only). A clear bit means the gyro block is there, as it always was in v1."""
KNOWN_FLAGS = FLAG_MAG | FLAG_QUAT | FLAG_NO_GYRO
QUAT_SCALE = 2.0 ** -14
"""Quaternion units per LSB."""

# Message type codes.
T_DEVICE_INFO, T_SAMPLES, T_STATUS, T_EVENT, T_ACK = 0x01, 0x02, 0x03, 0x04, 0x05
T_START, T_STOP, T_SET_RATE, T_IDENTIFY, T_GET_INFO = 0x80, 0x81, 0x82, 0x83, 0x84

# ACK result codes.
ACK_OK, ACK_BAD_ARGUMENT, ACK_BUSY, ACK_UNKNOWN_COMMAND = 0, 1, 2, 3

# EVENT kinds.
EVENT_TAP, EVENT_SYNC, EVENT_BUTTON, EVENT_BOOTED = 1, 2, 3, 4

RATE_MIN_HZ, RATE_MAX_HZ = 25, 400
"""Rates CMD_SET_RATE accepts."""
MAX_INSTANTS = 32
"""Most sample instants one SAMPLES frame may hold."""
MAX_DEVICES = 256
"""Devices whose sequence numbers a Decoder tracks at once."""
MAX_TIME_US = 1 << 53
"""Latest device time (µs since boot, 285 years) a receiver accepts: exact in the float64
``device.time_us`` channel and far from int64 overflow. A frame stamped later is malformed."""


class ProtocolError(ValueError):
    """A message that cannot be encoded, or a body that cannot be parsed."""


def _pack_str(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 255:
        raise ProtocolError(f"string too long for the wire ({len(raw)} > 255 bytes): {s[:40]!r}...")
    return bytes([len(raw)]) + raw


def _unpack_str(body: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(body):
        raise ProtocolError("string length byte missing")
    n = body[pos]
    end = pos + 1 + n
    if end > len(body):
        raise ProtocolError("string runs past the end of the body")
    try:
        return bytes(body[pos + 1:end]).decode("utf-8"), end
    except UnicodeDecodeError as err:
        raise ProtocolError(f"string is not UTF-8: {err}") from None


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class DeviceInfo:
    """DEVICE_INFO (0x01): what the device is and how to scale its counts."""

    TYPE: ClassVar[int] = T_DEVICE_INFO
    _S: ClassVar[struct.Struct] = struct.Struct("<BBBQIHBBffffffB")

    fw_version: tuple[int, int, int]
    serial: int
    boot_id: int
    rate_hz: int
    sensor_count: int
    flags: int
    accel_scale: float
    gyro_scale: float
    mag_scale: float
    accel_range: float
    gyro_range: float
    mag_range: float
    instants_per_frame: int
    rig_id: str
    name: str

    @property
    def has_mag(self) -> bool:
        """The samples carry a magnetometer block."""
        return bool(self.flags & FLAG_MAG)

    @property
    def has_quat(self) -> bool:
        """The samples carry an on-device orientation quaternion."""
        return bool(self.flags & FLAG_QUAT)

    @property
    def has_gyro(self) -> bool:
        """The samples carry a gyroscope block."""
        return not self.flags & FLAG_NO_GYRO

    @property
    def fw_string(self) -> str:
        """Firmware version as ``major.minor.patch``."""
        return ".".join(str(v) for v in self.fw_version)

    def body(self) -> bytes:
        """The message body bytes."""
        return self._S.pack(
            *self.fw_version, self.serial, self.boot_id, self.rate_hz, self.sensor_count,
            self.flags, self.accel_scale, self.gyro_scale, self.mag_scale, self.accel_range,
            self.gyro_range, self.mag_range, self.instants_per_frame,
        ) + _pack_str(self.rig_id) + _pack_str(self.name)

    @classmethod
    def parse(cls, body: bytes) -> DeviceInfo:
        """Parse a body (raises ProtocolError)."""
        if len(body) < cls._S.size + 2:
            raise ProtocolError("DEVICE_INFO body too short")
        v = cls._S.unpack_from(body)
        rig_id, pos = _unpack_str(body, cls._S.size)
        name, pos = _unpack_str(body, pos)
        if pos != len(body):
            raise ProtocolError("DEVICE_INFO body has trailing bytes")
        return cls((v[0], v[1], v[2]), *v[3:], rig_id, name)


def sample_dtype(n_sensors: int, flags: int) -> np.dtype:
    """The numpy dtype of one sample instant in a SAMPLES body (``dt_us`` then per sensor
    ``acc`` [, ``gyro``] [, ``mag``] [, ``quat``], packed little-endian)."""
    return _sample_dtype(n_sensors, flags)


_DTYPES: dict[tuple[int, int], np.dtype] = {}


def _sample_dtype(n_sensors: int, flags: int) -> np.dtype:
    key = (n_sensors, flags)
    dt = _DTYPES.get(key)
    if dt is None:
        sensor = [("acc", "<i2", (3,))]
        if not flags & FLAG_NO_GYRO:
            sensor.append(("gyro", "<i2", (3,)))
        if flags & FLAG_MAG:
            sensor.append(("mag", "<i2", (3,)))
        if flags & FLAG_QUAT:
            sensor.append(("quat", "<i2", (4,)))
        dt = np.dtype([("dt_us", "<u4"), ("s", np.dtype(sensor), (n_sensors,))])
        _DTYPES[key] = dt
    return dt


@dataclass(eq=False)
class Samples:
    """SAMPLES (0x02): ``n_instants`` sample instants of ``n_sensors`` sensors, raw int16 counts.

    Arrays: ``dt_us`` (k,) uint32 offsets from ``t0_us``; ``acc``, ``gyro``, ``mag`` (k, S, 3)
    int16; ``quat`` (k, S, 4) int16 (w, x, y, z × 2⁻¹⁴). ``gyro``/``mag``/``quat`` are None when
    absent (``gyro`` None is FLAG_NO_GYRO). Decoded arrays are read-only views on the frame bytes.
    """

    TYPE: ClassVar[int] = T_SAMPLES
    _S: ClassVar[struct.Struct] = struct.Struct("<IQBBB")

    seq: int
    t0_us: int
    dt_us: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray | None = None
    mag: np.ndarray | None = None
    quat: np.ndarray | None = None

    @property
    def n_instants(self) -> int:
        """Sample instants in this frame."""
        return int(self.dt_us.shape[0])

    @property
    def n_sensors(self) -> int:
        """Sensors per instant."""
        return int(self.acc.shape[1])

    @property
    def flags(self) -> int:
        """Which optional blocks are present (FLAG_MAG, FLAG_QUAT) or absent (FLAG_NO_GYRO)."""
        return ((FLAG_MAG if self.mag is not None else 0)
                | (FLAG_QUAT if self.quat is not None else 0)
                | (FLAG_NO_GYRO if self.gyro is None else 0))

    @property
    def t_us(self) -> np.ndarray:
        """Device time of each instant (k,) int64 microseconds."""
        return np.int64(self.t0_us) + self.dt_us.astype(np.int64)

    @property
    def seqs(self) -> np.ndarray:
        """Sequence number of each instant (k,) int64, wrapped at 2³²."""
        return (np.int64(self.seq) + np.arange(self.n_instants, dtype=np.int64)) % SEQ_MOD

    def body(self) -> bytes:
        """The message body bytes (raises ProtocolError on inconsistent shapes)."""
        k = self.n_instants
        if not 1 <= k <= MAX_INSTANTS:
            raise ProtocolError(f"SAMPLES holds 1..{MAX_INSTANTS} instants, not {k}")
        n = self.n_sensors
        if not 1 <= n <= 255:
            raise ProtocolError(f"SAMPLES holds 1..255 sensors, not {n}")
        arr = np.empty(k, _sample_dtype(n, self.flags))
        arr["dt_us"] = self.dt_us
        try:
            arr["s"]["acc"] = self.acc
            if self.gyro is not None:
                arr["s"]["gyro"] = self.gyro
            if self.mag is not None:
                arr["s"]["mag"] = self.mag
            if self.quat is not None:
                arr["s"]["quat"] = self.quat
        except ValueError as err:
            raise ProtocolError(f"SAMPLES arrays have inconsistent shapes: {err}") from None
        return self._S.pack(self.seq % SEQ_MOD, self.t0_us, k, n, self.flags) + arr.tobytes()

    @classmethod
    def parse(cls, body: bytes) -> Samples:
        """Parse a body (raises ProtocolError)."""
        if len(body) < cls._S.size:
            raise ProtocolError("SAMPLES body too short")
        seq, t0, k, n, flags = cls._S.unpack_from(body)
        if flags & ~KNOWN_FLAGS:
            raise ProtocolError(f"SAMPLES has unknown flag bits 0x{flags:02x}")
        if k == 0 or n == 0:
            raise ProtocolError("SAMPLES with zero instants or sensors")
        dt = _sample_dtype(n, flags)
        if len(body) != cls._S.size + k * dt.itemsize:
            raise ProtocolError(
                f"SAMPLES body is {len(body)} bytes, {cls._S.size + k * dt.itemsize} expected "
                f"for {k} instants x {n} sensors (flags 0x{flags:02x})")
        arr = np.frombuffer(body, dt, count=k, offset=cls._S.size)
        if t0 + int(arr["dt_us"].max()) > MAX_TIME_US:
            raise ProtocolError(f"SAMPLES device time {t0} + dt is past MAX_TIME_US")
        s = arr["s"]
        return cls(
            seq=seq, t0_us=t0, dt_us=arr["dt_us"], acc=s["acc"],
            gyro=None if flags & FLAG_NO_GYRO else s["gyro"],
            mag=s["mag"] if flags & FLAG_MAG else None,
            quat=s["quat"] if flags & FLAG_QUAT else None,
        )


@dataclass(frozen=True)
class _Fixed:
    """A message whose body is one fixed struct (``_S``) of its fields, in field order."""

    NAME: ClassVar[str] = ""
    _S: ClassVar[struct.Struct] = struct.Struct("<")

    def body(self) -> bytes:
        """The message body bytes."""
        return self._S.pack(*(getattr(self, f.name) for f in fields(self)))

    @classmethod
    def parse(cls, body: bytes):  # noqa: ANN206 - returns an instance of cls
        """Parse a body (raises ProtocolError)."""
        if len(body) != cls._S.size:
            raise ProtocolError(f"{cls.NAME} body is {len(body)} bytes, {cls._S.size} expected")
        msg = cls(*cls._S.unpack(body))
        if getattr(msg, "t_us", 0) > MAX_TIME_US:
            raise ProtocolError(f"{cls.NAME} device time {msg.t_us} is past MAX_TIME_US")
        return msg


@dataclass(frozen=True)
class Status(_Fixed):
    """STATUS (0x03): battery, temperature and error counters, about once a second."""

    TYPE: ClassVar[int] = T_STATUS
    NAME: ClassVar[str] = "STATUS"
    _S: ClassVar[struct.Struct] = struct.Struct("<QHBhIII")

    t_us: int
    battery_mv: int
    battery_pct: int
    temperature_cdeg: int
    sensor_errors: int = 0
    overruns: int = 0
    tx_dropped: int = 0

    @property
    def battery_fraction(self) -> float | None:
        """State of charge 0..1, or None when the device does not know (255)."""
        return None if self.battery_pct == 255 else self.battery_pct / 100.0

    @property
    def temperature_c(self) -> float:
        """Board temperature in °C."""
        return self.temperature_cdeg / 100.0


@dataclass(frozen=True)
class Event(_Fixed):
    """EVENT (0x04): a tap, sync pulse, button press or boot, at device time ``t_us``."""

    TYPE: ClassVar[int] = T_EVENT
    NAME: ClassVar[str] = "EVENT"
    _S: ClassVar[struct.Struct] = struct.Struct("<QBBi")

    t_us: int
    kind: int
    sensor: int = 255
    value: int = 0


@dataclass(frozen=True)
class Ack(_Fixed):
    """ACK (0x05): the device's answer to ``command`` (a command type code) with ``result``."""

    TYPE: ClassVar[int] = T_ACK
    NAME: ClassVar[str] = "ACK"
    _S: ClassVar[struct.Struct] = struct.Struct("<BB")

    command: int
    result: int = ACK_OK

    @property
    def ok(self) -> bool:
        """The command was accepted."""
        return self.result == ACK_OK


@dataclass(frozen=True)
class _Empty:
    def body(self) -> bytes:
        """The (empty) message body."""
        return b""

    @classmethod
    def parse(cls, body: bytes):  # noqa: ANN206 - returns an instance of cls
        """Parse a body (raises ProtocolError unless empty)."""
        if body:
            raise ProtocolError(f"{cls.__name__} takes no body, got {len(body)} bytes")
        return cls()


@dataclass(frozen=True)
class CmdStart(_Empty):
    """CMD_START (0x80): start streaming SAMPLES."""

    TYPE: ClassVar[int] = T_START


@dataclass(frozen=True)
class CmdStop(_Empty):
    """CMD_STOP (0x81): stop streaming."""

    TYPE: ClassVar[int] = T_STOP


@dataclass(frozen=True)
class CmdGetInfo(_Empty):
    """CMD_GET_INFO (0x84): ask for DEVICE_INFO."""

    TYPE: ClassVar[int] = T_GET_INFO


@dataclass(frozen=True)
class CmdSetRate(_Fixed):
    """CMD_SET_RATE (0x82): sample instants per second (25..400), effective at the next START."""

    TYPE: ClassVar[int] = T_SET_RATE
    NAME: ClassVar[str] = "CMD_SET_RATE"
    _S: ClassVar[struct.Struct] = struct.Struct("<H")

    rate_hz: int


@dataclass(frozen=True)
class CmdIdentify(_Fixed):
    """CMD_IDENTIFY (0x83): blink the LED for ``seconds``."""

    TYPE: ClassVar[int] = T_IDENTIFY
    NAME: ClassVar[str] = "CMD_IDENTIFY"
    _S: ClassVar[struct.Struct] = struct.Struct("<B")

    seconds: int = 3




Message = Union[DeviceInfo, Samples, Status, Event, Ack, CmdStart, CmdStop, CmdSetRate,
                CmdIdentify, CmdGetInfo]
"""Any protocol message."""
Command = Union[CmdStart, CmdStop, CmdSetRate, CmdIdentify, CmdGetInfo]
"""A host-to-device message."""

MESSAGE_TYPES: dict[int, type] = {
    cls.TYPE: cls for cls in (DeviceInfo, Samples, Status, Event, Ack, CmdStart, CmdStop,
                              CmdSetRate, CmdIdentify, CmdGetInfo)
}
"""Message class per type code."""
COMMAND_TYPES = frozenset(t for t in MESSAGE_TYPES if t >= 0x80)


# --------------------------------------------------------------------------------------------
# Encoding


def encode_packet(msg: Message, device_id: int) -> bytes:
    """The packet (header, body, CRC) before byte stuffing."""
    payload = HEADER.pack(VERSION, msg.TYPE, device_id & 0xFFFFFFFF) + msg.body()
    if len(payload) + CRC.size > MAX_PACKET:
        raise ProtocolError(
            f"{type(msg).__name__} packet is {len(payload) + CRC.size} bytes, over MAX_PACKET "
            f"{MAX_PACKET}: send fewer instants per frame")
    return payload + CRC.pack(zlib.crc32(payload))


def encode(msg: Message, device_id: int) -> bytes:
    """A whole frame for ``msg`` from/to ``device_id``: ``0x00 COBS(packet) 0x00``.

    The leading 0x00 (PROTOCOL.md, "Framing") closes whatever garbage or half frame came
    before, so that it can never swallow this frame; receivers ignore empty frames."""
    return b"\x00" + cobs.encode(encode_packet(msg, device_id)) + b"\x00"


# --------------------------------------------------------------------------------------------
# Decoding


@dataclass
class SeqTracker:
    """Sequence continuity of one device's SAMPLES: counts gaps and lost instants."""

    expected: int | None = None
    gaps: int = 0
    lost: int = 0
    resets: int = 0
    received: int = 0

    def update(self, seq: int, n: int) -> int:
        """Account a frame starting at ``seq`` with ``n`` instants; returns the instants lost
        just before it (0 when contiguous or after a reset)."""
        lost = 0
        if self.expected is not None and seq != self.expected:
            gap = (seq - self.expected) % SEQ_MOD
            if gap < SEQ_MOD // 2:  # forward jump: that many instants never arrived
                lost = gap
                self.gaps += 1
                self.lost += gap
            else:  # backwards: the device rebooted (or replayed); start counting afresh
                self.resets += 1
        self.expected = (seq + n) % SEQ_MOD
        self.received += n
        return lost


@dataclass
class DecoderStats:
    """What a Decoder has seen. Every byte that is not part of a good frame is accounted for
    by one of the error counters."""

    bytes: int = 0
    frames: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    truncated: int = 0
    overlong: int = 0
    bad_version: int = 0
    unknown_type: int = 0
    malformed: int = 0
    seq: dict[int, SeqTracker] = field(default_factory=dict)
    forgotten_lost: int = 0
    forgotten_gaps: int = 0

    @property
    def errors(self) -> int:
        """All bad frames."""
        return (self.crc_errors + self.cobs_errors + self.truncated + self.overlong
                + self.bad_version + self.unknown_type + self.malformed)

    @property
    def lost_instants(self) -> int:
        """Sample instants lost to sequence gaps, over all devices."""
        return self.forgotten_lost + sum(t.lost for t in self.seq.values())

    @property
    def seq_gaps(self) -> int:
        """Sequence gaps, over all devices."""
        return self.forgotten_gaps + sum(t.gaps for t in self.seq.values())

    def as_dict(self) -> dict[str, int]:
        """Counters as a flat dict (for health lines and JSON)."""
        return {
            "bytes": self.bytes, "frames": self.frames, "crc_errors": self.crc_errors,
            "cobs_errors": self.cobs_errors, "truncated": self.truncated,
            "overlong": self.overlong, "bad_version": self.bad_version,
            "unknown_type": self.unknown_type, "malformed": self.malformed,
            "seq_gaps": self.seq_gaps, "lost_instants": self.lost_instants,
        }


class Decoder:
    """Streaming frame decoder: feed it bytes in any chunking; it returns whole messages.

    It throws garbage away up to the next 0x00, never buffers more than ``MAX_ENCODED`` bytes
    of an unfinished frame (a longer run is dropped and counted as overlong), checks COBS,
    length, version, CRC and type, and tracks SAMPLES sequence numbers per device. It never
    raises on bad input.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._discarding = False  # inside an overlong run: drop bytes up to the next 0x00
        self.stats = DecoderStats()

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held now (at most MAX_ENCODED)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any unfinished frame (e.g. after the transport reconnects)."""
        self._buf = b""
        self._discarding = False

    def reset_seq(self, device_id: int) -> None:
        """Forget a device's sequence position (after a reboot), keeping its counts."""
        tracker = self.stats.seq.get(device_id)
        if tracker is not None:
            tracker.expected = None

    def feed(self, data: bytes) -> list[tuple[int, Message]]:
        """Consume ``data``; return ``(device_id, message)`` for each good frame completed."""
        out: list[tuple[int, Message]] = []
        if not data:
            return out
        self.stats.bytes += len(data)
        if b"\x00" not in data:
            if self._discarding:
                return out
            buf = self._buf + data
            if len(buf) > MAX_ENCODED:
                self.stats.overlong += 1
                self._buf = b""
                self._discarding = True
            else:
                self._buf = buf
            return out
        parts = (self._buf + data).split(b"\x00")
        rest = parts.pop()
        for i, part in enumerate(parts):
            if i == 0 and self._discarding:
                self._discarding = False  # the tail of an overlong run: already counted
                continue
            if not part:
                continue  # back-to-back delimiters are allowed (resync padding)
            if len(part) > MAX_ENCODED:
                self.stats.overlong += 1
                continue
            self._frame(part, out)
        if len(rest) > MAX_ENCODED:
            self.stats.overlong += 1
            rest = b""
            self._discarding = True
        self._buf = rest
        return out

    def _frame(self, stuffed: bytes, out: list[tuple[int, Message]]) -> None:
        st = self.stats
        try:
            packet = cobs.decode(stuffed)
        except cobs.DecodeError:
            st.cobs_errors += 1
            return
        if len(packet) < MIN_PACKET:
            st.truncated += 1
            return
        if len(packet) > MAX_PACKET:
            st.overlong += 1
            return
        if zlib.crc32(packet[:-4]) != CRC.unpack_from(packet, len(packet) - 4)[0]:
            st.crc_errors += 1
            return
        version, mtype, device_id = HEADER.unpack_from(packet)
        if version != VERSION:
            st.bad_version += 1
            return
        cls = MESSAGE_TYPES.get(mtype)
        if cls is None:
            st.unknown_type += 1
            return
        try:
            msg = cls.parse(packet[HEADER.size:-4])
        except (ProtocolError, struct.error):
            st.malformed += 1
            return
        st.frames += 1
        if mtype == T_SAMPLES:
            tracker = st.seq.get(device_id)
            if tracker is None:
                if len(st.seq) >= MAX_DEVICES:
                    # Bounded memory on a link full of ids: forget the longest-known device
                    # (dicts keep insertion order), keeping its counts in the totals.
                    old = st.seq.pop(next(iter(st.seq)))
                    st.forgotten_lost += old.lost
                    st.forgotten_gaps += old.gaps
                tracker = st.seq[device_id] = SeqTracker()
            tracker.update(msg.seq, msg.n_instants)
        out.append((device_id, msg))


def decode_frame(frame: bytes) -> tuple[int, Message]:
    """Decode exactly one whole frame (with or without its 0x00); raises ProtocolError naming
    what is wrong. For tests and tools; streams use Decoder."""
    dec = Decoder()
    got = dec.feed(frame.rstrip(b"\x00") + b"\x00")
    if len(got) != 1:
        bad = {k: v for k, v in dec.stats.as_dict().items() if v and k not in ("bytes",)}
        raise ProtocolError(f"not one valid frame: {bad}")
    return got[0]
