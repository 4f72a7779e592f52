"""The ARKit bridge with real UDP sockets and real LSL outlets/inlets: receiver, replay, CLI."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pylsl
import pytest

from imusic.capture.arkit_bridge import (
    FrameClock,
    LiveLinkReceiver,
    ReplayStats,
    blendshapes_info,
    parse_host_port,
    replay_take,
)
from imusic.capture.livelink import LiveLinkPacket, build_packet, parse_packet, read_llv_recording
from imusic.capture.livelink_csv import LiveLinkTake, read_take, write_take
from imusic.hardware.vocabulary import STREAM_NAMES

REPO = Path(__file__).resolve().parents[2]


def _inlet(name: str, timeout: float = 10.0) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    assert found, f"LSL stream {name!r} not found within {timeout} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(timeout=timeout)
    return inlet


def _pull(inlet: pylsl.StreamInlet, n: int, timeout: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """Pull until ``n`` samples came (or the timeout passed)."""
    data, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(stamps) < n and time.monotonic() < deadline:
        chunk, ts = inlet.pull_chunk(timeout=0.2)
        data += chunk
        stamps += ts
    return np.asarray(data, np.float32).reshape(-1, 61), np.asarray(stamps)


async def _wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def real_packets(shared_data: Path) -> list[bytes]:
    return read_llv_recording(shared_data / "livelink" / "llv" / "dao.6145a13.raw.gesichter")


def _short_take(shared_data: Path, start: int, stop: int) -> LiveLinkTake:
    take = read_take(shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv")
    sl = slice(start, stop)
    return replace(take, t=take.t[sl] - take.t[start], values=take.values[sl],
                   face_found=take.face_found[sl],
                   start_timecode_s=take.start_timecode_s + take.t[start])


# ---------------------------------------------------------------- timestamps (pure)


def test_frame_clock_removes_jitter_and_follows_drift():
    rng = np.random.default_rng(3)
    frames = np.arange(60 * 120) / 60.0                    # 2 minutes at 60 Hz
    true_offset = 1000.0 + 80e-6 * frames                   # 80 ppm drift
    delay = 0.004 + rng.exponential(0.006, len(frames))     # network jitter, >= 4 ms
    arrival = frames + true_offset + delay
    clock = FrameClock(latency_s=0.05)
    stamps = np.array([clock.stamp(f, a) for f, a in zip(frames, arrival)])
    err = stamps - (frames + true_offset - 0.05)            # against the ideal capture time
    late = err[600:]                                         # after the first window filled
    # Within the smallest delay (4 ms) and the drift over one window (0.8 ms).
    assert late.min() >= 0.004 - 80e-6 * 10 - 1e-6 and late.max() < 0.0045
    # Jitter removed: frame-to-frame steps are the frame period, not the arrival jitter.
    assert np.std(np.diff(stamps[600:])) < 0.1 * np.std(np.diff(arrival[600:]))


def test_frame_clock_resets_when_frame_time_goes_back():
    clock = FrameClock(latency_s=0.0)
    for i in range(100):
        clock.stamp(5000 + i / 60, 10 + i / 60)
    ts = clock.stamp(1.0, 12.0)   # the app restarted: frame time jumped back
    assert clock.resets == 1 and ts == pytest.approx(12.0)


def test_receiver_stamps_follow_frame_numbers(real_packets):
    """With arrival jitter, the pushed stamps keep the packets' frame spacing."""
    rx = LiveLinkReceiver(publish=False, latency_s=0.05)
    rng = np.random.default_rng(0)
    stamps, frames = [], []
    for k, raw in enumerate(real_packets):
        p = parse_packet(raw)
        arrival = 100.0 + (p.frame_number - 5375735) / 60 + 0.003 + rng.exponential(0.005)
        ts = rx.handle_packet(p, arrival)
        stamps.append(ts)
        frames.append(p.frame_number)
    d_ts, d_fr = np.diff(stamps)[20:], np.diff(frames)[20:] / 60
    assert np.abs(d_ts - d_fr).max() < 0.004    # min delay changes at most slightly
    assert rx.stats.pushed == 180


# ---------------------------------------------------------------- receiver over UDP + LSL


async def test_receiver_publishes_real_packets_and_drops_garbage(real_packets, unique_name):
    async with LiveLinkReceiver(name=unique_name, host="127.0.0.1", port=0, latency_s=0.05) as rx:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(("127.0.0.1", rx.port))
        tx.send(real_packets[0])                 # creates the outlet
        await _wait_for(lambda: rx.stats.pushed == 1)
        inlet = await asyncio.to_thread(_inlet, unique_name)
        info = inlet.info()
        assert info.type() == "Blendshapes" and info.channel_count() == 61
        assert info.channel_format() == pylsl.cf_float32 and info.nominal_srate() == 60
        assert info.desc().child_value("source") == "arkit"
        labels = []
        ch = info.desc().child("channels").child("channel")
        while not ch.empty():
            labels.append(ch.child_value("label"))
            ch = ch.next_sibling()
        assert labels == list(STREAM_NAMES)
        assert info.source_id() == "livelink:DEADC0DE-1337-1337-1337-CAFEBABE"

        hostile = [b"", b"\x06", b"\x05" + real_packets[1][1:], real_packets[1][:100],
                   real_packets[1] + b"junk", b"\x06" + bytes(range(256)), b"\x06\x7f\xff\xff\xff"]
        no_face = parse_packet(real_packets[1])
        no_face = build_packet(LiveLinkPacket(no_face.device_id, no_face.subject,
                                              no_face.frame_number, no_face.sub_frame))
        other = parse_packet(real_packets[2])
        other = build_packet(LiveLinkPacket("OTHER-PHONE", "x", other.frame_number, 0.0, 60, 1,
                                            other.values))
        for k, raw in enumerate(real_packets[1:], start=1):
            tx.send(raw)
            if k < len(hostile) + 1:
                tx.send(hostile[k - 1])
            if k == 50:
                tx.send(no_face)
                tx.send(other)
            if k % 20 == 0:  # let the receiver keep up, as a 60 Hz phone would
                await _wait_for(lambda: rx.stats.pushed == k + 1)
        data, stamps = await asyncio.to_thread(_pull, inlet, 179)
        tx.close()
        assert len(data) == 179, rx.stats
        want = np.array([parse_packet(p).values for p in real_packets[1:]])
        assert np.array_equal(data, want)
        s = rx.stats
        assert s.pushed == 180 and s.no_face == 1 and s.other_subject == 1
        assert s.unsupported == 1 and s.malformed == len(hostile) - 1
        assert s.datagrams == 180 + len(hostile) + 2
        assert np.all(np.diff(stamps) > 0)
        assert "180 frames" in rx.status_line()


async def test_receiver_reports_a_busy_port(unique_name):
    async with LiveLinkReceiver(name=unique_name, host="127.0.0.1", port=0) as rx:
        with pytest.raises(OSError, match="--listen PORT"):
            await LiveLinkReceiver(host="127.0.0.1", port=rx.port).start()


# ---------------------------------------------------------------- replay


async def test_replay_to_lsl_keeps_values_gaps_and_timing(shared_data, unique_name):
    take = _short_take(shared_data, 370, 420)  # S88: face lost from data row 382 on
    lost = int((~take.face_found).sum())
    assert 0 < lost < 50
    outlet = pylsl.StreamOutlet(blendshapes_info(unique_name, "arkit", unique_name, rate_hz=120))
    inlet = await asyncio.to_thread(_inlet, unique_name)
    before = pylsl.local_clock()
    stats = await replay_take(take, outlet=outlet, speed=4.0, stamp_offset_s=0.137)
    data, stamps = await asyncio.to_thread(_pull, inlet, 50 - lost)
    assert 0.137 <= stamps[0] - before < 0.137 + 0.5   # the injected lag is in the stamps
    assert (stats.frames, stats.no_face, stats.loops) == (50 - lost, lost, 1)
    assert len(data) == 50 - lost
    assert np.array_equal(data, take.values[take.face_found])
    # Stamped at the scheduled play time: spacing is the take's spacing / speed.
    np.testing.assert_allclose(np.diff(stamps), np.diff(take.t[take.face_found]) / 4.0, atol=1e-6)


async def test_replay_udp_into_receiver_end_to_end(shared_data, unique_name):
    take = _short_take(shared_data, 370, 430)
    async with LiveLinkReceiver(name=unique_name, host="127.0.0.1", port=0, latency_s=0.0) as rx:
        stop = asyncio.Event()
        stats = ReplayStats()
        task = asyncio.create_task(replay_take(take, udp=("127.0.0.1", rx.port), speed=3.0,
                                               loop=True, stop=stop, stats=stats))
        await _wait_for(lambda: rx.stats.pushed >= 1)
        inlet = await asyncio.to_thread(_inlet, unique_name)
        await _wait_for(lambda: stats.loops >= 2, timeout=20)
        stop.set()
        await task
        data, _ = await asyncio.to_thread(_pull, inlet, 10**6, timeout=2)
    found = take.values[take.face_found]
    assert rx.stats.no_face >= 2 * int((~take.face_found).sum())
    assert rx.stats.malformed == 0 and rx.stats.device_id == "IMUSIC-REPLAY"
    # A whole pass arrives frame for frame (the inlet joined during the first one).
    starts = [j for j in range(len(data) - len(found) + 1) if np.array_equal(data[j], found[0])]
    assert any(np.array_equal(data[j:j + len(found)], found) for j in starts)


def test_parse_host_port():
    assert parse_host_port("10.0.0.2:9000") == ("10.0.0.2", 9000)
    assert parse_host_port("localhost") == ("localhost", 11111)
    assert parse_host_port("[::1]:5") == ("::1", 5)
    for bad in ("host:x", ":12", "h:70000"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


# ---------------------------------------------------------------- command line


def _imusic(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "imusic", "arkit", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cli_replay_stops_cleanly_on_sigterm(shared_data, tmp_path, unique_name):
    take = _short_take(shared_data, 0, 90)
    path = write_take(tmp_path / "take.csv", take.t, take.values, take.face_found)
    proc = _imusic("--replay", str(path), "--name", unique_name, "--loop", "--speed", "2")
    try:
        inlet = _inlet(unique_name, timeout=20)
        data, _ = _pull(inlet, 30)
        assert len(data) >= 30 and np.isfinite(data).all()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, out
    assert "replaying" in out and "frames sent" in out


def test_cli_listen_receives_and_stops_on_sigint(real_packets, unique_name):
    proc = _imusic("--listen", "0", "--host", "127.0.0.1", "--name", unique_name)
    try:
        m, seen = None, []
        while m is None and len(seen) < 50:   # skip liblsl's log lines, if any come first
            seen.append(proc.stdout.readline())
            m = re.search(r"udp port (\d+)", seen[-1])
        assert m, seen
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(real_packets[0], ("127.0.0.1", int(m.group(1))))
            inlet = _inlet(unique_name, timeout=20)
            for raw in real_packets[1:21]:
                tx.sendto(raw, ("127.0.0.1", int(m.group(1))))
            tx.sendto(b"garbage", ("127.0.0.1", int(m.group(1))))
            data, _ = _pull(inlet, 20)
        assert len(data) == 20
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, out
    assert "21 frames" in out and "1 bad" in out
    assert "no Live Link Face packets" not in out


def test_cli_replay_bad_file_names_it(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("hello,world\n1,2\n")
    proc = _imusic("--replay", str(bad))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "bad.csv" in out and "Timecode" in out


def test_cli_listen_without_packets_says_to_choose_the_arkit_mode():
    from imusic.capture.arkit_bridge import NO_PACKETS_WARNING_S

    proc = _imusic("--listen", "0", "--host", "127.0.0.1", "--quiet",
                   "--seconds", str(NO_PACKETS_WARNING_S + 3))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    port = re.search(r"udp port (\d+)", out).group(1)
    hints = [line for line in out.splitlines() if "no Live Link Face packets" in line]
    # Once while listening (after NO_PACKETS_WARNING_S), once in the summary at the end.
    assert len(hints) == 2, out
    assert f"udp port {port}" in hints[0] and "'Live Link (ARKit)' mode" in hints[0]
    assert "MetaHuman Animator" in hints[0]
