"""The IMU LSL outlet: a plain pylsl inlet gets the samples, timestamps and full metadata."""

from __future__ import annotations

import json
import time

import numpy as np
import pylsl
import pytest

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.outlet import (EventOutlet, ImuOutlet, ImuStreamSpec, channel_table,
                                    make_stream_info, samples_to_rows)


def _info(serial: int, flags: int = P.FLAG_MAG) -> P.DeviceInfo:
    return P.DeviceInfo((1, 2, 3), serial, 0xABCD, 200, 3, flags, 2.0 ** -11, 2.0 ** -13,
                        0.0625, 16.0, 4.0, 2048.0, 4, "testrig", "imusic-test")


def _inlet(source_id: str, timeout: float = 10.0) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, timeout)
    assert found, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=False)
    inlet.open_stream(timeout=5)
    return inlet


def test_channel_table_layout() -> None:
    t = channel_table(["a", "b"], has_mag=True, has_quat=True)
    assert [c[0] for c in t[:13]] == [
        "a.acc.x", "a.acc.y", "a.acc.z", "a.gyro.x", "a.gyro.y", "a.gyro.z",
        "a.mag.x", "a.mag.y", "a.mag.z", "a.quat.w", "a.quat.x", "a.quat.y", "a.quat.z"]
    assert len(t) == 2 * 13 + 2 and t[-2][0] == "device.time_us" and t[-1][0] == "device.seq"
    assert t[0][1] == "m/s^2" and t[3][1] == "rad/s" and t[6][1] == "uT"


def test_inlet_reads_samples_timestamps_and_desc(unique_name: str) -> None:
    serial = int.from_bytes(unique_name.encode()[-8:], "little")
    info = _info(serial)
    spec = ImuStreamSpec(info, unique_name, ["brow_l", "cheek_r", "nose"], reference="nose",
                         transport="test", clock={"window_s": 60})
    rng = np.random.default_rng(0)
    frames = []
    for f in range(10):
        c = lambda: rng.integers(-30000, 30000, (4, 3, 3)).astype(np.int16)  # noqa: E731
        frames.append(P.Samples(f * 4, 1000 + f * 20000, np.arange(4, dtype=np.uint32) * 5000,
                                c(), c(), c()))
    with ImuOutlet(spec) as out:
        assert out.stream_info.source_id() == f"{serial:016x}"
        inlet = _inlet(spec.source_id)
        full = inlet.info(timeout=5)
        t_base = pylsl.local_clock()
        for s in frames:
            t_us = s.t_us
            out.push(s, t_base + (t_us - 1000) * 1e-6, t_us, s.seqs)
        got, ts = [], []
        deadline = time.monotonic() + 10
        while sum(len(g) for g in got) < 40 and time.monotonic() < deadline:
            d, t = inlet.pull_chunk(timeout=0.5)
            if d:
                got.append(np.asarray(d)); ts.extend(t)
        inlet.close_stream()
    data = np.concatenate(got)
    assert data.shape == (40, 3 * 9 + 2)
    acc0 = np.concatenate([s.acc[:, 0, :] for s in frames]) * 2.0 ** -11
    assert np.array_equal(data[:, 0:3], acc0)
    mag2 = np.concatenate([s.mag[:, 2, :] for s in frames]) * 0.0625
    assert np.array_equal(data[:, 18 + 6:18 + 9], mag2)
    assert np.array_equal(data[:, -1], np.arange(40))
    assert np.array_equal(data[:, -2], 1000 + np.arange(40) * 5000)
    assert np.allclose(np.asarray(ts) - t_base, np.arange(40) * 0.005, atol=1e-9)
    # Metadata, as any LSL consumer sees it.
    assert (full.type(), full.channel_format(), full.nominal_srate()) == ("IMU", pylsl.cf_double64, 200)
    ch = full.desc().child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append((ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")))
        ch = ch.next_sibling()
    assert labels == spec.channels
    rig = full.desc().child("rig")
    assert rig.child_value("id") == "testrig" and rig.child_value("reference") == "nose"
    site = rig.child("sites").child("site")
    flags = []
    while not site.empty():
        flags.append((site.child_value("name"), site.child_value("reference")))
        site = site.next_sibling()
    assert flags == [("brow_l", "false"), ("cheek_r", "false"), ("nose", "true")]
    sens = full.desc().child("sensors")
    assert float(sens.child("gyro").child_value("range")) == 4.0
    assert float(sens.child("acc").child_value("scale")) == 2.0 ** -11
    assert full.desc().child("clock").child_value("window_s") == "60"
    assert full.desc().child("device").child_value("firmware") == "1.2.3"


def test_event_outlet_json_markers(unique_name: str) -> None:
    spec = ImuStreamSpec(_info(int(unique_name[-8:], 16)), unique_name, ["a", "b", "c"])
    with EventOutlet(spec) as ev:
        inlet = _inlet(spec.source_id + "-events")
        t = pylsl.local_clock()
        ev.push({"event": "tap", "sensor": 1}, t)
        sample, ts = inlet.pull_sample(timeout=5)
        assert json.loads(sample[0]) == {"event": "tap", "sensor": 1}
        assert ts == pytest.approx(t)


def test_push_with_wrong_shape_names_the_device(unique_name: str) -> None:
    spec = ImuStreamSpec(_info(0x43), unique_name, ["a", "b", "c"])
    s = P.Samples(0, 0, np.zeros(1, np.uint32), np.zeros((1, 2, 3), np.int16),
                  np.zeros((1, 2, 3), np.int16), np.zeros((1, 2, 3), np.int16))
    with ImuOutlet(spec) as out, pytest.raises(ValueError, match="imusic-test"):
        out.push(s, np.zeros(1), s.t_us, s.seqs)


def test_quaternion_device_rows_and_metadata(unique_name: str) -> None:
    # The paper's device: acc + gyro + on-device quaternion, no magnetometer.
    info = _info(0x44, flags=P.FLAG_QUAT)
    spec = ImuStreamSpec(info, unique_name, ["a", "b", "c"])
    assert [c[0] for c in spec.channels[:10]] == [
        "a.acc.x", "a.acc.y", "a.acc.z", "a.gyro.x", "a.gyro.y", "a.gyro.z",
        "a.quat.w", "a.quat.x", "a.quat.y", "a.quat.z"]
    q = np.zeros((2, 3, 4), np.int16)
    q[..., 0] = 1 << 14                  # identity: w = 1
    q[1, 2] = [0, 0, 0, -(1 << 14)]      # 180 degrees about z
    s = P.Samples(9, 0, np.array([0, 5000], np.uint32), np.ones((2, 3, 3), np.int16),
                  np.ones((2, 3, 3), np.int16), quat=q)
    rows = samples_to_rows(s, info, s.t_us, s.seqs)
    assert rows.shape == (2, 3 * 10 + 2)
    assert rows[0, 6:10].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert rows[1, 26:30].tolist() == [0.0, 0.0, 0.0, -1.0]
    assert rows[:, -1].tolist() == [9, 10]
    si = make_stream_info(spec)
    assert si.desc().child("sensors").child("quat").child_value("scale") == str(2.0 ** -14)
    assert si.desc().child("sensors").child("mag").empty()
