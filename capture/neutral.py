"""The model's neutral-pose calibration, stored in the session (``/calibration/neutral``).

``imusic sync`` computes it from the aligned timeline it writes (``neutral_of``) and
capture/calibration.py's ``Calibration`` writes and reads it with the rest of
``/calibration``. The rule is the model's own, not a copy of it:
``imusic.model.features.calibrate_recording`` runs the ``FeatureExtractor`` that training and
the live runtime run (model/calibration.py: the first still window, the gyro bias, the settled
AHRS, the acceleration offset), with the feature spec of the session's rig
(``model.features.spec_of``) and the default ``CalibrationConfig``, and stops once it is
calibrated. So the stored values are what the model computes on this session's ``/aligned``.
The model and its calibration import without torch; imufusion is imported only when
``neutral_of`` runs.

``NeutralRecord`` is the stored form: per site the gyro bias, per face site the neutral
orientation (a quaternion) and the acceleration offset, the window (frames and times), still or
forced (``max_wait_s``), and the rule's settings as attributes (capture/FORMAT.md has the
schema). ``read_neutral`` returns None for a session synced before it was stored, and raises
``NeutralError`` (one line: the file, what is wrong, the fix) for a malformed group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from imusic.capture.orientation import quat_to_matrix
from imusic.capture.session_schema import SessionError, text_of

NEUTRAL = "neutral"
"""The subgroup of ``/calibration`` that holds the record."""
CONFIG_KEYS = ("window_s", "still_gyro_std", "passes", "max_wait_s", "remove_bias",
               "orientation", "ahrs_gain", "use_magnetometer", "rate_hz")
"""The rule's settings stored as attributes (``CalibrationConfig`` and the feature spec)."""
FLAGS = ("remove_bias", "use_magnetometer")
"""The booleans among ``CONFIG_KEYS`` (``orientation`` is text, the rest are numbers)."""
QUAT_NORM_TOLERANCE = 1e-3
"""A stored quaternion whose norm is further than this from 1 is malformed."""


class NeutralError(SessionError, ValueError):
    """A malformed ``/calibration/neutral`` group (the message names the file and the fix)."""


@dataclass
class NeutralRecord:
    """The neutral-pose calibration of one session (see the module doc)."""

    sites: list[str]
    reference: str
    face_sites: list[str]
    done: bool
    still: bool = True
    reason: str = ""                     # why it is not done ("" when done)
    at_frame: int = -1                   # frames read when it ended (the first valid frame)
    at_time: float = float("nan")        # aligned time of the frame it ended on, s
    window_frames: tuple[int, int] = (-1, -1)
    window_time: tuple[float, float] = (float("nan"), float("nan"))
    gyro_bias: np.ndarray | None = None  # (S, 3) rad/s, each sensor's frame
    neutral_quat: np.ndarray | None = None   # (F, 4) w, x, y, z: face sensor -> reference frame
    acc_offset: np.ndarray | None = None     # (F, 3) m/s^2, reference frame
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def neutral(self) -> np.ndarray | None:
        """(F, 3, 3) the neutral orientations as rotation matrices (the model's form)."""
        return None if self.neutral_quat is None else quat_to_matrix(self.neutral_quat)

    def describe(self) -> str:
        """One line: calibrated when and how, and the largest biases (``imusic info``)."""
        if not self.done:
            return f"not calibrated: {self.reason}"
        rate = float(self.config.get("rate_hz", 0) or 0)
        when = f"t={self.at_frame / rate:.2f} s" if rate > 0 else f"frame {self.at_frame}"
        how = ("still" if self.still else
               f"forced (no still window within {self.config.get('max_wait_s', '?')} s: "
               "the stillest)")
        a, b = self.window_frames
        span = (f"{a / rate:.2f}..{(b + 1) / rate:.2f} s" if rate > 0 else f"frames {a}-{b}")
        bias = float(np.degrees(np.abs(self.gyro_bias).max())) if self.gyro_bias is not None \
            and self.gyro_bias.size else float("nan")
        acc = float(np.abs(self.acc_offset).max()) if self.acc_offset is not None \
            and self.acc_offset.size else float("nan")
        return (f"calibrated at {when} (frame {self.at_frame}), {how}, window {span}; max gyro "
                f"bias {bias:.2f} deg/s, max acc offset {acc:.3f} m/s^2")

    def summary(self) -> dict[str, Any]:
        """JSON-ready form (``imusic info --json``)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in (
            "done", "still", "reason", "at_frame", "at_time", "reference")}
        out["window_frames"], out["window_time"] = list(self.window_frames), list(self.window_time)
        for k in ("gyro_bias", "neutral_quat", "acc_offset"):
            v = getattr(self, k)
            out[k] = None if v is None else np.asarray(v).tolist()
        out["config"] = dict(self.config)
        return out


def _matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 4) w, x, y, z of rotation matrices (..., 3, 3)."""
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(np.asarray(m, np.float64).reshape(-1, 3, 3)).as_quat()
    q = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    q = np.where(q[:, :1] < 0, -q, q)          # one sign: w >= 0
    return q.reshape(np.shape(m)[:-2] + (4,))


def neutral_of(aligned: Any, config: Any = None, source: str = "the aligned data") -> NeutralRecord:
    """The model's neutral-pose calibration of an ``Aligned`` timeline (``config``: a
    ``model.calibration.CalibrationConfig``, default its defaults). Never raises on data the
    features cannot use: the record then says why (``reason``)."""
    from imusic.model.calibration import CalibrationConfig
    from imusic.model.features import calibrate_recording, spec_of

    cal = config or CalibrationConfig()
    spec = spec_of(aligned, calibration=cal)
    settings = {**cal.to_dict(), "orientation": spec.orientation,
                "ahrs_gain": float(spec.ahrs_gain), "use_magnetometer": spec.use_magnetometer,
                "rate_hz": float(spec.rate_hz)}
    base = dict(sites=list(spec.sites), reference=spec.reference,
                face_sites=list(spec.face_sites), config=settings)
    try:
        state = calibrate_recording(spec, aligned.acc, aligned.gyro, aligned.mag,
                                    aligned.valid_imu, sites=aligned.sites, quat=aligned.quat,
                                    source=source)
    except ValueError as err:
        return NeutralRecord(done=False, reason=str(err), **base)
    if not state.done:
        n = len(aligned.t)
        return NeutralRecord(done=False, reason=(
            f"no window of {cal.window_s:g} s of valid IMU frames in the "
            f"{n / spec.rate_hz:.1f} s aligned (a take starts with a still neutral face)"),
            **base)
    t = np.asarray(aligned.t, np.float64)
    a, b = state.window
    return NeutralRecord(
        done=True, still=bool(state.still), at_frame=int(state.at_frame),
        at_time=float(t[state.at_frame - 1]), window_frames=(int(a), int(b)),
        window_time=(float(t[a]), float(t[b])),
        gyro_bias=np.asarray(state.gyro_bias, np.float64),
        neutral_quat=_matrix_to_quat(state.neutral),
        acc_offset=np.asarray(state.acc_offset, np.float64), **base)


def write_neutral(parent: h5py.Group, rec: NeutralRecord) -> None:
    """Write (replace) ``rec`` as ``parent/neutral`` (``parent``: the open ``/calibration``)."""
    if NEUTRAL in parent:
        del parent[NEUTRAL]
    g = parent.create_group(NEUTRAL)
    g.attrs["done"] = bool(rec.done)
    g.attrs["still"] = bool(rec.still)
    g.attrs["reason"] = rec.reason
    g.attrs["sites"] = json.dumps(list(rec.sites))
    g.attrs["face_sites"] = json.dumps(list(rec.face_sites))
    g.attrs["reference"] = rec.reference
    g.attrs["at_frame"] = int(rec.at_frame)
    g.attrs["at_time"] = float(rec.at_time)
    g.attrs["window_frames"] = json.dumps([int(x) for x in rec.window_frames])
    g.attrs["window_time"] = json.dumps([float(x) for x in rec.window_time])
    for k in CONFIG_KEYS:
        if k in rec.config:
            g.attrs[k] = rec.config[k]
    if rec.done:
        for k in ("gyro_bias", "neutral_quat", "acc_offset"):
            g.create_dataset(k, data=np.asarray(getattr(rec, k), np.float64))


def _bad(path: Any, what: str) -> NeutralError:
    return NeutralError(f"{path}: /calibration/neutral is malformed ({what}); run 'imusic sync "
                        f"{path}' again to rewrite it")


def _attr(g: h5py.Group, name: str, path: Any) -> Any:
    if name not in g.attrs:
        raise _bad(path, f"attribute {name!r} missing")
    return g.attrs[name]


def _is(x: Any, kind: type) -> bool:
    """``x`` is a ``kind`` (an int counts as a float; a bool as neither)."""
    if isinstance(x, bool):
        return False
    return isinstance(x, (int, float)) if kind is float else isinstance(x, kind)


def _json_list(g: h5py.Group, name: str, path: Any, kind: type, n: int | None = None) -> list:
    try:
        v = json.loads(text_of(_attr(g, name, path)))
    except (TypeError, ValueError, RecursionError):
        raise _bad(path, f"attribute {name!r} is not JSON") from None
    ok = isinstance(v, list) and all(_is(x, kind) for x in v)
    if not ok or (n is not None and len(v) != n):
        want = f"{n} " if n is not None else ""
        raise _bad(path, f"attribute {name!r} is not a list of {want}{kind.__name__}")
    return v


def _number(g: h5py.Group, name: str, path: Any, kind: type) -> Any:
    v = _attr(g, name, path)
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if kind is bool:
        if not isinstance(v, (bool, np.bool_)):
            raise _bad(path, f"attribute {name!r} is not a boolean")
        return bool(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                np.floating)):
        raise _bad(path, f"attribute {name!r} is not a number")
    if kind is int and not float(v).is_integer():
        raise _bad(path, f"attribute {name!r} is not a whole number")
    return kind(v)


def _array(g: h5py.Group, name: str, shape: tuple[int, ...], path: Any) -> np.ndarray:
    if name not in g or not isinstance(g[name], h5py.Dataset):
        raise _bad(path, f"dataset {name!r} missing")
    ds = g[name]
    if ds.shape != shape or ds.dtype.kind not in "fiu":
        raise _bad(path, f"dataset {name!r} is {ds.dtype} {ds.shape}, expected float {shape}")
    v = np.asarray(ds[()], np.float64)
    if not np.all(np.isfinite(v)):
        raise _bad(path, f"dataset {name!r} holds NaN or infinite values")
    return v


def read_neutral(parent: h5py.Group, path: Any = None) -> NeutralRecord | None:
    """The record in ``parent/neutral`` (``parent``: ``/calibration``); None when there is none
    (a session synced before it was stored). ``NeutralError`` for a malformed one."""
    path = path if path is not None else parent.file.filename
    if NEUTRAL not in parent:
        return None
    g = parent[NEUTRAL]
    if not isinstance(g, h5py.Group):
        raise _bad(path, "it is not a group")
    sites = _json_list(g, "sites", path, str)
    face = _json_list(g, "face_sites", path, str)
    ref = text_of(_attr(g, "reference", path))
    if (ref not in sites or not set(face) <= set(sites) or ref in face
            or len(set(sites)) != len(sites)):
        raise _bad(path, f"reference {ref!r} and face_sites {face} do not fit sites {sites}")
    done = _number(g, "done", path, bool)
    config: dict[str, Any] = {}
    for k in (k for k in CONFIG_KEYS if k in g.attrs):
        config[k] = (text_of(g.attrs[k]) if k == "orientation" else
                     _number(g, k, path, bool if k in FLAGS else float))
    if "passes" in config:
        config["passes"] = _number(g, "passes", path, int)
    rec = NeutralRecord(sites=sites, reference=ref, face_sites=face, done=done,
                        still=_number(g, "still", path, bool),
                        reason=text_of(_attr(g, "reason", path)), config=config)
    if not done:
        return rec
    rec.at_frame = _number(g, "at_frame", path, int)
    rec.at_time = _number(g, "at_time", path, float)
    a, b = _json_list(g, "window_frames", path, int, 2)
    if not 0 <= a <= b < rec.at_frame:
        raise _bad(path, f"window_frames {[a, b]} do not end before at_frame {rec.at_frame}")
    rec.window_frames = (a, b)
    t0, t1 = _json_list(g, "window_time", path, float, 2)
    rec.window_time = (float(t0), float(t1))
    rec.gyro_bias = _array(g, "gyro_bias", (len(sites), 3), path)
    rec.neutral_quat = _array(g, "neutral_quat", (len(face), 4), path)
    if np.any(np.abs(np.linalg.norm(rec.neutral_quat, axis=1) - 1) > QUAT_NORM_TOLERANCE):
        raise _bad(path, "dataset 'neutral_quat' holds quaternions that are not unit length")
    rec.acc_offset = _array(g, "acc_offset", (len(face), 3), path)
    return rec
