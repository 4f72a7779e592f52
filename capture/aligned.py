"""The ``aligned`` group of a session: IMU and blendshapes on one common 60 Hz timeline.

``imusic sync`` writes it from a recording; ``imusic simulate`` writes it from the twin. The
model, the viewer and the exports read it through ``read_aligned``; real and synthetic data
take the same path. The layout is part of capture/FORMAT.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES, N_POSE, POSE_NAMES

GROUP = "aligned"


@dataclass
class Aligned:
    """IMU signals and blendshapes resampled onto one timeline.

    IMU arrays are in each sensor's own frame, SI units: ``acc`` specific force (m/s²,
    gravity included), ``gyro`` angular rate (rad/s; NaN where the device has no gyroscope),
    ``mag`` magnetic field (µT; NaN where the device has no magnetometer). ``quat`` (optional)
    is the orientation the device reported (w, x, y, z, sensor-to-earth; NaN for sites that
    report none; ``None`` when no site does). ``sites`` names the sensors in rig order;
    ``reference`` is the rigid reference site used to cancel head motion.
    """

    rate_hz: float
    t: np.ndarray                     # (N,) float64 seconds on the recorder's LSL clock
    blendshapes: np.ndarray           # (N, 52) float32, Apple's order
    pose: np.ndarray                  # (N, 9) float32 (head and eyes, radians)
    acc: np.ndarray                   # (N, S, 3) float32
    gyro: np.ndarray                  # (N, S, 3) float32
    mag: np.ndarray                   # (N, S, 3) float32
    valid_imu: np.ndarray             # (N,) bool: IMU data present (not a gap)
    valid_arkit: np.ndarray           # (N,) bool: face tracked (not lost, not a gap)
    sites: list[str]
    reference: str
    rig_id: str
    attrs: dict[str, Any] = field(default_factory=dict)   # lag_s, lag_confidence, source, ...
    quat: np.ndarray | None = None    # (N, S, 4) float32 reported orientation, or None

    def __post_init__(self) -> None:
        n, s = len(self.t), len(self.sites)
        shapes = {
            "blendshapes": (n, N_BLENDSHAPES), "pose": (n, N_POSE), "acc": (n, s, 3),
            "gyro": (n, s, 3), "mag": (n, s, 3), "valid_imu": (n,), "valid_arkit": (n,),
        }
        for name, shape in shapes.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"aligned.{name} has shape {got}, expected {shape}")
        if self.quat is not None and np.shape(self.quat) != (n, s, 4):
            raise ValueError(f"aligned.quat has shape {np.shape(self.quat)}, expected {(n, s, 4)}")
        if self.reference not in self.sites:
            raise ValueError(f"reference site {self.reference!r} is not among {self.sites}")

    @property
    def n_frames(self) -> int:
        """Number of frames on the common timeline."""
        return len(self.t)

    @property
    def has_gyro(self) -> bool:
        """True when some site has angular rates (a quaternion-only device has none)."""
        return bool(np.isfinite(self.gyro).any())

    @property
    def has_quat(self) -> bool:
        """True when the device reported orientation for every site."""
        return self.quat is not None and bool(np.isfinite(self.quat[self.valid_imu]).all())


def write_aligned(h5: h5py.File, data: Aligned) -> None:
    """Write (or replace) the ``aligned`` group of an open session file."""
    if GROUP in h5:
        del h5[GROUP]
    g = h5.create_group(GROUP)
    g.attrs["rate_hz"] = float(data.rate_hz)
    g.attrs["sites"] = json.dumps(list(data.sites))
    g.attrs["reference"] = data.reference
    g.attrs["rig_id"] = data.rig_id
    g.attrs["blendshape_names"] = json.dumps(list(ARKIT_NAMES))
    g.attrs["pose_names"] = json.dumps(list(POSE_NAMES))
    for k, v in data.attrs.items():
        g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
    comp = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    g.create_dataset("t", data=np.asarray(data.t, np.float64), **comp)
    for name in ("blendshapes", "pose", "acc", "gyro", "mag"):
        g.create_dataset(name, data=np.asarray(getattr(data, name), np.float32), **comp)
    if data.quat is not None:
        g.create_dataset("quat", data=np.asarray(data.quat, np.float32), **comp)
    g.create_dataset("valid_imu", data=np.asarray(data.valid_imu, bool), **comp)
    g.create_dataset("valid_arkit", data=np.asarray(data.valid_arkit, bool), **comp)


def read_aligned(path: str | Path | h5py.File) -> Aligned:
    """Read the ``aligned`` group of a session file.

    Raises ``KeyError`` naming the file and the command that makes the group if it is absent,
    ``capture.session.SessionError`` naming it if the file or the group cannot be read.
    """
    from imusic.capture.session import open_h5, reading

    if isinstance(path, h5py.File):
        with reading(path.filename, f"the '{GROUP}' group"):
            return _read(path, Path(path.filename))
    # capture.session.open_h5: no SWMR retries on a damaged file; SessionError if unreadable.
    with open_h5(path) as h5, reading(path, f"the '{GROUP}' group"):
        return _read(h5, Path(path))


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The ``aligned`` group's session attributes (``Aligned.attrs``: subject, identity,
    performer, take ...) without reading its signals: how a tool picks sessions by the split
    before it computes any features. Errors as :func:`read_aligned`."""
    from imusic.capture.session import open_h5, reading

    with open_h5(path) as h5, reading(path, f"the '{GROUP}' group"):
        if GROUP not in h5:
            raise KeyError(f"{path} has no '{GROUP}' group: run 'imusic sync {path}' first")
        return _attrs(h5[GROUP])


def _attrs(g: h5py.Group) -> dict[str, Any]:
    """Session attributes of an ``aligned`` group (JSON lists and objects decoded)."""
    known = {"rate_hz", "sites", "reference", "rig_id", "blendshape_names", "pose_names"}
    attrs = {}
    for k, v in g.attrs.items():
        if k in known:
            continue
        if isinstance(v, str) and v[:1] in "[{":
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        attrs[k] = v.item() if isinstance(v, np.generic) else v
    return attrs


def _read(h5: h5py.File, path: Path) -> Aligned:
    if GROUP not in h5:
        raise KeyError(f"{path} has no 'aligned' group: run 'imusic sync {path}' first")
    g = h5[GROUP]
    attrs = _attrs(g)
    return Aligned(
        rate_hz=float(g.attrs["rate_hz"]), t=g["t"][()], blendshapes=g["blendshapes"][()],
        pose=g["pose"][()], acc=g["acc"][()], gyro=g["gyro"][()], mag=g["mag"][()],
        valid_imu=g["valid_imu"][()], valid_arkit=g["valid_arkit"][()],
        sites=json.loads(g.attrs["sites"]), reference=str(g.attrs["reference"]),
        rig_id=str(g.attrs["rig_id"]), attrs=attrs,
        quat=g["quat"][()] if "quat" in g else None,
    )
