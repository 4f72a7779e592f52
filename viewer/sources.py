"""What the viewer replays: blendshape tracks loaded from sessions, predictions and takes.

A ``Track`` is a (T, 52) blendshape sequence with its timeline. ``load_track`` reads:

* a session ``.h5``: its ``aligned`` group when present (``capture.aligned.read_aligned``),
  otherwise its recorded ``Blendshapes`` stream (``capture.session.SessionReader``);
* a predictions file: ``.npy`` (T, 52) or (T, 61), or an ``.h5`` with a root dataset
  ``predictions`` or ``blendshapes`` (optional ``rate_hz`` attribute, optional ``t``);
* a Live Link Face ``.csv`` take (``capture.livelink_csv.read_take``).

Every ``.h5`` is opened with ``capture.session.open_h5`` (no SWMR retries on a damaged file); a
file that cannot be read is a ``SourceError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imusic.hardware.vocabulary import N_BLENDSHAPES, N_POSE, N_STREAM_CHANNELS

DEFAULT_RATE_HZ = 60.0


class SourceError(ValueError):
    """A file the viewer cannot replay; the message names the file and the fix."""


@dataclass
class Track:
    """A blendshape sequence: ``blendshapes`` (T, 52) float32 on timeline ``t`` (T,) s, with
    its ``pose`` (T, 9) (head and eye angles, radians; from the last 9 of 61 columns or given,
    zeros when the source has none)."""

    name: str
    rate_hz: float
    t: np.ndarray
    blendshapes: np.ndarray
    pose: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        b = np.asarray(self.blendshapes, np.float32)
        if b.ndim != 2 or b.shape[1] < N_BLENDSHAPES:
            raise SourceError(f"{self.name}: expected (T, 52) or (T, 61) blendshapes, "
                              f"got shape {b.shape}")
        if len(b) == 0:
            raise SourceError(f"{self.name}: no frames to show")
        if self.pose is None:
            self.pose = (b[:, N_BLENDSHAPES:N_STREAM_CHANNELS] if b.shape[1] >= N_STREAM_CHANNELS
                         else np.zeros((len(b), N_POSE), np.float32))
        self.pose = np.asarray(self.pose, np.float32)
        if self.pose.shape != (len(b), N_POSE):
            raise SourceError(f"{self.name}: expected ({len(b)}, 9) pose values, "
                              f"got shape {self.pose.shape}")
        self.blendshapes = b[:, :N_BLENDSHAPES]
        self.t = np.asarray(self.t, np.float64)
        if self.t.shape != (len(b),):
            raise SourceError(f"{self.name}: timeline has {self.t.shape} entries for "
                              f"{len(b)} frames")

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.blendshapes)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as the 61 values of a Blendshapes sample (52 weights, 9 pose)."""
        return np.concatenate([self.blendshapes[index], self.pose[index]])

    @classmethod
    def from_array(cls, blendshapes: np.ndarray, rate_hz: float = DEFAULT_RATE_HZ,
                   name: str = "array") -> "Track":
        """A track from a bare (T, 52|61) array at a fixed rate."""
        b = np.asarray(blendshapes)
        return cls(name, float(rate_hz), np.arange(len(b)) / float(rate_hz), b)


def _source_error(path: Path, err: Exception) -> SourceError:
    """A ``SourceError`` with ``err``'s message, naming ``path`` once."""
    msg = str(err.args[0]) if err.args else type(err).__name__
    return SourceError(msg if str(path) in msg else f"{path}: {msg}")


def _from_session(path: Path) -> Track:
    from imusic.capture.aligned import GROUP, read_aligned
    from imusic.capture.session import SessionError, SessionReader, open_h5, reading

    try:
        with open_h5(path) as h5, reading(path, "the root group"):
            has_aligned = GROUP in h5
        if has_aligned:
            a = read_aligned(path)
            return Track(f"{path.name} (aligned)", a.rate_hz, a.t, a.blendshapes, a.pose)
        with SessionReader(path) as session:
            keys = session.keys_of_type("Blendshapes")
            if not keys:
                raise SourceError(
                    f"{path} has neither an 'aligned' group nor a recorded Blendshapes stream "
                    f"(streams: {session.keys}): record one with 'imusic record' or run "
                    f"'imusic sync {path}'")
            data = session.stream(keys[0])
    except (SessionError, ValueError, KeyError) as err:   # damaged file or aligned group
        raise _source_error(path, err) from err
    values = np.asarray(data.time_series, np.float32)
    if values.ndim != 2 or values.shape[1] < N_BLENDSHAPES:
        raise SourceError(f"{path}: stream {keys[0]!r} has {values.shape[-1]} channels, "
                          "a Blendshapes stream needs at least 52")
    rate = data.spec.nominal_srate or DEFAULT_RATE_HZ
    return Track(f"{path.name} ({data.spec.name})", rate, data.time_stamps, values)


def _from_h5(path: Path, rate_hz: float) -> Track:
    import h5py

    from imusic.capture.session import SessionError, open_h5, reading

    found, is_session = None, False
    try:
        with open_h5(path) as h5, reading(path, "its datasets"):
            is_session = "aligned" in h5 or "streams" in h5 or "schema" in h5.attrs
            for name in ("predictions", "blendshapes"):
                if not is_session and name in h5 and isinstance(h5[name], h5py.Dataset):
                    ds = h5[name]
                    rate = float(ds.attrs.get("rate_hz", h5.attrs.get("rate_hz", rate_hz)))
                    values = ds[()]
                    t = h5["t"][()] if "t" in h5 else np.arange(len(values)) / rate
                    found = (f"{path.name} ({name})", rate, t, values)
                    break
            names = list(h5)
    except SessionError as err:
        raise _source_error(path, err) from err
    if is_session:
        return _from_session(path)
    if found is None:
        raise SourceError(
            f"{path}: not a session and no 'predictions' or 'blendshapes' dataset "
            f"(found {names}); save predictions as a (T, 52) dataset named 'predictions'")
    return Track(*found)


def load_track(path: str | Path, rate_hz: float = DEFAULT_RATE_HZ) -> Track:
    """Load a blendshape track from a session, a predictions file or a Live Link Face take.

    ``rate_hz`` is used only where the file does not say its rate (``.npy``).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file (expected a session .h5, predictions "
                          ".npy/.h5 or a Live Link Face .csv)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        values = np.load(path, allow_pickle=False)
        return Track(path.name, rate_hz, np.arange(len(values)) / rate_hz, values)
    if suffix in (".h5", ".hdf5"):
        return _from_h5(path, rate_hz)
    if suffix == ".csv":
        from imusic.capture.livelink_csv import read_take

        take = read_take(path)
        return Track(path.name, float(take.fps), take.t, take.values)
    raise SourceError(f"{path}: unknown file type {suffix!r}; the viewer reads session .h5, "
                      "predictions .npy/.h5 and Live Link Face .csv")


def pair_frames(a: Track, b: Track) -> np.ndarray:
    """For each frame of ``a``, the index of the frame of ``b`` to show beside it.

    Equal lengths pair by index (a model's predictions for a session); otherwise by time
    since each track's first frame: the last frame of ``b`` at or before that time (what a
    live display would be showing then), clamped at the ends.
    """
    if a.n_frames == b.n_frames:
        return np.arange(a.n_frames)
    ta, tb = a.t - a.t[0], b.t - b.t[0]
    # A nanosecond of slack so that equal times computed two ways still count as equal.
    idx = np.searchsorted(tb, ta + 1e-9, side="right") - 1
    return idx.clip(0, b.n_frames - 1)
