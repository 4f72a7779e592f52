"""The C encoder reproduces the test vectors of hardware/PROTOCOL.md byte for byte, and the C
and Python decoders read them to the same fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imusic.firmware_bridge import protocol as p
from .test_c_codec import c_decode, to_json

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "hardware" / "PROTOCOL.md"
DEV = 0x55667788


def _samples_line() -> str:
    values = []
    for instant in range(2):
        for sensor in range(2):
            acc = [(instant * 2 + sensor) * 3 + a for a in range(3)]
            values += acc + [-v for v in acc] + [100 * v for v in acc]
    return f"samples {DEV} {0xFFFFFFFE} 1000000 2 2 1 0 10000 " + " ".join(map(str, values))


# The quaternion vectors: identity, 90 deg about z, 45 deg about x, 120 deg about (1, 1, 1), Q14.
QUATS = [[16384, 0, 0, 0], [11585, 0, 0, 11585], [15137, 6270, 0, 0], [8192, 8192, 8192, 8192]]


def _quat_samples_line(gyro: bool) -> str:
    values = []
    for instant in range(2):
        for sensor in range(2):
            acc = [(instant * 2 + sensor) * 3 + a for a in range(3)]
            values += acc + ([-v for v in acc] if gyro else []) + QUATS[instant * 2 + sensor]
    flags = 0x02 if gyro else 0x06
    return f"samples {DEV} 41 2000000 2 2 {flags} 0 16667 " + " ".join(map(str, values))


# The messages the vectors describe, as imp_tool encode lines (see hardware/firmware/host).
LINES = {
    "CMD_GET_INFO": "cmd 132 0",
    "CMD_START": "cmd 128 0",
    "CMD_SET_RATE 200 Hz": f"cmd 130 {DEV} 200",
    "ACK of CMD_SET_RATE, ok": f"ack {DEV} 130 0",
    "DEVICE_INFO": (f"device_info {DEV} 1 0 2 0x1122334455667788 0x0BADF00D 100 2 1 "
                    f"{2**-11!r} {2**-13!r} 0.0625 16 4 2048 2 {b'imusic11'.hex()} "
                    f"{b'imusic-7788'.hex()}"),
    "SAMPLES, 2 instants x 2 sensors, acc+gyro+mag": _samples_line(),
    "DEVICE_INFO, orientation device (acc+quat)": (
        f"device_info {DEV} 1 1 0 0x1122334455667788 0x0BADF00D 60 2 6 {2**-11!r} 0 0 16 0 0 "
        f"1 {b'imusic11'.hex()} {b'imusic-7788'.hex()}"),
    "SAMPLES, 2 instants x 2 sensors, acc+gyro+quat": _quat_samples_line(gyro=True),
    "SAMPLES, 2 instants x 2 sensors, acc+quat (no gyro)": _quat_samples_line(gyro=False),
    "STATUS": f"status {DEV} 1500000 3987 92 3150 0 1 2",
    "EVENT tap on sensor 3": f"event {DEV} 2000000 1 3 15000",
}


def protocol_vectors() -> dict[str, bytes]:
    """title -> frame bytes, from the ``## Test vectors`` section of PROTOCOL.md."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    section = text.split("## Test vectors", 1)[1]
    out = {}
    for block in section.split("\n### ")[1:]:
        title = block.splitlines()[0].strip()
        hexes = re.search(r"```hex\n(.*?)```", block, re.S)
        assert hexes, f"PROTOCOL.md test vector {title!r} has no ```hex block"
        out[title] = bytes.fromhex(hexes.group(1))
    return out


def test_every_vector_is_covered():
    assert set(protocol_vectors()) == set(LINES), (
        "PROTOCOL.md test vectors changed: update LINES in tests/firmware/test_c_vectors.py")


@pytest.mark.parametrize("title", list(LINES))
def test_c_encoder_writes_the_vector(imp_tool, title):
    want = protocol_vectors()[title]
    proc = imp_tool.run("encode", (LINES[title] + "\n").encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.hex(" ") == want.hex(" ")


def test_c_and_python_decoders_read_the_vectors_alike(imp_tool):
    vectors = protocol_vectors()
    stream = b"".join(vectors.values())
    msgs, errors, counters = c_decode(imp_tool, stream)
    expected = [to_json(dev, m) for dev, m in p.Decoder().feed(stream)]
    assert not errors and counters["frames"] == len(vectors) == len(expected)
    assert msgs == expected
    by_type: dict = {}
    for m in msgs:
        by_type.setdefault(m["type"], []).append(m)
    first = by_type["SAMPLES"][0]
    assert first["seq"] == 0xFFFFFFFE and first["dt_us"] == [0, 10000]
    quat_frames = [m for m in by_type["SAMPLES"] if "quat" in m]
    assert [("gyro" in m, m["flags"]) for m in quat_frames] == [(True, 0x02), (False, 0x06)]
    for m in quat_frames:
        assert [v for instant in m["quat"] for v in instant] == QUATS
    by_type = {t: ms[0] for t, ms in by_type.items()}
    assert by_type["DEVICE_INFO"]["rig_id"] == "imusic11"
    assert by_type["EVENT"]["value"] == 15000
