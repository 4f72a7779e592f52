"""What bench_record and bench_record_rt share: the streams' rates, the twin's signals they
play, and the recorder's peak RSS. (One module for both, so neither imports the other.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMU_RATE, BS_RATE = 200, 60


def twin_loop(seconds: float = 60.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, 108) IMU rows at 200 Hz and (M, 61) blendshape rows at 60 Hz from the twin."""
    from imusic.hardware.motion import procedural
    from imusic.hardware.physics import simulate

    m = procedural(seconds, fps=BS_RATE, seed=11)
    sig = simulate(m, "imusic11", rate_hz=IMU_RATE, seed=11)
    rows = np.concatenate([sig.acc, sig.gyro, sig.mag], axis=2).reshape(len(sig.t), -1)
    labels = [f"{s}.{q}.{a}" for s in sig.site_names for q in ("acc", "gyro", "mag")
              for a in "xyz"]
    bs = np.zeros((m.n_frames, 61), np.float32)
    bs[:, :52] = m.blendshapes
    return rows, bs, labels


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
