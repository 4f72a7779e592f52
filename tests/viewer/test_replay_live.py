"""Replay and live display in a real window: frames in order, a live outlet moves the face."""

from __future__ import annotations

import threading

import numpy as np
import pylsl
import pytest

from imusic.hardware.vocabulary import ARKIT_NAMES, STREAM_NAMES
from imusic.cli import main
from imusic.viewer.app import run_live, run_replay
from imusic.viewer.face_view import FaceWindow
from imusic.viewer.live import LatestFrame, LslSource, StreamNotFound, resolve_blendshapes
from imusic.viewer.player import Player
from imusic.viewer.sources import Track, load_track

JAW = ARKIT_NAMES.index("jawOpen")


def _chin_drop(face, win: FaceWindow) -> float:
    """How far the chin of the drawn face is below its rest position (m)."""
    row = win.selection.position_of(int(face.landmarks[8]))
    return float(face.neutral[face.landmarks[8], 1] - win.slots[0].vertices[row, 1])


def test_replay_renders_frames_in_order(face, tmp_path):
    n = 24
    b = np.zeros((n, 52), np.float32)
    b[:, JAW] = np.linspace(0, 1, n)          # every frame distinguishable by its chin
    track = Track.from_array(b, rate_hz=240.0)
    seen: list[tuple[int, float]] = []
    with FaceWindow() as win:
        player = Player(n, track.rate_hz, loop=False, speed=0.125)   # 30 frames/s of replay
        run_replay(win, track, player=player, stop_at_end=True, max_seconds=30,
                   on_frame=lambda i, w: seen.append((i, _chin_drop(face, w))))
    indices = [i for i, _ in seen]
    drops = np.array([d for _, d in seen])
    assert indices[0] == 0 and indices[-1] == n - 1
    assert all(x < y for x, y in zip(indices, indices[1:]))      # in order, none twice
    assert np.all(np.diff(drops) > 0)                           # the chin really moved down
    # Each rendered pose is the pose of its frame.
    expected = [float(face.neutral[face.landmarks[8], 1]
                      - face.vertices(b[i])[face.landmarks[8], 1]) for i in indices]
    assert np.allclose(drops, expected, atol=1e-6)


def test_replay_side_by_side_pairs_frames(face):
    n = 10
    truth = np.zeros((n, 52), np.float32)
    truth[:, JAW] = np.linspace(0, 1, n)
    pred = truth.copy()
    pred[5:, JAW] = 0.0                      # wrong from frame 5 on
    errors = {}
    with FaceWindow(n_faces=2) as win:
        run_replay(win, Track.from_array(truth, 600.0), Track.from_array(pred, 600.0),
                   player=Player(n, 600.0, loop=False, speed=0.125), stop_at_end=True,
                   max_seconds=30,
                   on_frame=lambda i, w: errors.__setitem__(i, float(w.last_error_m.max())))
    assert all(errors[i] < 1e-9 for i in errors if i < 5)
    assert all(errors[i] > 0.002 for i in errors if i >= 6)


def test_latest_frame_keeps_only_the_newest():
    slot = LatestFrame()
    assert slot.get() is None and slot.wait_newer(0, 0.01) is None
    for i in range(5):
        slot.put(np.full(61, i), float(i))
    f = slot.get()
    assert f.seq == 5 and f.values[0] == 4

    got = []
    t = threading.Thread(target=lambda: got.append(slot.wait_newer(5, 5.0)))
    t.start()
    slot.put(np.full(61, 9), 9.0)
    t.join(5.0)
    assert got and got[0].seq == 6


def _outlet(name: str) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(name, "Blendshapes", 61, 60.0, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for label in STREAM_NAMES:
        chans.append_child("channel").append_child_value("label", label)
    info.desc().append_child_value("source", "twin")
    return pylsl.StreamOutlet(info)


def test_live_outlet_moves_the_face(face, unique_name):
    outlet = _outlet(unique_name)
    info = resolve_blendshapes(unique_name, timeout_s=10.0)
    assert info.name() == unique_name
    stop = threading.Event()

    def produce() -> None:
        sample = np.zeros(61, np.float32)
        sample[JAW] = 1.0
        while not stop.is_set():
            outlet.push_sample(sample.tolist())
            stop.wait(1 / 60)

    images, drops = [], []
    with FaceWindow() as win:
        win.set_frame(np.zeros(52))
        images.append(win.capture())
        producer = threading.Thread(target=produce, daemon=True)
        with LslSource(info) as source:
            producer.start()
            try:
                drawn = run_live(win, [source], max_frames=5, max_seconds=20,
                                 on_frame=lambda i, w: drops.append(_chin_drop(face, w)))
            finally:
                stop.set()
                producer.join(5.0)
        images.append(win.capture())
    assert drawn == 5
    assert source.received >= 5
    assert min(drops) > 0.01                     # jaw open: chin down by more than 1 cm
    assert np.abs(images[1].astype(int) - images[0].astype(int)).mean() > 1.0


def test_missing_stream_is_a_clear_error(unique_name):
    with pytest.raises(StreamNotFound, match=f"{unique_name}.*imusic arkit"):
        resolve_blendshapes(unique_name, timeout_s=0.5)


def test_cli_snapshot_of_a_session_frame(tmp_path, capsys):
    import h5py

    from imusic.capture.aligned import Aligned, write_aligned

    n = 5
    b = np.zeros((n, 52), np.float32)
    b[:, JAW] = np.linspace(0, 1, n)
    data = Aligned(rate_hz=60.0, t=np.arange(n) / 60, blendshapes=b,
                   pose=np.zeros((n, 9)), acc=np.zeros((n, 1, 3)), gyro=np.zeros((n, 1, 3)),
                   mag=np.zeros((n, 1, 3)), valid_imu=np.ones(n, bool),
                   valid_arkit=np.ones(n, bool), sites=["a"], reference="a", rig_id="x")
    session = tmp_path / "s.h5"
    with h5py.File(session, "w") as h5:
        write_aligned(h5, data)
    assert load_track(session).n_frames == n
    outs = [tmp_path / "f0.png", tmp_path / "f4.png"]
    for frame, out in zip((0, 4), outs):
        assert main(["view", str(session), "--snapshot", str(out), "--frame", str(frame),
                     "--rig", "none"]) == 0
    import matplotlib.image

    a, z = (matplotlib.image.imread(p)[..., :3] for p in outs)
    assert a.shape == (720, 640, 3)
    assert np.abs(a - z).mean() > 0.003               # frame 4 has the jaw open
    assert main(["view", str(session), "--snapshot", str(tmp_path / "x.png"),
                 "--frame", "99"]) == 1
    assert "outside" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope.h5"), "--snapshot", str(tmp_path / "o.png")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["view", "--blendshapes", "jawopen=1", "--snapshot", "x.png"]) == 2
    assert "did you mean 'jawOpen'" in capsys.readouterr().err
    assert main(["view", "--identity", "20"]) == 2


PRODUCER = """
import sys, time
import numpy as np, pylsl
name, n = sys.argv[1], int(sys.argv[2])
outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Blendshapes", 61, 1000.0,
                                             pylsl.cf_float32, name))
ramp = np.zeros((n, 61), np.float32)
ramp[:, 17] = np.linspace(0, 1, n)          # jawOpen
while not outlet.have_consumers():
    time.sleep(0.01)
print("consumer", flush=True)
for i in range(0, n, 30):                    # about 1 kHz: faster than any window draws
    outlet.push_chunk(ramp[i:i + 30].tolist())
    time.sleep(0.03)
sys.stdin.read()                             # keep the outlet until the test is done
"""


def test_live_skips_to_the_newest_frame_instead_of_lagging(face, unique_name):
    # The producer is another process, as in real use: Open3D's legacy renderer holds the
    # GIL while it draws, so an in-process producer thread would be slowed by the viewer.
    import subprocess
    import sys

    n = 3000
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, unique_name, str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    shown: list[float] = []
    try:
        info = resolve_blendshapes(unique_name, timeout_s=20.0)
        with FaceWindow() as win, LslSource(info) as source:
            assert proc.stdout.readline().strip() == b"consumer"
            drawn = run_live(win, [source], max_seconds=60,
                             on_frame=lambda i, w: shown.append(float(w.slots[0].weights[JAW])),
                             until=lambda: bool(shown) and shown[-1] >= 1.0)
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert shown[-1] == pytest.approx(1.0)          # ends on the newest sample
    assert drawn < source.received / 3              # most frames were skipped, none queued
    assert all(a <= b for a, b in zip(shown, shown[1:]))


def test_compare_hook_for_models():
    from imusic.viewer.app import compare

    n = 30
    truth = np.zeros((n, 52), np.float32)
    truth[:, JAW] = 0.8
    errors = []
    player = compare(truth, np.zeros_like(truth), rate_hz=60.0, max_seconds=0.5,
                     on_frame=lambda i, w: errors.append(float(w.last_error_m.max())))
    assert player.n_frames == n and errors
    assert min(errors) > 0.01                    # an open jaw against a closed one
    with pytest.raises(ValueError, match="frames"):
        compare(truth, truth[:5])
