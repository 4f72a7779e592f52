"""The quality check run after each take of a guided session: is this take usable?

``assess_take(path, steps)`` reads a recorded take (capture/session.py) and the step table the
runner wrote (capture/protocol_session.py) and measures, with the thresholds of
``QualityConfig``:

* **samples lost**: IMU instants missing by the device's sequence numbers (``device.seq``;
  else by the nominal rate), and the recorder's gap count;
* **face lost**: the share of ARKit frames expected at the stream's nominal rate over the
  take that are missing or face-lost (NaN);
* **tap and sync**: ``capture.sync.sync_session`` without writing: the tap found (IMU spike,
  device tap marker, blendshape twitch) and the lag's confidence;
* **neutral**: seconds inside the ``neutral`` step where the sensors are still
  (capture/calibration.still_mask) and the face neutral (sync.neutral_mask), as calibration
  needs them;
* **saturation**: sites whose accelerometer or gyroscope reached ``saturation_fraction`` of
  the range the IMU stream's metadata declares, except within ``tap_margin_s`` of the found
  chin tap (``saturated_sites``).

The result is a JSON-able dict; ``reasons`` lists why the take should be redone (empty: ok).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imusic.capture.calibration import still_mask
from imusic.capture.session import SessionError, SessionReader
from imusic.capture.sync import (SyncError, blendshape_rows, neutral_mask, parse_imu, pick_streams,
                          sync_session)
from imusic.hardware.vocabulary import N_BLENDSHAPES


@dataclass
class QualityConfig:
    """Thresholds of the per-take check."""

    max_lost_share: float = 0.02
    """Largest share of IMU instants lost before a redo is asked."""
    max_face_lost_share: float = 0.10
    """Largest share of ARKit frames missing or face-lost."""
    min_sync_confidence: float = 0.15
    """Smallest IMU/ARKit lag confidence (normalised cross-correlation peak)."""
    require_tap: bool = True
    """A take without a tap found anywhere (IMU, device marker) is redone."""
    min_neutral_s: float = 1.0
    """Seconds of still sensors and neutral face needed in the neutral step."""
    saturation_fraction: float = 0.98
    """A reading at this fraction of the declared range counts as saturated."""
    tap_margin_s: float = 0.3
    """Samples this close to the found chin tap are not counted as saturation (the tap is
    a deliberate knock on the sensor)."""


def _ranges(info_xml: str) -> dict[str, float]:
    try:
        desc = ET.fromstring(info_xml).find("desc")
    except ET.ParseError:
        return {}
    out = {}
    for q in ("acc", "gyro"):
        text = desc.findtext(f"sensors/{q}/range") if desc is not None else None
        try:
            if text and float(text) > 0:
                out[q] = float(text)
        except ValueError:
            pass
    return out


def assess_take(path: str | Path, steps: Sequence[dict], config: QualityConfig | None = None
                ) -> dict[str, Any]:
    """Per-take figures and the reasons to redo it; ``steps`` are dicts with ``marker``,
    ``kind``, ``start`` and ``end`` (recorder clock)."""
    cfg = config or QualityConfig()
    path = Path(path)
    out: dict[str, Any] = {"file": path.name, "reasons": []}
    reasons: list[str] = out["reasons"]
    try:
        with SessionReader(path) as reader:
            ik, bk = pick_streams(reader)
            imu_s, bs_s = reader.stream(ik), reader.stream(bk)
    except (SessionError, OSError, KeyError) as err:
        reasons.append(f"unreadable: {err}")
        out["ok"] = False
        return out
    t0 = min(s["start"] for s in steps) if steps else None
    t1 = max(s["end"] for s in steps) if steps else None
    # --- IMU samples lost
    n = len(imu_s.time_stamps)
    labels = imu_s.spec.labels
    if n and "device.seq" in labels:
        seq = imu_s.channel("device.seq")
        expected = int(seq.max() - seq.min() + 1)
        got = len(np.unique(seq))
    else:
        span = float(imu_s.time_stamps[-1] - imu_s.time_stamps[0]) if n > 1 else 0.0
        expected, got = int(round(span * imu_s.spec.nominal_srate)) + 1, n
    out["imu_samples"] = int(n)
    out["imu_lost_share"] = float(1 - got / expected) if expected > 0 else 1.0
    out["imu_gaps"] = int(len(imu_s.gaps))
    if out["imu_lost_share"] > cfg.max_lost_share:
        reasons.append(f"{100 * out['imu_lost_share']:.1f}% IMU samples lost "
                       f"(> {100 * cfg.max_lost_share:.0f}%)")
    # --- face lost
    bs = blendshape_rows(bs_s)
    found = np.isfinite(bs[:, :N_BLENDSHAPES]).all(axis=1)
    rate = bs_s.spec.nominal_srate or 60.0
    ts = bs_s.time_stamps
    if t0 is not None and len(ts):
        inside = (ts >= t0) & (ts <= t1)
        expected_bs = max(1, int(round((t1 - t0) * rate)))
        out["face_lost_share"] = float(max(0.0, 1 - found[inside].sum() / expected_bs))
    else:
        out["face_lost_share"] = 1.0
    if out["face_lost_share"] > cfg.max_face_lost_share:
        reasons.append(f"face lost {100 * out['face_lost_share']:.0f}% of the take "
                       f"(> {100 * cfg.max_face_lost_share:.0f}%)")
    # --- tap and sync
    try:
        res = sync_session(path, write=False)
        a = res.aligned.attrs
        out.update(tap_found=bool(np.isfinite(res.tap_imu)),
                   tap_detected_in=list(a.get("tap_detected_in", [])),
                   tap_time=float(res.tap_imu) if np.isfinite(res.tap_imu) else None,
                   lag_s=float(res.lag_s), sync_confidence=float(res.lag_confidence))
    except (SyncError, SessionError, ValueError) as err:
        out.update(tap_found=False, tap_detected_in=[], tap_time=None, lag_s=None,
                   sync_confidence=0.0)
        reasons.append(f"sync failed: {err}")
    if cfg.require_tap and not out["tap_found"]:
        reasons.append("no chin tap found")
    if out["sync_confidence"] < cfg.min_sync_confidence:
        reasons.append(f"sync confidence {out['sync_confidence']:.2f} "
                       f"(< {cfg.min_sync_confidence:.2f})")
    # --- neutral segment and saturation
    try:
        imu = parse_imu(imu_s)
    except SyncError as err:
        reasons.append(str(err))
        out["ok"] = False
        return out
    neutral_steps = [s for s in steps if s.get("kind") == "neutral"]
    neutral_s = 0.0
    if neutral_steps and len(imu.t) > 1:
        a, b = neutral_steps[0]["start"], neutral_steps[0]["end"]
        still = still_mask(imu.acc, imu.rates(), imu.rate_hz)
        face = neutral_mask(imu.t, ts, bs[:, :N_BLENDSHAPES], rate)
        inside = (imu.t >= a) & (imu.t <= b)
        neutral_s = float((still & face & inside).sum() / imu.rate_hz)
    out["neutral_s"] = neutral_s
    if neutral_s < cfg.min_neutral_s:
        reasons.append(f"neutral hold {neutral_s:.1f} s still and neutral "
                       f"(< {cfg.min_neutral_s:.1f} s): calibration needs it")
    saturated = saturated_sites(imu.t, {"acc": imu.acc, "gyro": imu.gyro}, imu.sites,
                                _ranges(imu_s.spec.info_xml), out["tap_time"], cfg)
    out["saturated"] = saturated
    if saturated:
        reasons.append(f"saturated: {', '.join(saturated[:4])}"
                       + (f" and {len(saturated) - 4} more" if len(saturated) > 4 else ""))
    out["ok"] = not reasons
    return out


def saturated_sites(t: np.ndarray, signals: dict[str, np.ndarray], sites: Sequence[str],
                    ranges: dict[str, float], tap_time: float | None,
                    cfg: QualityConfig) -> list[str]:
    """``site.quantity`` names whose reading (``signals[q]``: (T, S, 3)) reached
    ``saturation_fraction`` of ``ranges[q]``, leaving out samples within ``tap_margin_s`` of
    the chin tap."""
    keep = np.ones(len(t), bool)
    if tap_time is not None:
        keep &= np.abs(np.asarray(t) - tap_time) > cfg.tap_margin_s
    out = []
    for q, arr in signals.items():
        arr = np.abs(np.asarray(arr)[keep])
        if q in ranges and np.isfinite(arr).any():
            hit = np.nanmax(arr, axis=(0, 2)) >= cfg.saturation_fraction * ranges[q]
            out += [f"{s}.{q}" for s, h in zip(sites, hit) if h]
    return out


def config_dict(cfg: QualityConfig) -> dict[str, Any]:
    """The thresholds, for quality.json."""
    return asdict(cfg)
