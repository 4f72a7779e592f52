"""Fuzzing the decoded messages, not only the decoder: arbitrary bodies with a valid CRC, of
every message type, decoded; then every accessor of every message that comes out is called,
and the message goes through a device session's dispatch. Nothing may raise, device times
stay in int64 and in the float64 channel's exact range, and a body re-encodes to its bytes."""

from __future__ import annotations

import dataclasses
import inspect
import struct
import zlib

import numpy as np
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.device import DeviceSession, SessionConfig
from imusic.firmware_bridge.outlet import samples_to_rows

DEV = 0x0A0B0C0D
u64 = st.integers(0, 2**64 - 1)


def _frame(mtype: int, body: bytes, device_id: int = DEV) -> bytes:
    packet = P.HEADER.pack(P.VERSION, mtype, device_id) + body
    return b"\x00" + cobs.encode(packet + struct.pack("<I", zlib.crc32(packet))) + b"\x00"


@st.composite
def samples_bodies(draw) -> bytes:
    """A SAMPLES body whose layout fields agree with its length (so that it gets as far as the
    field checks), with any seq, t0_us and dt_us."""
    k, n, flags = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(0, 3))
    size = k * P.sample_dtype(n, flags).itemsize
    head = struct.pack("<IQBBB", draw(st.integers(0, 2**32 - 1)),
                       draw(st.one_of(u64, st.integers(0, P.MAX_TIME_US))), k, n, flags)
    return head + draw(st.binary(min_size=size, max_size=size))


@st.composite
def device_info_bodies(draw) -> bytes:
    fixed = draw(st.binary(min_size=P.DeviceInfo._S.size, max_size=P.DeviceInfo._S.size))
    rig, name = draw(st.binary(max_size=12)), draw(st.binary(max_size=12))
    return fixed + bytes([len(rig)]) + rig + bytes([len(name)]) + name


def _fixed_bodies(cls) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=cls._S.size, max_size=cls._S.size)


frames = st.one_of(
    st.tuples(st.just(P.T_SAMPLES), samples_bodies()),
    st.tuples(st.just(P.T_DEVICE_INFO), device_info_bodies()),
    *[st.tuples(st.just(c.TYPE), _fixed_bodies(c))
      for c in (P.Status, P.Event, P.Ack, P.CmdSetRate, P.CmdIdentify)],
    st.tuples(st.sampled_from(sorted(P.MESSAGE_TYPES)), st.binary(max_size=80)),
)


def _touch_everything(msg: P.Message) -> None:
    """Call every accessor of ``msg``: its fields, its properties, ``body()``, repr."""
    for f in dataclasses.fields(msg):
        getattr(msg, f.name)
    for name, _ in inspect.getmembers(type(msg), lambda m: isinstance(m, property)):
        getattr(msg, name)
    repr(msg)
    msg.body()


def _info_for(n_sensors: int, flags: int) -> P.DeviceInfo:
    return P.DeviceInfo((1, 0, 0), DEV, 1, 100, n_sensors, flags, 2.0 ** -11, 2.0 ** -13,
                        0.0625, 16.0, 4.0, 2048.0, 2, "", "fuzz")


@settings(max_examples=500, deadline=None)
@given(st.lists(frames, min_size=1, max_size=6))
def test_every_accessor_of_every_decoded_message(items: list[tuple[int, bytes]]) -> None:
    dec = P.Decoder()
    for mtype, body in items:
        got = dec.feed(_frame(mtype, body))
        assert len(got) <= 1
        if not got:
            continue
        msg = got[0][1]
        _touch_everything(msg)
        if isinstance(msg, P.Samples):
            t = msg.t_us
            assert t.dtype == np.int64 and 0 <= int(t.min()) and int(t.max()) <= P.MAX_TIME_US
            assert np.array_equal(t.astype(np.float64).astype(np.int64), t)  # exact as float64
            samples_to_rows(msg, _info_for(msg.n_sensors, msg.flags), t, msg.seqs)
        if isinstance(msg, (P.Status, P.Event)):
            assert msg.t_us <= P.MAX_TIME_US
        if isinstance(msg, P.DeviceInfo):   # float NaN payloads need not survive a re-pack
            again = P.DeviceInfo.parse(msg.body())
            assert (again.serial, again.rig_id, again.name) == (msg.serial, msg.rig_id, msg.name)
        else:                               # the very body it came from
            assert msg.body() == body
    assert dec.stats.frames + dec.stats.malformed == len(items)   # one or the other, each


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=8))
def test_a_session_survives_any_decoded_message(items: list[tuple[int, bytes]]) -> None:
    """A session that has a device (its DEVICE_INFO accepted) handles any decoded message
    without raising: what cannot be handled is counted, never thrown."""
    session = DeviceSession(lambda: None, SessionConfig(publish=False, device_id=DEV))
    first = next((b for t, b in items if t == P.T_SAMPLES and len(b) >= 15), None)
    session.info = _info_for(first[13], first[14]) if first is not None else _info_for(1, 0)
    arrival = 100.0
    for dev, msg in session.decoder.feed(b"".join(_frame(t, body) for t, body in items)):
        arrival += 0.01
        try:
            session._dispatch(dev, msg, arrival)
        except Exception as err:  # noqa: BLE001
            session._bad_message(dev, msg, err)
    assert session.health.message_errors == 0, session.health.last_error


def test_the_deadly_samples_frame_is_malformed_not_fatal() -> None:
    """The issue's datagram: a valid CRC, t0_us = 2**63. Counted as malformed at parse time."""
    bad = P.Samples(7, 2**63, np.zeros(1, np.uint32), np.zeros((1, 1, 3), np.int16),
                    np.zeros((1, 1, 3), np.int16))
    dec = P.Decoder()
    assert dec.feed(P.encode(bad, DEV)) == []
    assert dec.stats.malformed == 1 and dec.stats.crc_errors == 0
    edge = P.Samples(7, P.MAX_TIME_US - 10, np.array([10], np.uint32),
                     np.zeros((1, 1, 3), np.int16), np.zeros((1, 1, 3), np.int16))
    (_, msg), = dec.feed(P.encode(edge, DEV))
    assert int(msg.t_us[0]) == P.MAX_TIME_US
    for cls in (P.Status, P.Event):
        args = (P.MAX_TIME_US + 1,) + tuple(0 for _ in dataclasses.fields(cls)[1:])
        assert dec.feed(P.encode(cls(*args), DEV)) == []
    assert dec.stats.malformed == 3


def test_an_exception_in_dispatch_is_counted_and_named() -> None:
    """Whatever a handler raises on one message is counted and named; the loop goes on."""
    session = DeviceSession(lambda: None, SessionConfig(publish=False))
    session._bad_message(DEV, P.Status(1, 3700, 50, 2000), OverflowError("too big"))
    assert session.health.message_errors == 1
    assert "Status from device 0a0b0c0d dropped: OverflowError" in session.health.last_error
    assert "bad messages 1" in session.health.line()
