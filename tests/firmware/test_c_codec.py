"""The portable C codec (hardware/firmware/protocol) against the Python codec
(firmware_bridge/protocol.py): same bytes out, same messages in, same verdict on garbage.

The C side runs as ``imp_tool`` (built by conftest.py with ASan + UBSan): ``encode`` turns text
message descriptions into frames, ``decode`` prints one JSON line per frame, ``device`` answers
host commands as a wearable does.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as p

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
device_time = st.integers(0, p.MAX_TIME_US)
"""Device times a receiver accepts (later ones are malformed: see wild_messages)."""
f32 = st.floats(width=32, allow_nan=False)
short_text = st.text(max_size=24).filter(lambda s: len(s.encode()) <= 255)


@st.composite
def samples(draw) -> p.Samples:
    n = draw(st.integers(1, 12))
    flags = draw(st.integers(0, p.KNOWN_FLAGS))
    per_instant = p.sample_dtype(n, flags).itemsize
    k = draw(st.integers(1, min(8, (p.MAX_PACKET - 10 - 15) // per_instant)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def block(width: int) -> np.ndarray:
        return rng.integers(-32768, 32768, size=(k, n, width), dtype=np.int16)

    return p.Samples(seq=draw(u32), t0_us=draw(st.integers(0, p.MAX_TIME_US - 2**32)),
                     dt_us=rng.integers(0, 2**32, size=k, dtype=np.uint32),
                     acc=block(3), gyro=None if flags & p.FLAG_NO_GYRO else block(3),
                     mag=block(3) if flags & p.FLAG_MAG else None,
                     quat=block(4) if flags & p.FLAG_QUAT else None)


device_infos = st.builds(
    p.DeviceInfo, fw_version=st.tuples(u8, u8, u8), serial=u64, boot_id=u32, rate_hz=u16,
    sensor_count=u8, flags=st.integers(0, p.KNOWN_FLAGS), accel_scale=f32, gyro_scale=f32, mag_scale=f32,
    accel_range=f32, gyro_range=f32, mag_range=f32, instants_per_frame=st.integers(1, 32),
    rig_id=short_text, name=short_text)
messages = st.one_of(
    device_infos,
    samples(),
    st.builds(p.Status, device_time, u16, u8, st.integers(-32768, 32767), u32, u32, u32),
    st.builds(p.Event, device_time, u8, u8, st.integers(-(2**31), 2**31 - 1)),
    st.builds(p.Ack, u8, u8),
    st.just(p.CmdStart()), st.just(p.CmdStop()), st.just(p.CmdGetInfo()),
    st.builds(p.CmdSetRate, u16), st.builds(p.CmdIdentify, u8),
)

wild_messages = st.one_of(
    messages,
    st.builds(p.Status, u64, u16, u8, st.integers(-32768, 32767), u32, u32, u32),
    st.builds(p.Event, u64, u8, u8, st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda m, t0: p.Samples(m.seq, t0, m.dt_us, m.acc, m.gyro, m.mag, m.quat),
              samples(), u64),
)
"""Also device times past MAX_TIME_US: both decoders must count them as malformed."""


def _hex(s: str) -> str:
    return s.encode().hex() or "-"


def _wire_values(m: p.Samples) -> np.ndarray:
    blocks = [b for b in (m.acc, m.gyro, m.mag, m.quat) if b is not None]
    return np.concatenate(blocks, axis=2).ravel()


def to_line(msg: p.Message, dev: int) -> str:
    """The imp_tool ``encode`` line for a Python message."""
    if isinstance(msg, p.DeviceInfo):
        floats = [msg.accel_scale, msg.gyro_scale, msg.mag_scale, msg.accel_range,
                  msg.gyro_range, msg.mag_range]
        return " ".join(map(str, ["device_info", dev, *msg.fw_version, msg.serial, msg.boot_id,
                                  msg.rate_hz, msg.sensor_count, msg.flags,
                                  *(repr(float(f)) for f in floats), msg.instants_per_frame,
                                  _hex(msg.rig_id), _hex(msg.name)]))
    if isinstance(msg, p.Samples):
        return " ".join(map(str, ["samples", dev, msg.seq, msg.t0_us, msg.n_instants,
                                  msg.n_sensors, msg.flags, *msg.dt_us.tolist(),
                                  *_wire_values(msg).tolist()]))
    if isinstance(msg, p.Status):
        return (f"status {dev} {msg.t_us} {msg.battery_mv} {msg.battery_pct} "
                f"{msg.temperature_cdeg} {msg.sensor_errors} {msg.overruns} {msg.tx_dropped}")
    if isinstance(msg, p.Event):
        return f"event {dev} {msg.t_us} {msg.kind} {msg.sensor} {msg.value}"
    if isinstance(msg, p.Ack):
        return f"ack {dev} {msg.command} {msg.result}"
    arg = getattr(msg, "rate_hz", getattr(msg, "seconds", None))
    return f"cmd {msg.TYPE} {dev}" + ("" if arg is None else f" {arg}")


_TYPE_NAMES = {p.T_DEVICE_INFO: "DEVICE_INFO", p.T_SAMPLES: "SAMPLES", p.T_STATUS: "STATUS",
               p.T_EVENT: "EVENT", p.T_ACK: "ACK", p.T_START: "CMD_START",
               p.T_STOP: "CMD_STOP", p.T_GET_INFO: "CMD_GET_INFO",
               p.T_SET_RATE: "CMD_SET_RATE", p.T_IDENTIFY: "CMD_IDENTIFY"}
_F32_KEYS = ("accel_scale", "gyro_scale", "mag_scale", "accel_range", "gyro_range", "mag_range")


def to_json(dev: int, msg: p.Message) -> dict:
    """What imp_tool ``decode`` prints for a message (floats as float32)."""
    d: dict = {"device_id": dev, "type": _TYPE_NAMES[msg.TYPE]}
    if isinstance(msg, p.DeviceInfo):
        d.update(fw_version=list(msg.fw_version), serial=msg.serial, boot_id=msg.boot_id,
                 rate_hz=msg.rate_hz, sensor_count=msg.sensor_count, flags=msg.flags,
                 instants_per_frame=msg.instants_per_frame, rig_id=msg.rig_id, name=msg.name)
        d.update({k: getattr(msg, k) for k in _F32_KEYS})
    elif isinstance(msg, p.Samples):
        d.update(seq=msg.seq, t0_us=msg.t0_us, n_instants=msg.n_instants,
                 n_sensors=msg.n_sensors, flags=msg.flags, dt_us=msg.dt_us.tolist(),
                 acc=msg.acc.tolist())
        if msg.gyro is not None:
            d["gyro"] = msg.gyro.tolist()
        if msg.mag is not None:
            d["mag"] = msg.mag.tolist()
        if msg.quat is not None:
            d["quat"] = msg.quat.tolist()
    elif isinstance(msg, (p.Status, p.Event, p.Ack, p.CmdSetRate, p.CmdIdentify)):
        d.update(vars(msg))
    for k in _F32_KEYS:
        if k in d:
            d[k] = np.float32(d[k])
    return d


def c_decode(imp_tool, data: bytes) -> tuple[list[dict], list[str], dict]:
    """Messages, error names and counters the C decoder reports for a byte stream."""
    proc = imp_tool.run("decode", data)
    assert proc.returncode == 0, proc.stderr.decode()
    msgs, errors, counters = [], [], None
    # split on "\n" only: names may hold U+2028 or U+0085, which splitlines() would cut at
    for line in filter(None, proc.stdout.decode().split("\n")):
        obj = json.loads(line)
        if "counters" in obj:
            counters = obj["counters"]
        elif "error" in obj:
            errors.append(obj["error"])
        else:
            for k in _F32_KEYS:
                if k in obj:
                    obj[k] = np.float32(obj[k])
            msgs.append(obj)
    assert counters is not None, "imp_tool decode printed no counters line"
    return msgs, errors, counters


def same_message(a: p.Message, b: p.Message) -> bool:
    if isinstance(a, p.Samples):
        return (isinstance(b, p.Samples) and a.seq == b.seq and a.t0_us == b.t0_us
                and all(np.array_equal(x, y) if x is not None else y is None
                        for x, y in ((a.dt_us, b.dt_us), (a.acc, b.acc), (a.gyro, b.gyro),
                                     (a.mag, b.mag), (a.quat, b.quat))))
    return a == b


def test_c_self_test_passes_under_sanitizers(imp_tool):
    proc = imp_tool.run("selftest")
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert ", 0 failed" in out and "FAIL" not in out


@SETTINGS
@given(st.lists(st.tuples(u32, messages), min_size=1, max_size=4))
def test_c_encoder_writes_the_python_bytes(imp_tool, batch):
    text = "".join(to_line(m, dev) + "\n" for dev, m in batch)
    proc = imp_tool.run("encode", text.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"".join(p.encode(m, dev) for dev, m in batch)
    decoder = p.Decoder()
    got = decoder.feed(proc.stdout)
    assert len(got) == len(batch) and decoder.stats.errors == 0
    for (dev, m), (dev2, m2) in zip(batch, got):
        assert dev == dev2 and same_message(m, m2)


@SETTINGS
@given(st.lists(st.tuples(u32, messages), min_size=1, max_size=4), st.integers(0, 2))
def test_c_decoder_reads_python_frames(imp_tool, batch, garbage):
    # Optional garbage before the frames: the leading 0x00 of each frame resynchronises.
    data = bytes([0x41] * 13 * garbage) + b"".join(p.encode(m, dev) for dev, m in batch)
    msgs, errors, counters = c_decode(imp_tool, data)
    assert msgs == [to_json(dev, m) for dev, m in batch]
    assert counters["frames"] == len(batch)
    assert errors == (["cobs"] if garbage else [])  # 'AAA...' claims a run longer than itself


@st.composite
def noisy_streams(draw) -> bytes:
    """Valid frames with bit flips, cuts, zero bytes and noise between them."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.binary(max_size=64)))
        elif kind == 1:  # a run long enough to overflow the receiver
            parts.append(b"\x5a" * draw(st.integers(p.MAX_ENCODED - 2, p.MAX_ENCODED + 40)))
        else:
            frame = bytearray(p.encode(draw(wild_messages), draw(u32)))
            for _ in range(draw(st.integers(0, 3))):
                i = draw(st.integers(0, len(frame) - 1))
                frame[i] ^= 1 << draw(st.integers(0, 7))
            if draw(st.booleans()):
                frame = frame[: draw(st.integers(1, len(frame)))]
            parts.append(bytes(frame))
    return b"".join(parts)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(st.binary(max_size=600), noisy_streams()))
def test_c_and_python_decoders_agree_on_any_bytes(imp_tool, data):
    """Differential fuzz: no crash, sanitizers clean, and the same messages and counters."""
    py = p.Decoder()
    expected = [to_json(dev, m) for dev, m in py.feed(data)]
    msgs, errors, counters = c_decode(imp_tool, data)
    assert msgs == expected
    want = py.stats.as_dict()
    for key in ("bytes", "frames", "cobs_errors", "overlong", "truncated", "crc_errors",
                "bad_version", "unknown_type", "malformed"):
        assert counters[key] == want[key], (key, counters, want)
    assert len(errors) == py.stats.errors


def _raw_frame(mtype: int, device_id: int, body: bytes) -> bytes:
    packet = p.HEADER.pack(p.VERSION, mtype, device_id) + body
    return b"\x00" + cobs.encode(packet + struct.pack("<I", zlib.crc32(packet))) + b"\x00"


def test_c_device_answers_python_commands(imp_tool):
    """The firmware's command rules (core/imusic_device.c) seen from the Python host."""
    serial_low = 0x00003FA2
    script = [
        (p.CmdSetRate(500), 0),          # out of range
        (p.CmdSetRate(100), serial_low),  # addressed to this device
        (p.CmdGetInfo(), 0),
        (p.CmdStart(), 0x12345678),       # someone else's: no answer
        (p.CmdStart(), 0),
        (p.CmdIdentify(3), 0),
        (p.CmdStop(), 0),
    ]
    data = b"".join(p.encode(m, dev) for m, dev in script)
    data += _raw_frame(0x9A, 0, b"")                      # a command this firmware lacks
    data += _raw_frame(p.T_SET_RATE, 0, b"\x01")          # a known command, bad body
    proc = imp_tool.run("device", data)
    assert proc.returncode == 0, proc.stderr.decode()
    answers = p.Decoder().feed(proc.stdout)
    assert all(dev == serial_low for dev, _ in answers)
    msgs = [m for _, m in answers]
    assert msgs[0] == p.Ack(p.T_SET_RATE, p.ACK_BAD_ARGUMENT)
    assert msgs[1] == p.Ack(p.T_SET_RATE, p.ACK_OK)
    assert isinstance(msgs[2], p.DeviceInfo) and msgs[2].rate_hz == 100
    assert msgs[2].rig_id == "imusic11" and msgs[2].serial & 0xFFFFFFFF == serial_low
    assert msgs[3:] == [p.Ack(p.T_START), p.Ack(p.T_IDENTIFY), p.Ack(p.T_STOP),
                        p.Ack(0x9A, p.ACK_UNKNOWN_COMMAND),
                        p.Ack(p.T_SET_RATE, p.ACK_BAD_ARGUMENT)]


def test_encode_tool_names_the_bad_line(imp_tool):
    proc = imp_tool.run("encode", b"event 1 2 3\n")
    assert proc.returncode == 2
    assert b"event 1 2 3" in proc.stderr and b"missing" in proc.stderr
    proc = imp_tool.run("encode", b"samples 1 0 0 33 1 0\n")  # 33 instants: over the limit
    assert proc.returncode == 2 and b"field k" in proc.stderr


utf8ish = st.one_of(
    st.text(max_size=8).map(lambda s: s.encode()),
    st.lists(st.sampled_from([0x41, 0x80, 0x8F, 0x90, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                              0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF]), max_size=8).map(bytes))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(utf8ish, utf8ish)
def test_c_and_python_judge_device_info_strings_alike(imp_tool, rig_id, name):
    """Strict UTF-8 in the C decoder: the same strings accepted and refused as Python's."""
    head = p.DeviceInfo((1, 0, 0), 1, 2, 100, 12, 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4, "", "")
    body = head.body()[:-2] + bytes([len(rig_id)]) + rig_id + bytes([len(name)]) + name
    frame = _raw_frame(p.T_DEVICE_INFO, 7, body)
    py = p.Decoder()
    expected = [to_json(dev, m) for dev, m in py.feed(frame)]
    msgs, errors, counters = c_decode(imp_tool, frame)
    assert msgs == expected
    assert counters["malformed"] == py.stats.malformed

