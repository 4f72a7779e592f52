"""The IMUSIC authors' release layout: read a take folder, import it as a session.

A release holds take folders named ``participant_<P>_testcase_<T>`` (usually under ``data/``).
Each take folder has:

* ``Arkit/arkit_params.csv``: a Live Link Face CSV at 60 fps (capture/livelink_csv.py parses
  it); the head rotation columns are zero;
* ``IMU_data/raw/NNN.csv`` and ``IMU_data/calib/NNN.csv``: one file per sensor, ``NNN`` its
  zero-padded id. Columns: an unnamed frame index (``90`` in raw, ``90.0`` in calib), then
  ``Position_X..Z``, ``Velocity_X..Z`` (always zero), ``Acceleration_X..Z`` (g) and
  ``Quaterion_0..3`` (spelled so, scalar first). raw: acceleration with gravity, absolute
  orientation; calib: orientation relative to the reference sensor 000 (identity there) and
  acceleration with gravity removed.

Every IMU file and the ARKit CSV have the same number of rows, one to one at 60 Hz, already
cut after the sync tap, so no clock sync is needed: row ``k`` is at ``k / 60`` s.

``read_take`` checks all of that and returns a :class:`ReleaseTake`; ``import_take`` writes one
session (capture/FORMAT.md): an ``IMU`` stream (raw orientation and acceleration in SI units
under the contract's labels ``NNN.quat.*`` / ``NNN.acc.*``, the calibrated ones as
``NNN.quat_ref.*`` / ``NNN.linacc.*``), a ``Blendshapes`` stream and the ``aligned`` group, with
subject and take from the folder name. It writes to a hidden temporary file and renames it
only when complete, so a bad folder leaves nothing that looks like a session. A take folder
that holds ``IMUSIC_TWIN.json`` was made by the twin (model/release_twin.py) and is labelled
``source = "twin"``; every other take is ``source = "real"``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imusic.capture.orientation import normalise

RATE_HZ = 60.0
G = 9.80665
ARKIT_CSV = Path("Arkit") / "arkit_params.csv"
RAW_DIR = Path("IMU_data") / "raw"
CALIB_DIR = Path("IMU_data") / "calib"
TWIN_MARKER = "IMUSIC_TWIN.json"
"""A file the twin generator leaves in each take folder it makes (its provenance)."""
IMU_COLUMNS = ("", "Position_X", "Position_Y", "Position_Z", "Velocity_X", "Velocity_Y",
               "Velocity_Z", "Acceleration_X", "Acceleration_Y", "Acceleration_Z",
               "Quaterion_0", "Quaterion_1", "Quaterion_2", "Quaterion_3")
"""The header of every IMU file (the first column is unnamed: the frame index)."""
TAKE_NAME = re.compile(r"^participant_(?P<p>[A-Za-z0-9]+)_(?P<t>testcase_[A-Za-z0-9]+)$")
SENSOR_FILE = re.compile(r"^(\d{3})\.csv$")
T0 = 1000.0
"""Session time of a take's first row (an arbitrary positive clock, as in model/simulate.py)."""


@dataclass(frozen=True)
class ReleaseConfig:
    """Tolerances of the reader."""

    quat_norm_tol: float = 0.05      # |‖q‖ - 1| allowed before a row is called broken
    rig: str = "imusic_release"      # the rig whose sensor ids the take must have


class ReleaseError(ValueError):
    """A take folder that does not follow the layout; the message names the file and what is
    wrong, in one line."""


@dataclass
class ImuFile:
    """One sensor's CSV, parsed."""

    frame: np.ndarray        # (N,) float64 frame index as written
    acc_g: np.ndarray        # (N, 3) float64 g
    quat: np.ndarray         # (N, 4) float64 w, x, y, z (unit)


@dataclass
class ReleaseTake:
    """A take folder, read and checked. IMU arrays are in the rig's site order."""

    path: Path
    subject: str             # "participant_1"
    take: str                # "testcase_2"
    sensors: list[str]
    reference: str
    acc: np.ndarray          # (N, S, 3) m/s², gravity included (raw)
    quat: np.ndarray         # (N, S, 4) absolute orientation (raw), sensor-to-earth
    linacc: np.ndarray       # (N, S, 3) m/s², gravity removed (calib)
    quat_ref: np.ndarray     # (N, S, 4) orientation relative to the reference sensor (calib)
    frame: np.ndarray        # (N,) the frame index of the raw files
    arkit: np.ndarray        # (N, 61) float32 stream order, NaN where the face was lost
    face_found: np.ndarray   # (N,) bool
    twin: dict[str, Any] = field(default_factory=dict)   # the twin marker's content, if any

    @property
    def n_frames(self) -> int:
        """Rows (60 Hz frames)."""
        return len(self.frame)

    @property
    def source(self) -> str:
        """``twin`` for a folder the twin generator made, else ``real``."""
        return "twin" if self.twin else "real"


def parse_take_name(name: str) -> tuple[str, str]:
    """``participant_1_testcase_2`` -> ("participant_1", "testcase_2"); ReleaseError else."""
    m = TAKE_NAME.match(name)
    if not m:
        raise ReleaseError(f"take folder {name!r} is not named like participant_1_testcase_2")
    return f"participant_{m.group('p')}", m.group("t")


def _number(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ReleaseError(f"{where}: {text[:20]!r} is not a number") from None
    if not math.isfinite(v):
        raise ReleaseError(f"{where}: {text[:20]!r} is not a finite number")
    return v


def parse_imu_csv(text: str, where: str = "<imu csv>",
                  cfg: ReleaseConfig = ReleaseConfig()) -> ImuFile:
    """Parse one sensor file (raw or calib). Raises ReleaseError naming ``where``, the row and
    the problem."""
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines:
        raise ReleaseError(f"{where}: empty file (expected a header and one row per frame)")
    header = tuple(c.strip() for c in lines[0].split(","))
    if header != IMU_COLUMNS:
        raise ReleaseError(f"{where}: header {','.join(header)[:80]!r} is not the release "
                           f"layout's ',{','.join(IMU_COLUMNS[1:])}'")
    if len(lines) < 2:
        raise ReleaseError(f"{where}: a header but no rows")
    rows = np.empty((len(lines) - 1, len(IMU_COLUMNS)))
    for k, ln in enumerate(lines[1:]):
        cells = ln.split(",")
        if len(cells) != len(IMU_COLUMNS):
            raise ReleaseError(f"{where}: row {k + 1} has {len(cells)} columns, expected "
                               f"{len(IMU_COLUMNS)}")
        rows[k] = [_number(c.strip(), f"{where}: row {k + 1}") for c in cells]
    frame = rows[:, 0]
    if np.any(np.diff(frame) != 1):
        k = int(np.flatnonzero(np.diff(frame) != 1)[0]) + 2
        raise ReleaseError(f"{where}: row {k}: the frame index does not count up by one "
                           f"({frame[k - 2]:g} then {frame[k - 1]:g})")
    quat = rows[:, 10:14]
    norm = np.linalg.norm(quat, axis=1)
    bad = np.flatnonzero(np.abs(norm - 1.0) > cfg.quat_norm_tol)
    if len(bad):
        raise ReleaseError(f"{where}: row {int(bad[0]) + 1}: quaternion norm {norm[bad[0]]:.3g} "
                           "is not 1 (expected unit quaternions, scalar first)")
    return ImuFile(frame=frame, acc_g=rows[:, 7:10], quat=normalise(quat))


def is_take(path: str | Path) -> bool:
    """True for a folder that looks like a release take (has IMU_data/ or Arkit/)."""
    p = Path(path)
    return p.is_dir() and ((p / "IMU_data").is_dir() or (p / "Arkit").is_dir())


def find_takes(root: str | Path) -> list[Path]:
    """Take folders under ``root`` (itself, its children, or its ``data/`` children), sorted."""
    root = Path(root)
    if is_take(root):
        return [root]
    for base in (root, root / "data"):
        if base.is_dir():
            takes = sorted(p for p in base.iterdir() if is_take(p))
            if takes:
                return takes
    return []


def _read_sensor_dir(take: Path, sub: Path, ids: list[str], cfg: ReleaseConfig) -> list[ImuFile]:
    d = take / sub
    if not d.is_dir():
        raise ReleaseError(f"{d}: missing folder (a take has {RAW_DIR}/NNN.csv and "
                           f"{CALIB_DIR}/NNN.csv per sensor)")
    found = sorted(m.group(1) for p in d.iterdir() if (m := SENSOR_FILE.match(p.name)))
    missing = [i for i in ids if i not in found]
    extra = [i for i in found if i not in ids]
    if missing or extra:
        raise ReleaseError(f"{d}: sensor files {'missing ' + ', '.join(missing) if missing else ''}"
                           f"{'; ' if missing and extra else ''}"
                           f"{'not in rig ' + cfg.rig + ': ' + ', '.join(extra) if extra else ''}"
                           f" (rig {cfg.rig} has {', '.join(ids)})")
    out = []
    for i in ids:
        f = d / f"{i}.csv"
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ReleaseError(f"{f}: cannot read ({err})") from None
        out.append(parse_imu_csv(text, str(f), cfg))
    return out


def read_take(path: str | Path, cfg: ReleaseConfig = ReleaseConfig()) -> ReleaseTake:
    """Read and check a take folder (see the module doc). Raises ReleaseError in one line."""
    from imusic.capture.livelink_csv import LiveLinkCSVError, read_take as read_livelink
    from imusic.hardware.rig import load_rig

    path = Path(path)
    if not path.is_dir():
        raise ReleaseError(f"{path}: no such take folder")
    subject, take = parse_take_name(path.name)
    rig = load_rig(cfg.rig)
    ids = rig.site_names
    raw = _read_sensor_dir(path, RAW_DIR, ids, cfg)
    calib = _read_sensor_dir(path, CALIB_DIR, ids, cfg)
    csv = path / ARKIT_CSV
    if not csv.is_file():
        raise ReleaseError(f"{csv}: missing (the take's Live Link Face CSV)")
    try:
        arkit = read_livelink(csv)
    except (LiveLinkCSVError, OSError, UnicodeDecodeError) as err:
        raise ReleaseError(f"{csv}: {str(err).splitlines()[0]}") from None
    n = arkit.n_frames
    for sub, files in ((RAW_DIR, raw), (CALIB_DIR, calib)):
        for i, f in zip(ids, files):
            if len(f.frame) != n:
                raise ReleaseError(f"{path / sub / (i + '.csv')}: {len(f.frame)} rows, but "
                                   f"{ARKIT_CSV} has {n}: the release's files are one to one")
    if any(not np.array_equal(f.frame, raw[0].frame) for f in raw + calib):
        raise ReleaseError(f"{path / RAW_DIR}: the sensor files' frame indices differ")
    twin: dict[str, Any] = {}
    marker = path / TWIN_MARKER
    if marker.is_file():
        try:
            twin = json.loads(marker.read_text())
        except (json.JSONDecodeError, OSError, UnicodeDecodeError) as err:
            raise ReleaseError(f"{marker}: not valid JSON ({err})") from None
        if not isinstance(twin, dict) or not twin:
            raise ReleaseError(f"{marker}: expected a JSON object (the twin's provenance)")
    return ReleaseTake(
        path=path, subject=subject, take=take, sensors=list(ids), reference=rig.reference,
        acc=np.stack([f.acc_g for f in raw], 1) * G, quat=np.stack([f.quat for f in raw], 1),
        linacc=np.stack([f.acc_g for f in calib], 1) * G,
        quat_ref=np.stack([f.quat for f in calib], 1), frame=raw[0].frame,
        arkit=np.asarray(arkit.values, np.float32), face_found=np.asarray(arkit.face_found),
        twin=twin)


def imu_channels(sensors: list[str]) -> list[tuple[str, str, str]]:
    """(label, unit, type) of the imported IMU stream: per sensor the contract's raw
    ``acc``/``quat`` channels, then the calibrated ``linacc`` (gravity removed) and
    ``quat_ref`` (relative to the reference sensor), then ``device.seq`` (the frame index)."""
    from imusic.firmware_bridge.streams import TYPES, UNITS, axes_of, channel_label

    out = []
    for s in sensors:
        for q in ("acc", "quat"):
            out += [(channel_label(s, q, a), UNITS[q], TYPES[q]) for a in axes_of(q)]
        out += [(f"{s}.linacc.{a}", "m/s^2", "Acceleration") for a in "xyz"]
        out += [(f"{s}.quat_ref.{a}", "normalized", "Orientation") for a in "wxyz"]
    out.append(("device.seq", "count", "SequenceNumber"))
    return out


def import_take(path: str | Path, out: str | Path,
                cfg: ReleaseConfig = ReleaseConfig()) -> ReleaseTake:
    """Read a take folder and write it as one session file ``out`` (never overwritten)."""
    import os

    import h5py

    from imusic.capture.aligned import Aligned, write_aligned
    from imusic.capture.session import SessionExistsError, SessionWriter, StreamSpec
    from imusic.hardware.vocabulary import N_BLENDSHAPES, STREAM_NAMES

    out = Path(out)
    if out.exists():
        raise SessionExistsError(f"{out} already exists: choose another name (sessions are "
                                 "never overwritten)")
    take = read_take(path, cfg)
    n, s = take.n_frames, len(take.sensors)
    t = T0 + np.arange(n) / RATE_HZ
    attrs = {"source": take.source, "subject": take.subject, "take": take.take,
             "rig": cfg.rig, "imported_from": str(take.path.resolve()),
             "layout": "imusic-release", "first_frame": float(take.frame[0])}
    if take.twin:
        attrs["twin"] = take.twin
    chans = imu_channels(take.sensors)
    imu_spec = StreamSpec(
        name=f"imusic-release-{take.subject}-{take.take}", type="IMU", channel_count=len(chans),
        nominal_srate=RATE_HZ, channel_format="double64", source_id=f"imusic-release-{s}",
        labels=[c[0] for c in chans], units=[c[1] for c in chans], types=[c[2] for c in chans])
    imu_spec.info_xml = imu_spec.to_xml().replace(
        "<desc>", f"<desc><rig><id>{cfg.rig}</id><reference>{take.reference}</reference></rig>")
    per = np.concatenate([take.acc, take.quat, take.linacc, take.quat_ref], axis=2)
    rows = np.concatenate([per.reshape(n, -1), take.frame[:, None]], axis=1)
    bs_spec = StreamSpec(name=f"arkit-{take.subject}-{take.take}", type="Blendshapes",
                         channel_count=len(STREAM_NAMES), nominal_srate=RATE_HZ,
                         channel_format="float32", source_id=f"arkit-{take.subject}",
                         labels=list(STREAM_NAMES))
    bs = take.arkit[:, :N_BLENDSHAPES]
    valid_arkit = take.face_found & np.all(np.isfinite(bs), axis=1)
    al = Aligned(rate_hz=RATE_HZ, t=t, blendshapes=np.where(valid_arkit[:, None], bs, 0.0),
                 pose=np.nan_to_num(take.arkit[:, N_BLENDSHAPES:]),
                 acc=take.acc.astype(np.float32), gyro=np.full((n, s, 3), np.nan, np.float32),
                 mag=np.full((n, s, 3), np.nan, np.float32), valid_imu=np.ones(n, bool),
                 valid_arkit=valid_arkit, sites=take.sensors, reference=take.reference,
                 rig_id=cfg.rig, attrs=dict(attrs),
                 quat=take.quat.astype(np.float32))
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        tmp.unlink()
    try:
        with SessionWriter(tmp, subject=take.subject, attrs=attrs, swmr=False) as w:
            k_imu = w.add_stream(imu_spec, "imu")
            k_bs = w.add_stream(bs_spec, "blendshapes")
            w.append(k_imu, rows, t)
            w.append(k_bs, take.arkit, t)
        with h5py.File(tmp, "a") as h5:
            write_aligned(h5, al)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return take
