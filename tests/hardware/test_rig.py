"""Rig files: the shipped rigs, and exact errors for bad ones."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.hardware.face import FaceModel
from imusic.hardware.rig import (TIE_TOLERANCE_M, RIGS_DIR, RigError, available_rigs, load_rig, parse_rig,
                          project_to_skin, skin_patch)

PAPER_MUSCLES = {"frontalis", "corrugator supercilii / procerus", "orbicularis oculi",
                 "zygomaticus major", "buccinator", "orbicularis oris", "mentalis"}


def _anchor_xyz(site) -> np.ndarray:
    face = FaceModel.load()
    return np.asarray(site.anchor.barycentric) @ face.neutral[face.triangles[site.anchor.triangle]]


def _raw(name: str = "imusic11") -> dict:
    return json.loads((RIGS_DIR / f"{name}.json").read_text())


def test_shipped_rigs_are_listed_and_load():
    assert {"imusic11", "imusic6"} <= set(available_rigs())
    for name in available_rigs():
        rig = load_rig(name)
        assert rig.id == name
        assert rig.reference in rig.site_names


def test_imusic11_is_eleven_face_sensors_plus_a_reference():
    rig = load_rig("imusic11")
    assert rig.n_sites == 12
    face_sites = [s for s in rig.sites if s.region != "rigid"]
    assert len(face_sites) == 11
    assert rig.site(rig.reference).region == "rigid"
    assert {s.muscle for s in face_sites} == PAPER_MUSCLES
    assert len(set(rig.site_names)) == 12
    for s in rig.sites:
        assert set(s.parts) == {"QMI8658C", "QMC5883P"}
        np.testing.assert_allclose(s.mounting @ s.mounting.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(s.mounting) == pytest.approx(1.0)
        assert s.anchor_note, f"{s.name} must say how its anchor was chosen"


def test_sites_sit_on_their_side_of_the_face():
    rig = load_rig("imusic11")
    face = FaceModel.load()
    lm = face.neutral[face.landmarks]
    for s in rig.sites:
        x = _anchor_xyz(s)
        if s.side == "left":            # the subject's left is +x
            assert x[0] > 0.01, s.name
        elif s.side == "right":
            assert x[0] < -0.01, s.name
        else:
            assert abs(x[0]) < 0.003, s.name
        # on the front of the face, within the landmark box grown by 3 cm
        assert np.all(x >= lm.min(axis=0) - 0.03) and np.all(x <= lm.max(axis=0) + 0.03)
    # mirrored pairs really are mirror images
    for left in [s for s in rig.sites if s.side == "left"]:
        right = rig.site(left.name[:-2] + "_r")
        np.testing.assert_allclose(_anchor_xyz(left) * [-1, 1, 1], _anchor_xyz(right), atol=2e-3)


def test_chin_anchor_follows_its_note():
    rig = load_rig("imusic11")
    face = FaceModel.load()
    chin = face.neutral[face.landmarks[8]]
    x = _anchor_xyz(rig.site("mentalis"))
    assert 0.008 < x[1] - chin[1] < 0.016            # "moved 1.2 cm up"
    assert np.linalg.norm(x - chin) < 0.016


def test_skin_patch_surrounds_the_anchor():
    rig = load_rig("imusic11")
    for s in rig.sites:
        patch = skin_patch(s.anchor, 0.005)
        assert patch[0].triangle == s.anchor.triangle
        assert len(patch) >= 4


def test_a_point_on_a_shared_edge_resolves_to_one_triangle_whatever_the_rounding():
    """An edge point is equally close to both triangles that share it: the choice must not hang
    on the last bits of a distance (BLAS kernels differ there), or the twin differs by machine."""
    face = FaceModel.load()
    tri = face.triangles
    for f in (1110, 5347, 2000):
        a, b = face.neutral[tri[f, 0]].astype(float), face.neutral[tri[f, 1]].astype(float)
        edge_mid = 0.5 * (a + b)
        owners = {int(g) for g in np.nonzero((tri == tri[f, 0]).any(1) & (tri == tri[f, 1]).any(1))[0]}
        picks = set()
        for jitter in (0.0, 0.1, -0.1, 0.4, -0.4):       # far below the tie tolerance
            picks.add(project_to_skin(edge_mid + jitter * TIE_TOLERANCE_M).triangle)
        assert len(picks) == 1, f"edge of triangle {f}: resolved to {sorted(picks)}"
        if len(owners) == 2:
            assert picks == {min(owners)}


def test_imusic6_is_a_subset():
    small, big = load_rig("imusic6"), load_rig("imusic11")
    assert small.n_sites == 6
    assert set(small.site_names) <= set(big.site_names)
    for s in small.sites:
        assert s.anchor == big.site(s.name).anchor


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "bad_rig.json"
    p.write_text(json.dumps(data))
    return p


def _mutated(fn) -> dict:
    data = copy.deepcopy(_raw())
    fn(data)
    return data


BAD = [
    ("unknown anchor landmark", lambda d: d["sites"][0]["anchor"].update(landmark=99),
     "unknown anchor landmark 99"),
    ("unknown anchor vertex", lambda d: d["sites"][0].update(anchor={"vertex": 10 ** 7}),
     "unknown anchor vertex"),
    ("anchor with two kinds", lambda d: d["sites"][0]["anchor"].update(vertex=5),
     "exactly one of"),
    ("duplicate name", lambda d: d["sites"][1].update(name=d["sites"][0]["name"]),
     "duplicate site name 'frontalis_r'"),
    ("not orthonormal", lambda d: d["sites"][0].update(mounting={"matrix": [[1, 0, 0], [0, 2, 0],
                                                                           [0, 0, 1]]}),
     "not orthonormal"),
    ("reflection", lambda d: d["sites"][0].update(mounting={"matrix": [[-1, 0, 0], [0, 1, 0],
                                                                      [0, 0, 1]]}),
     "determinant -1"),
    ("unknown part", lambda d: d["sites"][2].update(part="QMI8658C+HMC9999"),
     "unknown part 'HMC9999'"),
    ("part without magnetometer", lambda d: d["sites"][2].update(part="QMI8658C"),
     "must measure acc, gyro and mag"),
    ("missing reference", lambda d: d.pop("reference"), "missing 'reference'"),
    ("reference not a site", lambda d: d.update(reference="temple"), "'temple' is not one of"),
    ("reference not rigid", lambda d: d.update(reference="mentalis"), "must have region 'rigid'"),
    ("unknown region", lambda d: d["sites"][0].update(region="forehead"), "unknown region"),
    ("unknown key", lambda d: d["sites"][0].update(colour="red"), "unknown key"),
    ("bad range", lambda d: d["settings"].update(gyro=300), "settings.gyro = 300"),
    ("no sites", lambda d: d.update(sites=[]), "missing 'sites'"),
    ("wrong schema", lambda d: d.update(schema="other"), "schema must be"),
]


@pytest.mark.parametrize("case,mutate,message", BAD, ids=[b[0] for b in BAD])
def test_bad_rig_files_say_exactly_what_is_wrong(tmp_path, case, mutate, message):
    path = _write(tmp_path, _mutated(mutate))
    with pytest.raises(RigError) as err:
        load_rig(path)
    assert message in str(err.value)
    assert str(path) in str(err.value), "the error must name the file"


def test_unknown_rig_name_lists_the_shipped_rigs():
    with pytest.raises(RigError, match="imusic11"):
        load_rig("imusic99")


def test_invalid_json_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{ not json")
    with pytest.raises(RigError, match="broken.json.*not valid JSON"):
        load_rig(p)


def test_mounting_may_be_given_as_euler_angles():
    data = _mutated(lambda d: d["sites"][0].update(mounting={"euler_deg": [0, 0, 90]}))
    rig = parse_rig(data, "euler")
    np.testing.assert_allclose(rig.sites[0].mounting, [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
                               atol=1e-12)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                       children, max_size=4),
    max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(site=st.integers(0, 11), key=st.sampled_from(["name", "muscle", "region", "side", "anchor",
                                                     "part", "mounting", "extra"]),
       value=json_values)
def test_fuzzed_rigs_load_or_raise_rig_error(site, key, value):
    data = copy.deepcopy(_raw())
    data["sites"][site][key] = value
    try:
        rig = parse_rig(data, "fuzz")
    except RigError as e:
        assert "fuzz" in str(e)
    else:
        assert rig.n_sites == 12


@settings(max_examples=60, deadline=None)
@given(top=st.dictionaries(st.sampled_from(["schema", "id", "sites", "reference", "settings",
                                            "default_part"]), json_values, max_size=6))
def test_fuzzed_top_level_raises_rig_error(top):
    try:
        parse_rig(top, "fuzz-top")
    except RigError as e:
        assert "fuzz-top" in str(e)


def test_reading_a_rig_loads_neither_the_face_mesh_nor_scipy():
    """A rig is a small descriptor: reading one (every shipped rig, its names, its summary) must
    not load the face model (0.7 s) or scipy (0.6 s); the anchor loads the mesh on first use."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from imusic.hardware.face import FaceModel\n"
        "from imusic.hardware.rig import available_rigs, load_rig\n"
        "rigs = [load_rig(n) for n in available_rigs()]\n"
        "[r.to_dict() for r in rigs], available_rigs(twin=True)\n"
        "print(FaceModel.load.cache_info().currsize, 'scipy' in sys.modules)\n"
        "a = rigs[0].sites[0].anchor if rigs[0].simulatable else load_rig('imusic11').sites[0].anchor\n"
        "print(FaceModel.load.cache_info().currsize, a.triangle >= 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["0 False", "1 True"]


def test_a_rig_with_sites_off_the_face_model_loads_and_only_the_twin_refuses_it():
    data = _raw()
    data["sites"][3].pop("anchor")                         # a real device's extra sensor
    rig = parse_rig(data, "mixed")
    assert rig.n_sites == 12 and rig.unanchored == [data["sites"][3]["name"]]
    assert rig.sites[3].anchor is None and not rig.simulatable
    assert rig.sites[0].anchor == load_rig("imusic11").sites[0].anchor
    assert not rig.to_dict()["sites"][3]["anchored"]
    with pytest.raises(RigError, match="^rig imusic11: the twin cannot simulate it: sites "
                                       "orbicularis_oculi_r have no anchor"):
        rig.require_twin()


@settings(max_examples=80, deadline=None)
@given(seq=st.sampled_from(["xyz", "zyx", "xzx", "yxy", "zxz", "XYZ", "ZYX", "XZX", "YXZ", "ZXZ"]),
       ang=st.lists(st.floats(-360, 360), min_size=3, max_size=3))
def test_euler_mountings_are_scipys_rotations(seq, ang):
    from scipy.spatial.transform import Rotation

    from imusic.hardware.rig import euler_matrix
    np.testing.assert_allclose(euler_matrix(seq, ang),
                               Rotation.from_euler(seq, ang, degrees=True).as_matrix(), atol=1e-12)


@pytest.mark.parametrize("seq", ["xyy", "xy", "XyZ", "abc", 5])
def test_bad_euler_sequences_name_the_file(seq):
    data = _mutated(lambda d: d["sites"][0].update(mounting={"euler_deg": [0, 0, 90], "seq": seq}))
    with pytest.raises(RigError, match="euler-bad.*bad rotation: euler_deg/seq"):
        parse_rig(data, "euler-bad")
