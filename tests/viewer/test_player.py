"""Replay control (pure state, no window)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imusic.viewer.player import SPEEDS, Player


def test_plays_at_rate_and_speed():
    p = Player(n_frames=600, rate_hz=60.0, loop=False)
    assert p.advance(0.5) == 30
    p.faster()
    assert p.speed == 2.0
    assert p.advance(0.5) == 90


def test_pause_step_and_seek():
    p = Player(100, 50.0, loop=False)
    assert p.toggle() is False          # paused
    assert p.advance(10.0) == 0         # no motion while paused
    assert p.step(3) == 3
    assert p.step(-10) == 0             # clamped without loop
    assert p.seek_seconds(1.0) == 50
    assert p.seek_frame(1000) == 99


def test_stops_at_end_without_loop_and_restarts_on_play():
    p = Player(10, 10.0, loop=False)
    assert p.advance(5.0) == 9
    assert p.at_end and not p.playing
    assert p.toggle() is True
    assert p.frame == 0


def test_loop_wraps():
    p = Player(10, 10.0, loop=True)
    assert p.advance(1.25) == 2
    assert p.step(-5) == 7


def test_speed_steps_are_bounded():
    p = Player(10, 10.0)
    for _ in range(10):
        p.slower()
    assert p.speed == SPEEDS[0]
    for _ in range(10):
        p.faster()
    assert p.speed == SPEEDS[-1]


def test_rejects_empty_timeline():
    with pytest.raises(ValueError, match="no frames"):
        Player(0, 60.0)


@given(n=st.integers(1, 500), loop=st.booleans(),
       ops=st.lists(st.tuples(st.sampled_from(["adv", "step", "seek", "toggle", "fast"]),
                              st.floats(-100, 100, allow_nan=False)), max_size=30))
def test_frame_always_in_range(n, loop, ops):
    p = Player(n, 60.0, loop=loop)
    for op, x in ops:
        if op == "adv":
            p.advance(abs(x))
        elif op == "step":
            p.step(int(x))
        elif op == "seek":
            p.seek_seconds(x)
        elif op == "toggle":
            p.toggle()
        else:
            p.faster()
        assert 0 <= p.frame < n
