"""The LSL stream contracts (firmware_bridge/streams.py): every builder's stream, sent through a
real pylsl outlet and read back through a real inlet, parses to the layout it was built with;
the parsers take any metadata and raise nothing but ``StreamContractError``; and no module of
the product but streams.py constructs a ``StreamInfo`` or ``StreamInlet`` or resolves."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pylsl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import streams as S
from imusic.hardware.vocabulary import N_BLENDSHAPES, STREAM_NAMES

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("hardware", "firmware_bridge", "capture", "model", "viewer", "imusic")
"""The packages the contract check covers (tests and benchmarks build off-contract streams
on purpose, to test how readers refuse them)."""
DEADLINE_S = 20.0


def _through_lsl(info, purpose: str, row: list, stamp: float):
    """Publish ``info``, resolve it by name within a deadline, open an inlet for ``purpose``,
    push ``row`` at ``stamp`` until it arrives; (full info, row, timestamp) as received."""
    outlet = pylsl.StreamOutlet(info)
    found = S.resolve(S.predicate(info.type(), info.name()), 1, DEADLINE_S)
    assert found, f"{info.name()} not resolved within {DEADLINE_S} s"
    inlet = S.open_inlet(found[0], purpose)
    try:
        inlet.open_stream(timeout=DEADLINE_S)
        full = inlet.info(timeout=DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            outlet.push_sample(row, stamp)
            got, ts = inlet.pull_sample(timeout=0.2)
            if got is not None:
                return full, got, ts
        raise AssertionError(f"no sample of {info.name()} within {DEADLINE_S} s")
    finally:
        inlet.close_stream()
        del outlet


# --------------------------------------------------------------------------- round trips


def test_imu_round_trip(unique_name: str) -> None:
    sites = ["brow_l", "cheek_r", "nose"]
    info = S.imu_info(unique_name, f"{unique_name}-sid", 200.0, sites, has_gyro=False,
                      has_mag=True, has_quat=True, rig_id="testrig", reference="nose",
                      meta={"clock": {"method": "fit", "offset_s": 0.5}})
    n = info.channel_count()
    row = [float(i) for i in range(n)]
    stamp = pylsl.local_clock() - 1.0
    full, got, ts = _through_lsl(info, "record", row, stamp)
    lay = S.parse_imu(full)
    assert lay.sites == tuple(sites) and lay.quantities == ("acc", "mag", "quat")
    assert lay.reference == "nose" and lay.rig_id == "testrig" and lay.rate_hz == 200.0
    assert lay.time_us == n - 2 and lay.seq == n - 1
    assert not lay.has("nose", "gyro")
    for (site, q), cols in lay.columns.items():
        assert [full_label(full, c) for c in cols] == [f"{site}.{q}.{a}" for a in S.axes_of(q)]
        assert [got[c] for c in cols] == [float(c) for c in cols]
    # the recording inlet keeps the sender's timestamps as they were (LabRecorder's way)
    assert ts == stamp
    assert full.desc().child("clock").child_value("offset_s") == "0.5"
    assert lay.instants_per_frame == 1   # the stream does not say: one instant per packet


@pytest.mark.parametrize("text, size", [("4", 4), ("1", 1), ("0", 1), ("-2", 1),
                                        ("two", 1), ("", 1)])
def test_imu_packet_size_from_desc(unique_name: str, text: str, size: int) -> None:
    """``desc/device/instants_per_frame`` gives the packet size; anything but a positive
    integer reads as one instant per packet."""
    info = S.imu_info(unique_name, unique_name, 100.0, ["s0"], has_mag=False,
                      meta={"device": {"instants_per_frame": text}})
    assert S.parse_imu(info).instants_per_frame == size


def full_label(info, column: int) -> str:
    ch = info.desc().child("channels").child("channel")
    for _ in range(column):
        ch = ch.next_sibling("channel")
    return ch.child_value("label")


def test_blendshapes_round_trip(unique_name: str) -> None:
    info = S.blendshapes_info(unique_name, "arkit", f"{unique_name}-sid", rate_hz=60.0,
                              extra={"assumed_latency_s": "0.05"})
    row = [i / 100.0 for i in range(len(STREAM_NAMES))]
    full, got, _ = _through_lsl(info, "live", row, pylsl.local_clock())
    lay = S.parse_blendshapes(full)
    assert lay.source == "arkit" and lay.labelled and lay.has_pose
    assert np.allclose(lay.to_contract(got), row)
    assert full.desc().child_value("assumed_latency_s") == "0.05"
    ch = full.desc().child("channels").child("channel")
    assert (ch.child_value("unit"), ch.child_value("type")) == ("normalized", "Blendshapes")
    for _ in range(N_BLENDSHAPES):
        ch = ch.next_sibling("channel")
    assert (ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")) == \
        ("headYaw", "rad", "Pose")


def test_markers_round_trip(unique_name: str) -> None:
    info = S.markers_info(unique_name, f"{unique_name}-sid",
                          {"format": "one JSON object per marker", "imu_stream": "x"})
    full, got, _ = _through_lsl(info, "record", ['{"event":"tap"}'], pylsl.local_clock())
    lay = S.parse_markers(full)
    assert lay.fields == {"format": "one JSON object per marker", "imu_stream": "x"}
    assert got == ['{"event":"tap"}']


def test_fusion_state_round_trip(unique_name: str) -> None:
    from imusic.model.fusion import REGION_NAMES

    info = S.fusion_state_info(unique_name, f"{unique_name}-sid", REGION_NAMES)
    k = len(REGION_NAMES)
    row = [0.25] * k + [1.0] * k
    full, got, _ = _through_lsl(info, "live", row, pylsl.local_clock())
    lay = S.parse_fusion_state(full)
    assert lay.regions == tuple(REGION_NAMES)
    assert [got[c] for c in lay.columns["arkit_weight"]] == [0.25] * k
    assert [got[c] for c in lay.columns["trusted"]] == [1.0] * k


def test_publishers_use_the_builders(unique_name: str) -> None:
    """The emulator's truth and the hybrid's state parse as their contracts say."""
    from imusic.firmware_bridge.emulator_truth import truth_outlet

    out = truth_outlet(unique_name, f"{unique_name}-sid", 60.0, "imusic11", "00ff", "procedural")
    lay = S.parse_blendshapes(out.get_info())
    assert lay.source == "twin" and lay.has_pose
    assert out.get_info().desc().child_value("motion") == "procedural"


# --------------------------------------------------------------------------- old dialects


def _xml(stype: str, labels, count: int | None = None, desc: str = "",
         units=None, types=None, fmt: str = "float32", rate: str = "60") -> str:
    chans = "".join(
        f"<channel><label>{escape(lb)}</label>"
        + (f"<unit>{escape(units[i])}</unit>" if units else "")
        + (f"<type>{escape(types[i])}</type>" if types else "") + "</channel>"
        for i, lb in enumerate(labels))
    n = len(labels) if count is None else count
    return (f"<?xml version=\"1.0\"?><info><name>s</name><type>{escape(stype)}</type>"
            f"<channel_count>{n}</channel_count><nominal_srate>{rate}</nominal_srate>"
            f"<channel_format>{fmt}</channel_format><source_id>sid</source_id>"
            f"<desc>{desc}<channels>{chans}</channels></desc></info>")


@pytest.mark.parametrize("units, types", [
    (("normalized", "radians"), ("blendshape", "pose")),     # capture.arkit_bridge, before
    (("normalized", "rad"), ("Blendshapes", "Pose")),        # the emulator's truth, and now
])
def test_old_blendshape_dialects_still_read(units, types) -> None:
    u = [units[i >= N_BLENDSHAPES] for i in range(len(STREAM_NAMES))]
    t = [types[i >= N_BLENDSHAPES] for i in range(len(STREAM_NAMES))]
    lay = S.parse_blendshapes(_xml("Blendshapes", STREAM_NAMES, units=u, types=t,
                                   desc="<source>arkit</source>"))
    assert lay.columns == tuple(range(len(STREAM_NAMES))) and lay.source == "arkit"


def test_blendshapes_found_by_label_not_position() -> None:
    labels = list(reversed(STREAM_NAMES[:N_BLENDSHAPES])) + ["extra"]
    lay = S.parse_blendshapes(_xml("Blendshapes", labels))
    row = np.arange(len(labels), dtype=np.float32)
    values = lay.to_contract(row)
    assert values[STREAM_NAMES.index("eyeBlinkLeft")] == N_BLENDSHAPES - 1
    assert not lay.has_pose and np.all(values[N_BLENDSHAPES:] == 0)


def test_unlabelled_blendshapes_take_the_contract_order() -> None:
    lay = S.parse_blendshapes(_xml("Blendshapes", [], count=61))
    assert not lay.labelled and lay.columns == tuple(range(61))


def test_one_line_errors_name_the_stream() -> None:
    with pytest.raises(S.StreamContractError, match=r"'s' .*lacks 1 of the 52"):
        S.parse_blendshapes(_xml("Blendshapes", STREAM_NAMES[1:]))
    with pytest.raises(S.StreamContractError, match=r"'s' .*lack acc"):
        S.parse_imu(_xml("IMU", ["a.gyro.x", "a.gyro.y", "a.gyro.z"]))
    with pytest.raises(S.StreamContractError, match=r"without axes z"):
        S.parse_imu(_xml("IMU", ["a.acc.x", "a.acc.y"]))
    with pytest.raises(S.StreamContractError, match=r"2 channel labels for 5 channels"):
        S.parse_imu(_xml("IMU", ["a.acc.x", "a.acc.y"], count=5))
    with pytest.raises(S.StreamContractError, match=r"not of type 'Markers'"):
        S.parse_markers(_xml("IMU", ["x"], fmt="string"))
    with pytest.raises(S.StreamContractError, match=r"does not parse"):
        S.parse_fusion_state("<info><name>")
    with pytest.raises(S.StreamContractError) as err:
        S.parse_imu(_xml("IMU", ["x"]))
    assert isinstance(err.value, LookupError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- fuzzing

PARSERS = {"IMU": S.parse_imu, "Blendshapes": S.parse_blendshapes, "Markers": S.parse_markers,
           "FusionState": S.parse_fusion_state}
_label_parts = st.sampled_from(["a", "b", "acc", "gyro", "mag", "quat", "x", "y", "z", "w",
                                "device", "seq", "time_us", "brows", "arkit_weight",
                                "trusted", "", "jawOpen"] + list(STREAM_NAMES[:5]))
_labels = st.one_of(
    st.lists(st.lists(_label_parts, min_size=1, max_size=4).map(".".join), max_size=40),
    st.lists(st.text(max_size=12), max_size=20),
    st.lists(st.sampled_from(STREAM_NAMES), max_size=70))
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


def _check(parser, meta) -> None:
    try:
        layout = parser(meta)
    except S.StreamContractError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert layout is not None


@settings(max_examples=300, deadline=None)
@given(stype=st.sampled_from(sorted(PARSERS)), labels=_labels,
       count=st.one_of(st.none(), st.integers(-3, 80)),
       fmt=st.sampled_from(["float32", "string", "double64", "bogus"]),
       rate=st.sampled_from(["60", "0", "nan", "-1", "1e400", "x"]),
       desc=st.sampled_from(["", "<source>arkit</source>", "<rig><reference>a</reference>"
                             "<sites><site><name>b</name><reference>true</reference></site>"
                             "</sites></rig>", "<format>json</format><nested><x>1</x></nested>"]))
def test_parsers_take_any_metadata(stype, labels, count, fmt, rate, desc) -> None:
    xml = _xml(stype, labels, count, desc, fmt=fmt, rate=rate)
    for parser in PARSERS.values():
        _check(parser, xml)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parsers_take_any_text(text) -> None:
    for parser in PARSERS.values():
        _check(parser, text)


@settings(max_examples=60, deadline=None)
@given(stype=st.sampled_from(sorted(PARSERS)), labels=st.lists(_text, max_size=12),
       source=_text)
def test_parsers_take_any_real_stream_info(stype, labels, source) -> None:
    """Real pylsl infos with arbitrary label text (control characters make XML the parser
    cannot read: that, too, is the one documented error)."""
    clean = [lb.replace("\x00", "") for lb in labels]
    info = pylsl.StreamInfo("fuzz", stype, max(1, len(clean)), 60.0, pylsl.cf_float32, "f")
    chans = info.desc().append_child("channels")
    for lb in clean:
        chans.append_child("channel").append_child_value("label", lb)
    info.desc().append_child_value("source", source.replace("\x00", ""))
    for parser in PARSERS.values():
        _check(parser, info)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_label_is_the_inverse_of_channel_label(label) -> None:
    parsed = S.parse_label(label)
    if parsed is not None:
        assert S.channel_label(*parsed) == label


# --------------------------------------------------------------------------- the one module

_FORBIDDEN = {"StreamInfo", "StreamInlet", "ContinuousResolver", "resolve_bypred",
              "resolve_byprop", "resolve_streams", "resolve_stream"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
        elif isinstance(node, ast.ImportFrom) and node.module == "pylsl":
            hits = [a.name for a in node.names if a.name in _FORBIDDEN]
            name = hits[0] if hits else None
        if name in _FORBIDDEN:
            out.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    return out


def test_only_streams_builds_infos_and_inlets() -> None:
    found = []
    files = [p for pkg in PRODUCT for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 50
    for path in files:
        if path == REPO / "firmware_bridge" / "streams.py":
            continue
        found += _violations(path)
    assert not found, "build, parse and open LSL streams with firmware_bridge.streams:\n" + \
        "\n".join(found)
    assert _violations(REPO / "firmware_bridge" / "streams.py")   # the check sees them


# --------------------------------------------------------------------------- readers by label


def _shuffled_blendshapes(name: str):
    """A Blendshapes stream made by some other tool: the 61 channels in reverse order, row
    value = the channel's index in ``STREAM_NAMES``."""
    info = pylsl.StreamInfo(name, "Blendshapes", len(STREAM_NAMES), 60.0, pylsl.cf_float32,
                            f"{name}-sid")
    chans = info.desc().append_child("channels")
    for label in reversed(STREAM_NAMES):
        chans.append_child("channel").append_child_value("label", label)
    info.desc().append_child_value("source", "arkit")
    row = [float(STREAM_NAMES.index(lb)) / 100.0 for lb in reversed(STREAM_NAMES)]
    return pylsl.StreamOutlet(info), row


def test_viewer_reads_blendshapes_by_label(unique_name: str) -> None:
    from imusic.viewer.live import LslSource, resolve_blendshapes

    outlet, row = _shuffled_blendshapes(unique_name)
    with LslSource(resolve_blendshapes(unique_name, DEADLINE_S)) as src:
        deadline = time.monotonic() + DEADLINE_S
        frame = None
        while frame is None and time.monotonic() < deadline:
            outlet.push_sample(row)
            frame = src.latest.wait_newer(0, 0.2)
        assert frame is not None, "the viewer received nothing"
        assert src.kind == "arkit"
        assert np.allclose(frame.values, np.arange(len(STREAM_NAMES)) / 100.0)


def test_hybrid_reads_arkit_by_label(unique_name: str) -> None:
    import threading

    from imusic.pipelines import FrameBuffer, open_inlet, read_frames

    outlet, row = _shuffled_blendshapes(unique_name)
    inlet = open_inlet(S.predicate("Blendshapes", unique_name), "test stream", "-", DEADLINE_S)
    buffer, halt = FrameBuffer(), threading.Event()
    reader = threading.Thread(target=read_frames, args=(inlet, buffer, halt), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        values = None
        while values is None and time.monotonic() < deadline:
            outlet.push_sample(row)
            time.sleep(0.05)
            values, _ = buffer.at(pylsl.local_clock(), 1.0)
        assert values is not None, "the hybrid's reader received nothing"
        assert np.allclose(values, np.arange(N_BLENDSHAPES) / 100.0)
    finally:
        halt.set()
        reader.join(5.0)
