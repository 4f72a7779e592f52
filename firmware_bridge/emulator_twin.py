"""The twin as the emulator's signal source: motion (procedural, a Live Link Face take or a
``Motion``) through ``hardware.physics.simulate`` to int16 counts with device timestamps,
in chunks, plus the ground-truth blendshapes the emulator can publish. Its timeline is
*true time* (s of streamed motion) and its stamps the device clock's base reading; the
emulator's clock (emulator_clock.py) adds pauses and reboots. It reads the emulator's config
(emulator_config.py), never the emulator. In orientation mode
(``cfg.report == "orientation"``) the device-side fusion (emulator_fusion.py) turns each
chunk's counts into Q14 quaternion counts, its state running on across chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imusic.firmware_bridge.emulator_clock import drift_factor, first_sample_us
from imusic.hardware.motion import Motion, neutral_weight, procedural, with_neutral_start

if TYPE_CHECKING:
    from imusic.firmware_bridge.emulator_config import EmulatorConfig

CHUNK_SECONDS = 30.0
"""Unbounded runs simulate the twin in chunks of this much motion, one chunk ahead, in a
worker thread (a fresh procedural motion per chunk, or the take again)."""
SEAM_MARGIN_S = 0.25
"""Motion simulated on each side of a chunk seam and thrown away, so that the signals across
a seam match a simulation of the whole run."""
TRUTH_FPS = 60.0
"""Frame rate of the procedural motion, and of the ground-truth Blendshapes stream."""


@dataclass
class TwinChunk:
    """One slab of simulated instants and the motion frames behind them."""

    t: np.ndarray            # (n,) true time since streaming began, s
    stamp_us: np.ndarray     # (n,) int64 device timestamps (base clock, before reboots/pauses)
    acc: np.ndarray          # (n, S, 3) int16 counts
    gyro: np.ndarray
    mag: np.ndarray
    truth_t: np.ndarray      # (m,) true time of motion frames, s
    truth: np.ndarray        # (m, 61) float32 blendshapes + pose
    taps: list[float] = field(default_factory=list)
    quat: np.ndarray | None = None   # (n, S, 4) int16 Q14 on-device quaternions (orientation mode)


def pose_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """Head yaw, pitch, roll (rad, about y, x, z) from world-from-head rotation vectors."""
    from scipy.spatial.transform import Rotation

    ypr = Rotation.from_rotvec(rotvec).as_euler("YXZ")
    return ypr


class TwinSource:
    """Makes chunks of twin signals (int16 counts as the device sends them, device stamps)
    and the ground truth (blendshapes + pose) for the emulator, ``cfg`` being its config.

    Signals are simulated CHUNK_SECONDS at a time, one chunk ahead (so memory and start-up
    time do not grow with the run). A bounded procedural run, a take and a ``Motion`` are cut
    from one continuous motion (a take starts again when it ends); an unbounded procedural
    run draws a fresh motion per chunk, so the face jumps at those seams. The device clock and
    the sample grid run on across seams. The sensor error model is seeded the same for every
    chunk: the turn-on bias stays, the noise sequence repeats per chunk."""

    def __init__(self, cfg: "EmulatorConfig", rate_hz: int) -> None:
        from imusic.hardware.rig import load_rig

        self.cfg = cfg
        self.rate = int(rate_hz)
        self.rig = load_rig(cfg.rig)
        self.take = None
        self.motion_obj = None
        if not isinstance(cfg.motion, (str, Path)):
            self.motion_obj = cfg.motion
        elif cfg.motion != "procedural":
            path = Path(cfg.motion)
            if not path.is_file():
                raise FileNotFoundError(
                    f"--motion {cfg.motion}: no such Live Link Face CSV take (or say 'procedural')")
            from imusic.capture.livelink_csv import read_take

            self.take = read_take(path)
        self.n_done = 0          # instants produced so far
        self.t_done = 0.0        # true time the next chunk starts at
        self.k = 0
        self.base_offset_us = first_sample_us(cfg.clock_offset_us)
        self._source: tuple[Any, np.ndarray] | None = None
        self._tau = 0.0          # where in the source motion the next chunk starts
        self.scales: dict[str, float] = {}
        self.ranges: dict[str, float] = {}
        self.fusion = None
        if cfg.report == "orientation":
            from imusic.firmware_bridge.emulator_fusion import DeviceFusion

            # the device fuses with the magnetometer only when it has one (--no-mag: 6-axis)
            self.fusion = DeviceFusion(self.rig.n_sites, self.rate, use_mag=cfg.mag,
                                       config=cfg.fusion)

    def _source_motion(self) -> tuple[Any, np.ndarray] | None:
        """The whole motion chunks are cut from, with its 9 pose values; None for an unbounded
        procedural run (a fresh motion per chunk)."""
        if self._source is None:
            pose = None
            if self.motion_obj is not None:
                m = self.motion_obj
            elif self.take is not None:
                m = with_neutral_start(Motion.from_blendshapes(self.take.t, self.take.values),
                                       self.cfg.neutral_s)
                pose = np.nan_to_num(np.asarray(self.take.values[:, 52:61], dtype=np.float64))
                pose *= neutral_weight(m.t - m.t[0], self.cfg.neutral_s)[:, None]
            elif self.cfg.seconds is not None:
                m = with_neutral_start(procedural(max(self.cfg.seconds, 4.0 / TRUTH_FPS),
                                                  fps=TRUTH_FPS, seed=self.cfg.seed),
                                       self.cfg.neutral_s)
            else:
                return None
            self._source = (m, _pose(m) if pose is None else pose)
        return self._source

    def next_chunk(self) -> TwinChunk | None:
        """The next slab of signals, or None when ``seconds`` are done."""
        from imusic.hardware.physics import simulate
        from imusic.hardware.sensors import DeviceClock, to_counts

        cfg = self.cfg
        if cfg.seconds is not None:
            left = cfg.seconds - self.t_done
            if left <= 0.5 / self.rate:
                return None
            span = min(left, CHUNK_SECONDS)
        else:
            span = CHUNK_SECONDS
        source = self._source_motion()
        if source is None:
            m = procedural(span + 0.1, fps=TRUTH_FPS, seed=cfg.seed + self.k)
            if self.k == 0:   # the run starts as a take does (EmulatorConfig.neutral_s)
                m = with_neutral_start(m, cfg.neutral_s)
            m_pose, tau0 = _pose(m), 0.0
        else:
            m, m_pose = source
            if self._tau > float(m.t[-4]):  # fewer than 4 frames left: the take starts again
                self._tau = float(m.t[0])
            tau0 = max(self._tau, float(m.t[0]))
        # simulate from SEAM_MARGIN_S before tau0 (on the sample grid) to past the end, so the
        # physics' derivatives at the seams see motion on both sides; keep [tau0, tau0 + span)
        drift = drift_factor(cfg.drift_ppm)
        dt = 1.0 / self.rate / drift
        lead = int(min(SEAM_MARGIN_S, tau0 - float(m.t[0])) / dt + 1e-9)
        motion, pose, real = _slice(m, m_pose, tau0 - lead * dt, span + lead * dt + SEAM_MARGIN_S)
        first_us = self.base_offset_us + (self.n_done - lead) * 1e6 / self.rate
        clock = DeviceClock(offset_us=first_us,
                            drift_ppm=cfg.drift_ppm, jitter_us=cfg.jitter_us,
                            seed=cfg.seed + self.k)
        sig = simulate(motion, self.rig, rate_hz=self.rate, identity=cfg.identity,
                       seed=cfg.seed, errors=cfg.errors, clock=clock)
        # sig.t runs from tau0 on the motion's clock; place it after what was sent already
        t_shift = self.t_done - tau0
        t = sig.t + t_shift
        keep = (sig.t < tau0 + span - 1e-9) & (np.arange(len(sig.t)) >= lead)
        if cfg.seconds is not None:
            keep &= t < cfg.seconds - 1e-9
        keep[lead] = True
        counts = {}
        for q in ("acc", "gyro", "mag"):
            scale = float(np.max(sig.scales[q]))  # one scale per quantity on the wire
            self.scales[q] = scale
            self.ranges[q] = float(np.max(sig.ranges[q]))
            counts[q] = to_counts(getattr(sig, q)[keep], scale)
        n = int(keep.sum())
        frames = real & (motion.t >= tau0 - 1e-9) & (motion.t < tau0 + span - 1e-9)
        truth = np.concatenate([motion.blendshapes, pose], axis=1)[frames].astype(np.float32)
        taps = [float(e.start) + t_shift for e in getattr(m, "events", [])
                if e.kind == "tap" and tau0 <= e.start < tau0 + span]
        quat = None
        if self.fusion is not None:
            from imusic.firmware_bridge.emulator_fusion import to_counts as quat_counts

            si = {q: counts[q] * self.scales[q] for q in ("acc", "gyro", "mag")}
            quat = quat_counts(self.fusion.update(si["acc"], si["gyro"], si["mag"]))
        chunk = TwinChunk(t=t[keep], stamp_us=sig.device_time_us[keep].astype(np.int64),
                          acc=counts["acc"], gyro=counts["gyro"], mag=counts["mag"],
                          truth_t=motion.t[frames] + t_shift, truth=truth, taps=taps,
                          quat=quat)
        # the next chunk starts at the next tick of the device's sample timer
        self._tau = tau0 + n / self.rate / drift
        self.n_done += n
        self.t_done = self.n_done / self.rate / drift
        self.k += 1
        return chunk


def _pose(m: Any) -> np.ndarray:
    """The 9 Live Link pose values of a motion: head yaw/pitch/roll, eyes left at zero."""
    pose = np.zeros((m.n_frames, 9))
    pose[:, :3] = pose_from_rotvec(m.head_rotvec)
    return pose


def _slice(m: Any, pose: np.ndarray, tau0: float, span: float
           ) -> tuple[Any, np.ndarray, np.ndarray]:
    """The frames of ``m`` covering ``[tau0, tau0 + span]`` (one more past the end, at least 4),
    starting with a frame interpolated at ``tau0`` when it falls between frames, so that the
    simulated sample grid starts exactly at ``tau0``. Returns the motion, its pose rows and
    which frames are ``m``'s own (not interpolated)."""
    t = m.t
    i0 = int(np.searchsorted(t, tau0 - 1e-9, side="left"))
    i1 = int(np.searchsorted(t, tau0 + span, side="right")) + 1
    i1 = min(len(t), max(i1, i0 + 4))
    i0 = min(i0, len(t) - 4)
    cols = [m.blendshapes, m.head_rotvec, m.head_position, pose]
    rows = [c[i0:i1] for c in cols]
    tt = t[i0:i1]
    real = np.ones(len(tt), bool)
    if tt[0] > tau0 + 1e-9 and i0 > 0:
        w = (tau0 - t[i0 - 1]) / (t[i0] - t[i0 - 1])
        rows = [np.vstack([(1 - w) * c[i0 - 1] + w * c[i0], r]) for c, r in zip(cols, rows)]
        tt = np.concatenate([[tau0], tt])
        real = np.concatenate([[False], real])
    motion = Motion(fps=m.fps, blendshapes=rows[0], head_rotvec=rows[1],
                    head_position=rows[2], t=tt)
    return motion, rows[3], real
