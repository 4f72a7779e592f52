"""Aligned sessions (real or twin: one code path) -> features -> windows; splits by head
shape (the session's ``identity``), by performer and by take.

Held-out sets are chosen from the sessions' own attributes, never from name literals:
``auto_holdouts`` picks the last fifth of the identities (head shapes) as held out, the tenth
before them as validation, and the performer with the fewest frames (when another performer
remains to train on). A held-out subject name holds out its identity, so
``id16-1`` (head shape 16 worn again) is held out with ``id16``.

A window ends ``lookahead`` frames after its output frame: the model sees ``past`` frames up to
and including the output frame plus ``lookahead`` future frames, so its output is late by
``lookahead`` frames (4 frames = 67 ms at 60 Hz).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from imusic.capture.aligned import Aligned, read_aligned
from imusic.model.features import (FeatureSpec, compute_features,  # noqa: F401 - re-exported
                                     orientation_of, spec_of)

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

    @property
    def identity(self) -> str:
        """The head shape (twin ``identity`` attribute; a real session's subject)."""
        return str(self.attrs.get("identity", self.subject))

    @property
    def performer(self) -> str:
        """Who performed the motion (``performer`` attribute; else the subject)."""
        return str(self.attrs.get("performer", self.subject))

    @property
    def real_motion(self) -> bool:
        """True unless the motion is procedural."""
        return str(self.attrs.get("motion", "")) != "procedural"


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
    feats = ok = None
    cfile = path.parent / CACHE_DIR / f"{path.stem}-{_cache_key(path, spec)}.npz"
    if cache and cfile.is_file():
        with np.load(cfile, allow_pickle=False) as z:
            feats, ok = z["features"], z["valid"]
    if feats is None or feats.shape != (al.n_frames, spec.n_features):
        # frames before the neutral-pose calibration completes are not valid (ok False)
        feats, ok, _ = compute_features(spec, al.acc, al.gyro, al.mag, al.valid_imu,
                                        sites=al.sites, quat=al.quat, source=str(path),
                                        with_valid=True)
        if cache:
            try:
                cfile.parent.mkdir(exist_ok=True)
                np.savez(cfile, features=feats, valid=ok)
            except OSError:
                pass  # a read-only data folder just means no cache
    return Recording(
        **_names(path, al.attrs), rig_id=al.rig_id, features=feats,
        blendshapes=np.nan_to_num(al.blendshapes.astype(np.float32)),
        valid_imu=al.valid_imu.astype(bool) & np.asarray(ok, bool),
        valid_arkit=al.valid_arkit.astype(bool) & np.all(np.isfinite(al.blendshapes), axis=1))


def _names(path: Path, a: dict[str, Any]) -> dict[str, Any]:
    """The Recording fields that come from a session's attributes (what the split reads)."""
    return {"path": path, "subject": str(a.get("subject", path.stem)),
            "take": str(a.get("take", path.stem)), "source": str(a.get("source", "unknown")),
            "attrs": dict(a)}


def session_meta(path: str | Path) -> Recording:
    """A session as the split sees it (subject, take, identity, performer from its attributes)
    with no signals (zero-length arrays, rig unknown): :func:`split` on these picks sessions
    before any of them is read or has features computed."""
    from imusic.capture.aligned import read_attrs

    path = Path(path)
    empty = np.zeros(0, bool)
    return Recording(**_names(path, read_attrs(path)), rig_id="",
                     features=np.zeros((0, 0), np.float32),
                     blendshapes=np.zeros((0, 0), np.float32), valid_imu=empty,
                     valid_arkit=empty)


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
    """Which recordings train, validate and test (held-out head shapes, takes, performer)."""

    train: list[Recording]
    subjects: list[Recording]     # held-out head shapes, seen takes and performers
    takes: list[Recording]        # held-out takes, seen head shapes
    performers: list[Recording] = field(default_factory=list)  # unseen performer + head shape
    val: list[Recording] = field(default_factory=list)         # validation head shapes

    def parts(self) -> dict[str, list[Recording]]:
        """The evaluation sets by name (empty ones left out)."""
        named = {"heldout_subjects": self.subjects, "heldout_takes": self.takes,
                 "heldout_performer": self.performers}
        return {k: v for k, v in named.items() if v}

    def summary(self) -> dict[str, Any]:
        """Counts, frames and names of each part (for the checkpoint config)."""
        def part(recs: list[Recording]) -> dict[str, Any]:
            return {"sessions": len(recs), "frames": int(sum(r.n_frames for r in recs)),
                    "subjects": sorted({r.subject for r in recs}),
                    "identities": sorted({r.identity for r in recs}),
                    "performers": sorted({r.performer for r in recs}),
                    "takes": sorted({r.take for r in recs}),
                    "sources": sorted({r.source for r in recs})}
        return {"train": part(self.train), "heldout_subjects": part(self.subjects),
                "heldout_takes": part(self.takes), "heldout_performer": part(self.performers),
                "validation_identities": part(self.val)}


def _id_key(v: str) -> tuple[int, str]:
    return (int(v), v) if v.isdigit() else (1 << 30, v)


def auto_holdouts(recs: Sequence[Recording], fraction: float = 0.2,
                  val_fraction: float = 0.1) -> dict[str, list[str]]:
    """Held-out sets from the data: the last ``fraction`` of the identities (head shapes,
    in numeric order) held out, the ``val_fraction`` before them for validation, and the
    performer with the fewest frames (when another performer remains to train on), so most
    of the motion stays in training."""
    ids = sorted({r.identity for r in recs}, key=_id_key)
    n_hold = int(math.ceil(fraction * len(ids))) if len(ids) > 1 else 0
    n_val = max(1, int(round(val_fraction * len(ids)))) if len(ids) - n_hold > 1 else 0
    n_val = min(n_val, max(0, len(ids) - n_hold - 1))
    held = ids[len(ids) - n_hold:] if n_hold else []
    val = ids[len(ids) - n_hold - n_val: len(ids) - n_hold] if n_val else []
    frames: dict[str, int] = {}
    for r in recs:
        frames[r.performer] = frames.get(r.performer, 0) + r.n_frames
    perf = [min(frames, key=lambda p: (frames[p], p))] if len(frames) > 1 else []
    return {"holdout_identities": held, "val_identities": val, "holdout_performers": perf}


def split(recs: Sequence[Recording], holdout_subjects: Sequence[str] = (),
          holdout_takes: Sequence[str] = (), holdout_identities: Sequence[str] = (),
          holdout_performers: Sequence[str] = (), val_identities: Sequence[str] = ()) -> Split:
    """Split by head shape, take and performer. Training sees none of the held-out identities
    (a held-out subject holds out its identity), takes, performers or validation identities."""
    hs = set(holdout_subjects)
    ids = {str(i) for i in holdout_identities} | {r.identity for r in recs if r.subject in hs}
    ht, hp, hv = set(holdout_takes), set(holdout_performers), {str(i) for i in val_identities}
    seen = [r for r in recs if r.take not in ht and r.performer not in hp]
    return Split(
        train=[r for r in seen if r.identity not in ids | hv],
        subjects=[r for r in seen if r.identity in ids],
        takes=[r for r in recs if r.take in ht and r.identity not in ids | hv
               and r.performer not in hp],
        performers=[r for r in recs if r.performer in hp and r.identity in ids],
        val=[r for r in seen if r.identity in hv])


def split_from_config(recs: Sequence[Recording], train_cfg: dict[str, Any]) -> Split:
    """The split a checkpoint was trained with (its ``train`` settings)."""
    g = train_cfg.get
    return split(recs, g("holdout_subjects", []), g("holdout_takes", []),
                 g("holdout_identities", []), g("holdout_performers", []),
                 g("val_identities", []))


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
