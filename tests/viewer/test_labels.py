"""Face labels and the live status line: text drawn into the legacy window as textured quads."""

from __future__ import annotations

import numpy as np
import pylsl

from imusic.viewer.app import run_live
from imusic.viewer.face_view import FaceWindow
from imusic.viewer.live import LslSource, resolve_blendshapes


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 60


def test_labels_and_status_appear_and_change(face):
    with FaceWindow(n_faces=2, markers=None, width=900, height=500) as win:
        win.set_frame(np.zeros(52), np.zeros(52))
        bare = win.capture()
        win.set_labels(["arkit: phone", "imusic-model: live"])
        win.set_status("60 fps  latency 20 ms  source arkit+imusic-model")
        labelled = win.capture()
        ink = _changed(bare, labelled)
        assert ink.sum() > 2000                           # text and its quads are drawn
        rows = np.flatnonzero(ink.any(axis=1))
        assert rows.min() > labelled.shape[0] // 2        # under the faces, in front
        # dark text pixels on both faces' halves
        dark = labelled.mean(axis=2) < 80
        half = labelled.shape[1] // 2
        assert dark[rows.min():, :half].sum() > 100 and dark[rows.min():, half:].sum() > 100
        win.set_status("12 fps  latency 250 ms  source twin")
        changed = _changed(labelled, win.capture())
        assert changed.sum() > 200                        # the status line redrew
        win.set_labels(["arkit: phone", "imusic-model: live"])   # same text: nothing to redo
        assert not _changed(labelled[: rows.min()], win.capture()[: rows.min()]).any()


def test_run_live_labels_each_face_with_source_and_stream(unique_name):
    from imusic.capture.arkit_bridge import blendshapes_info

    outlet = pylsl.StreamOutlet(blendshapes_info(f"{unique_name}-bs", "twin",
                                                 f"{unique_name}-bs"))
    src = LslSource(resolve_blendshapes(f"{unique_name}-bs", 10.0)).start()
    try:
        with FaceWindow(markers=None, live_triangles=9000) as win:
            bare = win.capture()
            for _ in range(3):
                outlet.push_sample([0.0] * 61)
            run_live(win, [src], max_seconds=3.0, max_frames=1)
            assert win.labels[0].text == f"twin: {unique_name}-bs"
            assert "fps" in win.status.text and "source twin" in win.status.text
            assert _changed(bare, win.capture()).sum() > 1000
    finally:
        src.stop()
