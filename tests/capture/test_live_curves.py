"""capture/live_curves.py: the bounded, decimated buffer behind the experimenter page's curves,
fed through a real recorder from a real LSL outlet."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from hypothesis import given, strategies as st

from imusic.capture.live_curves import (CURVE_SHAPES, CurvesConfig, LiveCurves, ShapesError,
                                 parse_shapes)
from imusic.capture.session import StreamSpec
from imusic.hardware.vocabulary import STREAM_NAMES


def _spec(name: str = "phone", typ: str = "Blendshapes") -> StreamSpec:
    return StreamSpec(name=name, type=typ, channel_count=len(STREAM_NAMES), nominal_srate=60.0,
                      labels=list(STREAM_NAMES))


def test_a_minute_at_60_hz_keeps_ten_seconds_at_20_hz() -> None:
    curves, cfg = LiveCurves(), CurvesConfig()
    ts = np.arange(60 * 60) / 60.0
    x = np.zeros((len(ts), len(STREAM_NAMES)), np.float32)
    x[:, STREAM_NAMES.index("jawOpen")] = ts / 60.0
    for i in range(0, len(ts), 7):                     # chunks of odd sizes
        curves.feed(_spec(), x[i:i + 7], ts[i:i + 7])
    d = curves.as_dict()
    assert len(curves.frames) == cfg.max_frames == 201
    assert d["received"] == len(ts) and d["kept"] == pytest.approx(60 * 20, abs=2)
    assert np.diff(d["t"]) == pytest.approx(1 / 20, abs=1e-3)     # 20 Hz, no drift
    assert d["t"][-1] == 0 and d["t"][0] == pytest.approx(-10, abs=0.05)
    assert d["values"]["jawOpen"][-1] == pytest.approx(ts[-1] / 60, abs=1e-3)
    assert d["shapes"] == list(CURVE_SHAPES) and d["available"] == list(STREAM_NAMES)


def test_other_streams_are_ignored_and_nan_is_null_json() -> None:
    curves = LiveCurves()
    curves.feed(_spec("imu", "IMU"), np.ones((5, len(STREAM_NAMES))), np.arange(5.0))
    assert curves.as_dict()["kept"] == 0
    x = np.full((3, len(STREAM_NAMES)), np.nan, np.float32)
    curves.feed(_spec(), x, np.array([0.0, 0.1, 0.2]))
    d = json.loads(json.dumps(curves.as_dict(["jawOpen"]), allow_nan=False))
    assert d["values"]["jawOpen"] == [None, None, None]


def test_a_replay_starting_over_clears_the_old_curve() -> None:
    curves = LiveCurves()
    x = np.zeros((100, len(STREAM_NAMES)), np.float32)
    curves.feed(_spec(), x, 100 + np.arange(100) / 60)
    curves.feed(_spec(), x[:10], np.arange(10) / 60)        # the clock went back
    assert [t for t, _ in curves.frames][0] == 0.0
    curves.feed(_spec("phone2"), x[:1], np.array([1.0]))   # another stream
    assert len(curves.frames) == 1 and curves.stream == "phone2"


def test_parse_shapes() -> None:
    assert parse_shapes(None) == list(CURVE_SHAPES) == parse_shapes(" ")
    assert parse_shapes("jawOpen, cheekPuff,jawOpen") == ["jawOpen", "cheekPuff"]
    with pytest.raises(ShapesError, match="'mouthSmile' is not a Blendshapes channel"):
        parse_shapes("jawOpen,mouthSmile")
    with pytest.raises(ShapesError, match="at most 12"):
        parse_shapes(",".join(STREAM_NAMES[:13]))


@given(st.text(max_size=200))
def test_parse_shapes_fuzz(text: str) -> None:
    try:
        names = parse_shapes(text)
    except ShapesError as err:
        assert "\n" not in str(err) and str(err).startswith("shapes: ")
        return
    assert names and set(names) <= set(STREAM_NAMES) and len(names) <= 12


def test_the_recorder_feeds_what_it_writes(tmp_path) -> None:
    import pylsl

    from imusic.capture.recorder import Recorder

    name = f"curves-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(name, "Blendshapes", len(STREAM_NAMES), 60.0, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for n in STREAM_NAMES:
        chans.append_child("channel").append_child_value("label", n)
    outlet = pylsl.StreamOutlet(info)
    curves = LiveCurves()
    rec = Recorder(tmp_path / "c.h5", names=[name], on_data=curves.feed).start()
    try:
        deadline = time.monotonic() + 30
        k = 0
        while curves.as_dict()["kept"] < 10:
            assert time.monotonic() < deadline, "the recorder never fed the curves"
            row = np.zeros(len(STREAM_NAMES), np.float32)
            row[STREAM_NAMES.index("jawOpen")] = 0.5
            outlet.push_sample(row)
            k += 1
            time.sleep(1 / 60)          # the stream's own rate, not a wait for a condition
    finally:
        rec.stop()
    d = curves.as_dict(["jawOpen"])
    assert d["stream"] == name and set(d["values"]["jawOpen"]) == {0.5}


def test_a_failing_on_data_never_stops_recording(tmp_path) -> None:
    import pylsl

    from imusic.capture.recorder import Recorder
    from imusic.capture.session import SessionReader

    name = f"curves-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Blendshapes", 2, 60.0,
                                                 pylsl.cf_float32, name))
    warnings: list[str] = []

    def broken(*_a) -> None:
        raise RuntimeError("boom")

    rec = Recorder(tmp_path / "f.h5", names=[name], on_data=broken,
                   on_warning=warnings.append).start()
    try:
        deadline = time.monotonic() + 30
        while sum(s.samples for s in list(rec.status.values())) < 120:
            assert time.monotonic() < deadline
            outlet.push_sample([0.1, 0.2])
            time.sleep(1 / 60)
    finally:
        rec.stop()
    assert not rec.failure and any("live view" in w and "boom" in w for w in warnings)
    with SessionReader(tmp_path / "f.h5") as r:
        assert sum(len(r.stream(k).time_stamps) for k in r.keys) >= 120
