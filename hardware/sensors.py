"""Sensor parts and their error model; the device clock; int16 quantisation.

Part figures come from ``hardware/data/sensor_parts.json`` (datasheet values with citations,
assumptions marked as such). Internally everything is SI: m/s^2, rad/s, uT.

Error model of one 3-axis sensor (``corrupt``), applied to the ideal signal ``x`` (N, 3):

    y = (I + S + C) x + b0 + b_rw(t) + n(t),   then saturation and 16-bit quantisation

with ``S`` a diagonal scale error (std ``scale_error``), ``C`` off-diagonal cross-axis
(misalignment) terms (std ``cross_axis``), ``b0`` the turn-on bias (std ``bias_turn_on``),
``b_rw`` a bias random walk (density ``bias_random_walk``), ``n`` white noise with std
``noise_density * sqrt(rate_hz / 2)`` (noise bandwidth = Nyquist of the output rate; no extra
digital low-pass is modelled) or ``noise_rms`` per sample (magnetometers).
Mounting error (a small random rotation of the chip on the skin) is applied by
``hardware.physics``. All draws come from the generator passed in: same seed, same bytes.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PARTS_PATH = Path(__file__).parent / "data" / "sensor_parts.json"
"""Datasheet figures of the supported parts."""

STANDARD_GRAVITY = 9.80665
"""m/s^2 per g."""

UNIT_TO_SI = {"g": STANDARD_GRAVITY, "dps": math.pi / 180.0, "gauss": 100.0}
"""Datasheet unit -> SI unit used in the twin (m/s^2, rad/s, uT)."""

SI_UNITS = {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}
"""The SI unit of each quantity."""


@dataclass(frozen=True)
class QuantitySpec:
    """Datasheet model of one 3-axis quantity of a part, in SI units."""

    quantity: str                   # "acc" | "gyro" | "mag"
    unit: str                       # datasheet unit ("g", "dps", "gauss")
    ranges: tuple[float, ...]       # selectable full scales, datasheet unit
    default_range: float
    adc_bits: int
    noise_density: float = 0.0      # SI / sqrt(Hz)
    noise_rms: float = 0.0          # SI per sample (used when noise_density is 0)
    bias_turn_on: float = 0.0       # SI, 1 sigma per axis
    bias_random_walk: float = 0.0   # SI / s / sqrt(Hz)
    scale_error: float = 0.0        # fraction, 1 sigma
    cross_axis: float = 0.0         # fraction, 1 sigma per off-diagonal term

    def full_scale(self, range_: float | None = None) -> float:
        """Full scale (SI) of a range setting (datasheet unit; default the part's default)."""
        r = self.default_range if range_ is None else range_
        if r not in self.ranges:
            raise ValueError(f"{self.quantity} range {r} {self.unit} not available; "
                             f"choose one of {self.ranges}")
        return float(r) * UNIT_TO_SI[self.unit]

    def scale(self, range_: float | None = None) -> float:
        """SI value of one count (LSB) at a range setting: full scale / 2^(bits-1)."""
        return self.full_scale(range_) / float(2 ** (self.adc_bits - 1))

    def white_std(self, rate_hz: float) -> float:
        """Std (SI) of the white noise of one sample at ``rate_hz``."""
        if self.noise_density > 0:
            return self.noise_density * math.sqrt(rate_hz / 2.0)
        return self.noise_rms


@dataclass(frozen=True)
class Part:
    """A sensor part: its quantities and the citation for its figures."""

    name: str
    maker: str
    citation: str
    quantities: tuple[str, ...]
    specs: dict[str, QuantitySpec] = field(default_factory=dict)

    def spec(self, quantity: str) -> QuantitySpec:
        """The model of one quantity of this part."""
        return self.specs[quantity]


@functools.cache
def load_parts(path: Path | str = PARTS_PATH) -> dict[str, Part]:
    """Parts by name from the datasheet file (cached)."""
    path = Path(path)
    data = json.loads(path.read_text())
    out: dict[str, Part] = {}
    for name, p in data["parts"].items():
        specs = {}
        for q in p["quantities"]:
            d = p[q]
            k = UNIT_TO_SI[d["unit"]]
            specs[q] = QuantitySpec(
                quantity=q, unit=d["unit"], ranges=tuple(d["ranges"]),
                default_range=d["default_range"], adc_bits=int(d["adc_bits"]),
                noise_density=d.get("noise_density", 0.0) * k,
                noise_rms=d.get("noise_rms", 0.0) * k,
                bias_turn_on=d.get("bias_turn_on", 0.0) * k,
                bias_random_walk=d.get("bias_random_walk", 0.0) * k,
                scale_error=d.get("scale_error", 0.0), cross_axis=d.get("cross_axis", 0.0))
        out[name] = Part(name=name, maker=p["maker"], citation=p["citation"],
                         quantities=tuple(p["quantities"]), specs=specs)
    return out


def part_spec(part: str, quantity: str) -> QuantitySpec:
    """The spec of ``quantity`` from a site part string such as ``"QMI8658C+QMC5883P"``."""
    parts = load_parts()
    for name in part.split("+"):
        p = parts[name.strip()]
        if quantity in p.quantities:
            return p.spec(quantity)
    raise KeyError(f"part {part!r} measures no {quantity}")


# --- quantisation ---------------------------------------------------------------------------

def to_counts(values: np.ndarray, scale: float | np.ndarray, bits: int = 16) -> np.ndarray:
    """Quantise SI values to signed ADC counts (``int16`` for 16 bits), saturating at the
    ends of the range like the chip does. ``scale`` is the SI value of one count (it may be a
    per-site array broadcast over the last-but-one axis of ``(N, S, 3)``)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 1:
        scale = scale[:, None]
    counts = np.rint(np.asarray(values, dtype=np.float64) / scale)
    np.clip(counts, lo, hi, out=counts)
    dtype = np.int16 if bits <= 16 else np.int32
    return counts.astype(dtype)


def from_counts(counts: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """SI values (float64) of ADC counts: ``counts * scale``."""
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 1:
        scale = scale[:, None]
    return np.asarray(counts, dtype=np.float64) * scale


# --- error model ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorModel:
    """Which errors the twin applies (all on by default); ``ErrorModel.none()`` is ideal."""

    noise: bool = True
    bias: bool = True              # turn-on bias
    bias_walk: bool = True
    scale: bool = True
    cross_axis: bool = True
    mounting_deg: float = 2.0      # 1 sigma of the chip's rotation error on the skin
    quantise: bool = True          # saturation + 16-bit counts
    clock: bool = True             # random device clock offset / drift / jitter

    @classmethod
    def none(cls) -> "ErrorModel":
        """No errors at all: ideal float signals on an ideal clock."""
        return cls(False, False, False, False, False, 0.0, False, False)

    @classmethod
    def noise_only(cls) -> "ErrorModel":
        """Only white noise (for checking noise statistics)."""
        return cls(True, False, False, False, False, 0.0, False, False)


def corrupt(x: np.ndarray, spec: QuantitySpec, rate_hz: float, rng: np.random.Generator,
            model: ErrorModel = ErrorModel()) -> np.ndarray:
    """Apply the error model (without quantisation) to ideal signals ``x`` ``(N, 3)`` SI."""
    n = len(x)
    m = np.eye(3)
    # Draw every random term whether or not it is used, so that switching one error off
    # leaves the others' draws (and bytes) unchanged.
    s = rng.standard_normal(3) * spec.scale_error
    c = rng.standard_normal((3, 3)) * spec.cross_axis
    b0 = rng.standard_normal(3) * spec.bias_turn_on
    if model.scale:
        m = m + np.diag(s)
    if model.cross_axis:
        m = m + c * (1.0 - np.eye(3))
    y = x @ m.T
    if model.bias:
        y = y + b0
    if model.bias_walk and spec.bias_random_walk > 0:
        steps = rng.standard_normal((n, 3)) * (spec.bias_random_walk / math.sqrt(rate_hz))
        y = y + np.cumsum(steps, axis=0)
    if model.noise:
        y = y + rng.standard_normal((n, 3)) * spec.white_std(rate_hz)
    return y


def random_rotation_small(rng: np.random.Generator, sigma_deg: float) -> np.ndarray:
    """A random rotation matrix with rotation-vector components of std ``sigma_deg``."""
    from scipy.spatial.transform import Rotation

    rv = rng.standard_normal(3) * math.radians(sigma_deg)
    return Rotation.from_rotvec(rv).as_matrix()


# --- device clock ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceClock:
    """The wearable's clock: ``device_us = offset_us + (t - t0) * 1e6 * (1 + drift_ppm 1e-6)``
    at the true sample instant, plus timestamping jitter (Gaussian, std ``jitter_us``).

    The device samples when its own clock reaches ``k / rate``, so the true instants of a
    fast clock come early: ``t_k = t0 + k / rate / (1 + drift)``.
    """

    offset_us: float = 0.0
    drift_ppm: float = 0.0
    jitter_us: float = 0.0
    seed: int = 0

    @classmethod
    def random(cls, seed: int = 0) -> "DeviceClock":
        """A plausible clock: offset up to an hour of uptime, crystal drift (1 sigma 20 ppm),
        50 us timestamp jitter (interrupt latency of a busy MCU)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC10C]))
        return cls(offset_us=float(rng.uniform(1e6, 3.6e9)),
                   drift_ppm=float(rng.normal(0.0, 20.0)), jitter_us=50.0, seed=seed)

    def sample_times(self, n: int, rate_hz: float,
                     t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """True times (s) and device timestamps (int64 us) of ``n`` samples at ``rate_hz``
        starting at true time ``t0``. Timestamps never go backwards."""
        k = np.arange(n, dtype=np.float64)
        nominal_us = k * (1e6 / rate_hz)
        t_true = t0 + nominal_us * 1e-6 / (1.0 + self.drift_ppm * 1e-6)
        stamp = self.offset_us + nominal_us
        if self.jitter_us > 0:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x717]))
            stamp = stamp + rng.standard_normal(n) * self.jitter_us
        stamp_i = np.rint(stamp).astype(np.int64)
        return t_true, np.maximum.accumulate(stamp_i)

    def device_us(self, t: np.ndarray, t0: float = 0.0) -> np.ndarray:
        """Ideal (jitter-free) device clock reading (us, float) at true times ``t``."""
        return self.offset_us + (np.asarray(t) - t0) * 1e6 * (1.0 + self.drift_ppm * 1e-6)
