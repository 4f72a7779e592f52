"""Device markers (the ``NAME-events`` stream of firmware_bridge.outlet.EventOutlet) recorded
by the recorder: a gap found after a health record has gone out has an earlier time; its
marker is stamped so that marker times never go back, with the gap's own time in the payload,
and ``imusic info`` calls the recording valid."""

from __future__ import annotations

import json

import numpy as np
import pylsl
import pytest
from .test_record import wait_until

from imusic.capture.recorder import Recorder
from imusic.capture.session import SessionReader, SessionWriter, StreamSpec, stream_key
from imusic.capture.session_check import check_session
from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.outlet import EventOutlet, ImuStreamSpec

pytestmark = pytest.mark.timeout(120)


def test_gap_marker_after_health_never_goes_back(tmp_path, unique_name):
    info = P.DeviceInfo((1, 0, 0), 0x1234, 1, 100, 1, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1,
                        "generic", "dev")
    spec = ImuStreamSpec(info=info, name=unique_name, sites=["s00"])
    path = tmp_path / "mk.h5"
    key = stream_key(f"{unique_name}-events")
    with EventOutlet(spec) as events, Recorder(path, names=[f"{unique_name}-events"]) as rec:
        assert rec.wait_for_types(["Markers"], 20) == []
        wait_until(lambda: events._outlet.have_consumers(), 20, "the recorder's inlet")
        now = pylsl.local_clock()
        events.push({"event": "health", "health": {"samples": 10}})
        # The samples after a gap were stamped 0.8 s ago; the gap is noticed only now.
        events.push({"event": "gap", "lost": 35, "t_after": now - 0.8}, now - 0.8)
        events.push({"event": "tap"}, pylsl.local_clock())
        wait_until(lambda: sum(s.samples for s in rec.status.values()) >= 3, 20,
                   "three markers recorded")
    with SessionReader(path) as r:
        d = r.stream(key)
    t = d.time_stamps
    assert len(t) == 3 and np.all(np.diff(t) >= 0), t
    gap = json.loads(d.time_series[1, 0])
    assert gap["event"] == "gap" and gap["lsl_time"] == pytest.approx(now - 0.8)
    assert gap["t_after"] == gap["lsl_time"]
    rep = check_session(path)
    assert rep.valid, rep.errors
    assert not any("backwards" in w for w in rep.warnings), rep.warnings


def test_backwards_marker_times_are_allowed_in_irregular_streams(tmp_path):
    """What LSL allows (and LabRecorder records): an irregular stream's samples in any time
    order. A regular stream going back stays an error."""
    path = tmp_path / "irr.h5"
    with SessionWriter(path) as w:
        mk = w.add_stream(StreamSpec("mk", "Markers", 1, 0.0, "string"))
        w.append(mk, [["health"], ["gap"], ["tap"]], [10.0, 9.2, 10.5])
        imu = w.add_stream(StreamSpec("imu", "IMU", 1, 100.0, "double64"))
        w.append(imu, np.zeros((3, 1)), [1.0, 1.01, 1.02])
    rep = check_session(path)
    assert rep.valid, rep.errors
    assert any("'mk'" in w and "backwards 1 times" in w for w in rep.warnings), rep.warnings
    with SessionWriter(tmp_path / "reg.h5") as w:
        imu = w.add_stream(StreamSpec("imu", "IMU", 1, 100.0, "double64"))
        w.append(imu, np.zeros((3, 1)), [1.0, 0.99, 1.02])
    assert any("backwards" in e for e in check_session(tmp_path / "reg.h5").errors)
