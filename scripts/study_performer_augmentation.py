"""Study: does making more performers out of the one real performer help an unseen one?

Each training session's take is, with augmentation, mirrored left/right with probability 0.5,
every blendshape scaled by its own log-normal gain and played faster or slower. A ridge
regressor (model.baselines.Ridge, lambda chosen on its own training split) is fitted on twin
sessions of head shapes 0-13 driven by the real takes, with and without augmentation, and
scored on the VALIDATION head shapes 14-15 (never the held-out 16-19): procedural motion (a
performer neither saw) and a crop of a real take (the seen performer). TWIN DATA.

    .venv/bin/python scripts/study_performer_augmentation.py [--takes DIR] [--seconds 48]

Result (2026-12-02): model/MODEL.md, "Held-out performer on held-out head shapes".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imusic.hardware.vocabulary import ARKIT_NAMES, IMU_SEEN_INDEX  # noqa: E402
from imusic.model.baselines import Ridge, mean_face  # noqa: E402
from imusic.model.data import Normaliser, load_recordings  # noqa: E402
from imusic.model.evaluate import load_for_eval  # noqa: E402
from imusic.model.occlusion import procedural_source  # noqa: E402
from imusic.model.simulate import NEUTRAL_S, MotionSource, load_take, write_session  # noqa: E402

GAIN_SIGMA = 0.35
"""Log-normal sigma of each blendshape's gain."""
SPEED = (0.75, 1.33)
"""Range of the playback speed (log-uniform)."""
TRAIN_HEADS = tuple(range(14))
TEST_HEADS = (14, 15)


def mirrored() -> np.ndarray:
    """The blendshape index of each shape's left/right twin (itself when it has none)."""
    index = np.arange(len(ARKIT_NAMES))
    for i, name in enumerate(ARKIT_NAMES):
        for side, other in (("Left", "Right"), ("Right", "Left")):
            if name.endswith(side):
                index[i] = ARKIT_NAMES.index(name[: -len(side)] + other)
    return index


def augment(src: MotionSource, rng: np.random.Generator) -> MotionSource:
    """Another performer made of ``src``: mirrored (p 0.5), scaled per shape, re-timed."""
    bs, pose, valid = src.blendshapes, src.pose, src.valid
    if rng.random() < 0.5:
        bs = bs[:, mirrored()]
    bs = np.clip(bs * np.exp(rng.normal(0, GAIN_SIGMA, bs.shape[1])), 0, 1)
    speed = np.exp(rng.uniform(*np.log(SPEED)))
    t, tn = np.arange(len(bs)), np.arange(0, len(bs) - 1, speed)
    bs = np.stack([np.interp(tn, t, np.nan_to_num(bs[:, c])) for c in range(bs.shape[1])], 1)
    near = np.round(tn).astype(int)
    return MotionSource(src.name + "-aug", bs, pose[near], valid[near], performer=src.performer)


def crop(n: int, frames: int, rng: np.random.Generator) -> slice:
    start = int(rng.integers(0, max(n - frames, 0) + 1))
    return slice(start, start + min(n, frames))


def score(ridge: Ridge, norm: Normaliser, mean: np.ndarray, recs: list) -> tuple[float, float]:
    """MAE x100 over the shapes the IMUs see: ridge, mean face."""
    err_r, err_m = [], []
    for r in recs:
        x = norm(r.features)
        x[~r.valid_imu] = 0.0
        keep = r.valid_arkit & r.valid_imu
        truth = r.blendshapes[keep][:, IMU_SEEN_INDEX]
        err_r.append(np.abs(np.clip(ridge.predict(x), 0, 1)[keep][:, IMU_SEEN_INDEX] - truth))
        err_m.append(np.abs(mean[IMU_SEEN_INDEX][None] - truth))
    return float(np.concatenate(err_r).mean() * 100), float(np.concatenate(err_m).mean() * 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=Path, default=REPO.parent / "shared" / "data" / "arkit")
    parser.add_argument("--seconds", type=float, default=48.0)
    args = parser.parse_args()

    # prepare: the bundled checkpoint's rig and features, the takes, the test sessions
    tr = load_for_eval(None)
    rig = tr.config["rig"]["id"]
    takes = [load_take(p) for p in sorted(args.takes.rglob("*.csv"))]
    if not takes:
        print(f"{args.takes}: no Live Link Face takes (*.csv); give --takes DIR", file=sys.stderr)
        return 1
    frames = int(args.seconds * 60)
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "test"
        for head in TEST_HEADS:
            for k in range(2):
                src = procedural_source(args.seconds, 9000 + k)
                write_session(test / f"id{head:02d}_procedural{k}.h5", src, slice(0, frames),
                              f"id{head:02d}", head, rig, 0, 9100 + 10 * head + k,
                              neutral_s=NEUTRAL_S)
            write_session(test / f"id{head:02d}_seen.h5", takes[0],
                          crop(len(takes[0].blendshapes), frames, np.random.default_rng(head)),
                          f"id{head:02d}", head, rig, 0, 9200 + head, neutral_s=NEUTRAL_S)
        tests = load_recordings(test, tr.spec)
        groups = {"unseen performer (procedural)": [r for r in tests if "procedural" in r.path.name],
                  "seen performer": [r for r in tests if "seen" in r.path.name]}
        # loop: the same sessions with and without augmentation
        rows = []
        for aug in (False, True):
            folder = Path(tmp) / f"train{int(aug)}"
            for head in TRAIN_HEADS:
                for j, src in enumerate(takes):
                    rng = np.random.default_rng([head, j, int(aug)])
                    s = augment(src, rng) if aug else src
                    write_session(folder / f"id{head:02d}_{s.name}.h5", s,
                                  crop(len(s.blendshapes), frames, rng), f"id{head:02d}", head,
                                  rig, 0, 1000 * head + j, neutral_s=NEUTRAL_S)
            recs = load_recordings(folder, tr.spec)
            norm = Normaliser.fit(recs)
            ridge, lam, _ = Ridge.fit_validated(recs, norm)
            for name, group in groups.items():
                r, m = score(ridge, norm, mean_face(recs), group)
                rows.append((aug, name, r, m, lam))
    # save: print the table
    print("MAE x100 without gaze/tongue, TWIN DATA, validation heads 14-15")
    print(f"{'augmented':10s} {'test motion':32s} {'ridge':>6s} {'mean face':>9s}")
    for aug, name, r, m, lam in rows:
        print(f"{str(aug):10s} {name:32s} {r:6.2f} {m:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
