"""imusic export --format gltf: read back by an independent reader (pygltflib) and by Blender."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pygltflib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.export import ExportError, export_session
from imusic.capture.gltf import build_glb, hold_lost
from imusic.capture.livelink_csv import read_take
from imusic.hardware.face import FaceModel
from imusic.hardware.vocabulary import ARKIT_NAMES, stream_index
from .test_export import _aligned_session, _stream_session

REPO = Path(__file__).resolve().parents[2]

_COMPONENT = {5126: np.float32, 5125: np.uint32}
_WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


@pytest.fixture(scope="module")
def real_take(shared_data: Path):
    return read_take(shared_data / "arkit" / "alexdjulin_llf" / "S88-001.csv")


def _accessor(g: pygltflib.GLTF2, index: int) -> np.ndarray:
    """An accessor's data as an (count, width) array, read with pygltflib's own structures."""
    acc = g.accessors[index]
    view = g.bufferViews[acc.bufferView]
    blob = g.binary_blob()
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    width = _WIDTH[acc.type]
    raw = np.frombuffer(blob, _COMPONENT[acc.componentType], acc.count * width, start)
    return raw.reshape(acc.count, width)


def _with_head_turns(path: Path) -> np.ndarray:
    """Give an aligned session's head yaw/pitch/roll a known motion; returns (N, 3) radians."""
    with h5py.File(path, "r+") as h5:
        pose = h5["aligned/pose"][...]
        n = len(pose)
        s = np.arange(n) / 60.0
        head = np.stack([0.4 * np.sin(s), 0.2 * np.sin(2 * s), 0.1 * np.cos(s)], 1)
        pose[:, :3] = head
        h5["aligned/pose"][...] = pose
    return head


def test_glb_from_aligned_session_reads_back(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    head = _with_head_turns(session)
    out, series = export_session(session, "gltf", identity=3)
    assert out == tmp_path / "s.glb"
    g = pygltflib.GLTF2().load(str(out))
    assert g.asset.version == "2.0"
    mesh = g.meshes[0]
    prim = mesh.primitives[0]
    assert len(prim.targets) == 52 and mesh.extras["targetNames"] == list(ARKIT_NAMES)
    face = FaceModel.load()
    rest = _accessor(g, prim.attributes.POSITION)
    np.testing.assert_allclose(rest, face.rest_shape(3), atol=1e-6)
    jaw = stream_index("jawOpen")
    np.testing.assert_allclose(_accessor(g, prim.targets[jaw]["POSITION"]),
                               face.vertices(np.eye(52)[jaw], 3) - face.rest_shape(3), atol=1e-6)
    tris = _accessor(g, prim.indices).reshape(-1, 3)
    np.testing.assert_array_equal(tris, face.triangles)

    anim = g.animations[0]
    paths = {c.target.path: anim.samplers[c.sampler] for c in anim.channels}
    assert set(paths) == {"weights", "rotation"}
    times = _accessor(g, paths["weights"].input)[:, 0]
    np.testing.assert_allclose(times, series.t - series.t[0], atol=1e-5)   # 60 Hz, 600 frames
    assert len(times) == 600 and np.diff(times) == pytest.approx(1 / 60, abs=1e-5)
    weights = _accessor(g, paths["weights"].output).reshape(600, 52)
    found = series.face_found
    assert (~found).sum() > 0
    np.testing.assert_allclose(weights[found], series.values[found, :52], atol=1e-7)
    # Face-lost frames hold the last tracked frame.
    lost = np.flatnonzero(~found)
    first_lost = lost[0]
    np.testing.assert_array_equal(weights[first_lost], weights[first_lost - 1])

    from scipy.spatial.transform import Rotation
    quats = _accessor(g, paths["rotation"].output)
    angles = Rotation.from_quat(quats[found]).as_euler("YXZ")
    np.testing.assert_allclose(angles, head[found], atol=1e-5)


def test_glb_without_head_rotation_has_weights_only(tmp_path, real_take):
    session = _stream_session(tmp_path / "s.h5", real_take)   # real take: head pose all zero
    out, series = export_session(session, "gltf", tmp_path / "take.glb")
    g = pygltflib.GLTF2().load(str(out))
    anim = g.animations[0]
    assert [c.target.path for c in anim.channels] == ["weights"]
    times = _accessor(g, anim.samplers[0].input)[:, 0]
    assert len(times) == series.n_frames == 300
    np.testing.assert_allclose(times, series.t - series.t[0], atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 2**31 - 1), rotate=st.booleans())
def test_build_glb_round_trips_any_take(n, seed, rotate):
    rng = np.random.default_rng(seed)
    rest = rng.normal(size=(5, 3)).astype(np.float32)
    tris = np.array([[0, 1, 2], [2, 3, 4]])
    deltas = rng.normal(size=(52, 5, 3)).astype(np.float32)
    times = np.cumsum(rng.uniform(0.001, 0.1, n)).astype(np.float32)
    weights = rng.uniform(-0.2, 1.2, (n, 52)).astype(np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32) if rotate else None
    g = pygltflib.GLTF2.load_from_bytes(build_glb(rest, tris, deltas, times, weights, quats))
    prim = g.meshes[0].primitives[0]
    np.testing.assert_array_equal(_accessor(g, prim.attributes.POSITION), rest)
    np.testing.assert_array_equal(_accessor(g, prim.targets[51]["POSITION"]), deltas[51])
    acc = g.accessors[prim.attributes.POSITION]
    assert acc.min == pytest.approx(rest.min(0).tolist()) and acc.max == pytest.approx(rest.max(0).tolist())
    anim = g.animations[0]
    np.testing.assert_array_equal(_accessor(g, anim.samplers[0].input)[:, 0], times)
    np.testing.assert_array_equal(_accessor(g, anim.samplers[0].output).reshape(n, 52), weights)
    assert len(anim.channels) == (2 if rotate else 1)
    if rotate:
        np.testing.assert_array_equal(_accessor(g, anim.samplers[1].output), quats)


@settings(max_examples=60, deadline=None)
@given(found=st.lists(st.booleans(), min_size=1, max_size=40))
def test_hold_lost_repeats_the_last_tracked_frame(found):
    found = np.array(found)
    values = np.arange(len(found) * 2, dtype=np.float32).reshape(-1, 2) + 1
    values[~found] = np.nan
    held = hold_lost(values, found)
    last = None
    for i, ok in enumerate(found):
        if ok:
            last = values[i]
        np.testing.assert_array_equal(held[i], last if last is not None else [0, 0])


def test_glb_rejects_times_that_do_not_increase(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    with h5py.File(session, "r+") as h5:
        t = h5["aligned/t"][...]
        t[10] = t[9]
        h5["aligned/t"][...] = t
    with pytest.raises(ExportError, match="s.h5: the aligned frame times are not strictly increasing"):
        export_session(session, "gltf")


def test_cli_export_gltf(tmp_path, real_take):
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out = tmp_path / "take.glb"
    p = subprocess.run([sys.executable, "-m", "imusic", "export", str(session), "--format", "gltf",
                        "--identity", "19", "-o", str(out)], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "600 frames from aligned" in p.stderr
    assert out.read_bytes()[:4] == b"glTF"
    p = subprocess.run([sys.executable, "-m", "imusic", "export", str(session), "--format", "gltf",
                        "--identity", "20", "-o", str(tmp_path / "x.glb")], cwd=REPO,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--identity" in p.stderr and "Traceback" not in p.stderr


BLENDER_SCRIPT = """
import bpy, json, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
# import_shading SMOOTH: Debian's Blender 3.4 glTF importer uses np.bool (gone from NumPy 1.24)
# on its default NORMALS path.
bpy.ops.import_scene.gltf(filepath=sys.argv[sys.argv.index("--") + 1], import_shading="SMOOTH")
mesh = [o for o in bpy.data.objects if o.type == "MESH"][0]
keys = [k.name for k in mesh.data.shape_keys.key_blocks if k.name != "Basis"]
curves = {}
for action in bpy.data.actions:
    for fc in action.fcurves:
        curves[fc.data_path] = [tuple(p.co) for p in fc.keyframe_points]
print("RESULT " + json.dumps({"keys": keys, "fps": bpy.context.scene.render.fps / bpy.context.scene.render.fps_base, "curves": curves}))
"""


def test_blender_imports_glb_with_52_shape_keys_and_the_take(tmp_path, real_take):
    blender = shutil.which("blender")
    if blender is None:
        pytest.fail("Blender is not installed: scripts/setup.sh installs it (or 'sudo apt-get "
                    "install blender python3-numpy' on Debian)")
    session = _aligned_session(tmp_path / "s.h5", real_take)
    out, series = export_session(session, "gltf")
    script = tmp_path / "check.py"
    script.write_text(BLENDER_SCRIPT)
    p = subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "3",
                        "--python", str(script), "--", str(out)],
                       capture_output=True, text=True, timeout=240)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert p.returncode == 0 and line, p.stdout[-2000:] + p.stderr[-2000:]
    got = json.loads(line[len("RESULT "):])
    assert got["keys"] == list(ARKIT_NAMES)
    jaw = got["curves"]['key_blocks["jawOpen"].value']
    assert len(jaw) == 600
    fps = got["fps"]
    length_s = (jaw[-1][0] - jaw[0][0]) / fps
    assert length_s == pytest.approx(series.t[-1] - series.t[0], abs=1e-3)
    i = int(np.flatnonzero(series.face_found)[40])
    frame, value = jaw[i]
    assert frame / fps == pytest.approx(series.t[i] - series.t[0], abs=1e-3)
    assert value == pytest.approx(series.values[i, stream_index("jawOpen")], abs=1e-5)
