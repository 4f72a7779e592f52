"""Paired training sessions made by the digital twin (``imusic simulate``).

Each virtual subject is one of the face model's 20 head shapes. Each session (one subject, one
motion source) is a fresh donning of the rig: its own mounting errors, sensor biases and noise
and device clock (``hardware.physics.simulate`` with a per-session seed), and its own head
motion. Motion sources: real Live Link Face takes (30 fps, resampled to 60 Hz; face-lost rows
become invalid frames) and procedural motion (``hardware.motion.procedural``).

Each session file holds, in the session format (``capture.session``): the raw ``IMU`` stream
at the device rate (labelled channels as the IMU LSL contract has them), the ground-truth
``Blendshapes`` stream at 60 Hz, and the ``aligned`` group (the measured IMU signals linearly
resampled onto the 60 Hz blendshape timeline). Every file says ``source = "twin"``.
Everything is deterministic per seed.

A session may be what a wearable with on-device fusion would have recorded
(:class:`DeviceOutput`, ``report="orientation"``, as ``imusic emulate --report orientation``
is): the emulator's own device fusion (firmware_bridge/emulator_fusion.py) runs on the twin's
readings at the device rate, its quaternions (Q14, as the wire carries them) become
``site.quat.w|x|y|z`` channels and ``aligned.quat``, and with ``gyro=False`` / ``mag=False``
those blocks are absent from the stream (NaN in ``aligned``), so ``imusic train`` picks
reported-orientation features and the checkpoint runs live on the emulator in that mode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from imusic.capture.aligned import Aligned, write_aligned
from imusic.hardware.vocabulary import N_BLENDSHAPES, STREAM_NAMES

RATE_HZ = 60.0
SESSION_T0 = 1000.0
"""LSL time of every synthetic session's first motion frame (an arbitrary positive clock)."""
NEUTRAL_S = 3.0
"""Still neutral face (and still head) at the start of every ``imusic simulate`` session, as
the README asks of a real take: the calibration's still window (model/calibration.py)."""
RAMP_S = 0.5
"""Smooth blend from the neutral face into the motion after the still segment."""
PROCEDURAL_PERFORMER = "procedural"
"""The ``performer`` attribute of sessions driven by procedural motion."""
SHIPPED_TAKES = Path(__file__).resolve().parent.parent / "hardware" / "data" / "takes"
SHIPPED_PERFORMER = "alexdjulin_llf"
"""The shipped excerpts are cut from the alexdjulin_llf takes (their PROVENANCE.md): one
performer with the whole takes, whose folder name is the performer elsewhere."""


@dataclass
class MotionSource:
    """60 Hz blendshapes of one source, with the frames on which the face was tracked."""

    name: str
    blendshapes: np.ndarray      # (T, 52) float64, NaN where lost
    pose: np.ndarray             # (T, 9) eye/head pose (radians; NaN where lost)
    valid: np.ndarray            # (T,) bool
    procedural: bool = False
    performer: str = PROCEDURAL_PERFORMER   # who acted it (the held-out-performer split)


def performer_of(path: str | Path) -> str:
    """The performer of a real take: the name of the folder that holds it (one folder per
    performer, as ../shared/data/arkit/<performer>/), the shipped excerpts' source for those."""
    folder = Path(path).resolve().parent
    return SHIPPED_PERFORMER if folder == SHIPPED_TAKES else folder.name


def resample_take(t: np.ndarray, values: np.ndarray, found: np.ndarray,
                  rate_hz: float = RATE_HZ) -> tuple[np.ndarray, np.ndarray]:
    """Values (T, C) at irregular times ``t`` with a tracked mask -> a ``rate_hz`` grid.

    Linear interpolation between tracked rows; a grid frame is valid only when the source rows
    on both sides of it are tracked (so a face-lost stretch stays invalid, never bridged).
    Returns (values (N, C) with NaN where invalid, valid (N,)).
    """
    grid = np.arange(0.0, t[-1] + 1e-9, 1.0 / rate_hz)
    j = np.clip(np.searchsorted(t, grid), 1, len(t) - 1)
    # a grid frame that falls on a source row takes that row's state; one between two rows
    # needs both
    on_hi, on_lo = np.isclose(t[j], grid), np.isclose(t[j - 1], grid)
    valid = np.where(on_hi, found[j], np.where(on_lo, found[j - 1], found[j - 1] & found[j]))
    out = np.full((len(grid), values.shape[1]), np.nan)
    if found.sum() >= 2:
        tf = t[found]
        for c in range(values.shape[1]):
            out[:, c] = np.interp(grid, tf, values[found, c])
    out[~valid] = np.nan
    return out, valid


def load_take(path: str | Path) -> MotionSource:
    """A real Live Link Face CSV take at 60 Hz."""
    from imusic.capture.livelink_csv import read_take

    take = read_take(path)
    vals, valid = resample_take(take.t, np.asarray(take.values, np.float64), take.face_found)
    return MotionSource(Path(path).stem, vals[:, :N_BLENDSHAPES], vals[:, N_BLENDSHAPES:], valid,
                        performer=performer_of(path))


def with_neutral_start(bs: np.ndarray, pose: np.ndarray, valid: np.ndarray,
                       neutral_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Prepend ``neutral_s`` of the neutral face (all blendshapes 0) and a ``RAMP_S`` cosine
    blend into the first tracked frame. Returns (blendshapes, pose, valid, frames added)."""
    if neutral_s <= 0:
        return bs, pose, valid, 0
    n0, nr = int(round(neutral_s * RATE_HZ)), int(round(RAMP_S * RATE_HZ))
    tracked = np.flatnonzero(valid & np.all(np.isfinite(bs), axis=1))
    first = bs[tracked[0]] if len(tracked) else np.zeros(bs.shape[1])
    w = 0.5 - 0.5 * np.cos(np.pi * (np.arange(nr) + 1) / (nr + 1))
    lead = np.concatenate([np.zeros((n0, bs.shape[1])), w[:, None] * first[None]])
    pose_lead = np.zeros((n0 + nr, pose.shape[1]))
    return (np.concatenate([lead, bs]), np.concatenate([pose_lead, pose]),
            np.concatenate([np.ones(n0 + nr, bool), valid]), n0 + nr)


def _seed(*parts: object) -> int:
    """A stable 32-bit seed from any parts (not Python's salted hash)."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:4], "little")


def _crop(src: MotionSource, seconds: float, rng: np.random.Generator) -> slice:
    n = len(src.blendshapes)
    want = min(n, int(round(seconds * RATE_HZ)))
    start = int(rng.integers(0, n - want + 1))
    return slice(start, start + want)


@dataclass(frozen=True)
class DeviceOutput:
    """What the simulated device sends, with the emulator's meanings (``EmulatorConfig``)."""

    report: str = "raw"
    """``raw`` (acc, gyro, mag) or ``orientation`` (on-device fusion: acc + quaternion)."""
    gyro: bool = True
    """Send the gyro block (False needs ``report="orientation"``; the fusion still uses it)."""
    mag: bool = True
    """The device has a magnetometer: send its block and fuse with it (False: 6-axis fusion)."""

    def __post_init__(self) -> None:
        if self.report not in ("raw", "orientation"):
            raise ValueError(f"report is raw or orientation, not {self.report!r}")
        if not self.gyro and self.report != "orientation":
            raise ValueError("--no-gyro needs --report orientation: a raw device must send its "
                             "gyroscope (the host's orientation filter runs on it)")

    @property
    def quat(self) -> bool:
        """The device sends quaternions."""
        return self.report == "orientation"


def imu_channels(sites: Sequence[str], output: DeviceOutput = DeviceOutput()
                 ) -> list[tuple[str, str, str]]:
    """(label, unit, type) of the IMU stream's channels, as the IMU LSL contract has them."""
    from imusic.firmware_bridge.outlet import channel_table

    return channel_table(list(sites), has_mag=output.mag, has_quat=output.quat,
                         has_gyro=output.gyro)


def device_quaternions(sig: object, output: DeviceOutput, rate_hz: float) -> np.ndarray:
    """(N, S, 4) what the emulated device's fusion sends for the twin signals ``sig``: the
    emulator's ``DeviceFusion`` on acc/gyro (and mag unless ``output.mag`` is off), rounded to
    the wire's Q14."""
    from imusic.firmware_bridge.emulator_fusion import DeviceFusion, to_counts
    from imusic.firmware_bridge.protocol import QUAT_SCALE

    acc = np.asarray(sig.acc)  # type: ignore[attr-defined]
    fusion = DeviceFusion(acc.shape[1], rate_hz, use_mag=output.mag)
    q = fusion.update(acc, sig.gyro, sig.mag if output.mag else None)  # type: ignore[attr-defined]
    return to_counts(q).astype(np.float64) * QUAT_SCALE


def write_session(path: Path, src: MotionSource, sl: slice, subject: str, identity: int,
                  rig_name: str, seed: int, session_seed: int, device_rate_hz: float = 100.0,
                  command: str = "", output: DeviceOutput = DeviceOutput(),
                  neutral_s: float = 0.0) -> Path:
    """Simulate one session and write it (raw streams + ``aligned``) as a device sending
    ``output`` would have recorded it; ``neutral_s`` > 0 starts it with that long a still
    neutral face and still head (:func:`with_neutral_start`). Returns ``path``."""
    from imusic.capture.orientation import continuous, normalise
    from imusic.capture.session import SessionWriter, StreamSpec
    from imusic.hardware.motion import Motion, procedural
    from imusic.hardware.physics import simulate
    from imusic.hardware.rig import load_rig

    rig = load_rig(rig_name)
    bs, pose, valid, n_lead = with_neutral_start(src.blendshapes[sl], src.pose[sl],
                                                 src.valid[sl].copy(), neutral_s)
    n = len(bs)
    seconds = n / RATE_HZ
    # head motion: the procedural generator's head for this session (real takes have none),
    # held still at its first pose through the neutral start
    head = procedural(seconds + 1.0, fps=RATE_HZ, seed=session_seed)
    keep_idx = np.concatenate([np.zeros(n_lead, int), np.arange(n - n_lead)])
    head_rv, head_pos = head.head_rotvec[keep_idx], head.head_position[keep_idx]
    if src.procedural:
        motion = Motion(fps=RATE_HZ, blendshapes=np.nan_to_num(bs), head_rotvec=head_rv,
                        head_position=head_pos)
    else:
        motion = Motion.from_blendshapes(RATE_HZ, bs, head_rv, head_pos)
    sig = simulate(motion, rig, rate_hz=device_rate_hz, identity=identity, seed=session_seed)

    t_motion = np.asarray(motion.t)
    # the aligned timeline: motion frames inside the span the IMU covers
    keep = (t_motion >= sig.t[0]) & (t_motion <= sig.t[-1])
    t_al = t_motion[keep]

    def resample(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        out = np.stack([np.interp(t_al, sig.t, flat[:, c]) for c in range(flat.shape[1])], 1)
        return out.reshape((len(t_al),) + x.shape[1:]).astype(np.float32)

    truth = np.asarray(bs, np.float32)
    truth[~valid] = np.nan
    pose_al = np.asarray(pose, np.float32)
    attrs = {"source": "twin", "subject": subject, "identity": int(identity), "take": src.name,
             "motion": "procedural" if src.procedural else "livelink-face-take",
             "crop_start_s": sl.start / RATE_HZ, "seed": int(seed),
             "session_seed": int(session_seed), "rig": rig.id,
             "device_rate_hz": float(device_rate_hz), "clock_drift_ppm":
             float(sig.clock.drift_ppm) if sig.clock else 0.0,
             "lsl_time": "ideal clock map: LSL time = true sample time + 1000 s",
             "command": command, "report": output.report, "sends_gyro": output.gyro,
             "sends_mag": output.mag, "performer": src.performer,
             "neutral_s": float(n_lead / RATE_HZ)}
    blocks = [sig.acc] + [sig.gyro] * output.gyro + [sig.mag] * output.mag
    quat = quat_al = None
    if output.quat:
        quat = device_quaternions(sig, output, device_rate_hz)
        blocks.append(quat)
        quat_al = normalise(resample(continuous(quat)).astype(np.float64)).astype(np.float32)
    absent = np.full((len(t_al), rig.n_sites, 3), np.nan, np.float32)
    al = Aligned(rate_hz=RATE_HZ, t=SESSION_T0 + t_al, blendshapes=truth[keep],
                 pose=pose_al[keep], acc=resample(sig.acc),
                 gyro=resample(sig.gyro) if output.gyro else absent,
                 mag=resample(sig.mag) if output.mag else absent,
                 valid_imu=np.ones(len(t_al), bool), valid_arkit=valid[keep],
                 sites=list(rig.site_names), reference=rig.reference, rig_id=rig.id,
                 attrs=attrs, quat=quat_al)

    chans = imu_channels(rig.site_names, output)
    imu_spec = StreamSpec(
        name=f"imusic-twin-{subject}", type="IMU", channel_count=len(chans),
        nominal_srate=device_rate_hz, channel_format="double64",
        source_id=f"twin-{subject}-{session_seed:08x}", labels=[c[0] for c in chans],
        units=[c[1] for c in chans], types=[c[2] for c in chans])
    rows = np.concatenate([np.concatenate(blocks, axis=-1).reshape(sig.n_samples, -1),
                           sig.device_time_us[:, None].astype(np.float64),
                           np.arange(sig.n_samples, dtype=np.float64)[:, None]], axis=1)
    bs_spec = StreamSpec(name=f"twin-truth-{subject}", type="Blendshapes",
                         channel_count=len(STREAM_NAMES), nominal_srate=RATE_HZ,
                         channel_format="float32", source_id=f"twin-truth-{subject}",
                         labels=list(STREAM_NAMES))
    gt = np.concatenate([truth, pose_al], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()   # the caller decided to replace it (simulate_dataset refuses otherwise)
    with SessionWriter(path, subject=subject, attrs=attrs, swmr=False) as w:
        k_imu = w.add_stream(imu_spec, "imu")
        k_bs = w.add_stream(bs_spec, "blendshapes")
        w.append(k_imu, rows, SESSION_T0 + sig.t)
        w.append(k_bs, gt, SESSION_T0 + t_motion)
    with h5py.File(path, "a") as h5:
        write_aligned(h5, al)
    return path


def plan(subjects: int, minutes: float, takes: Sequence[MotionSource], use_procedural: bool,
         seed: int) -> list[tuple[int, str, MotionSource, slice, int]]:
    """(identity, subject name, source, crop, session seed) for every session to make."""
    jobs = []
    n_src = len(takes) + int(use_procedural)
    if n_src == 0:
        raise ValueError("nothing to simulate: give --motion takes and/or --procedural")
    per = minutes * 60.0 / n_src
    for s in range(subjects):
        identity = s % 20
        subject = f"id{identity:02d}" if subjects <= 20 else f"id{identity:02d}-{s // 20}"
        for k, src in enumerate(takes):
            sseed = _seed(seed, subject, src.name)
            jobs.append((identity, subject, src, _crop(src, per, np.random.default_rng(sseed)),
                         sseed))
        if use_procedural:
            sseed = _seed(seed, subject, "procedural")
            from imusic.hardware.motion import procedural
            m = procedural(per, fps=RATE_HZ, seed=sseed)
            src = MotionSource("procedural", m.blendshapes, np.zeros((m.n_frames, 9)),
                               np.ones(m.n_frames, bool), procedural=True,
                               performer=PROCEDURAL_PERFORMER)
            jobs.append((identity, subject, src, slice(0, m.n_frames), sseed))
    return jobs


def existing_sessions(out: str | Path) -> list[Path]:
    """Session files already in the folder ``out`` (none when it does not exist)."""
    out = Path(out)
    return sorted(out.glob("*.h5")) if out.is_dir() else []


def simulate_dataset(out: str | Path, subjects: int = 20, minutes: float = 1.5,
                     takes: Sequence[str | Path] = (), use_procedural: bool = True,
                     rig: str = "imusic11", seed: int = 0, device_rate_hz: float = 100.0,
                     progress: Callable[[int, int, str], None] | None = None,
                     command: str = "", overwrite: bool = False,
                     output: DeviceOutput = DeviceOutput(),
                     neutral_s: float = NEUTRAL_S) -> list[Path]:
    """Make ``subjects`` x sources sessions under ``out`` (``<subject>_<take>.h5``), as a
    device sending ``output`` records them.

    A folder that already holds session files is refused (``FileExistsError``, before anything
    is simulated) unless ``overwrite``: then files of the same names are replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; -o needs a folder for the session files")
    old = existing_sessions(out)
    if old and not overwrite:
        raise FileExistsError(
            f"{out} already holds {len(old)} session file(s) (e.g. {old[0].name}); nothing was "
            "written. Choose a new folder, or pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    sources = [load_take(p) for p in takes]
    jobs = plan(subjects, minutes, sources, use_procedural, seed)
    paths = []
    if progress:
        progress(0, len(jobs), "")
    for i, (identity, subject, src, sl, sseed) in enumerate(jobs):
        p = out / f"{subject}_{src.name}.h5"
        paths.append(write_session(p, src, sl, subject, identity, rig, seed, sseed,
                                   device_rate_hz, command, output, neutral_s))
        if progress:
            progress(i + 1, len(jobs), p.name)
    return paths
