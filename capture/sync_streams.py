"""Sync's inputs: the recorded streams, parsed by their labels and put on the recorder clock.

``pick_streams`` chooses the IMU and ground-truth Blendshapes streams of a session;
``parse_imu`` splits the IMU stream into (N, S, 3) arrays by its ``site.quantity.axis``
labels (``ImuSeries``, timestamps offset-corrected and dejittered by capture/sync_clock.py);
``blendshape_rows`` finds the 61 ARKit columns by label; ``device_taps`` reads the device's
``{"event": "tap"}`` markers. Each raises ``SyncError`` naming the stream and what to record
instead. capture/sync.py composes them; capture/take_quality.py reuses them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from imusic.capture.orientation import angular_rate, continuous, normalise
from imusic.capture.session import SessionError, SessionReader, StreamData
from imusic.capture.sync_clock import apply_clock_offsets, dejitter
from imusic.capture.sync_config import DEFAULT, SyncConfig
from imusic.firmware_bridge.streams import parse_label
from imusic.hardware.vocabulary import N_BLENDSHAPES, STREAM_NAMES

REFERENCE_HINTS = ("ref", "nasal", "nose", "temple")
"""Site-name parts that mark the rigid reference site when the stream's metadata names none."""


class SyncError(SessionError):
    """A session that cannot be synchronised (the message says what is missing)."""

@dataclass
class ImuSeries:
    """The IMU stream, parsed by channel label."""

    t: np.ndarray                 # (N,) recorder clock, dejittered
    acc: np.ndarray               # (N, S, 3)
    gyro: np.ndarray              # (N, S, 3)
    mag: np.ndarray               # (N, S, 3), NaN without magnetometers
    sites: list[str]
    reference: str
    rig_id: str
    rate_hz: float
    key: str = ""
    muscles: dict[str, str] = field(default_factory=dict)
    quat: np.ndarray | None = None  # (N, S, 4) w, x, y, z sensor-to-earth; None: no site has it

    def rates(self) -> np.ndarray:
        """(N, S, 3) angular rate: the gyroscope where a site has one, else what its
        quaternions imply."""
        g = self.gyro.copy()
        if self.quat is not None:
            no_gyro = np.isnan(g).all(axis=(0, 2))
            if no_gyro.any():
                g[:, no_gyro] = angular_rate(self.quat[:, no_gyro], self.rate_hz)
        return g


def _desc(xml: str) -> ET.Element | None:
    try:
        return ET.fromstring(xml).find("desc")
    except ET.ParseError:
        return None


def parse_imu(stream: StreamData, config: SyncConfig = DEFAULT) -> ImuSeries:
    """Split an IMU stream into (N, S, 3) arrays by its ``site.quantity.axis`` labels."""
    labels = stream.spec.labels
    sites: list[str] = []
    col: dict[tuple[str, str, str], int] = {}
    for i, lab in enumerate(labels):
        parts = parse_label(lab)          # the IMU contract's one label reader
        if parts is not None:
            if parts[0] not in sites:
                sites.append(parts[0])
            col[parts] = i
    if not sites:
        raise SyncError(f"IMU stream {stream.spec.name!r} has no 'site.acc.x'-style channel "
                        f"labels (got {labels[:4]}...): record it from an imusic outlet")
    x = stream.time_series
    n = len(x)
    arrays = {}
    for q in ("acc", "gyro", "mag"):
        a = np.full((n, len(sites), 3), np.nan)
        for si, s in enumerate(sites):
            for ai, ax in enumerate("xyz"):
                if (s, q, ax) in col:
                    a[:, si, ai] = x[:, col[(s, q, ax)]]
        arrays[q] = a
    quat = None
    if any(k[1] == "quat" for k in col):
        quat = np.full((n, len(sites), 4), np.nan)
        for si, s in enumerate(sites):
            if all((s, "quat", ax) in col for ax in "wxyz"):
                quat[:, si] = x[:, [col[(s, "quat", ax)] for ax in "wxyz"]]
        quat = continuous(normalise(quat))
    no_acc = [s for si, s in enumerate(sites) if np.isnan(arrays["acc"][:, si]).all()]
    if no_acc:
        raise SyncError(f"IMU stream {stream.spec.name!r}: site(s) {', '.join(no_acc)} lack "
                        "acc channels")
    no_rate = [s for si, s in enumerate(sites) if np.isnan(arrays["gyro"][:, si]).all()
               and (quat is None or np.isnan(quat[:, si]).all())]
    if no_rate:
        raise SyncError(f"IMU stream {stream.spec.name!r}: site(s) {', '.join(no_rate)} have "
                        "neither gyro nor quat channels")
    desc = _desc(stream.spec.info_xml)
    reference, rig_id, muscles = "", "", {}
    if desc is not None:
        reference = (desc.findtext("rig/reference") or "").strip()
        rig_id = (desc.findtext("rig/id") or "").strip()
        for site in desc.findall("rig/sites/site"):
            name = (site.findtext("name") or "").strip()
            if (site.findtext("reference") or "").strip().lower() in ("true", "1", "yes"):
                reference = reference or name
            if site.findtext("muscle"):
                muscles[name] = site.findtext("muscle").strip()
    if reference not in sites:
        reference = next((s for s in sites if any(k in s.lower() for k in
                                                  REFERENCE_HINTS)), sites[0])
    srate = stream.spec.nominal_srate
    dev_t = (x[:, labels.index("device.time_us")].astype(np.float64)
             if "device.time_us" in labels else None)
    t = dejitter(apply_clock_offsets(stream.time_stamps, stream.clock_offsets), srate, dev_t,
                 config)
    if srate <= 0 and n > 1:
        step = float(np.median(np.diff(t)))
        if not step > 0:
            raise SyncError(f"IMU stream {stream.spec.name!r} declares no sample rate and its "
                            "timestamps do not advance: record it with its nominal rate")
        srate = 1.0 / step
    if not srate <= config.max_imu_rate_hz:
        raise SyncError(f"IMU stream {stream.spec.name!r}: rate {srate:.3g} Hz is over "
                        f"max_imu_rate_hz ({config.max_imu_rate_hz:g} Hz): check its nominal "
                        "rate and timestamps")
    return ImuSeries(t=t, acc=arrays["acc"], gyro=arrays["gyro"], mag=arrays["mag"],
                     sites=sites, reference=reference, rig_id=rig_id or "unknown",
                     rate_hz=srate, key=stream.key, muscles=muscles, quat=quat)


def blendshape_rows(stream: StreamData) -> np.ndarray:
    """(N, 61) float64 in STREAM order from a Blendshapes stream, found by label when labelled."""
    x = np.asarray(stream.time_series, np.float64)
    labels = [lab.lower() for lab in stream.spec.labels]
    want = [n.lower() for n in STREAM_NAMES]
    out = np.full((len(x), len(STREAM_NAMES)), np.nan)
    found = 0
    for j, name in enumerate(want):
        if name in labels:
            out[:, j] = x[:, labels.index(name)]
            found += 1
    if found >= N_BLENDSHAPES:
        return out
    if x.shape[1] in (N_BLENDSHAPES, len(STREAM_NAMES)):  # unlabelled: the contract's order
        out[:, :x.shape[1]] = x
        return out
    raise SyncError(f"Blendshapes stream {stream.spec.name!r} has {x.shape[1]} channels and "
                    "no ARKit channel labels: expected 61 channels (52 blendshapes + 9 pose)")


def _source(stream: StreamData) -> str:
    desc = _desc(stream.spec.info_xml)
    return (desc.findtext("source") or "").strip().lower() if desc is not None else ""


def pick_streams(reader: SessionReader, imu_key: str | None = None,
                 bs_key: str | None = None) -> tuple[str, str]:
    """The IMU and ground-truth Blendshapes streams to align (first of each, predictions last)."""
    imus = [imu_key] if imu_key else reader.keys_of_type("IMU")
    bss = [bs_key] if bs_key else reader.keys_of_type("Blendshapes")
    if not imus:
        raise SyncError(f"{reader.path} has no IMU stream (streams: {reader.keys})")
    if not bss:
        raise SyncError(f"{reader.path} has no Blendshapes stream (streams: {reader.keys}): "
                        "record ARKit ('imusic arkit') together with the IMU")
    if not bs_key and len(bss) > 1:
        bss.sort(key=lambda k: _source(reader.stream(k)) == "imusic-model")
    return imus[0], bss[0]


def tap_markers(stream: StreamData) -> list[float]:
    """Times (recorder clock) of the ``{"event": "tap"}`` markers of one Markers stream: the
    EVENT tap a wearable with a tap detector sends, which firmware_bridge's events stream
    carries as JSON. Other markers and text that is not JSON are skipped."""
    if not len(stream.time_stamps):
        return []
    taps: list[float] = []
    t = apply_clock_offsets(stream.time_stamps, stream.clock_offsets)
    for row, ti in zip(stream.time_series, t):
        try:
            rec = json.loads(str(row[0]))
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(rec, dict) and rec.get("event") == "tap":
            taps.append(float(ti))
    return taps


def device_taps(reader: SessionReader) -> list[float]:
    """Sorted ``tap_markers`` of every Markers stream of a session."""
    return sorted(t for key in reader.keys_of_type("Markers")
                  for t in tap_markers(reader.stream(key)))
