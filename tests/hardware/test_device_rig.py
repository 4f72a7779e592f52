"""Device rigs: sensors known by id, no anchor, declared quantities; the twin refuses them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.hardware.motion import procedural
from imusic.hardware.physics import simulate
from imusic.hardware.rig import REPORTED_QUANTITIES, RigError, available_rigs, load_rig, parse_rig

RELEASE_IDS = ["000", "001", "002", "005", "006", "007", "010", "013", "017", "018", "020"]


def _device(**over) -> dict:
    d = {"schema": "imusic.rig", "id": "dev", "reference": "000", "quantities": ["acc", "quat"],
         "sites": [{"name": "000"}, {"name": "001", "region": "mouth"}, {"name": "002"}]}
    d.update(over)
    return d


def test_release_rig_names_the_sensor_ids_and_reports_quat_and_acc():
    rig = load_rig("imusic_release")
    assert sorted(rig.site_names) == RELEASE_IDS
    assert rig.site_names[:3] == ["000", "006", "007"]     # the authors' loader order
    assert rig.reference == "000" and rig.site("000").region == "rigid"
    assert rig.quantities == ("acc", "quat")
    assert rig.unanchored == rig.site_names and not rig.simulatable
    d = rig.to_dict()
    assert d["quantities"] == ["acc", "quat"] and not d["sites"][0]["anchored"]
    assert "imusic_release" in available_rigs(twin=False)
    assert "imusic_release" not in available_rigs(twin=True)
    assert {"imusic11", "imusic6"} <= set(available_rigs(twin=True))


def test_twin_rigs_keep_nine_axis_quantities():
    assert load_rig("imusic11").quantities == ("acc", "gyro", "mag")
    assert load_rig("imusic11").simulatable


def test_twin_refuses_a_device_rig_in_one_line():
    m = procedural(0.5, fps=60.0, seed=0)
    with pytest.raises(RigError) as err:
        simulate(m, "imusic_release")
    msg = str(err.value)
    assert "\n" not in msg and "imusic_release" in msg and "000, 006" in msg
    assert "no anchor" in msg


def test_emulator_refuses_a_device_rig_with_one_line():
    r = subprocess.run([sys.executable, "-m", "imusic", "emulate", "--transport", "udp",
                        "--udp", "127.0.0.1:9", "--rig", "imusic_release", "--seconds", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot simulate" in lines[0] and "Traceback" not in r.stderr


def test_device_rig_site_quantities_and_errors():
    rig = parse_rig(_device(sites=[{"name": "000"}, {"name": "a", "quantities": ["quat", "acc",
                                                                                  "gyro"]}]))
    assert rig.site("a").quantities == ("acc", "gyro", "quat")
    assert rig.quantities == ("acc", "gyro", "quat")
    with pytest.raises(RigError, match="unknown quantities"):
        parse_rig(_device(quantities=["acc", "euler"]))
    with pytest.raises(RigError, match="must report 'acc'"):
        parse_rig(_device(quantities=["quat"]))
    with pytest.raises(RigError, match="unknown region"):
        parse_rig(_device(sites=[{"name": "000"}, {"name": "b", "region": "ear"}]))
    with pytest.raises(RigError, match="must have region 'rigid'"):
        parse_rig(_device(sites=[{"name": "000", "region": "mouth"}]))
    with pytest.raises(RigError, match="names no part"):
        parse_rig(_device(settings={"acc": 4}))


def test_an_anchored_site_still_needs_muscle_and_part():
    with pytest.raises(RigError, match="missing 'muscle'"):
        parse_rig(_device(sites=[{"name": "000"}, {"name": "x", "region": "mouth",
                                                   "anchor": {"landmark": 8}}]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(REPORTED_QUANTITIES + ("x", "")), max_size=5),
       st.lists(st.text(max_size=4), min_size=1, max_size=4))
def test_fuzzed_device_rigs_load_or_fail_with_rig_error(quantities, names):
    data = _device(quantities=quantities, reference=names[0],
                   sites=[{"name": n} for n in names])
    try:
        rig = parse_rig(data)
    except RigError as e:
        assert "\n" not in str(e)
        return
    assert rig.reference == names[0] and "acc" in rig.quantities
    assert len(set(rig.site_names)) == len(names)
    assert np.allclose(rig.sites[0].mounting, np.eye(3))
