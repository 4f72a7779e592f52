"""glTF 2.0 binary (``.glb``) of a blendshape take: the ICT head, 52 morph targets, one animation.

Written with numpy and ``struct`` only (the format is a JSON chunk and a binary chunk; the
Khronos glTF 2.0 specification, sections "GLB File Format Specification", "Morph Targets" and
"Animations"). What the file holds:

* one mesh, ``imusic_head``: the ICT FaceKit head (every part: face, neck, mouth socket, gums,
  tongue, teeth, eye sockets, eyeballs) in metres, Y up, facing +Z, with smooth normals, as
  the rest shape of the chosen identity (``hardware.face.FaceModel.rest_shape``);
* its 52 morph targets, in Apple's ARKit order, named in ``mesh.extras.targetNames`` (the
  convention Blender, three.js and Babylon read); ``tongueOut`` has no ICT shape, so its
  target is all zero (it is kept so that target *i* is always ARKit blendshape *i*);
* one node, ``imusic_head``, carrying the mesh;
* one animation, ``take``: a ``weights`` channel with a keyframe per session frame (times in
  seconds from the first frame, linear interpolation) and, when the take has head rotation
  (any non-zero ``headYaw/headPitch/headRoll``), a ``rotation`` channel on the node at the same
  times. Head angles turn the head as the twin does (``hardware.motion``): intrinsic
  yaw (about +Y) then pitch (about +X) then roll (about +Z), radians
  (``hardware.vocabulary.head_rotation``, which the viewer uses too).

Frames without a tracked face hold the last tracked frame (zeros before the first), since
glTF keyframes cannot be empty; ``GltfTake.held`` counts them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES, POSE_NAMES, head_rotation

GLB_MAGIC = 0x46546C67          # "glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A         # "JSON"
CHUNK_BIN = 0x004E4942          # "BIN\0"

_FLOAT, _UINT = 5126, 5125                      # accessor componentType
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963

NODE_NAME = "imusic_head"
ANIMATION_NAME = "take"
HEAD_POSE = tuple(POSE_NAMES.index(n) for n in ("headYaw", "headPitch", "headRoll"))


@dataclass(frozen=True)
class GltfTake:
    """What ``write_glb`` wrote: frame count, held (face-lost) frames, whether it turns the head."""

    path: Path
    n_frames: int
    held: int
    has_rotation: bool


def head_quaternions(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(N, 4)`` in glTF's ``x, y, z, w`` order for head angles (radians),
    by ``hardware.vocabulary.head_rotation`` (intrinsic yaw about +Y, pitch about +X, roll
    about +Z)."""
    angles = np.stack([yaw, pitch, roll], axis=1)
    return head_rotation(angles).as_quat().astype(np.float32)  # scipy: x, y, z, w


def hold_lost(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``values`` with every row where ``found`` is False replaced by the last found row
    (zeros before the first one)."""
    out = np.nan_to_num(np.asarray(values, np.float32), nan=0.0)
    idx = np.where(found, np.arange(len(found)), -1)
    np.maximum.accumulate(idx, out=idx)
    held = out[np.maximum(idx, 0)]
    held[idx < 0] = 0.0
    return held


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted smooth unit normals ``(V, 3)``; (0, 0, 1) for vertices on no triangle."""
    v = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles, np.int64)
    face_n = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, tri[:, k], face_n)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 0, n / np.where(length > 0, length, 1.0), [0.0, 0.0, 1.0])
    return n.astype(np.float32)


class _Builder:
    """Buffer views and accessors over one binary buffer (each view 4-byte aligned)."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, kind: str, component: int, target: int | None = None,
            bounds: bool = False) -> int:
        """Append ``array`` as one view and one accessor; returns the accessor index."""
        data = np.ascontiguousarray(array, np.uint32 if component == _UINT else np.float32)
        while len(self.blob) % 4:
            self.blob.append(0)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": data.nbytes}
        if target is not None:
            view["target"] = target
        self.blob += data.tobytes()
        self.views.append(view)
        rows = data.reshape(len(data), -1)
        acc = {"bufferView": len(self.views) - 1, "componentType": component,
               "count": int(len(data)), "type": kind}
        if bounds:
            acc["min"] = [float(x) for x in rows.min(axis=0)]
            acc["max"] = [float(x) for x in rows.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def build_glb(rest: np.ndarray, triangles: np.ndarray, deltas: np.ndarray, times: np.ndarray,
              weights: np.ndarray, rotations: np.ndarray | None = None) -> bytes:
    """The bytes of a GLB: mesh ``rest (V, 3)`` + ``triangles (F, 3)``, 52 morph targets
    ``deltas (52, V, 3)``, animation keyframes ``times (N,)`` with ``weights (N, 52)`` and
    optionally node rotations ``(N, 4)`` (x, y, z, w)."""
    if deltas.shape != (N_BLENDSHAPES,) + rest.shape:
        raise ValueError(f"expected (52, {rest.shape[0]}, 3) morph deltas, got {deltas.shape}")
    if len(times) == 0 or weights.shape != (len(times), N_BLENDSHAPES):
        raise ValueError(f"expected (N>0, 52) weights for {len(times)} times, got {weights.shape}")
    b = _Builder()
    position = b.add(rest, "VEC3", _FLOAT, _ARRAY_BUFFER, bounds=True)
    normal = b.add(vertex_normals(rest, triangles), "VEC3", _FLOAT, _ARRAY_BUFFER)
    indices = b.add(np.asarray(triangles).reshape(-1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": b.add(d, "VEC3", _FLOAT, _ARRAY_BUFFER, bounds=True)} for d in deltas]
    t = b.add(np.asarray(times, np.float32), "SCALAR", _FLOAT, bounds=True)
    w = b.add(np.asarray(weights, np.float32).reshape(-1), "SCALAR", _FLOAT)
    samplers = [{"input": t, "output": w, "interpolation": "LINEAR"}]
    channels = [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]
    if rotations is not None:
        r = b.add(np.asarray(rotations, np.float32), "VEC4", _FLOAT)
        samplers.append({"input": t, "output": r, "interpolation": "LINEAR"})
        channels.append({"sampler": 1, "target": {"node": 0, "path": "rotation"}})
    doc = {
        "asset": {"version": "2.0", "generator": "imusic capture.gltf"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": NODE_NAME, "mesh": 0}],
        "meshes": [{
            "name": NODE_NAME,
            "primitives": [{"attributes": {"POSITION": position, "NORMAL": normal},
                            "indices": indices, "mode": 4, "targets": targets}],
            "weights": [0.0] * N_BLENDSHAPES,
            "extras": {"targetNames": list(ARKIT_NAMES)},
        }],
        "animations": [{"name": ANIMATION_NAME, "samplers": samplers, "channels": channels}],
        "buffers": [{"byteLength": len(b.blob)}],
        "bufferViews": b.views,
        "accessors": b.accessors,
    }
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)                   # JSON chunk padded with spaces
    blob = bytes(b.blob) + b"\0" * (-len(b.blob) % 4)  # BIN chunk padded with zeros
    total = 12 + 8 + len(text) + 8 + len(blob)
    return b"".join([struct.pack("<III", GLB_MAGIC, GLB_VERSION, total),
                     struct.pack("<II", len(text), CHUNK_JSON), text,
                     struct.pack("<II", len(blob), CHUNK_BIN), blob])


def write_glb(out: str | Path, t: np.ndarray, values: np.ndarray, found: np.ndarray,
              identity: int | None = None) -> GltfTake:
    """Write a take (times ``(N,)`` s, stream-order ``values (N, 61)``, ``found (N,)``) as a
    GLB of the ICT head of ``identity`` (None: the generic head)."""
    from imusic.hardware.face import FaceModel

    face = FaceModel.load()
    rest = face.rest_shape(identity)
    deltas = face.vertices(np.eye(N_BLENDSHAPES), identity) - rest
    found = np.asarray(found, bool)
    held = hold_lost(values, found)
    head = held[:, [N_BLENDSHAPES + i for i in HEAD_POSE]]
    has_rotation = bool(np.any(head != 0.0))
    rotations = head_quaternions(head[:, 0], head[:, 1], head[:, 2]) if has_rotation else None
    times = np.asarray(t, np.float64) - float(t[0])
    out = Path(out)
    out.write_bytes(build_glb(rest, face.triangles, deltas, times, held[:, :N_BLENDSHAPES],
                              rotations))
    return GltfTake(out, len(times), int((~found).sum()), has_rotation)
