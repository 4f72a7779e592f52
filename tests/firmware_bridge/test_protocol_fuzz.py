"""Fuzzing the Decoder with hypothesis: never raises, bounded memory, frames in garbage found."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import protocol as P

MSGS = [P.CmdStart(), P.CmdSetRate(100), P.Status(1, 3700, 50, 2000), P.Event(9, 2),
        P.Ack(0x80, 0)]


def _sample(seq: int) -> P.Samples:
    rng = np.random.default_rng(seq)
    c = lambda: rng.integers(-32768, 32768, (2, 3, 3)).astype(np.int16)  # noqa: E731
    return P.Samples(seq, 1000 * seq, np.array([0, 10], np.uint32), c(), c(), c())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_arbitrary_bytes_never_raise_and_memory_is_bounded(chunks: list[bytes]) -> None:
    dec = P.Decoder()
    for c in chunks:
        dec.feed(c)
        assert dec.buffered <= P.MAX_ENCODED
    assert dec.stats.bytes == sum(len(c) for c in chunks)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=200), st.integers(0, 5)), min_size=1, max_size=12),
       st.integers(1, 97))
def test_valid_frames_inside_garbage_are_all_recovered(parts: list[tuple[bytes, int]],
                                                       chunk: int) -> None:
    wire, sent = b"", []
    for i, (garbage, which) in enumerate(parts):
        msg = _sample(i) if which == 5 else MSGS[which]
        wire += garbage + P.encode(msg, i)
        sent.append((i, msg))
    dec = P.Decoder()
    got = [x for k in range(0, len(wire), chunk) for x in dec.feed(wire[k:k + chunk])]
    # Garbage may itself decode as a valid frame only with a matching CRC-32: ignore none.
    got_real = [(d, m) for d, m in got if d < len(parts)]
    assert len(got_real) >= len(sent)
    it = iter(got_real)
    for dev, msg in sent:  # every sent frame appears, in order
        for d, m in it:
            if d == dev and type(m) is type(msg):
                if isinstance(m, P.Samples):
                    if m.seq == msg.seq and np.array_equal(m.acc, msg.acc):
                        break
                elif m == msg:
                    break
        else:
            raise AssertionError(f"frame {dev} {msg} not recovered")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.integers(0, 10_000))
def test_corrupted_frames_never_raise(noise: bytes, pos: int) -> None:
    frame = bytearray(P.encode(_sample(3), 7))
    for i, b in enumerate(noise[:8]):
        frame[(pos + 31 * i) % len(frame)] ^= b or 1
    dec = P.Decoder()
    dec.feed(bytes(frame) + P.encode(P.CmdStop(), 7))
    assert dec.stats.frames >= 1   # the frame after the damage still decodes
