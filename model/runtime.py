"""The streaming inference engine: IMU samples in, one blendshape frame per 60 Hz tick out.

Samples arrive in bursts at the device rate (an LSL inlet of the ``IMU`` stream, or anything
that calls :meth:`Runtime.push`). The runtime keeps them in a ring buffer, interpolates them
onto a 60 Hz grid, runs the same incremental AHRS + features as training
(:class:`model.features.FeatureExtractor`), keeps a feature window, and samples the model with
fixed noise and the previous output carried as a known prefix (:class:`StreamingSampler`).

Each frame is stamped with the time it describes: the tick ``lookahead`` frames before the
newest one (the model looks a few frames ahead).

    rt = Runtime.from_checkpoint()              # the bundled checkpoint
    rt.push(acc, gyro, mag, timestamps)          # (n, S, 3) arrays in rig order, SI units
    for frame in rt.poll():                      # every tick the data now covers
        use(frame.t, frame.blendshapes)

:func:`run_lsl` does the same from an ``IMU`` LSL stream to a ``Blendshapes`` outlet.
Frames hold the model's raw output (it can stray a little outside 0..1, and evaluation scores
it as it is); :func:`stream_values` is the one place that clips what is published.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hardware.vocabulary import BLENDSHAPE_RANGE, N_BLENDSHAPES, N_POSE
from model.checkpoint import Trained, load_model
from model.features import FeatureExtractor
from model.sampling import StreamingSampler

GAP_S = 0.1
"""A tick with no sample within this many seconds on either side is a gap (invalid frame)."""


@dataclass
class Frame:
    """One output frame."""

    t: float                   # the time the frame describes (stream clock, s)
    blendshapes: np.ndarray    # (52,) float32
    latency_s: float           # compute time of this frame (features + model)
    valid: bool                # False while the window holds a gap


class ChannelLayout:
    """Where each site's acc/gyro/mag are among an IMU stream's channels, found by label
    (``site.acc.x`` ...), never by position."""

    def __init__(self, labels: Sequence[str], sites: Sequence[str]) -> None:
        pos = {label: i for i, label in enumerate(labels)}
        self.sites = list(sites)

        def idx(q: str, required: bool) -> np.ndarray | None:
            out = []
            for s in sites:
                row = [pos.get(f"{s}.{q}.{a}") for a in "xyz"]
                if None in row:
                    if required:
                        have = sorted({lb.split(".")[0] for lb in labels if "." in lb})
                        raise KeyError(f"IMU stream has no channels {s}.{q}.x|y|z (it has sites "
                                       f"{have}): use a checkpoint trained for this rig")
                    return None
                out.append(row)
            return np.asarray(out, dtype=np.intp)

        self.acc = idx("acc", True)
        self.gyro = idx("gyro", True)
        self.mag = idx("mag", False)

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(n, C) rows -> acc, gyro, mag (n, S, 3) (mag None when the stream has none)."""
        rows = np.asarray(rows, np.float64)
        return (rows[:, self.acc], rows[:, self.gyro],
                None if self.mag is None else rows[:, self.mag])


class Runtime:
    """Streaming IMUSIC inference (see the module docstring)."""

    def __init__(self, trained: Trained, steps: int | None = None, carry: int | None = None,
                 seed: int = 0, buffer_s: float = 2.0) -> None:
        self.trained = trained
        self.spec = trained.spec
        self.rate = float(self.spec.rate_hz)
        self.steps = int(steps or trained.sampling.get("steps", 4))
        carry = int(trained.sampling.get("carry", 4)) if carry is None else carry
        self.sampler = StreamingSampler(
            trained.net, trained.schedule, trained.past, trained.lookahead, self.steps, carry,
            1, seed, carry_blend=float(trained.sampling.get("carry_blend", 0.5)))
        self.extractor = FeatureExtractor(self.spec)
        self.window = trained.window
        self.feats = np.zeros((self.window, self.spec.n_features), np.float32)
        self.valid = np.zeros(self.window, bool)
        self.n_ticks = 0
        self.next_tick: float | None = None
        self._raw: deque[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._buffer_s = buffer_s
        self.latencies: list[float] = []
        self.last: Frame | None = None
        self.skipped = 0
        """Ticks skipped by ``poll(max_behind_s=...)`` to catch up."""

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, **kw: Any) -> "Runtime":
        """A runtime for a checkpoint folder (``None``: the bundled one)."""
        return cls(load_model(path), **kw)

    @property
    def sites(self) -> list[str]:
        """Sites the model needs, in the order :meth:`push` expects them."""
        return list(self.spec.sites)

    @property
    def delay_s(self) -> float:
        """How far behind the newest sample the output frames are (the look-ahead)."""
        return self.trained.lookahead / self.rate

    def push(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None,
             timestamps: np.ndarray) -> None:
        """Add samples: acc/gyro/mag (n, S, 3) in ``self.sites`` order, SI units; timestamps
        (n,) seconds, increasing. Older samples than the buffer span are dropped."""
        acc, gyro = np.asarray(acc, np.float64), np.asarray(gyro, np.float64)
        if acc.ndim != 3 or acc.shape[1] != len(self.sites):
            raise ValueError(f"push wants (n, {len(self.sites)}, 3) arrays for sites "
                             f"{self.sites}, got {acc.shape}")
        nan = np.full_like(acc[0], np.nan)
        for k, t in enumerate(np.asarray(timestamps, np.float64)):
            if self._raw and t <= self._raw[-1][0]:
                continue   # duplicates and out-of-order samples carry no new information
            self._raw.append((float(t), acc[k], gyro[k], nan if mag is None else
                              np.asarray(mag[k], np.float64)))
        if self.next_tick is None and self._raw:
            # the first tick on the 60 Hz grid at or after the first sample
            self.next_tick = float(np.ceil(self._raw[0][0] * self.rate) / self.rate)
        while self._raw and self._raw[-1][0] - self._raw[0][0] > self._buffer_s:
            self._raw.popleft()

    def push_rows(self, rows: np.ndarray, timestamps: np.ndarray, layout: ChannelLayout) -> None:
        """Add (n, C) rows of an IMU stream, channels found by ``layout``."""
        acc, gyro, mag = layout.split(rows)
        self.push(acc, gyro, mag, timestamps)

    def ready(self) -> bool:
        """True when the data covers the next tick."""
        return (self.next_tick is not None and bool(self._raw)
                and self._raw[-1][0] >= self.next_tick)

    def _interpolate(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Raw signals at time ``t`` (linear between the two samples around it), or None in a
        gap."""
        times = np.fromiter((r[0] for r in self._raw), float, len(self._raw))
        j = int(np.searchsorted(times, t))
        if j == 0:
            return None if times[0] - t > GAP_S else self._raw[0][1:]
        if j >= len(times):
            return None
        t0, t1 = times[j - 1], times[j]
        if t - t0 > GAP_S or t1 - t > GAP_S:
            return None
        w = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
        a, b = self._raw[j - 1], self._raw[j]
        return tuple((1 - w) * a[i] + w * b[i] for i in (1, 2, 3))  # type: ignore[return-value]

    def step(self, sample: bool = True) -> Frame | None:
        """Process the next tick if the data covers it; return its frame (None otherwise).

        ``sample=False`` only advances the features (the orientation filters must see every
        tick) and returns None: how a caller that fell behind skips frames cheaply."""
        if not self.ready():
            return None
        t0 = time.perf_counter()
        tick = float(self.next_tick)  # type: ignore[arg-type]
        sig = self._interpolate(tick)
        valid = sig is not None
        f = (self.extractor.update(sig[0], sig[1], sig[2]) if valid
             else np.zeros(self.spec.n_features, np.float32))
        x = self.trained.norm(f[None])[0]
        if not valid:
            x[:] = 0.0
        if self.n_ticks == 0:
            self.feats[:] = x      # start with a window of the first frame (no blank warm-up)
        self.feats = np.roll(self.feats, -1, axis=0)
        self.feats[-1] = x
        self.valid = np.roll(self.valid, -1)
        self.valid[-1] = valid
        if not valid or not sample:
            self.sampler.reset()   # don't carry a prefix across a gap or a skipped frame
        if not sample:
            self.n_ticks += 1
            self.next_tick = tick + 1.0 / self.rate
            return None
        out = self.sampler.step(torch.from_numpy(self.feats[None]))[0].numpy()
        lat = time.perf_counter() - t0
        self.latencies.append(lat)
        if len(self.latencies) > 10000:
            del self.latencies[:5000]
        self.n_ticks += 1
        self.next_tick = tick + 1.0 / self.rate
        frame = Frame(t=tick - self.delay_s, blendshapes=out.astype(np.float32), latency_s=lat,
                      valid=bool(self.valid[self.trained.past - 1]))
        self.last = frame
        return frame

    def poll(self, max_behind_s: float | None = None) -> list[Frame]:
        """Every frame the data now covers (usually one per 60 Hz tick).

        With ``max_behind_s``, ticks older than that behind the newest sample are skipped
        (features advanced, no frame made), so a slow machine drops frames instead of lagging.
        """
        out = []
        while self.ready():
            newest = self._raw[-1][0]
            behind = max_behind_s is not None and newest - float(self.next_tick) > max_behind_s
            f = self.step(sample=not behind)
            if f is not None:
                out.append(f)
            elif behind:
                self.skipped += 1
        return out

    def latency_stats(self) -> dict[str, float]:
        """p50/p99/max compute latency per frame in milliseconds."""
        if not self.latencies:
            return {}
        a = np.asarray(self.latencies) * 1000
        return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                "max_ms": float(a.max()), "frames": int(len(a))}


def stream_values(blendshapes: np.ndarray) -> list[float]:
    """The 61 ``Blendshapes`` channel values of a frame, as every imusic output publishes them
    (LSL from ``live``/``hybrid``/``demo``, Live Link packets): the 52 blendshapes clipped to
    ``BLENDSHAPE_RANGE`` (the model's raw output strays outside it; ``Frame.blendshapes`` keeps
    the raw values for evaluation), then the 9 pose values, zeros (the model does not estimate
    head and eye pose). The one place published values are clipped (a NaN, which no path is
    known to make, publishes as 0 rather than leave the range)."""
    values = np.asarray(blendshapes, np.float64)[:N_BLENDSHAPES]
    if values.shape != (N_BLENDSHAPES,):
        raise ValueError(f"stream_values wants 52 blendshapes, got shape {values.shape}")
    clipped = np.clip(np.nan_to_num(values, nan=0.0), *BLENDSHAPE_RANGE)
    return [float(v) for v in clipped] + [0.0] * N_POSE


def imu_labels(info: Any) -> list[str]:
    """Channel labels from a ``pylsl.StreamInfo``'s ``desc/channels``."""
    labels = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling("channel")
    if len(labels) != info.channel_count():
        raise KeyError(f"IMU stream {info.name()!r} ({info.source_id()}) lists "
                       f"{len(labels)} channel labels for {info.channel_count()} channels: "
                       "its desc/channels is incomplete")
    return labels


def run_lsl(runtime: Runtime, imu_info: Any, name: str = "imusic-model",
            source_id: str = "imusic-model", stop: threading.Event | None = None,
            duration_s: float | None = None,
            on_frame: Callable[[Frame], None] | None = None) -> dict[str, float]:
    """Read an ``IMU`` LSL stream (``imu_info`` from ``pylsl.resolve_byprop``), publish every
    frame on a ``Blendshapes`` outlet (``desc/source = "imusic-model"``) until ``stop`` is set
    or ``duration_s`` passes. Returns latency statistics."""
    import pylsl

    from capture.arkit_bridge import blendshapes_info

    inlet = pylsl.StreamInlet(imu_info, max_buflen=5,
                              processing_flags=pylsl.proc_clocksync | pylsl.proc_monotonize)
    try:
        full = inlet.info(timeout=5.0)
        layout = ChannelLayout(imu_labels(full), runtime.sites)
        info = blendshapes_info(name, "imusic-model", source_id, rate_hz=runtime.rate,
                                extra={"checkpoint": str(runtime.trained.path),
                                       "ddim_steps": runtime.steps,
                                       "delay_s": f"{runtime.delay_s:.4f}"})
        outlet = pylsl.StreamOutlet(info)
        end = None if duration_s is None else time.monotonic() + duration_s
        while not (stop is not None and stop.is_set()) and (end is None or time.monotonic() < end):
            rows, ts = inlet.pull_chunk(timeout=0.05, max_samples=1024)
            if not ts:
                continue
            runtime.push_rows(np.asarray(rows), np.asarray(ts), layout)
            for frame in runtime.poll():
                outlet.push_sample(stream_values(frame.blendshapes), frame.t)
                if on_frame is not None:
                    on_frame(frame)
        return runtime.latency_stats()
    finally:
        inlet.close_stream()
