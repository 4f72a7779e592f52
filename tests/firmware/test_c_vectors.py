"""The C encoder reproduces the test vectors of hardware/PROTOCOL.md byte for byte, and the C
and Python decoders read them to the same fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firmware_bridge import protocol as p
from test_c_codec import c_decode, to_json

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "hardware" / "PROTOCOL.md"
DEV = 0x55667788


def _samples_line() -> str:
    values = []
    for instant in range(2):
        for sensor in range(2):
            acc = [(instant * 2 + sensor) * 3 + a for a in range(3)]
            values += acc + [-v for v in acc] + [100 * v for v in acc]
    return f"samples {DEV} {0xFFFFFFFE} 1000000 2 2 1 0 10000 " + " ".join(map(str, values))


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
    by_type = {m["type"]: m for m in msgs}
    assert by_type["SAMPLES"]["seq"] == 0xFFFFFFFE and by_type["SAMPLES"]["dt_us"] == [0, 10000]
    assert by_type["DEVICE_INFO"]["rig_id"] == "imusic11"
    assert by_type["EVENT"]["value"] == 15000
