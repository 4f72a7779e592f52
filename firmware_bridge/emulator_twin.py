"""The twin as the emulator's signal source: motion (procedural, a Live Link Face take or a
``Motion``) through ``hardware.physics.simulate`` to int16 counts with device timestamps,
in chunks, plus the ground-truth blendshapes the emulator can publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from firmware_bridge.emulator import EmulatorConfig

CHUNK_SECONDS = 30.0
"""Unbounded runs simulate the twin in chunks of this much motion, one chunk ahead, in a
worker thread (a fresh procedural motion per chunk, or the take again)."""
BOOT_US = 150_000
"""Device time (us since boot) at which a freshly (re)booted device takes its first sample."""
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


def pose_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """Head yaw, pitch, roll (rad, about y, x, z) from world-from-head rotation vectors."""
    from scipy.spatial.transform import Rotation

    ypr = Rotation.from_rotvec(rotvec).as_euler("YXZ")
    return ypr


class TwinSource:
    """Makes chunks of twin signals (int16 counts as the device sends them, device stamps)
    and the ground truth (blendshapes + pose) for the emulator, ``cfg`` being its config.

    A bounded run (``cfg.seconds``) is one chunk, simulated whole before streaming; an
    unbounded one is CHUNK_SECONDS at a time. The device clock and the true timeline run on
    across chunks; the motion restarts at each seam (a new procedural seed, or the take)."""

    def __init__(self, cfg: "EmulatorConfig", rate_hz: int) -> None:
        from hardware.rig import load_rig

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
            from capture.livelink_csv import read_take

            self.take = read_take(path)
        self.n_done = 0          # instants produced so far
        self.t_done = 0.0        # true time the next chunk starts at
        self.k = 0
        self.base_offset_us = float(BOOT_US if cfg.clock_offset_us is None else cfg.clock_offset_us)
        self.scales: dict[str, float] = {}
        self.ranges: dict[str, float] = {}

    def _motion(self, k: int, seconds: float) -> tuple[Any, np.ndarray]:
        from hardware.motion import Motion, procedural

        if self.motion_obj is not None:
            return self._cut(self.motion_obj, None, seconds)
        if self.take is None:
            m = procedural(seconds, fps=TRUTH_FPS, seed=self.cfg.seed + k)
            pose = np.zeros((m.n_frames, 9))
            pose[:, :3] = pose_from_rotvec(m.head_rotvec)
            return m, pose
        take = self.take
        m = Motion.from_blendshapes(take.t, take.values)
        pose = np.nan_to_num(np.asarray(take.values[:, 52:61], dtype=np.float64))
        return self._cut(m, pose, seconds)

    @staticmethod
    def _cut(m: Any, pose: np.ndarray | None, seconds: float) -> tuple[Any, np.ndarray]:
        """The motion up to ``seconds`` (all of it if shorter), with its 9 pose values."""
        from hardware.motion import Motion

        if pose is None:
            pose = np.zeros((m.n_frames, 9))
            pose[:, :3] = pose_from_rotvec(m.head_rotvec)
        if seconds < m.duration:  # cut to the run's length
            n = max(int(np.searchsorted(m.t, m.t[0] + seconds, side="right")), 4)
            m = Motion(fps=m.fps, blendshapes=m.blendshapes[:n], head_rotvec=m.head_rotvec[:n],
                       head_position=m.head_position[:n], t=m.t[:n], events=m.events)
            pose = pose[:n]
        return m, pose

    def next_chunk(self) -> TwinChunk | None:
        """The next slab of signals, or None when ``seconds`` are done."""
        from hardware.physics import simulate
        from hardware.sensors import DeviceClock, to_counts

        cfg = self.cfg
        if cfg.seconds is not None:
            left = cfg.seconds - self.t_done
            if left <= 0.5 / self.rate:
                return None
            seconds = left  # a bounded run is simulated whole (a take: up to its end)
        else:
            seconds = CHUNK_SECONDS
        seconds = max(seconds, 4.0 / TRUTH_FPS)
        motion, pose = self._motion(self.k, seconds)
        clock = DeviceClock(offset_us=self.base_offset_us + self.n_done * 1e6 / self.rate,
                            drift_ppm=cfg.drift_ppm, jitter_us=cfg.jitter_us,
                            seed=cfg.seed + self.k)
        sig = simulate(motion, self.rig, rate_hz=self.rate, identity=cfg.identity,
                       seed=cfg.seed, errors=cfg.errors, clock=clock)
        t_shift = self.t_done - float(motion.t[0])
        t = sig.t + t_shift
        if cfg.seconds is not None:
            keep = t < cfg.seconds - 1e-9
            keep[0] = True
        else:
            keep = np.ones(len(t), bool)
        counts = {}
        for q in ("acc", "gyro", "mag"):
            scale = float(np.max(sig.scales[q]))  # one scale per quantity on the wire
            self.scales[q] = scale
            self.ranges[q] = float(np.max(sig.ranges[q]))
            counts[q] = to_counts(getattr(sig, q)[keep], scale)
        n = int(keep.sum())
        truth = np.concatenate([motion.blendshapes, pose], axis=1).astype(np.float32)
        taps = [float(e.start) + t_shift for e in getattr(motion, "events", []) if e.kind == "tap"]
        chunk = TwinChunk(t=t[keep], stamp_us=sig.device_time_us[keep].astype(np.int64),
                       acc=counts["acc"], gyro=counts["gyro"], mag=counts["mag"],
                       truth_t=motion.t + t_shift, truth=truth, taps=taps)
        # Next chunk starts one nominal sample period after this one's last true instant.
        self.n_done += n
        self.t_done = self.n_done / self.rate / (1.0 + cfg.drift_ppm * 1e-6)
        self.k += 1
        return chunk
