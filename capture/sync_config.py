"""Every threshold of synchronisation in one place: ``SyncConfig`` (see capture/sync.py).

One frozen dataclass, one field per threshold, each with a one-line doc and the default the
sync has always used. ``capture.sync.sync_session`` and ``capture.sync.align`` take it as
``config=`` or its fields as keywords (``sync_session(path, max_lag=0.5)``, as pyxdf's
``load_xdf`` takes its thresholds); ``imusic sync`` exposes the ones a user tunes. The step
modules (capture/sync_clock.py, sync_resample.py, sync_events.py) read their thresholds from
it and take it as their last argument, ``DEFAULT`` when not given.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from imusic.capture.calibration import CalibrationConfig


@dataclass(frozen=True)
class SyncConfig:
    """Thresholds of ``sync_session`` (units in each line)."""

    # --- the aligned timeline
    rate_hz: float = 60.0
    """Rate of the aligned timeline, Hz."""
    min_samples: int = 10
    """Fewest samples the IMU and the Blendshapes stream must each hold to be synchronised."""
    min_overlap_s: float = 1.0
    """Shortest time the IMU and Blendshapes streams must overlap, s."""
    blendshape_rate_hz: float = 60.0
    """Rate assumed for a Blendshapes stream that declares none (irregular), Hz."""
    max_imu_rate_hz: float = 10000.0
    """Fastest IMU rate accepted, declared or (irregular stream) read off the timestamps, Hz."""

    # --- dejitter (capture/sync_clock.py)
    min_segment: int = 3
    """Fewest samples of a gap-free segment for its line to be fitted (shorter: kept as is)."""
    count_block: int = 256
    """Samples per block when counting nominal periods (the line is refitted after each)."""
    count_head: int = 21
    """Samples whose median anchors the first block's period count."""
    drift_tolerance: float = 0.001
    """Clock drift (fraction, 1000 ppm) under which a full segment is taken as drop-free."""

    # --- resampling (capture/sync_resample.py)
    lowpass_ratio: float = 0.4
    """IMU anti-alias low-pass cutoff as a fraction of ``rate_hz``."""
    lowpass_order: int = 8
    """Order of the IMU anti-alias Butterworth low-pass."""
    lowpass_min_samples: int = 40
    """Shortest segment that gets low-passed (shorter: interpolated unfiltered)."""
    lowpass_padlen: int = 51
    """Edge padding of the zero-phase low-pass, samples (capped by the segment length)."""

    # --- residual lag (capture/sync_events.py)
    max_lag: float = 1.0
    """Largest IMU/ARKit lag searched, s (either sign)."""
    band_lo_hz: float = 0.2
    """Low edge of the motion-energy band-pass, Hz (slower drifts are removed)."""
    band_hi_hz: float = 8.0
    """High edge of the motion-energy band-pass, Hz."""
    band_hi_ratio: float = 0.45
    """Cap of the band-pass high edge as a fraction of ``rate_hz``."""
    band_order: int = 2
    """Order of the motion-energy Butterworth band-pass."""
    band_min_frames: int = 60
    """Shortest energy signal that is band-passed (shorter: only its mean is removed)."""
    lag_edge_frames: int = 10
    """Lags within this many frames of the whole signal's length are not tried."""
    lag_min_frames: int = 30
    """Fewest frames valid in both energies for a lag to be scored."""
    weak_confidence: float = 0.1
    """Below this correlation peak the lag is searched again near the tap's lag only."""
    tap_lag_window: float = 0.1
    """Half-width of that second search around the tap's lag, s."""

    # --- start-of-take tap (capture/sync_events.py)
    tap_mad_k: float = 25.0
    """IMU tap spike: median + this many MADs of the tapped sensor's spike over the session."""
    tap_min_spike: float = 20.0
    """IMU tap spike: at least this deviation from the running median, m/s^2 (2 g)."""
    tap_dominance: float = 3.0
    """IMU tap spike: at least this many times the other sensors' median spike at once."""
    tap_search_s: float = 30.0
    """IMU tap spike: searched in the first seconds of the stream when no marker says where."""
    tap_near_s: float = 0.5
    """IMU tap spike: searched within this many seconds of the device's tap marker."""
    tap_median_s: float = 0.1
    """Width of the running median the IMU spike is measured against, s."""
    tap_peak_s: float = 0.05
    """The IMU spike's peak is looked for this long after its first sample over threshold, s."""
    tap_min_imu_samples: int = 10
    """Fewest IMU samples to look for a tap in."""
    twitch_mad_k: float = 6.0
    """Blendshape twitch: jaw/mouth energy over median + this many MADs."""
    twitch_margin_s: float = 0.25
    """Blendshape twitch: searched within ``max_lag`` plus this margin of the IMU tap, s."""
    twitch_peak_s: float = 0.2
    """The twitch's peak is looked for this long after its first frame over threshold, s."""
    mad_floor: float = 1e-9
    """Smallest MAD a robust threshold uses (a flat signal still gets a threshold)."""

    # --- calibration (capture/calibration.py)
    neutral_max_weight: float = 0.15
    """Face neutral: every non-gaze blendshape below this weight."""
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    """Still-moment and rotation-fit thresholds; ``with_`` takes its field names too."""

    def __post_init__(self) -> None:
        if not isinstance(self.calibration, CalibrationConfig):
            raise ValueError(f"sync config: calibration must be a CalibrationConfig, got "
                             f"{self.calibration!r}")
        own = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "calibration"]
        cal = [(f.name, getattr(self.calibration, f.name)) for f in fields(self.calibration)]
        for name, v in own + cal:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v == v:
                raise ValueError(f"sync config: {name} must be a number, got {v!r}")
        if not self.rate_hz > 0 or not self.max_lag >= 0:
            raise ValueError(f"sync config: rate_hz must be > 0 and max_lag >= 0 (got "
                             f"{self.rate_hz!r}, {self.max_lag!r})")

    def with_(self, **overrides: Any) -> "SyncConfig":
        """A copy with some fields replaced (``CalibrationConfig`` names replace fields of
        ``calibration``); unknown names raise ``TypeError`` naming them."""
        unknown = sorted(set(overrides) - set(threshold_names()))
        if unknown:
            raise TypeError(f"unknown sync threshold(s) {', '.join(unknown)}; known: "
                            f"{', '.join(threshold_names())}")
        if not overrides:
            return self
        cal = {k: v for k, v in overrides.items() if k in _CAL_NAMES}
        own = {k: v for k, v in overrides.items() if k not in _CAL_NAMES}
        if cal:
            own["calibration"] = replace(overrides.get("calibration", self.calibration), **cal)
        return replace(self, **own)


_CAL_NAMES = tuple(f.name for f in fields(CalibrationConfig))
_NAMES = tuple(f.name for f in fields(SyncConfig))


def threshold_names() -> list[str]:
    """Every name ``SyncConfig.with_`` (and ``sync_session``'s keywords) accepts."""
    return [n for n in _NAMES if n != "calibration"] + list(_CAL_NAMES) + ["calibration"]


DEFAULT = SyncConfig()
