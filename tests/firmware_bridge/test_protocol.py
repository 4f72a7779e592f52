"""Wire protocol v1 codec: round trips, framing, error accounting and the PROTOCOL.md vectors."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as P

REPO = Path(__file__).resolve().parents[2]


def _samples(k: int = 4, n: int = 12, flags: int = P.FLAG_MAG, seq: int = 7, seed: int = 0) -> P.Samples:
    rng = np.random.default_rng(seed)
    c = lambda d: rng.integers(-32768, 32768, (k, n, d)).astype(np.int16)  # noqa: E731
    return P.Samples(seq=seq, t0_us=123_456_789_012, dt_us=np.arange(k, dtype=np.uint32) * 5000,
                     acc=c(3), gyro=None if flags & P.FLAG_NO_GYRO else c(3),
                     mag=c(3) if flags & P.FLAG_MAG else None,
                     quat=c(4) if flags & P.FLAG_QUAT else None)


def _info() -> P.DeviceInfo:
    return P.DeviceInfo((1, 2, 3), 0x1122334455667788, 0xDEADBEEF, 200, 12, P.FLAG_MAG,
                        0.0625, 2.0 ** -10, 0.5, 156.0, 34.5, 1600.0, 4, "imusic11", "imusic-7788")


@pytest.mark.parametrize("flags", range(P.KNOWN_FLAGS + 1))
def test_samples_round_trip_every_layout(flags: int) -> None:
    s = _samples(flags=flags)
    dev, got = P.decode_frame(P.encode(s, 0xCAFE))
    assert dev == 0xCAFE and isinstance(got, P.Samples)
    assert (got.seq, got.t0_us, got.n_instants, got.n_sensors, got.flags) == (7, s.t0_us, 4, 12, flags)
    for name in ("dt_us", "acc", "gyro", "mag", "quat"):
        a, b = getattr(s, name), getattr(got, name)
        assert (a is None and b is None) or np.array_equal(a, b), name
    assert np.array_equal(got.t_us, s.t0_us + np.arange(4) * 5000)


def test_samples_body_layout_is_interleaved_per_sensor() -> None:
    # The spec: per instant dt_us, then per sensor acc xyz, gyro xyz, mag xyz (little-endian).
    s = _samples(k=2, n=2)
    body = s.body()
    seq, t0, k, n, flags = struct.unpack_from("<IQBBB", body)
    assert (seq, t0, k, n, flags) == (7, s.t0_us, 2, 2, P.FLAG_MAG)
    pos = 15
    for i in range(2):
        assert struct.unpack_from("<I", body, pos)[0] == s.dt_us[i]
        pos += 4
        for j in range(2):
            vals = struct.unpack_from("<9h", body, pos)
            assert vals == tuple(s.acc[i, j]) + tuple(s.gyro[i, j]) + tuple(s.mag[i, j])
            pos += 18
    assert pos == len(body)


def test_every_other_message_round_trips() -> None:
    msgs = [P.Status(99, 3712, 81, -512, 1, 2, 3), P.Event(5, P.EVENT_TAP, 3, 12000),
            P.Ack(P.T_SET_RATE, P.ACK_BAD_ARGUMENT), P.CmdStart(), P.CmdStop(), P.CmdGetInfo(),
            P.CmdSetRate(250), P.CmdIdentify(5)]
    dec = P.Decoder()
    got = dec.feed(b"".join(P.encode(m, 42) for m in msgs))
    assert [m for _, m in got] == msgs and all(d == 42 for d, _ in got)
    info = _info()  # scales chosen exactly representable in float32
    assert P.decode_frame(P.encode(info, 1))[1] == info


def test_frame_structure_cobs_crc_delimiters() -> None:
    frame = P.encode(P.CmdSetRate(100), 0)
    assert frame[0] == 0 and frame[-1] == 0 and b"\x00" not in frame[1:-1]
    packet = cobs.decode(frame[1:-1])
    assert packet[:6] == bytes([1, 0x82, 0, 0, 0, 0]) and packet[6:8] == (100).to_bytes(2, "little")
    assert int.from_bytes(packet[-4:], "little") == zlib.crc32(packet[:-4])


def test_decoder_any_chunking() -> None:
    stream = b"".join(P.encode(_samples(seq=i * 4, seed=i), 3) for i in range(20))
    for size in (1, 7, 64, 1000):
        dec = P.Decoder()
        out = [m for i in range(0, len(stream), size) for _, m in dec.feed(stream[i:i + size])]
        assert [m.seq for m in out] == [i * 4 for i in range(20)]
        assert dec.stats.errors == 0 and dec.stats.lost_instants == 0 and dec.buffered == 0


def test_decoder_counts_each_kind_of_error() -> None:
    good = P.encode_packet(P.CmdStart(), 1)
    bad_crc = bytearray(good); bad_crc[-1] ^= 0xFF  # noqa: E702
    bad_ver = bytearray(good[:-4]); bad_ver[0] = 2; bad_ver += struct.pack("<I", zlib.crc32(bad_ver))  # noqa: E702
    unknown = bytearray(good[:-4]); unknown[1] = 0x7E; unknown += struct.pack("<I", zlib.crc32(unknown))  # noqa: E702
    body_bad = P.HEADER.pack(1, P.T_STATUS, 1) + b"\x01\x02"
    body_bad += struct.pack("<I", zlib.crc32(body_bad))
    wire = b"".join(b"\x00" + cobs.encode(bytes(p)) + b"\x00" for p in
                    (bad_crc, bad_ver, unknown, body_bad, good[:5]))
    wire += b"\x00\x05\x01\x00"  # COBS claims 4 more bytes, the frame ends after 1
    wire += b"\x01" * (P.MAX_ENCODED + 10) + P.encode(P.CmdStop(), 1)
    dec = P.Decoder()
    got = dec.feed(wire)
    s = dec.stats
    assert [m for _, m in got] == [P.CmdStop()]
    assert (s.crc_errors, s.bad_version, s.unknown_type, s.malformed, s.truncated,
            s.cobs_errors, s.overlong) == (1, 1, 1, 1, 1, 1, 1)


def test_overlong_run_is_dropped_in_pieces_without_growing() -> None:
    dec = P.Decoder()
    for _ in range(100):
        assert dec.feed(b"\x07" * 1000) == []
        assert dec.buffered <= P.MAX_ENCODED
    assert dec.stats.overlong == 1
    assert [m for _, m in dec.feed(P.encode(P.CmdStart(), 0))] == [P.CmdStart()]


def test_sequence_gaps_per_device_and_wrap() -> None:
    dec = P.Decoder()
    frames = [(1, P.SEQ_MOD - 8), (1, P.SEQ_MOD - 4), (1, 4), (2, 100), (2, 104), (1, 8), (2, 120)]
    for dev, seq in frames:
        dec.feed(P.encode(_samples(seq=seq), dev))
    s = dec.stats
    assert s.seq[1].lost == 4 and s.seq[1].gaps == 1   # SEQ_MOD-4+4 wraps to 0, next frame at 4
    assert s.seq[2].lost == 12 and s.seq[2].gaps == 1
    assert s.lost_instants == 16
    dec.feed(P.encode(_samples(seq=0), 2))              # backwards: a reboot, not a loss
    assert s.seq[2].resets == 1 and s.seq[2].lost == 12


def test_encode_rejects_what_cannot_go_on_the_wire() -> None:
    with pytest.raises(P.ProtocolError, match="MAX_PACKET"):
        P.encode(_samples(k=20, n=12, flags=P.FLAG_MAG | P.FLAG_QUAT), 1)
    with pytest.raises(P.ProtocolError, match="instants"):
        P.encode(_samples(k=33, n=1), 1)
    with pytest.raises(P.ProtocolError, match="255 bytes"):
        P.encode(P.DeviceInfo((1, 0, 0), 1, 1, 100, 1, 0, 1, 1, 1, 1, 1, 1, 1, "x" * 300, ""), 1)


def _doc_vectors() -> list[tuple[str, str]]:
    """(name, hex) pairs from the test-vector section of hardware/PROTOCOL.md."""
    text = (REPO / "hardware" / "PROTOCOL.md").read_text()
    section = text.split("## Test vectors", 1)[1]
    return re.findall(r"^### (.+?)\n.*?```hex\n(.+?)\n```", section, flags=re.S | re.M)


VECTOR_QUATS = np.array([[[16384, 0, 0, 0], [11585, 0, 0, 11585]],
                         [[15137, 6270, 0, 0], [8192, 8192, 8192, 8192]]], np.int16)
"""The quaternions of the PROTOCOL.md vectors: identity, 90° about z, 45° about x, 120° about
(1, 1, 1), in Q14."""


def _vector_messages() -> dict[str, tuple[int, P.Message]]:
    """The messages behind the PROTOCOL.md test vectors (name -> (device_id, message))."""
    k, n = 2, 2
    counts = np.arange(k * n * 3, dtype=np.int16).reshape(k, n, 3)
    return {
        "CMD_GET_INFO": (0, P.CmdGetInfo()),
        "CMD_START": (0, P.CmdStart()),
        "CMD_SET_RATE 200 Hz": (0x55667788, P.CmdSetRate(200)),
        "ACK of CMD_SET_RATE, ok": (0x55667788, P.Ack(P.T_SET_RATE, P.ACK_OK)),
        "DEVICE_INFO": (0x55667788, P.DeviceInfo(
            (1, 0, 2), 0x1122334455667788, 0x0BADF00D, 100, 2, P.FLAG_MAG,
            0.00048828125, 0.0001220703125, 0.0625,
            16.0, 4.0, 2048.0, 2, "imusic11", "imusic-7788")),
        "SAMPLES, 2 instants x 2 sensors, acc+gyro+mag": (0x55667788, P.Samples(
            seq=0xFFFFFFFE, t0_us=1_000_000, dt_us=np.array([0, 10_000], np.uint32),
            acc=counts, gyro=-counts, mag=counts * 100)),
        "DEVICE_INFO, orientation device (acc+quat)": (0x55667788, P.DeviceInfo(
            (1, 1, 0), 0x1122334455667788, 0x0BADF00D, 60, 2, P.FLAG_QUAT | P.FLAG_NO_GYRO,
            0.00048828125, 0.0, 0.0, 16.0, 0.0, 0.0, 1, "imusic11", "imusic-7788")),
        "SAMPLES, 2 instants x 2 sensors, acc+gyro+quat": (0x55667788, P.Samples(
            seq=41, t0_us=2_000_000, dt_us=np.array([0, 16_667], np.uint32),
            acc=counts, gyro=-counts, quat=VECTOR_QUATS)),
        "SAMPLES, 2 instants x 2 sensors, acc+quat (no gyro)": (0x55667788, P.Samples(
            seq=41, t0_us=2_000_000, dt_us=np.array([0, 16_667], np.uint32),
            acc=counts, quat=VECTOR_QUATS)),
        "STATUS": (0x55667788, P.Status(1_500_000, 3987, 92, 3150, 0, 1, 2)),
        "EVENT tap on sensor 3": (0x55667788, P.Event(2_000_000, P.EVENT_TAP, 3, 15000)),
    }


def test_protocol_md_vectors_match_the_codec() -> None:
    vectors = _doc_vectors()
    expected = _vector_messages()
    assert {name for name, _ in vectors} == set(expected), "PROTOCOL.md and the vectors differ"
    for name, hexdump in vectors:
        wire = bytes.fromhex("".join(hexdump.split()))
        dev, msg = expected[name]
        assert wire == P.encode(msg, dev), name
        got_dev, got = P.decode_frame(wire)
        assert got_dev == dev
        if isinstance(msg, P.Samples):
            assert got.seq == msg.seq and got.flags == msg.flags
            for q in ("dt_us", "acc", "gyro", "mag", "quat"):
                a, b = getattr(got, q), getattr(msg, q)
                assert (a is None and b is None) or np.array_equal(a, b), (name, q)
        else:
            assert got == msg, name


def test_sequence_tracking_memory_is_bounded_and_counts_survive() -> None:
    dec = P.Decoder()
    dec.feed(P.encode(_samples(seq=0, k=1, n=1), 1) + P.encode(_samples(seq=5, k=1, n=1), 1))
    assert dec.stats.lost_instants == 4
    dec.reset_seq(1)                     # a reboot: position forgotten, counts kept
    dec.feed(P.encode(_samples(seq=0, k=1, n=1), 1))
    assert dec.stats.lost_instants == 4 and dec.stats.seq[1].resets == 0
    for dev in range(2, P.MAX_DEVICES + 50):
        dec.feed(P.encode(_samples(seq=0, k=1, n=1), dev))
    assert len(dec.stats.seq) == P.MAX_DEVICES
    assert dec.stats.lost_instants == 4 and dec.stats.seq_gaps == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(1, 3), st.integers(1, 4), st.binary(max_size=64),
       st.booleans())
def test_samples_parse_any_flags_and_body(flags: int, k: int, n: int, tail: bytes,
                                          exact: bool) -> None:
    """Any flags byte with a body of the right length for its layout, or any other length:
    a Samples whose blocks are exactly the flagged ones (and re-encodes to the same body), or
    ProtocolError; never anything else."""
    head = struct.pack("<IQBBB", 5, 77, k, n, flags)
    size = k * P.sample_dtype(n, flags & P.KNOWN_FLAGS).itemsize
    body = head + (bytes(range(256)) * 8)[:size] if exact else head + tail
    try:
        s = P.Samples.parse(body)
    except P.ProtocolError:
        assert flags & ~P.KNOWN_FLAGS or not exact
        return
    assert s.flags == flags and s.body() == body
    assert (s.gyro is None) == bool(flags & P.FLAG_NO_GYRO)
    assert (s.mag is not None) == bool(flags & P.FLAG_MAG)
    assert (s.quat is not None) == bool(flags & P.FLAG_QUAT)
    assert s.acc.shape == (k, n, 3) and (s.quat is None or s.quat.shape == (k, n, 4))
