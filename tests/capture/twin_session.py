"""Synthetic recordings for the sync and recorder tests, made by the twin (hardware.physics).

Not a test module: helpers that build what a recorder would have received from the emulator's
IMU outlet and an ARKit replay, with a known lag, jitter, clock offset and a start-of-take tap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pylsl

from imusic.firmware_bridge.streams import blendshapes_info, channel_label
from imusic.hardware.motion import Motion, procedural
from imusic.hardware.physics import TwinConfig, simulate
from imusic.hardware.rig import load_rig
from imusic.hardware.vocabulary import ARKIT_NAMES, STREAM_NAMES

TAP_TIME = 1.5          # s into the take
TAP_PEAK = 60.0
TAKE_START = 2.5        # s: the face starts moving         # m/s^2: a fingertip tap on a 1 g sensor board


@dataclass
class TwinTake:
    """IMU rows (LSL channel order) and blendshape rows, with the true instants."""

    imu_t: np.ndarray          # (N,) true instants, s
    imu_rows: np.ndarray       # (N, C) float64, channels as imu_labels
    imu_labels: list[str]
    bs_t: np.ndarray           # (M,) true instants, s
    bs_rows: np.ndarray        # (M, 61) float32
    sites: list[str]
    reference: str
    rig_id: str
    imu_rate: float


def twin_take(seconds: float = 30.0, imu_rate: float = 100.0, seed: int = 3,
              rig: str = "imusic11", tap: bool = True, twin: TwinConfig | None = None) -> TwinTake:
    """A procedural face take through the twin, with a tap on the mentalis sensor (``twin``:
    the twin's realism terms, default all on)."""
    motion = procedural(seconds, fps=60.0, seed=seed)
    b = motion.blendshapes.copy()
    t = motion.t
    # Still and neutral for the first seconds (calibration, then the tap), then the take eases in.
    ease = np.clip((t - TAKE_START) / 0.5, 0.0, 1.0)[:, None]
    b *= ease
    rv, pos = motion.head_rotvec * ease, motion.head_position * ease
    if tap:
        # The tap twitches the chin: a brief jaw/mouth movement right after the impact.
        bump = np.exp(-0.5 * ((t - TAP_TIME - 0.03) / 0.04) ** 2)
        for name, amp in (("jawOpen", 0.25), ("mouthShrugLower", 0.3), ("mouthClose", 0.1)):
            j = ARKIT_NAMES.index(name)
            b[:, j] = np.clip(b[:, j] + amp * bump, 0, 1)
    m = Motion(fps=60.0, blendshapes=b, head_rotvec=rv, head_position=pos, t=t)
    r = load_rig(rig)
    sig = simulate(m, r, rate_hz=imu_rate, seed=seed, twin=twin or TwinConfig())
    acc = sig.acc.copy()
    if tap:
        k = r.site_names.index("mentalis")
        pulse = np.clip(1 - np.abs(sig.t - TAP_TIME) / 0.006, 0, None) * TAP_PEAK
        acc[:, k, 2] -= pulse
    labels, cols = [], []
    for si, s in enumerate(sig.site_names):
        for q, arr in (("acc", acc), ("gyro", sig.gyro), ("mag", sig.mag)):
            for ai, ax in enumerate("xyz"):
                labels.append(channel_label(s, q, ax))
                cols.append(arr[:, si, ai])
    labels += ["device.time_us", "device.seq"]
    cols += [sig.device_time_us.astype(np.float64), np.arange(len(sig.t), dtype=np.float64)]
    bs = np.zeros((len(t), len(STREAM_NAMES)), np.float32)
    bs[:, :52] = b
    return TwinTake(imu_t=sig.t, imu_rows=np.stack(cols, axis=1), imu_labels=labels,
                    bs_t=t, bs_rows=bs, sites=list(sig.site_names), reference=sig.reference,
                    rig_id=sig.rig_id, imu_rate=imu_rate)


def imu_stream_info(take: TwinTake, name: str) -> pylsl.StreamInfo:
    """A StreamInfo shaped like firmware_bridge's IMU outlet (labels, rig, reference flag), its
    channels in the take's label order (a test may shuffle it: hence not ``streams.imu_info``)."""
    info = pylsl.StreamInfo(name, "IMU", len(take.imu_labels), take.imu_rate,
                            pylsl.cf_double64, f"{name}-serial")
    d = info.desc()
    chans = d.append_child("channels")
    for lab in take.imu_labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", lab)
        q = lab.split(".")[-2]
        ch.append_child_value("unit", {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}.get(q, ""))
    rig = d.append_child("rig")
    rig.append_child_value("id", take.rig_id)
    rig.append_child_value("reference", take.reference)
    sites = rig.append_child("sites")
    for s in take.sites:
        el = sites.append_child("site")
        el.append_child_value("name", s)
        el.append_child_value("reference", "true" if s == take.reference else "false")
    return info


def blendshape_stream_info(name: str, source: str = "arkit") -> pylsl.StreamInfo:
    """A Blendshapes StreamInfo with the 61 STREAM_NAMES channels (``streams.blendshapes_info``)."""
    return blendshapes_info(name, source, f"{name}-src")
