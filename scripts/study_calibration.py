"""The accuracy study of issue 13, re-measured with the product's own pipeline (twin data).

Each row is one feature variant of ``model.features`` (the same code training and the runtime
use), scored by the closed-form ridge baseline of ``model.baselines`` (12 frame offsets, lambda
chosen on the training identities) on the held-out sets ``imusic train`` picks by default
(``model.data.auto_holdouts``: held-out head shapes, held-out performer). MAE x100 over the 43
shapes without gaze and tongue. Trained networks are scored with ``imusic eval``; their rows
are printed from checkpoints given with ``--model`` (their stored final evaluation).

    python scripts/study_calibration.py --data DIR [--every 2] [--model CKPT ...] [--json OUT]

Variants: today's 4 s detrend (198 features); neutral-pose calibration without the gyro bias
taken out; calibration with one AHRS pass over the still window (cold filter); the default
calibration (bias out, 3 passes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imusic.hardware.vocabulary import IMU_BLIND_REGIONS, REGION_INDEX  # noqa: E402

VARIANTS = {
    "detrend 4 s (before)": dict(detrend_s=4.0),
    "calibrated, gyro bias kept": dict(detrend_s=0.0, cal=dict(remove_bias=False)),
    "calibrated, 1 AHRS pass": dict(detrend_s=0.0, cal=dict(passes=1)),
    "calibrated (default)": dict(detrend_s=0.0, cal={}),
}


def seen_mask() -> np.ndarray:
    m = np.ones(52, bool)
    for r in IMU_BLIND_REGIONS:
        m[REGION_INDEX[r]] = False
    return m


def score(variant: dict, data: str, every: int) -> dict[str, dict[str, float]]:
    """Ridge and mean face MAE x100 (no gaze/tongue) per held-out set for one variant."""
    from imusic.capture.aligned import read_aligned
    from imusic.model.baselines import Ridge, mean_face
    from imusic.model.calibration import CalibrationConfig
    from imusic.model.data import Normaliser, auto_holdouts, load_recording, session_files, spec_of
    from imusic.model.data import split
    from imusic.model.evaluate import eval_mask

    files = session_files(data)
    kw = {"detrend_s": variant["detrend_s"]}
    if "cal" in variant:
        kw["calibration"] = CalibrationConfig(**variant["cal"])
    spec = spec_of(read_aligned(files[0]), **kw)
    recs = [load_recording(f, spec) for f in files]
    recs = [r for r in recs if int(r.identity) % every == 0 or every == 1]
    sp = split(recs, **auto_holdouts(recs))
    norm = Normaliser.fit(sp.train)
    ridge, _, _ = Ridge.fit_validated(sp.train, norm)
    mf = mean_face(sp.train)
    seen = seen_mask()
    out = {}
    for name, part in sp.parts().items():
        er, em = [], []
        for r in part:
            x = norm(r.features)
            x[~r.valid_imu] = 0.0
            m = eval_mask(r, 48, 4)
            er.append(np.abs(ridge.predict(x) - r.blendshapes)[m][:, seen])
            em.append(np.abs(mf - r.blendshapes)[m][:, seen])
        out[name] = {"ridge": float(np.concatenate(er).mean() * 100),
                     "mean_face": float(np.concatenate(em).mean() * 100)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--every", type=int, default=1, help="every n-th head shape only")
    ap.add_argument("--model", nargs="*", default=[], help="checkpoints: their final eval")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = {}
    for name, v in VARIANTS.items():
        t = time.perf_counter()
        rows[name] = score(v, args.data, args.every)
        print(f"{name:34s} " + "  ".join(
            f"{k}: ridge {s['ridge']:.2f} (mean face {s['mean_face']:.2f})"
            for k, s in rows[name].items()) + f"   [{time.perf_counter() - t:.0f} s]",
            flush=True)
    from imusic.model.evaluate import SEEN_MAE
    for m in args.model:
        cfg = json.loads((Path(m) / "config.json").read_text())
        ev = cfg.get("metrics", {}).get("eval", {})
        for part, res in ev.items():
            cells = "  ".join(f"{meth} {res[meth][SEEN_MAE]:.2f} (jitter {res[meth]['jitter']:.3f})"
                              for meth in ("mean_face", "ridge", "stage1", "imusic")
                              if isinstance(res.get(meth), dict))
            print(f"{m}: {part}: {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
