"""``imusic hybrid`` end to end: the emulator's wearable on a real pty and its ground truth sent
as real Live Link Face packets (a stand-in for the phone) with an occlusion in the middle."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pylsl

from imusic.capture.arkit_bridge import UdpSender
from imusic.capture.livelink import LiveLinkPacket, frame_time_fields
from imusic.cli import main
from imusic.model.fusion import REGION_NAMES


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hybrid_hands_over_to_the_imu_and_back_within_100_ms(emulator, unique_name):
    port, name = _free_port(), f"{unique_name}-hyb"
    result: dict = {}
    cli = threading.Thread(target=lambda: result.update(code=main(
        ["hybrid", "--arkit-listen", str(port), "--serial", emulator.emulator.serial_path,
         "--seconds", "14", "--name", name, "--quiet"])), daemon=True)
    cli.start()

    # The phone: forward the twin's truth as Live Link packets; from 6 s to 7.5 s after the
    # first frame, the face is lost (face-lost packets, as the app sends them).
    truth = pylsl.resolve_byprop("name", f"{unique_name}-truth", 1, 20.0)
    assert truth, "emulator truth stream not found"
    inlet = pylsl.StreamInlet(truth[0])
    lost_span: list[float] = []
    done = threading.Event()

    def phone() -> None:
        with UdpSender("127.0.0.1", port) as tx:
            t_first = None
            while not done.is_set():
                rows, _ = inlet.pull_chunk(timeout=0.05)
                for row in rows:
                    now = pylsl.local_clock()
                    t_first = t_first or now
                    lost = 6.0 <= now - t_first < 7.5
                    if lost and not lost_span:
                        lost_span.append(now)
                    if not lost and len(lost_span) == 1 and now - t_first >= 7.5:
                        lost_span.append(now)
                    number, sub, num, den = frame_time_fields(now)
                    tx.send(LiveLinkPacket("phone-test", "s1", number, sub, num, den,
                                           None if lost else np.asarray(row, np.float32)))

    sender = threading.Thread(target=phone, daemon=True)
    sender.start()
    state = pylsl.resolve_byprop("name", f"{name}-state", 1, 40.0)
    assert state, "no FusionState stream"
    st_inlet = pylsl.StreamInlet(state[0])
    fused = pylsl.resolve_byprop("name", name, 1, 5.0)
    fu_inlet = pylsl.StreamInlet(fused[0])
    w_rows, w_ts, f_rows, f_ts = [], [], [], []
    while cli.is_alive():
        r, t = st_inlet.pull_chunk(timeout=0.2)
        w_rows += r
        w_ts += t
        r, t = fu_inlet.pull_chunk(timeout=0.0)
        f_rows += r
        f_ts += t
    done.set()
    cli.join(10)
    assert result.get("code") == 0
    assert len(lost_span) == 2, "the test's occlusion did not happen"
    w, ts = np.asarray(w_rows)[:, :len(REGION_NAMES)], np.asarray(w_ts)
    # ARKit frames are stamped 'arrival - assumed latency' (50 ms): the occlusion's start and
    # end in that clock.
    onset, recovery = lost_span[0] - 0.05, lost_span[1] - 0.05
    before = (ts > onset - 2.0) & (ts < onset - 0.2)
    assert before.any() and w[before].mean() >= 0.9, "ARKit not trusted before the occlusion"
    on_imu = ts[(ts >= onset) & np.all(w == 0.0, axis=1)]
    assert len(on_imu), "never switched to the IMU"
    assert on_imu[0] - onset <= 0.100, f"switched after {1000 * (on_imu[0] - onset):.0f} ms"
    back = ts[(ts >= recovery) & np.all(w == 1.0, axis=1)]
    assert len(back), "never switched back to ARKit"
    assert back[0] - recovery <= 0.100, f"back after {1000 * (back[0] - recovery):.0f} ms"

    # No jump at the hand-overs larger than the model's error on this run: the fused output's
    # frame-to-frame step near each hand-over stays below the twin's own motion + that error.
    f, fts = np.asarray(f_rows)[:, :52], np.asarray(f_ts)
    # every fused value published is in 0..1 (the IMU side strays below 0 unclipped)
    assert 0.0 <= f.min() and f.max() <= 1.0, (f.min(), f.max())
    steps = np.abs(np.diff(f, axis=0)).max(axis=1)
    calm = steps[(fts[1:] > onset - 3.0) & (fts[1:] < onset - 0.5)]
    for t0 in (onset, recovery):
        near = steps[(fts[1:] > t0 - 0.05) & (fts[1:] < t0 + 0.25)]
        assert near.max() <= calm.max() + 0.25, (t0, near.max(), calm.max())
