"""The blendshape vocabulary against the real Live Link Face files."""

import numpy as np
import pytest

from imusic.hardware import vocabulary as v


def test_counts_and_uniqueness():
    assert len(v.ARKIT_NAMES) == 52 and len(set(v.ARKIT_NAMES)) == 52
    assert v.ARKIT_NAMES[0] == "eyeBlinkLeft" and v.ARKIT_NAMES[-1] == "tongueOut"
    assert len(v.STREAM_NAMES) == 61
    assert len(v.ICT_NAMES) == 53


def test_csv_header_of_real_takes_matches_csv_order(shared_data):
    for path in sorted((shared_data / "arkit").rglob("*.csv")):
        header = path.open().readline().strip().split(",")
        assert tuple(header[2:]) == v.LIVELINK_CSV_NAMES, path.name
        idx = v.csv_column_index(header[2:])
        assert [header[2:][i] for i in idx] == list(v.LIVELINK_WIRE_NAMES)


def test_csv_and_wire_orders_differ_only_in_jaw_and_mouth_left_right():
    diff = [i for i, (a, b) in enumerate(zip(v.LIVELINK_CSV_NAMES, v.LIVELINK_WIRE_NAMES)) if a != b]
    assert {v.LIVELINK_WIRE_NAMES[i] for i in diff} == {"JawLeft", "JawRight", "MouthLeft", "MouthRight"}


def test_csv_column_index_is_case_insensitive_and_names_missing_columns():
    header = [n.upper() for n in reversed(v.LIVELINK_CSV_NAMES)]
    idx = v.csv_column_index(header)
    assert header[idx[v.stream_index("jawOpen")]] == "JAWOPEN"
    try:
        v.csv_column_index([h for h in header if h != "EYEBLINKLEFT"])
    except ValueError as err:
        assert "EyeBlinkLeft" in str(err)
    else:
        raise AssertionError("a missing column must raise")


def test_ict_mapping_round_trip():
    rng = np.random.default_rng(0)
    w = rng.random((5, 52))
    w[:, v.ARKIT_NAMES.index("tongueOut")] = 0
    ict = v.arkit_to_ict(w)
    assert ict.shape == (5, 53)
    assert np.allclose(ict[:, v.ICT_NAMES.index("browInnerUp_R")], w[:, v.ARKIT_NAMES.index("browInnerUp")])
    assert np.allclose(v.ict_to_arkit(ict), w)


def test_regions_partition_the_52():
    members = [n for names in v.REGIONS.values() for n in names]
    assert sorted(members) == sorted(v.ARKIT_NAMES)


def test_action_units():
    w = np.zeros(52)
    w[v.ARKIT_NAMES.index("mouthSmileLeft")] = 1.0
    aus, intensity = v.action_units(w)
    assert intensity[aus.index(12)] == 0.5
    assert intensity.sum() == 0.5


def test_gaze_and_tongue_are_set_apart():
    assert v.IMU_BLIND_REGIONS == ("gaze", "tongue")
    assert v.REGIONS["tongue"] == ("tongueOut",) and "tongueOut" not in v.REGIONS["mouth"]
    seen = [v.ARKIT_NAMES[i] for i in v.IMU_SEEN_INDEX]
    assert len(seen) == 43 and not any(n.startswith("eyeLook") or n == "tongueOut" for n in seen)


def test_region_summary_keeps_gaze_and_tongue_out_of_the_headline():
    per = np.ones(52)
    per[v.REGION_INDEX["gaze"]] = 10.0
    per[v.ARKIT_NAMES.index("tongueOut")] = 20.0
    s = v.region_summary(per)
    assert s[v.SEEN_KEY] == 1.0 and s["gaze"] == 10.0 and s["tongue"] == 20.0
    assert s[v.ALL_KEY] == (43 + 80 + 20) / 52
    assert list(s)[-2:] == [v.SEEN_KEY, v.ALL_KEY]
    with pytest.raises(ValueError, match="52 per-blendshape"):
        v.region_summary(np.ones(50))
