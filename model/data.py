"""Aligned sessions (real or twin: one code path) -> features -> windows; splits by subject
and by take.

A window ends ``lookahead`` frames after its output frame: the model sees ``past`` frames up to
and including the output frame plus ``lookahead`` future frames, so its output is late by
``lookahead`` frames (4 frames = 67 ms at 60 Hz).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from capture.aligned import Aligned, read_aligned
from model.features import FeatureSpec, compute_features

CACHE_DIR = ".imusic-features"


@dataclass
class Recording:
    """One aligned session turned into model inputs and targets."""

    path: Path
    subject: str
    take: str
    source: str
    rig_id: str
    features: np.ndarray          # (N, F) float32, un-normalised
    blendshapes: np.ndarray       # (N, 52) float32
    valid_imu: np.ndarray         # (N,) bool
    valid_arkit: np.ndarray       # (N,) bool
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Frames on the 60 Hz timeline."""
        return len(self.features)


def session_files(root: str | Path) -> list[Path]:
    """Session files (``*.h5``) under a folder (or the file itself), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*.h5") if CACHE_DIR not in p.parts)
    if not files:
        raise FileNotFoundError(f"no session files (*.h5) under {root}: make some with "
                                "'imusic simulate -o DIR' or record and 'imusic sync' them")
    return files


def orientation_of(aligned: Aligned) -> str:
    """``"reported"`` when the session carries the device's orientation and no gyroscope to
    run the AHRS on (an orientation device), else ``"ahrs"``."""
    return "reported" if aligned.has_quat and not aligned.has_gyro else "ahrs"


def spec_of(aligned: Aligned, **kw: Any) -> FeatureSpec:
    """The feature spec that matches a session's rig (and its orientation source, unless
    ``orientation`` is given)."""
    kw.setdefault("orientation", orientation_of(aligned))
    return FeatureSpec(sites=tuple(aligned.sites), reference=aligned.reference,
                       rate_hz=float(aligned.rate_hz), **kw)


def _cache_key(path: Path, spec: FeatureSpec) -> str:
    st = path.stat()
    blob = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, spec.to_dict()])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_recording(path: str | Path, spec: FeatureSpec | None = None,
                   cache: bool = True) -> Recording:
    """Read a session's ``aligned`` group and compute its features with ``spec`` (by default
    the spec of the session's own rig). Features are cached beside the data, keyed by the file's
    size, mtime and the spec, because the AHRS pass is the slow part of loading."""
    path = Path(path)
    al = read_aligned(path)
    if abs(al.rate_hz - 60.0) > 1e-6 and spec is None:
        raise ValueError(f"{path}: aligned rate is {al.rate_hz} Hz; the model runs at 60 Hz "
                         "(re-run 'imusic sync' with the default rate)")
    spec = spec or spec_of(al)
    feats = None
    cfile = path.parent / CACHE_DIR / f"{path.stem}-{_cache_key(path, spec)}.npy"
    if cache and cfile.is_file():
        feats = np.load(cfile, allow_pickle=False)
    if feats is None or feats.shape != (al.n_frames, spec.n_features):
        feats = compute_features(spec, al.acc, al.gyro, al.mag, al.valid_imu, sites=al.sites,
                                 quat=al.quat, source=str(path))
        if cache:
            try:
                cfile.parent.mkdir(exist_ok=True)
                np.save(cfile, feats, allow_pickle=False)
            except OSError:
                pass  # a read-only data folder just means no cache
    a = al.attrs
    return Recording(
        path=path, subject=str(a.get("subject", path.stem)), take=str(a.get("take", path.stem)),
        source=str(a.get("source", "unknown")), rig_id=al.rig_id, features=feats,
        blendshapes=np.nan_to_num(al.blendshapes.astype(np.float32)),
        valid_imu=al.valid_imu.astype(bool),
        valid_arkit=al.valid_arkit.astype(bool) & np.all(np.isfinite(al.blendshapes), axis=1),
        attrs=dict(a))


def load_recordings(root: str | Path, spec: FeatureSpec | None = None,
                    progress: bool = False) -> list[Recording]:
    """Every session under ``root``; all must share one rig (the first file's, or ``spec``)."""
    files = session_files(root)
    if spec is None:
        spec = spec_of(read_aligned(files[0]))
    it: Iterable[Path] = files
    if progress:
        from rich.progress import track
        it = track(files, description="features (AHRS)", transient=True)
    return [load_recording(f, spec) for f in it]


@dataclass
class Split:
    """Which recordings train and which test (held-out subjects, held-out takes)."""

    train: list[Recording]
    subjects: list[Recording]     # unseen subjects, seen takes
    takes: list[Recording]        # unseen takes, seen subjects

    def summary(self) -> dict[str, Any]:
        """Counts, frames and names of each part (for the checkpoint config)."""
        def part(recs: list[Recording]) -> dict[str, Any]:
            return {"sessions": len(recs), "frames": int(sum(r.n_frames for r in recs)),
                    "subjects": sorted({r.subject for r in recs}),
                    "takes": sorted({r.take for r in recs}),
                    "sources": sorted({r.source for r in recs})}
        return {"train": part(self.train), "heldout_subjects": part(self.subjects),
                "heldout_takes": part(self.takes)}


def split(recs: Sequence[Recording], holdout_subjects: Sequence[str],
          holdout_takes: Sequence[str]) -> Split:
    """Split by subject and by take: training sees neither held-out subjects nor held-out takes;
    recordings that are both held out belong to no part."""
    hs, ht = set(holdout_subjects), set(holdout_takes)
    return Split(train=[r for r in recs if r.subject not in hs and r.take not in ht],
                 subjects=[r for r in recs if r.subject in hs and r.take not in ht],
                 takes=[r for r in recs if r.take in ht and r.subject not in hs])


@dataclass
class Normaliser:
    """Per-channel feature mean and standard deviation (from training frames only)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, recs: Sequence[Recording]) -> "Normaliser":
        """Statistics over the valid IMU frames of ``recs``."""
        x = np.concatenate([r.features[r.valid_imu] for r in recs]).astype(np.float64)
        return cls(x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-3).astype(np.float32))

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[float]]) -> "Normaliser":
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


class WindowDataset(torch.utils.data.Dataset):
    """Windows of ``past + lookahead`` frames; item = (features (W, F) normalised, targets
    (W, 52), mask (W,) of frames with valid ground truth and IMU). Windows whose output frame
    is invalid are skipped; invalid IMU frames inside a window are zero features (the mean)."""

    def __init__(self, recs: Sequence[Recording], norm: Normaliser, past: int, lookahead: int,
                 stride: int = 1) -> None:
        self.past, self.lookahead = past, lookahead
        self.window = past + lookahead
        self.x, self.y, self.m, self.index = [], [], [], []
        for i, r in enumerate(recs):
            x = norm(r.features)
            x[~r.valid_imu] = 0.0
            self.x.append(torch.from_numpy(x))
            self.y.append(torch.from_numpy(r.blendshapes))
            valid = r.valid_imu & r.valid_arkit
            self.m.append(torch.from_numpy(valid))
            ends = np.arange(self.window, r.n_frames + 1, stride)      # exclusive window ends
            out = ends - lookahead - 1                                 # output frame index
            ends = ends[valid[out]]
            self.index.extend((i, int(e)) for e in ends)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, e = self.index[k]
        s = e - self.window
        return self.x[i][s:e], self.y[i][s:e], self.m[i][s:e]
