"""Protocol files: the shipped ones load, bad ones give one line naming file and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.capture.protocol import (ProtocolError, load_protocol, parse_protocol, protocol_from_dict,
                              shipped_protocols)

GOOD = {"name": "t3", "take": [{"task": "mini", "step": [
    {"marker": "neutral", "kind": "neutral", "prompt": "Relax", "seconds": 2},
    {"marker": "tap", "kind": "tap", "prompt": "Tap", "seconds": 1.5},
    {"marker": "smile", "kind": "expression", "prompt": "Smile", "until": "continue",
     "seconds": 3, "target": {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8}}]}]}


def test_the_shipped_protocols_load_and_start_every_take_with_neutral_and_tap() -> None:
    assert {"imusic-paper", "imusic-rom"} <= set(shipped_protocols())
    paper = load_protocol("imusic-paper")
    assert [t.task for t in paper.takes] == ["reading", "expressions", "emotions"]
    for name in shipped_protocols():
        for take in load_protocol(name).takes:
            assert [s.kind for s in take.steps[:2]] == ["neutral", "tap"]
    assert any(s.target for s in paper.takes[1].steps)


def test_a_json_file_loads_like_toml(tmp_path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(GOOD))
    p = load_protocol(f)
    assert p.takes[0].steps[2].until_continue and p.takes[0].steps[2].target["mouthSmileLeft"] == 0.8
    assert p.takes[0].seconds == 6.5


@pytest.mark.parametrize("edit,field", [
    (lambda d: d["take"][0]["step"][2]["target"].update(mouthSmile=0.5), "target.mouthSmile"),
    (lambda d: d["take"][0]["step"][2].update(seconds=-1), "step[2].seconds"),
    (lambda d: d["take"][0]["step"].pop(1), "take[0].step"),
    (lambda d: d["take"][0]["step"][0].update(kind="smile"), "step[0].kind"),
    (lambda d: d["take"][0].update(task="a b"), "take[0].task"),
    (lambda d: d.pop("name"), ".name"),
    (lambda d: d["take"][0]["step"][2].update(until="later"), "step[2].until"),
])
def test_a_bad_field_is_named_in_one_line(tmp_path, edit, field) -> None:
    d = json.loads(json.dumps(GOOD))
    edit(d)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(ProtocolError) as err:
        load_protocol(f)
    msg = str(err.value)
    assert "\n" not in msg and str(f) in msg and field in msg


def test_a_missing_file_names_the_shipped_ones() -> None:
    with pytest.raises(ProtocolError, match="imusic-paper"):
        load_protocol("/nonexistent/p.toml")


_json = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers()
                     | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(
                         st.sampled_from(["name", "take", "task", "step", "marker", "prompt",
                                          "kind", "seconds", "until", "target", "jawOpen", "x"]),
                         c, max_size=5), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_fuzzed_structures_give_a_protocol_or_one_line(data) -> None:
    try:
        protocol_from_dict(data, "fuzz.json")
    except ProtocolError as err:
        assert "\n" not in str(err) and str(err).startswith("fuzz.json")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_gives_a_protocol_or_one_line(text) -> None:
    for fmt in ("toml", "json"):
        try:
            parse_protocol(text, "f.txt", fmt)
        except ProtocolError as err:
            assert "\n" not in str(err) and str(err).startswith("f.txt")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["marker", "prompt", "kind", "seconds", "until", "target"]),
       st.none() | st.booleans() | st.floats() | st.text(max_size=5) | st.lists(st.integers()))
def test_a_fuzzed_step_field_is_accepted_or_named(key, value) -> None:
    d = json.loads(json.dumps(GOOD))
    d["take"][0]["step"][2][key] = value
    try:
        protocol_from_dict(d, "p.json")
    except ProtocolError as err:
        assert "\n" not in str(err) and f"step[2].{key}" in str(err)
