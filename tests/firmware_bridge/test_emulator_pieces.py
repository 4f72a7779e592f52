"""The emulator's small pieces on their own: the device clock's pause/resume/rebase/restart
arithmetic (hypothesis), the fault schedule's verbs, and ThreadedEmulator's start-up errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge.emulator_clock import BOOT_US, EmulatorClock, drift_factor, first_sample_us
from imusic.firmware_bridge.emulator_config import EmulatorConfig
from imusic.firmware_bridge.emulator_faults import FaultSchedule

drifts = st.floats(-2000, 2000)
bases = st.floats(0, 2.0 ** 40)
gaps = st.floats(0, 1e4)             # seconds: from nothing to hours
periods = st.sampled_from([1 / 25, 1 / 100, 1 / 200, 1 / 1000])


def test_drift_factor_and_first_sample() -> None:
    assert drift_factor(100) == 1.0001 and drift_factor(-50) == 1 - 50e-6
    assert first_sample_us(None) == BOOT_US and first_sample_us(7.0) == 7.0


@given(drifts, bases, st.floats(0, 1e5), gaps, gaps, periods)
def test_pause_keeps_the_reading_and_the_counter_runs_on(drift, base, t0, run, idle, period):
    c = EmulatorClock(drift, base)
    c.hold(t0)
    c.resume(t0, 0.0, period)
    assert c.running and c.due(0.0) == t0 + period
    now = t0 + run
    c.sent(now - c.anchor)                   # the instant due at ``now`` went out
    before = c.read_us(now)
    c.pause(now)
    assert not c.running
    assert abs(c.read_us(now) - before) <= 2
    # paused, the counter still runs at the device's rate
    assert abs(c.read_us(now + idle) - before - idle * 1e6 * c.rate) <= 2 + 1e-12 * abs(before)


@given(drifts, bases, st.floats(0, 1e5), gaps, periods)
def test_resume_makes_the_next_instant_due_one_period_on(drift, base, now, idle, period):
    c = EmulatorClock(drift, base)
    c.hold(now)
    t_next = c.t_sent + period
    paused = c.read_us(now + idle)
    c.resume(now + idle, t_next, period)
    assert c.due(t_next) == pytest.approx(now + idle + period, abs=1e-9)
    # the grid is exact (t_next one period after the last instant): the reading is continuous
    assert abs(c.read_us(now + idle) - paused) <= 2 + 1e-12 * abs(paused)


@given(drifts, bases, st.floats(0, 1e4), periods)
def test_rebase_restarts_the_timeline_not_the_counter(drift, base, t_sent, period):
    c = EmulatorClock(drift, base)
    c.hold(0.0)
    c.sent(t_sent)
    before = c.read_us(5.0)
    c.rebase()
    assert c.t_sent == 0.0
    assert abs(c.read_us(5.0) - before) <= 2 + 1e-12 * abs(before)
    # the new twin's instant at true time ``period`` is stamped what the counter reads then
    c.resume(5.0, period, period)
    stamp = base + c.us(period) + c.offset_us()
    assert abs(stamp - c.read_us(c.due(period))) <= 2 + 1e-12 * abs(before)


@given(drifts, bases, st.floats(0, 1e4), st.floats(0, 1e6))
def test_restart_stamps_that_instant_at_boot_time(drift, base, t, at_us):
    c = EmulatorClock(drift, base)
    c.restart(t, at_us)
    assert base + c.us(t) + c.adj_us == pytest.approx(at_us, abs=1e-6 * max(1.0, base))


ops = st.lists(st.tuples(st.sampled_from(["run", "pause", "idle", "resume", "rebase"]),
                         st.floats(0, 100)), max_size=30)


@settings(max_examples=200)
@given(drifts, st.floats(0, 2.0 ** 32), periods, ops)
def test_any_sequence_of_pauses_and_rate_changes_keeps_one_steady_counter(
        drift, base, period, seq):
    """Whatever the host does (START, STOP, SET_RATE while stopped), the device counter reads
    its boot reading plus the elapsed time at the device's rate."""
    c = EmulatorClock(drift, base)
    now = 10.0
    c.hold(now)
    start = c.read_us(now)
    for op, d in seq:
        if op == "run" and c.running:
            now += d
            c.sent(now - c.anchor)
        elif op == "idle" and not c.running:
            now += d
        elif op == "pause" and c.running:
            now += d / 100               # STOP arrives a while after the last frame left
            c.pause(now)
        elif op == "resume" and not c.running:
            c.resume(now, c.t_sent + period, period)
            # the timer's first tick: the next instant is due one period on
            now += period
            c.sent(now - c.anchor)
        elif op == "rebase" and not c.running:
            c.rebase()
        want = start + (now - 10.0) * 1e6 * c.rate
        assert abs(c.read_us(now) - want) <= 2 + 1e-9 * want, (op, d)


# ---- the fault schedule ---------------------------------------------------------------------

def _faults(**kw) -> tuple[FaultSchedule, np.random.Generator]:
    rng = np.random.default_rng(5)
    return FaultSchedule(EmulatorConfig(**kw), rng), rng


def test_reboot_is_due_once_at_its_time() -> None:
    f, _ = _faults(reboot_at=1.0)
    assert [f.reboot_due(t) for t in (0.5, 0.99, 1.0, 1.5, 3.0)] == [False, False, True,
                                                                     False, False]
    assert f.rebooted
    f, _ = _faults()
    assert not any(f.reboot_due(t) for t in (0.0, 1e9))


def test_pulls_are_due_every_period_and_the_next_is_scheduled() -> None:
    f, _ = _faults(disconnect_every=1.2, disconnect_for=0.5)
    due = [f.pull_due(t) for t in np.arange(0, 4, 0.1)]
    assert [d for d in due if d is not None] == pytest.approx([1.2, 2.4, 3.6])
    assert f.pull_for == 0.5
    # a late frame (the stream stalled past two pulls) gets one pull now, the next right after
    f, _ = _faults(disconnect_every=1.0)
    assert f.pull_due(2.5) == 1.0 and f.pull_due(2.5) == 2.0 and f.pull_due(2.5) is None
    f, _ = _faults()
    assert f.pull_due(1e9) is None


def test_faults_that_are_off_draw_nothing() -> None:
    f, rng = _faults()
    state = rng.bit_generator.state
    frame = bytes(range(40))
    assert not f.drop() and f.corrupt(frame) == (frame, 0) and f.send_delay() == 0.0
    assert rng.bit_generator.state == state   # a seed gives the same faults whatever is off


def test_loss_drops_that_fraction() -> None:
    f, _ = _faults(loss=0.3)
    dropped = sum(f.drop() for _ in range(2000))
    assert 520 <= dropped <= 680     # binomial(2000, 0.3): mean 600, sd 20


def test_send_delay_is_within_the_jitter() -> None:
    f, _ = _faults(send_jitter_ms=8.0)
    d = np.array([f.send_delay() for _ in range(500)])
    assert d.min() >= 0 and d.max() < 8e-3 and d.mean() == pytest.approx(4e-3, rel=0.15)


@given(st.binary(min_size=1, max_size=600), st.floats(0.0, 0.99))
def test_corrupt_flips_exactly_the_bytes_it_counts(frame: bytes, p: float) -> None:
    f = FaultSchedule(EmulatorConfig(corrupt=p), np.random.default_rng(1))
    out, n = f.corrupt(frame)
    assert len(out) == len(frame)
    assert n == sum(a != b for a, b in zip(out, frame))


# ---- the modules ---------------------------------------------------------------------------

def test_no_emulator_piece_imports_the_emulator_back() -> None:
    """emulator.py imports its pieces; none of them (TYPE_CHECKING blocks included) imports
    emulator.py, so there is no import cycle (emulator_twin used to, for EmulatorConfig)."""
    import ast
    from pathlib import Path

    import imusic.firmware_bridge as firmware_bridge

    root = Path(firmware_bridge.__file__).parent
    for path in sorted(root.glob("emulator_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert "imusic.firmware_bridge.emulator" not in names, path.name
            if isinstance(node, ast.ImportFrom) and node.module == "imusic.firmware_bridge":
                assert "emulator" not in [a.name for a in node.names], path.name


# ---- ThreadedEmulator -----------------------------------------------------------------------

def test_threaded_start_up_error_reaches_the_caller_and_the_thread_ends(tmp_path) -> None:
    from imusic.firmware_bridge.emulator import Emulator

    cfg = EmulatorConfig(transport="serial", motion=str(tmp_path / "none.csv"))
    threaded = Emulator.run_in_thread(cfg)
    with pytest.raises(FileNotFoundError, match="no such Live Link Face CSV take"):
        threaded.start()
    assert not threaded.running


# ---- a rate change --------------------------------------------------------------------------

async def test_a_new_rate_restarts_the_motion_and_its_taps() -> None:
    """SET_RATE then START simulates the twin afresh (the motion from its start): its taps
    are sent again. The tap index used to carry over, so the new run's first taps were lost."""
    from imusic.hardware.motion import Motion, MotionEvent
    from .test_emulator import SerialHost

    from imusic.firmware_bridge import protocol as P
    from imusic.firmware_bridge.emulator import Emulator

    motion = Motion.still(1.5)
    motion.events.append(MotionEvent("tap", 0.3, 0.32))
    cfg = EmulatorConfig(transport="serial", rate_hz=100, seconds=1.2, seed=19, motion=motion)

    def is_tap(m) -> bool:
        return isinstance(m, P.Event) and m.kind == P.EVENT_TAP

    def ack(kind: int):
        return lambda m: isinstance(m, P.Ack) and m.command == kind

    async with Emulator(cfg) as emu:
        host = SerialHost(emu.serial_path)
        try:
            host.send(P.CmdStart())
            first = await host.until(is_tap, 10)
            host.send(P.CmdStop())
            await host.until(ack(P.T_STOP))
            host.send(P.CmdSetRate(50))
            await host.until(ack(P.T_SET_RATE))
            host.send(P.CmdStart())
            await host.until(lambda m: isinstance(m, P.DeviceInfo) and m.rate_hz == 50)
            second = await host.until(is_tap, 10)
        finally:
            host.close()
    assert emu.taps_sent == [first.t_us, second.t_us] and second.t_us > first.t_us
