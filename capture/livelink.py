"""Live Link Face UDP packets (protocol version 6): parser and builder.

The iPhone app sends one datagram per captured frame, all fields in network byte order:

======================  ===========================================================
``uint8``               packet version (6)
``int32`` + bytes       device id, UTF-8, length-prefixed, no terminator
``int32`` + bytes       subject name, UTF-8, length-prefixed
``int32``               frame number (timecode frames)
``float32``             sub-frame, 0..1
``int32``, ``int32``    frame rate numerator, denominator
``uint8``               value count (61)
61 x ``float32``        values in Unreal's ``EARFaceBlendShape`` order
======================  ===========================================================

The 61 wire values are the 52 ARKit blendshapes in Apple's order then 9 pose values, which is
exactly ``hardware.vocabulary.STREAM_NAMES``: no reordering is needed (unlike the CSV).

A packet that ends after the frame rate (no count, no values), or that carries a count of 0,
says that the face is not tracked on that frame: it parses to a packet with ``values=None``.
Everything else that does not fit the layout raises ``LiveLinkPacketError`` (or its subclass
``UnsupportedVersionError``); a receiver counts and drops such datagrams.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from imusic.hardware.vocabulary import N_STREAM_CHANNELS

VERSION = 6
"""The Live Link Face packet version this module reads and writes."""

DEFAULT_PORT = 11111
"""The app's default target port."""

MAX_DATAGRAM = 65507
"""Largest UDP payload over IPv4: a bound for the string lengths a packet may claim."""

_I32 = struct.Struct(">i")
_FRAME_TIME = struct.Struct(">ifii")       # frame number, sub-frame, rate num, rate den
_VALUES = struct.Struct(f">{N_STREAM_CHANNELS}f")


class LiveLinkPacketError(ValueError):
    """A datagram that is not a well-formed Live Link Face v6 packet."""


class UnsupportedVersionError(LiveLinkPacketError):
    """A Live Link Face packet of a protocol version other than 6."""


@dataclass(frozen=True)
class LiveLinkPacket:
    """One Live Link Face frame. ``values`` is ``(61,)`` float32 in stream order, or ``None``
    when the app lost the face on this frame."""

    device_id: str
    subject: str
    frame_number: int
    sub_frame: float
    rate_numerator: int = 60
    rate_denominator: int = 1
    values: np.ndarray | None = None

    @property
    def face_found(self) -> bool:
        """True when the packet carries values."""
        return self.values is not None

    @property
    def rate(self) -> float:
        """Frame rate of the frame number, frames per second."""
        return self.rate_numerator / self.rate_denominator

    @property
    def frame_time_s(self) -> float:
        """The frame's capture time on the phone's timecode clock, in seconds."""
        return (self.frame_number + self.sub_frame) * self.rate_denominator / self.rate_numerator

    def to_bytes(self) -> bytes:
        """The packet on the wire (see ``build_packet``)."""
        return build_packet(self)


def _read_string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    if pos + 4 > len(data):
        raise LiveLinkPacketError(f"packet of {len(data)} bytes ends before the {what} length")
    (n,) = _I32.unpack_from(data, pos)
    pos += 4
    if n < 0 or pos + n > len(data):
        raise LiveLinkPacketError(
            f"{what} length {n} does not fit a packet of {len(data)} bytes (at byte {pos - 4})"
        )
    try:
        text = data[pos:pos + n].decode("utf-8")
    except UnicodeDecodeError as err:
        raise LiveLinkPacketError(f"{what} is not UTF-8 ({err.reason})") from None
    return text, pos + n


def parse_packet(data: bytes | bytearray | memoryview) -> LiveLinkPacket:
    """Decode one datagram.

    Raises ``UnsupportedVersionError`` for another protocol version and ``LiveLinkPacketError``
    for anything malformed (truncated, lengths that do not fit, a value count other than 0 or
    61, trailing bytes, a non-positive frame rate, values that are not finite numbers).
    """
    data = bytes(data)
    if not data:
        raise LiveLinkPacketError("empty datagram")
    if data[0] != VERSION:
        raise UnsupportedVersionError(
            f"Live Link Face packet version {data[0]} is not supported (this reader speaks "
            f"version {VERSION}): update the Live Link Face app or imusic"
        )
    device_id, pos = _read_string(data, 1, "device id")
    subject, pos = _read_string(data, pos, "subject name")
    if pos + _FRAME_TIME.size > len(data):
        raise LiveLinkPacketError(f"packet of {len(data)} bytes ends inside the frame time")
    frame, sub, num, den = _FRAME_TIME.unpack_from(data, pos)
    pos += _FRAME_TIME.size
    if num <= 0 or den <= 0:
        raise LiveLinkPacketError(f"frame rate {num}/{den} is not positive")
    if not math.isfinite(sub):
        raise LiveLinkPacketError(f"sub-frame {sub} is not a finite number")
    values = None
    if pos < len(data):  # a packet that ends here is the no-face packet
        count = data[pos]
        pos += 1
        if count == N_STREAM_CHANNELS:
            if pos + _VALUES.size > len(data):
                raise LiveLinkPacketError(
                    f"packet of {len(data)} bytes ends inside its {count} values"
                )
            values = np.frombuffer(data, dtype=">f4", count=count, offset=pos).astype(np.float32)
            pos += _VALUES.size
            if not np.isfinite(values).all():
                raise LiveLinkPacketError("packet values include NaN or infinity")
        elif count != 0:
            raise LiveLinkPacketError(
                f"value count {count} (expected {N_STREAM_CHANNELS}, or 0 when the face is lost)"
            )
    if pos != len(data):
        raise LiveLinkPacketError(f"{len(data) - pos} unexpected bytes after the packet")
    return LiveLinkPacket(device_id, subject, frame, sub, num, den, values)


def build_packet(packet: LiveLinkPacket) -> bytes:
    """Encode a packet. A packet without values becomes the no-face packet (it ends after the
    frame rate, as the app sends it)."""
    dev = packet.device_id.encode("utf-8")
    sub = packet.subject.encode("utf-8")
    try:
        parts = [
            bytes([VERSION]), _I32.pack(len(dev)), dev, _I32.pack(len(sub)), sub,
            _FRAME_TIME.pack(int(packet.frame_number), float(packet.sub_frame),
                             int(packet.rate_numerator), int(packet.rate_denominator)),
        ]
    except struct.error as err:  # a field outside int32 / float32
        raise ValueError(f"cannot encode Live Link Face packet field: {err}") from None
    if packet.values is not None:
        values = np.asarray(packet.values, dtype=np.float32).reshape(-1)
        if len(values) != N_STREAM_CHANNELS:
            raise ValueError(f"a Live Link Face packet carries {N_STREAM_CHANNELS} values, got {len(values)}")
        parts += [bytes([N_STREAM_CHANNELS]), values.astype(">f4").tobytes()]
    return b"".join(parts)


def frame_time_fields(seconds: float, rate: float = 60.0) -> tuple[int, float, int, int]:
    """Seconds on a timecode clock to ``(frame_number, sub_frame, numerator, denominator)``.

    The rate is written as an exact fraction (60 -> 60/1, 59.94 -> 2997/50 -> 60000/1001 when
    given as such)."""
    frac = Fraction(rate).limit_denominator(1001)
    frames = seconds * float(frac)
    n = math.floor(frames)
    return n, float(frames - n), frac.numerator, frac.denominator


def read_llv_recording(path) -> list[bytes]:
    """The raw packets of an LLV recording (think-biq/LLV's binary ``.gesichter`` container:
    uint8 version 6, uint32 frame count, then per frame a uint32 size and the packet bytes,
    all big-endian). Raises ``LiveLinkPacketError`` naming the file if it does not fit."""
    from pathlib import Path

    path = Path(path)
    data = path.read_bytes()
    if len(data) < 5 or data[0] != VERSION:
        raise LiveLinkPacketError(f"{path}: not an LLV v6 recording (expected version byte 6)")
    (n,) = struct.unpack_from(">I", data, 1)
    pos, out = 5, []
    for k in range(n):
        if pos + 4 > len(data):
            raise LiveLinkPacketError(f"{path}: truncated at frame {k} of {n}")
        (size,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + size > len(data):
            raise LiveLinkPacketError(f"{path}: frame {k} of {size} bytes runs past the end")
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    if pos != len(data):
        raise LiveLinkPacketError(f"{path}: {len(data) - pos} bytes after the last frame")
    return out
