"""The streaming inference engine: IMU samples in, one blendshape frame per 60 Hz tick out.

Samples arrive in bursts at the device rate (an LSL inlet of the ``IMU`` stream, or anything
that calls :meth:`Runtime.push`). The runtime keeps them in a ring buffer, interpolates them
onto a 60 Hz grid, runs the same incremental AHRS + features as training
(:class:`model.features.FeatureExtractor`), keeps a feature window, and samples the model with
fixed noise and the previous output carried as a known prefix (:class:`StreamingSampler`).

Which channels a stream must carry follows the checkpoint's ``FeatureSpec.orientation``
(:class:`ChannelLayout`): ``"ahrs"`` needs each site's acc and gyro (mag when there is one);
``"reported"`` (a wearable with on-device fusion, ``site.quat.w|x|y|z``) needs acc and the
quaternion, and a site without gyro gets the rate its orientations imply, in the same
extractor code that made the training features. A stream that lacks a needed quantity is a
:class:`MissingChannels` naming it.

Each frame is stamped with the time it describes: the tick ``lookahead`` frames before the
newest one (the model looks a few frames ahead).

    rt = Runtime.from_checkpoint()              # the bundled checkpoint
    rt.push(acc, gyro, mag, timestamps)          # (n, S, 3) arrays in rig order, SI units
    rt.push(acc, None, None, timestamps, quat=q) # an acc+quat device, "reported" checkpoint
    rt.push_rows(rows, ts, rt.layout(labels))    # or IMU stream rows, channels by label
    for frame in rt.poll():                      # every tick the data now covers
        use(frame.t, frame.blendshapes)

Calibration: a checkpoint whose features are relative to the neutral pose
(``FeatureSpec.calibration``) waits for the performer's first still window
(model/calibration.py); until then every frame is ``valid=False``. ``rt.calibration`` says where
it stands (``done``, ``progress``), ``rt.recalibrate()`` starts over.

The live pipelines (``imusic.live_loop.LiveLoop``) run it from an ``IMU`` LSL stream or a
wearable to a ``Blendshapes`` outlet.
Frames hold the model's raw output (it can stray a little outside 0..1, and evaluation scores
it as it is); :func:`stream_values` is the one place that clips what is published.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from imusic.hardware.vocabulary import BLENDSHAPE_RANGE, N_BLENDSHAPES, N_POSE
from imusic.model.checkpoint import Trained, load_model
from imusic.model.calibration import CalibrationState
from imusic.model.features import FeatureExtractor
from imusic.model.sampling import StreamingSampler

GAP_S = 0.1
"""A tick with no sample within this many seconds on either side is a gap (invalid frame)."""


@dataclass
class Frame:
    """One output frame."""

    t: float                   # the time the frame describes (stream clock, s)
    blendshapes: np.ndarray    # (52,) float32
    latency_s: float           # compute time of this frame (features + model)
    valid: bool                # False while the window holds a gap


class MissingChannels(KeyError):
    """An IMU stream lacks channels the model's features need: ``quantity`` (``acc``,
    ``gyro`` or ``quat``) at ``sites``; ``stream_sites`` are the sites the stream has.
    ``str(err)`` is one line."""

    def __init__(self, quantity: str, sites: Sequence[str], stream_sites: Sequence[str]) -> None:
        self.quantity = quantity
        self.sites = list(sites)
        self.stream_sites = list(stream_sites)
        super().__init__(self.message)

    @property
    def channels(self) -> str:
        """The first missing site's channels, as labels: ``site.quat.w|x|y|z``."""
        return f"{self.sites[0]}.{self.quantity}.{'|'.join(axes_of(self.quantity))}"

    @property
    def message(self) -> str:
        """The one line."""
        more = f" (and {len(self.sites) - 1} more sites)" if len(self.sites) > 1 else ""
        return (f"IMU stream has no channels {self.channels}{more} (it has sites "
                f"{sorted(self.stream_sites)}): use a checkpoint trained for this rig")

    def __str__(self) -> str:
        return self.message


def axes_of(quantity: str) -> tuple[str, ...]:
    """The label axes of a quantity (``w x y z`` for quaternions, else ``x y z``)."""
    from imusic.firmware_bridge.streams import axes_of as contract_axes

    return contract_axes(quantity)


class Channels(NamedTuple):
    """One block of IMU rows split per quantity, (n, S, 3) or (n, S, 4) in the model's site
    order; None for a quantity the stream does not carry (or the model does not use)."""

    acc: np.ndarray
    gyro: np.ndarray | None
    mag: np.ndarray | None
    quat: np.ndarray | None


class ChannelLayout:
    """Where each site's quantities are among an IMU stream's channels, found by label
    (``site.acc.x``, ``site.quat.w`` ...), never by position.

    What is required follows the features' orientation source: ``"ahrs"`` needs acc and gyro
    (mag optional, quaternions ignored); ``"reported"`` needs acc and quat (gyro and mag
    optional: a site without gyro gets the rate its orientations imply, as in training).
    A missing required quantity raises :class:`MissingChannels`."""

    def __init__(self, labels: Sequence[str], sites: Sequence[str],
                 orientation: str = "ahrs") -> None:
        from imusic.firmware_bridge.streams import channel_label, parse_label

        pos = {label: i for i, label in enumerate(labels)}
        self.sites = list(sites)
        self.orientation = orientation
        have = sorted({p[0] for p in map(parse_label, labels) if p is not None})

        def idx(q: str, required: bool) -> np.ndarray | None:
            rows = [[pos.get(channel_label(s, q, a)) for a in axes_of(q)] for s in sites]
            missing = [s for s, row in zip(sites, rows) if None in row]
            if missing and required:
                raise MissingChannels(q, missing, have)
            if len(missing) == len(sites):
                return None
            # an optional quantity some sites lack: -1 there, NaN in ``split`` (per site, as
            # the features treat a site without gyro or mag)
            return np.asarray([[-1 if None in row else i for i in row] for row in rows],
                              dtype=np.intp)

        reported = orientation == "reported"
        self.acc = idx("acc", True)
        self.gyro = idx("gyro", not reported)
        self.mag = idx("mag", False)
        self.quat = idx("quat", True) if reported else None

    def split(self, rows: np.ndarray) -> Channels:
        """(n, C) rows -> :class:`Channels` (a quantity the stream lacks is None)."""
        rows = np.asarray(rows, np.float64)

        def take(ix: np.ndarray | None) -> np.ndarray | None:
            if ix is None:
                return None
            out = rows[:, ix]
            out[:, ix[:, 0] < 0] = np.nan
            return out

        return Channels(rows[:, self.acc], take(self.gyro), take(self.mag), take(self.quat))


class Runtime:
    """Streaming IMUSIC inference (see the module docstring)."""

    def __init__(self, trained: Trained, steps: int | None = None, carry: int | None = None,
                 seed: int = 0, buffer_s: float = 2.0, carry_blend: float | None = None) -> None:
        self.trained = trained
        self.spec = trained.spec
        self.rate = float(self.spec.rate_hz)
        # DDIM steps, carried frames and their blend: the checkpoint's ``sampling`` defaults
        # (chosen on its validation sessions by scripts/choose_runtime.py) unless given
        self.steps = int(steps or trained.sampling["steps"])
        carry = int(trained.sampling["carry"]) if carry is None else carry
        blend = (float(trained.sampling["carry_blend"]) if carry_blend is None
                 else float(carry_blend))
        self.sampler = StreamingSampler(
            trained.net, trained.schedule, trained.past, trained.lookahead, self.steps, carry,
            1, seed, carry_blend=blend)
        self.extractor = FeatureExtractor(self.spec)
        self.window = trained.window
        self.feats = np.zeros((self.window, self.spec.n_features), np.float32)
        self.valid = np.zeros(self.window, bool)
        self.n_ticks = 0
        self.next_tick: float | None = None
        self._raw: deque[tuple[float, ...]] = deque()
        """(t, acc, gyro, mag, quat) per sample; NaN where the device has none."""
        self._buffer_s = buffer_s
        self.latencies: list[float] = []
        self.last: Frame | None = None
        self.skipped = 0
        """Ticks skipped by ``poll(max_behind_s=...)`` to catch up."""
        self.on_tick: Callable[[float, tuple[np.ndarray, ...] | None], None] | None = None
        """Called with every tick's time and its interpolated (acc, gyro, mag, quat) ((S, 3)
        each, quat (S, 4); NaN where the device has none) in ``sites`` order (None in a gap),
        skipped ticks included: the head pose hooks in here."""

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, **kw: Any) -> "Runtime":
        """A runtime for a checkpoint folder (``None``: the bundled one)."""
        return cls(load_model(path), **kw)

    @property
    def sites(self) -> list[str]:
        """Sites the model needs, in the order :meth:`push` expects them."""
        return list(self.spec.sites)

    @property
    def calibration(self) -> CalibrationState:
        """The neutral-pose calibration (``done``, ``progress`` 0..1, ``at_frame``, biases);
        frames before it is done are marked invalid. Checkpoints without calibration
        (detrended features) are done from the start."""
        return self.extractor.calibration

    def recalibrate(self) -> None:
        """Look for a new still neutral window (the performer holds still again); frames are
        invalid until it is found."""
        self.extractor.recalibrate()
        self.sampler.reset()

    @property
    def delay_s(self) -> float:
        """How far behind the newest sample the output frames are (the look-ahead)."""
        return self.trained.lookahead / self.rate

    def push(self, acc: np.ndarray, gyro: np.ndarray | None, mag: np.ndarray | None,
             timestamps: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Add samples: acc/gyro/mag (n, S, 3) in ``self.sites`` order, SI units; ``quat``
        (n, S, 4) the device's orientation (w, x, y, z, sensor-to-earth); timestamps (n,)
        seconds, increasing. gyro/mag may be None (or NaN per site) where the device has none;
        what the features need (:attr:`needs`) may not. Older samples than the buffer span are
        dropped."""
        acc = np.asarray(acc, np.float64)
        if acc.ndim != 3 or acc.shape[1] != len(self.sites):
            raise ValueError(f"push wants (n, {len(self.sites)}, 3) arrays for sites "
                             f"{self.sites}, got {acc.shape}")
        given = {"gyro": gyro, "quat": quat}
        lacking = [q for q in self.needs if q in given and given[q] is None]
        if lacking:
            raise ValueError(f"the model's features (orientation '{self.spec.orientation}') "
                             f"need {' and '.join(lacking)} samples")
        n, n_s = len(acc), len(self.sites)

        def arr(x: np.ndarray | None, width: int) -> np.ndarray:
            return (np.full((n, n_s, width), np.nan) if x is None
                    else np.asarray(x, np.float64).reshape(n, n_s, width))

        gyro_a, mag_a, quat_a = arr(gyro, 3), arr(mag, 3), arr(quat, 4)
        for k, t in enumerate(np.asarray(timestamps, np.float64)):
            if self._raw and t <= self._raw[-1][0]:
                continue   # duplicates and out-of-order samples carry no new information
            self._raw.append((float(t), acc[k], gyro_a[k], mag_a[k], quat_a[k]))
        if self.next_tick is None and self._raw:
            # the first tick on the 60 Hz grid at or after the first sample
            self.next_tick = float(np.ceil(self._raw[0][0] * self.rate) / self.rate)
        while self._raw and self._raw[-1][0] - self._raw[0][0] > self._buffer_s:
            self._raw.popleft()

    def push_rows(self, rows: np.ndarray, timestamps: np.ndarray, layout: ChannelLayout) -> None:
        """Add (n, C) rows of an IMU stream, channels found by ``layout``."""
        ch = layout.split(rows)
        self.push(ch.acc, ch.gyro, ch.mag, timestamps, quat=ch.quat)

    @property
    def needs(self) -> tuple[str, ...]:
        """The quantities every sample must carry for this checkpoint's features."""
        return ("acc", "quat") if self.spec.orientation == "reported" else ("acc", "gyro")

    def layout(self, labels: Sequence[str]) -> ChannelLayout:
        """Where this checkpoint's quantities are among an IMU stream's ``labels``
        (:class:`MissingChannels` when the stream lacks one it needs)."""
        return ChannelLayout(labels, self.sites, self.spec.orientation)

    def ready(self) -> bool:
        """True when the data covers the next tick."""
        return (self.next_tick is not None and bool(self._raw)
                and self._raw[-1][0] >= self.next_tick)

    def _interpolate(self, t: float) -> tuple[np.ndarray, ...] | None:
        """Raw signals (acc, gyro, mag, quat) at time ``t`` (linear between the two samples
        around it; quaternions on the same hemisphere first, the features renormalise), or
        None in a gap."""
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
        qa, qb = a[4], b[4]
        qb = np.where(np.sum(qa * qb, axis=-1, keepdims=True) < 0, -qb, qb)
        return tuple((1 - w) * a[i] + w * b[i] for i in (1, 2, 3)) + ((1 - w) * qa + w * qb,)

    def step(self, sample: bool = True) -> Frame | None:
        """Process the next tick if the data covers it; return its frame (None otherwise).

        ``sample=False`` only advances the features (the orientation filters must see every
        tick) and returns None: how a caller that fell behind skips frames cheaply."""
        if not self.ready():
            return None
        t0 = time.perf_counter()
        tick = self._advance(sample)
        if not sample:
            return None
        out = self.sampler.step(torch.from_numpy(self.feats[None]))[0].numpy()
        return self._frame(tick, out, time.perf_counter() - t0)

    def _advance(self, sample: bool) -> float:
        """Features and window for the next tick (which the data covers); returns the tick."""
        tick = float(self.next_tick)  # type: ignore[arg-type]
        sig = self._interpolate(tick)
        valid = sig is not None
        if self.on_tick is not None:
            self.on_tick(tick, sig)
        f = (self.extractor.update(sig[0], sig[1], sig[2], quat=sig[3]) if valid
             else np.zeros(self.spec.n_features, np.float32))
        valid = valid and self.extractor.ok     # before the neutral pose is found: invalid
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
        self.n_ticks += 1
        self.next_tick = tick + 1.0 / self.rate
        return tick

    def _frame(self, tick: float, out: np.ndarray, lat: float,
               valid: bool | None = None) -> Frame:
        self.latencies.append(lat)
        if len(self.latencies) > 10000:
            del self.latencies[:5000]
        frame = Frame(t=tick - self.delay_s, blendshapes=out.astype(np.float32), latency_s=lat,
                      valid=bool(self.valid[self.trained.past - 1]) if valid is None else valid)
        self.last = frame
        return frame

    def _two_ready(self) -> bool:
        """The next two ticks can be sampled as one batch: the data covers both without a gap,
        the neutral pose is found, the window is valid and the sampler's frames do not depend
        on its own earlier output."""
        if not (self.sampler.independent and self.extractor.ok and bool(np.all(self.valid))):
            return False
        second = float(self.next_tick) + 1.0 / self.rate  # type: ignore[arg-type]
        return (self._raw[-1][0] >= second and self._interpolate(float(self.next_tick)) is not None
                and self._interpolate(second) is not None)

    def _two_at_once(self) -> list[Frame]:
        """The next two ticks sampled as one batch (see :meth:`frames`)."""
        t0 = time.perf_counter()
        ticks, windows, valids = [], [], []
        for _ in range(2):
            ticks.append(self._advance(True))
            windows.append(self.feats.copy())
            valids.append(bool(self.valid[self.trained.past - 1]))
        outs = self.sampler.step_independent(torch.from_numpy(np.stack(windows))).numpy()
        lat = time.perf_counter() - t0
        return [self._frame(t, o, lat, v) for t, o, v in zip(ticks, outs, valids)]

    def poll(self, max_behind_s: float | None = None) -> list[Frame]:
        """Every frame the data now covers (usually one per 60 Hz tick).

        With ``max_behind_s``, ticks older than that behind the newest sample are skipped
        (features advanced, no frame made), so a slow machine drops frames instead of lagging.
        """
        return list(self.frames(max_behind_s))

    def frames(self, max_behind_s: float | None = None) -> Iterator[Frame]:
        """:meth:`poll`, one frame at a time: each is yielded as soon as it is made, so a
        caller can publish it before the next tick is computed. Two ticks ready at once (a
        20 ms device packet completes two 60 Hz ticks one time in five) are sampled as one
        batch when the sampler's frames do not depend on its own earlier output
        (``StreamingSampler.independent``: carry_blend 0 and the carried prefix full), which
        gives the same frames as one by one in about one compute instead of two."""
        while self.ready():
            newest = self._raw[-1][0]
            behind = max_behind_s is not None and newest - float(self.next_tick) > max_behind_s
            if not behind and self._two_ready():
                yield from self._two_at_once()
                continue
            f = self.step(sample=not behind)
            if f is not None:
                yield f
            elif behind:
                self.skipped += 1

    def latency_stats(self) -> dict[str, float]:
        """p50/p99/max compute latency per frame in milliseconds."""
        if not self.latencies:
            return {}
        a = np.asarray(self.latencies) * 1000
        return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                "max_ms": float(a.max()), "frames": int(len(a))}


def stream_values(blendshapes: np.ndarray, head: np.ndarray | None = None) -> list[float]:
    """The 61 ``Blendshapes`` channel values of a frame, as every imusic output publishes them
    (LSL from ``live``/``hybrid``/``demo``, Live Link packets): the 52 blendshapes clipped to
    ``BLENDSHAPE_RANGE`` (the model's raw output strays outside it; ``Frame.blendshapes`` keeps
    the raw values for evaluation), then the head's yaw, pitch and roll (``head``, radians,
    from ``model.headpose``; zeros when None) and the eye pose (not estimated: zeros). The one
    place published values are clipped (a NaN, which no path is known to make, publishes as 0
    rather than leave the range)."""
    values = np.asarray(blendshapes, np.float64)[:N_BLENDSHAPES]
    if values.shape != (N_BLENDSHAPES,):
        raise ValueError(f"stream_values wants 52 blendshapes, got shape {values.shape}")
    clipped = np.clip(np.nan_to_num(values, nan=0.0), *BLENDSHAPE_RANGE)
    pose = [0.0] * N_POSE
    if head is not None:
        pose[:3] = [float(v) for v in head]
    return [float(v) for v in clipped] + pose


def imu_labels(info: Any) -> list[str]:
    """Channel labels of an IMU stream's full ``pylsl.StreamInfo`` (``streams.parse_imu``:
    ``StreamContractError``, a LookupError, when its channels are not the contract's)."""
    from imusic.firmware_bridge.streams import parse_imu

    return list(parse_imu(info).labels)

