"""Live Link Face v6 packets: the real recording, round trips, hostile datagrams (fuzzed)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.livelink import (
    LiveLinkPacket,
    LiveLinkPacketError,
    UnsupportedVersionError,
    build_packet,
    frame_time_fields,
    parse_packet,
    read_llv_recording,
)
from imusic.hardware.vocabulary import LIVELINK_WIRE_NAMES


def read_llv_json(path: Path) -> list[dict]:
    return [json.loads(base64.b64decode(line)) for line in path.read_text().split()]


@pytest.fixture(scope="module")
def llv(shared_data: Path) -> tuple[list[bytes], list[dict]]:
    d = shared_data / "livelink" / "llv"
    return read_llv_recording(d / "dao.6145a13.raw.gesichter"), read_llv_json(d / "dao.63cc41e.b64json.gesichter")


def test_real_packets_decode_to_the_json_values(llv):
    packets, frames = llv
    assert len(packets) == len(frames) == 180
    for raw, ref in zip(packets, frames):
        p = parse_packet(raw)
        assert p.device_id == ref["device_id"] and p.subject == ref["subject_name"]
        ft = ref["frame_time"]
        assert p.frame_number == ft["frame_number"]
        assert p.sub_frame == ft["sub_frame"]
        assert (p.rate_numerator, p.rate_denominator) == (ft["numerator"], ft["denominator"])
        assert ref["blendshape_count"] == 61 and p.face_found
        want = np.array([ref["blendshapes"][n] for n in LIVELINK_WIRE_NAMES], dtype=np.float32)
        # Exactly: the JSON holds the float32 values widened to double.
        assert np.array_equal(p.values, want)
        assert [float(v) for v in p.values] == [ref["blendshapes"][n] for n in LIVELINK_WIRE_NAMES]


def test_real_packet_facts(llv, shared_data: Path):
    packets, _ = llv
    first = parse_packet((shared_data / "livelink" / "llv" / "packet_0000.bin").read_bytes())
    assert first.frame_number == 5375735 and first.rate == 60.0
    assert first.device_id == "DEADC0DE-1337-1337-1337-CAFEBABE" and first.subject == "LLV Default Device"
    frames = np.array([parse_packet(p).frame_number for p in packets])
    assert frames[0] == 5375735 and frames[-1] == 5375921
    assert sorted(np.diff(frames).tolist())[-1] == 8  # one jump: 7 frames missing


def test_real_packets_rebuild_byte_identical(llv):
    packets, _ = llv
    for raw in packets:
        assert build_packet(parse_packet(raw)) == raw


def test_no_face_packet_both_forms():
    p = LiveLinkPacket("dev", "subj", 1000, 0.25, 60, 1, None)
    raw = build_packet(p)
    assert len(raw) == 25 + 3 + 4
    q = parse_packet(raw)
    assert not q.face_found and q.frame_number == 1000 and q.frame_time_s == pytest.approx(1000.25 / 60)
    assert not parse_packet(raw + b"\x00").face_found  # an explicit count of 0


@pytest.mark.parametrize("dev,subj", [("", ""), ("x" * 300, "ü" * 40), ("a-uuid-" * 5 + "1", "iPhone")])
def test_any_id_lengths_round_trip(dev: str, subj: str):
    values = np.random.default_rng(0).normal(size=61).astype(np.float32)
    p = LiveLinkPacket(dev, subj, 123456, 0.5, 30000, 1001, values)
    raw = p.to_bytes()
    assert len(raw) == 270 + len(dev.encode()) + len(subj.encode())
    q = parse_packet(raw)
    assert (q.device_id, q.subject, q.frame_number, q.rate_numerator, q.rate_denominator) == (dev, subj, 123456, 30000, 1001)
    assert np.array_equal(q.values, values)


def test_other_versions_refused(llv):
    raw = bytearray(llv[0][0])
    for v in (0, 5, 7, 255):
        raw[0] = v
        with pytest.raises(UnsupportedVersionError, match=f"version {v} is not supported"):
            parse_packet(bytes(raw))


def test_malformed_packets(llv):
    raw = llv[0][0]
    cases = {
        b"": "empty",
        raw[:3]: "device id length",
        raw[:40]: "subject name length",
        raw[:-1]: "ends inside",
        raw + b"\x01": "unexpected bytes",
        raw[:1] + struct.pack(">i", -5) + raw[5:]: "does not fit",
        raw[:1] + struct.pack(">i", 2**31 - 1) + raw[5:]: "does not fit",
    }
    bad_count = bytearray(raw)
    bad_count[25 + 32 + 18] = 52
    cases[bytes(bad_count)] = "value count 52"
    for data, msg in cases.items():
        with pytest.raises(LiveLinkPacketError, match=msg):
            parse_packet(data)
    nan = bytearray(raw)
    nan[-4:] = struct.pack(">f", float("nan"))
    with pytest.raises(LiveLinkPacketError, match="NaN"):
        parse_packet(bytes(nan))
    zero_rate = bytearray(raw)
    zero_rate[9 + 32 + 18 + 8:9 + 32 + 18 + 12] = struct.pack(">i", 0)
    with pytest.raises(LiveLinkPacketError, match="not positive"):
        parse_packet(bytes(zero_rate))


def test_frame_time_fields():
    n, sub, num, den = frame_time_fields(10.0 + 1 / 120)
    assert (n, num, den) == (600, 60, 1) and sub == pytest.approx(0.5)
    assert frame_time_fields(1.0, 30000 / 1001)[2:] == (30000, 1001)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes):
    try:
        p = parse_packet(data)
    except LiveLinkPacketError:
        return
    assert p.values is None or p.values.shape == (61,)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_real_packet(llv, data):
    raw = bytearray(llv[0][data.draw(st.integers(0, 179))])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        p = parse_packet(bytes(raw[:cut]))
    except LiveLinkPacketError:
        return
    assert build_packet(p) == bytes(raw[:cut]) or not p.face_found


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=60), st.text(max_size=60), st.integers(-2**31, 2**31 - 1),
    st.floats(0, 1, width=32), st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1),
    st.one_of(st.none(), st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=61, max_size=61)),
)
def test_fuzz_build_parse_round_trip(dev, subj, frame, sub, num, den, values):
    vals = None if values is None else np.array(values, np.float32)
    p = LiveLinkPacket(dev, subj, frame, sub, num, den, vals)
    q = parse_packet(build_packet(p))
    assert (q.device_id, q.subject, q.frame_number, q.sub_frame, q.rate_numerator, q.rate_denominator) == (dev, subj, frame, sub, num, den)
    assert (q.values is None) == (vals is None)
    if vals is not None:
        assert np.array_equal(q.values, vals)
