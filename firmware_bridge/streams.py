"""The LSL stream contracts: one builder and one parser per stream type, one way to open inlets.

One module on purpose (over 400 lines): issue 15 asked for every LSL contract in one place,
and each builder sits next to its parser so the two cannot drift apart.

Every imusic publisher makes its ``pylsl.StreamInfo`` here and every reader reads the
metadata it needs here; no other module of the packages constructs a ``StreamInfo`` or a
``StreamInlet`` or resolves streams (tests/firmware_bridge/test_streams.py checks the tree;
tests and benchmarks may build off-contract streams on purpose). The pieces:

* **labels**: ``channel_table`` writes an IMU stream's ``site.quantity.axis`` labels (with
  their units and types) in stream order; ``parse_label`` is the one reader of such a label.
* **builders** ``imu_info``, ``blendshapes_info``, ``markers_info``, ``fusion_state_info``:
  name, type, channel count and format, nominal rate, ``source_id`` and a ``desc`` with
  ``channels/channel`` (label, unit, type) and the keys readers use.
* **parsers** ``parse_imu``, ``parse_blendshapes``, ``parse_markers``, ``parse_fusion_state``
  take the full info (``inlet.info()``: a resolved info has an empty ``desc``), or its XML (a
  session file's ``info_xml``), and return a small frozen layout whose channels were found by
  label, never by position. Anything that does not fit raises ``StreamContractError``: one
  line naming the stream and what it lacks. Nothing else escapes a parser.
* **inlets** ``open_inlet(info, purpose)`` with the settings of ``INLETS`` (record: raw
  timestamps, as LabRecorder keeps them; live and view: clock-synchronised), and ``resolve``
  / ``resolve_one`` / ``continuous_resolver`` / ``predicate`` to find streams.

Blendshapes dialect: the one the emulator's truth used. Channel ``unit`` is ``normalized``
for the 52 coefficients and ``rad`` for the 9 pose angles (SI symbols, as the IMU stream's
``rad/s``), channel ``type`` ``Blendshapes`` (the stream's type, as an XDF ``EEG`` stream's
channels are of type ``EEG``) and ``Pose``. Streams that ``capture.arkit_bridge`` made before
this module said ``radians`` / ``blendshape`` / ``pose``: the parser reads channels by label
only, so files and streams in that dialect read as before.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Sequence

from imusic.hardware.vocabulary import N_BLENDSHAPES, STREAM_NAMES

IMU_TYPE = "IMU"
BLENDSHAPES_TYPE = "Blendshapes"
MARKERS_TYPE = "Markers"
FUSION_STATE_TYPE = "FusionState"

AXES = ("x", "y", "z")
QUAT_AXES = ("w", "x", "y", "z")
QUANTITIES = ("acc", "gyro", "mag", "quat")
"""The quantities a site may send, in stream order."""
UNITS = {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT", "quat": "normalized"}
TYPES = {"acc": "Acceleration", "gyro": "AngularVelocity", "mag": "MagneticField",
         "quat": "Orientation"}
EXTRA_CHANNELS = (("device.time_us", "microseconds", "DeviceTime"),
                  ("device.seq", "count", "SequenceNumber"))
"""The IMU stream's trailing channels: device clock (µs, unwrapped) and sequence number."""
BLENDSHAPE_UNIT, POSE_UNIT = "normalized", "rad"
BLENDSHAPE_CHANNEL_TYPE, POSE_CHANNEL_TYPE = "Blendshapes", "Pose"
FUSION_STATE_FIELDS = (("arkit_weight", "share"), ("trusted", "bool"))
"""Per region, in stream order: ARKit's share of the fused value, and whether ARKit is trusted."""


class StreamContractError(LookupError, ValueError):
    """A stream's info does not fit its contract; ``str(err)`` is one line naming the stream
    (a LookupError, as a missing stream is, and a ValueError, as bad input is)."""


# --------------------------------------------------------------------------- labels


def axes_of(quantity: str) -> tuple[str, ...]:
    """The label axes of a quantity (``w x y z`` for quaternions, else ``x y z``)."""
    return QUAT_AXES if quantity == "quat" else AXES


def quantities(has_gyro: bool, has_mag: bool, has_quat: bool) -> tuple[str, ...]:
    """The quantities each site sends, in wire and stream order: acc [, gyro] [, mag] [, quat]."""
    return (("acc",) + (("gyro",) if has_gyro else ()) + (("mag",) if has_mag else ())
            + (("quat",) if has_quat else ()))


def channel_label(site: str, quantity: str, axis: str) -> str:
    """The label of one IMU channel: ``site.quantity.axis``."""
    return f"{site}.{quantity}.{axis}"


def parse_label(label: str) -> tuple[str, str, str] | None:
    """``(site, quantity, axis)`` of an IMU channel label, or None for any other label
    (``device.seq``, a foreign channel, a dotted site name)."""
    parts = label.split(".")
    if len(parts) != 3 or not parts[0] or parts[0] == "device":
        return None
    site, q, ax = parts
    return (site, q, ax) if q in QUANTITIES and ax in axes_of(q) else None


def channel_table(sites: Sequence[str], has_mag: bool, has_quat: bool,
                  has_gyro: bool = True) -> list[tuple[str, str, str]]:
    """(label, unit, type) of every IMU channel, in stream order (sites in rig order)."""
    out: list[tuple[str, str, str]] = []
    for s in sites:
        for q in quantities(has_gyro, has_mag, has_quat):
            out.extend((channel_label(s, q, ax), UNITS[q], TYPES[q]) for ax in axes_of(q))
    out.extend(EXTRA_CHANNELS)
    return out


# --------------------------------------------------------------------------- building


def _info(name: str, stype: str, channels: Sequence[tuple[str, str, str]], rate_hz: float,
          fmt: str, source_id: str, count: int | None = None) -> Any:
    import pylsl

    cf = {"float32": pylsl.cf_float32, "double64": pylsl.cf_double64,
          "string": pylsl.cf_string}[fmt]
    info = pylsl.StreamInfo(name, stype, len(channels) if count is None else count,
                            float(rate_hz), cf, source_id)
    if channels:
        chans = info.desc().append_child("channels")
        for label, unit, typ in channels:
            _child(chans, "channel", {"label": label, "unit": unit, "type": typ})
    return info


def _child(parent: Any, name: str, values: dict) -> Any:
    el = parent.append_child(name)
    for k, v in values.items():
        el.append_child_value(k, str(v))
    return el


def _tree(parent: Any, values: dict) -> None:
    """Text children for plain values, nested elements for dicts."""
    for k, v in values.items():
        if isinstance(v, dict):
            _tree(parent.append_child(k), v)
        else:
            parent.append_child_value(k, str(v))


def imu_info(name: str, source_id: str, rate_hz: float, sites: Sequence[str], *,
             has_gyro: bool = True, has_mag: bool = True, has_quat: bool = False,
             rig_id: str = "", reference: str | None = None, rig_description: str = "",
             meta: dict | None = None) -> Any:
    """The ``IMU`` stream: double64, ``channel_table`` channels, ``desc/rig`` (id, reference,
    ``sites/site`` name, index, reference flag) and ``meta`` (nested dicts: acquisition,
    device, sensors, clock) as further ``desc`` children."""
    info = _info(name, IMU_TYPE, channel_table(sites, has_mag, has_quat, has_gyro), rate_hz,
                 "double64", source_id)
    d = info.desc()
    rig = d.append_child("rig")
    rig.append_child_value("id", rig_id)
    if rig_description:
        rig.append_child_value("description", rig_description)
    rig.append_child_value("reference", reference or "")
    el = rig.append_child("sites")
    for idx, s in enumerate(sites):
        _child(el, "site", {"name": s, "index": idx,
                            "reference": "true" if s == reference else "false"})
    _tree(d, meta or {})
    return info


def blendshapes_info(name: str, source: str, source_id: str, *, rate_hz: float = 60.0,
                     extra: dict | None = None) -> Any:
    """A ``Blendshapes`` stream: 61 float32 channels in ``STREAM_NAMES`` order (52 ARKit
    coefficients, then head and eye yaw/pitch/roll), ``desc/source`` (``arkit`` for ground
    truth, ``twin``, ``imusic-model``, ``imusic-hybrid``) and ``extra`` text children."""
    chans = [(n, BLENDSHAPE_UNIT, BLENDSHAPE_CHANNEL_TYPE) if i < N_BLENDSHAPES
             else (n, POSE_UNIT, POSE_CHANNEL_TYPE) for i, n in enumerate(STREAM_NAMES)]
    info = _info(name, BLENDSHAPES_TYPE, chans, rate_hz, "float32", source_id)
    _tree(info.desc(), {"source": source, **(extra or {})})
    return info


def markers_info(name: str, source_id: str, fields: dict | None = None) -> Any:
    """A ``Markers`` stream: one string channel, irregular rate, ``fields`` as ``desc``
    text children (``format`` says what a marker holds)."""
    import pylsl

    info = _info(name, MARKERS_TYPE, (), pylsl.IRREGULAR_RATE, "string", source_id, count=1)
    _tree(info.desc(), fields or {})
    return info


def fusion_state_info(name: str, source_id: str, regions: Sequence[str],
                      rate_hz: float = 60.0) -> Any:
    """The hybrid's ``FusionState`` stream: float32, per ``FUSION_STATE_FIELDS`` entry one
    channel per region, labelled ``region.field``."""
    chans = [(f"{r}.{f}", unit, f) for f, unit in FUSION_STATE_FIELDS for r in regions]
    return _info(name, FUSION_STATE_TYPE, chans, rate_hz, "float32", source_id)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class StreamMeta:
    """What every parser reads from an info: the header, the channels and ``desc``."""

    name: str
    type: str
    source_id: str
    channel_count: int
    channel_format: str
    nominal_srate: float
    labels: tuple[str, ...]
    desc: ET.Element

    def where(self) -> str:
        """How errors name the stream."""
        sid = f", {self.source_id}" if self.source_id else ""
        return f"LSL stream {self.name!r} ({self.type or 'no type'}{sid})"

    def text(self, path: str) -> str:
        """A ``desc`` text value (``rig/reference``), '' when absent."""
        return (self.desc.findtext(path) or "").strip()

    def index(self) -> dict[str, int]:
        """Column of each label (the first one, should a label repeat)."""
        out: dict[str, int] = {}
        for i, lab in enumerate(self.labels):
            out.setdefault(lab, i)
        return out


def stream_meta(info: Any) -> StreamMeta:
    """The ``StreamMeta`` of a ``pylsl.StreamInfo`` (take the full one, ``inlet.info()``) or
    of its XML; ``StreamContractError`` when the XML does not parse."""
    xml = info if isinstance(info, str) else info.as_xml()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise StreamContractError(f"LSL stream info does not parse as XML ({err})") from None
    name = (root.findtext("name") or "").strip()

    def number(tag: str, kind: type) -> Any:
        text = (root.findtext(tag) or "0").strip()
        try:
            return kind(float(text))
        except (ValueError, OverflowError):
            raise StreamContractError(f"LSL stream {name!r}: <{tag}> is {text[:20]!r}, "
                                      "not a number") from None

    desc = root.find("desc")
    desc = ET.Element("desc") if desc is None else desc
    labels = tuple((ch.findtext("label") or "").strip()
                   for ch in desc.findall("channels/channel"))
    return StreamMeta(name=name, type=(root.findtext("type") or "").strip(),
                      source_id=(root.findtext("source_id") or "").strip(),
                      channel_count=number("channel_count", int),
                      channel_format=(root.findtext("channel_format") or "").strip(),
                      nominal_srate=number("nominal_srate", float), labels=labels, desc=desc)


def _meta(info: Any, want_type: str) -> StreamMeta:
    m = info if isinstance(info, StreamMeta) else stream_meta(info)
    if m.type != want_type:
        raise StreamContractError(f"{m.where()} is not of type {want_type!r}")
    return m


def _labelled(m: StreamMeta) -> None:
    if len(m.labels) != m.channel_count:
        raise StreamContractError(
            f"{m.where()} lists {len(m.labels)} channel labels for {m.channel_count} channels: "
            "its desc/channels is incomplete (read the info from inlet.info(), not a resolve)")


@dataclass(frozen=True)
class ImuLayout:
    """An IMU stream's channels by label: ``sites`` in stream order, ``quantities`` carried
    (stream order), ``columns[(site, quantity)]`` the column of each axis (``axes_of``),
    ``time_us`` / ``seq`` columns (None when absent), the rig's id and reference site, and how
    many instants the device sends per packet (``desc/device/instants_per_frame``; 1 when the
    stream does not say)."""

    name: str
    source_id: str
    rate_hz: float
    labels: tuple[str, ...]
    sites: tuple[str, ...]
    quantities: tuple[str, ...]
    columns: dict[tuple[str, str], tuple[int, ...]]
    time_us: int | None
    seq: int | None
    rig_id: str
    reference: str
    instants_per_frame: int = 1

    def has(self, site: str, quantity: str) -> bool:
        """The site carries all axes of that quantity."""
        return (site, quantity) in self.columns


def parse_imu(info: Any) -> ImuLayout:
    """The ``ImuLayout`` of an ``IMU`` stream. Needs a label per channel, at least one site,
    and ``acc`` for every site; a quantity a site carries must have all its axes."""
    m = _meta(info, IMU_TYPE)
    _labelled(m)
    sites: list[str] = []
    qs: list[str] = []
    found: dict[tuple[str, str], dict[str, int]] = {}
    for i, lab in enumerate(m.labels):
        parsed = parse_label(lab)
        if parsed is None:
            continue
        site, q, ax = parsed
        if site not in sites:
            sites.append(site)
        if q not in qs:
            qs.append(q)
        found.setdefault((site, q), {}).setdefault(ax, i)
    if not sites:
        raise StreamContractError(f"{m.where()} has no 'site.acc.x'-style channel labels "
                                  f"(got {list(m.labels[:4])}...): publish it with "
                                  "firmware_bridge.streams.imu_info")
    columns: dict[tuple[str, str], tuple[int, ...]] = {}
    for (site, q), axes in found.items():
        lacking = [ax for ax in axes_of(q) if ax not in axes]
        if lacking:
            raise StreamContractError(f"{m.where()}: site {site!r} has {q} channels without "
                                      f"axes {', '.join(lacking)}")
        columns[(site, q)] = tuple(axes[ax] for ax in axes_of(q))
    no_acc = [s for s in sites if (s, "acc") not in columns]
    if no_acc:
        raise StreamContractError(f"{m.where()}: site(s) {', '.join(no_acc[:5])} lack acc "
                                  "channels")
    idx = m.index()
    reference = m.text("rig/reference")
    for el in m.desc.findall("rig/sites/site"):
        if not reference and (el.findtext("reference") or "").strip().lower() in ("true", "1"):
            reference = (el.findtext("name") or "").strip()
    return ImuLayout(name=m.name, source_id=m.source_id, rate_hz=m.nominal_srate,
                     labels=m.labels, sites=tuple(sites),
                     quantities=tuple(q for q in QUANTITIES if q in qs), columns=columns,
                     time_us=idx.get("device.time_us"), seq=idx.get("device.seq"),
                     rig_id=m.text("rig/id"), reference=reference,
                     instants_per_frame=_positive_int(m.text("device/instants_per_frame")))


def _positive_int(text: str) -> int:
    """``text`` as a positive integer; 1 when it is empty or not one."""
    try:
        return max(1, int(text))
    except ValueError:
        return 1


@dataclass(frozen=True)
class BlendshapesLayout:
    """A Blendshapes stream's channels: ``columns[i]`` is the column of ``STREAM_NAMES[i]``
    (-1 for a pose channel the stream lacks); ``source`` its ``desc/source``; ``labelled``
    False for a stream without channel labels, read in the contract's order."""

    name: str
    source_id: str
    source: str
    rate_hz: float
    columns: tuple[int, ...]
    labelled: bool

    @property
    def has_pose(self) -> bool:
        """All 9 pose channels are there."""
        return min(self.columns[N_BLENDSHAPES:]) >= 0

    def to_contract(self, values: Any) -> Any:
        """Rows (n, C) or one row (C,) of the stream -> the 61 ``STREAM_NAMES`` values in
        order, float32; a pose channel the stream lacks is 0 (no pose)."""
        import numpy as np

        v = np.asarray(values, np.float32)
        cols = np.asarray(self.columns)
        out = v[..., np.maximum(cols, 0)]
        out[..., cols < 0] = 0.0
        return out


def parse_blendshapes(info: Any) -> BlendshapesLayout:
    """The ``BlendshapesLayout`` of a ``Blendshapes`` stream: all 52 ARKit names among its
    labels (pose channels optional), or no labels at all and 52 or 61 channels (then taken in
    ``STREAM_NAMES`` order: LSL tools that send no ``desc``)."""
    m = _meta(info, BLENDSHAPES_TYPE)
    source = m.text("source")
    if not any(m.labels) and m.channel_count in (N_BLENDSHAPES, len(STREAM_NAMES)):
        cols = tuple(i if i < m.channel_count else -1 for i in range(len(STREAM_NAMES)))
        return BlendshapesLayout(m.name, m.source_id, source, m.nominal_srate, cols, False)
    _labelled(m)
    idx = m.index()
    missing = [n for n in STREAM_NAMES[:N_BLENDSHAPES] if n not in idx]
    if missing:
        raise StreamContractError(
            f"{m.where()} lacks {len(missing)} of the 52 ARKit blendshape channels "
            f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): publish it "
            "with firmware_bridge.streams.blendshapes_info")
    cols = tuple(idx.get(n, -1) for n in STREAM_NAMES)
    return BlendshapesLayout(m.name, m.source_id, source, m.nominal_srate, cols, True)


@dataclass(frozen=True)
class MarkersLayout:
    """A Markers stream: its ``desc`` text fields (``format``, ``imu_stream``, ``protocol``)."""

    name: str
    source_id: str
    fields: dict[str, str]


def parse_markers(info: Any) -> MarkersLayout:
    """The ``MarkersLayout`` of a ``Markers`` stream: one string channel."""
    m = _meta(info, MARKERS_TYPE)
    if m.channel_count != 1 or m.channel_format != "string":
        raise StreamContractError(f"{m.where()} has {m.channel_count} {m.channel_format} "
                                  "channels; a Markers stream has one string channel")
    fields = {el.tag: (el.text or "").strip() for el in m.desc if len(el) == 0}
    return MarkersLayout(m.name, m.source_id, fields)


@dataclass(frozen=True)
class FusionStateLayout:
    """The FusionState stream: ``regions`` and per field of ``FUSION_STATE_FIELDS`` the
    column of each region (``columns["trusted"][k]`` for ``regions[k]``)."""

    name: str
    source_id: str
    regions: tuple[str, ...]
    columns: dict[str, tuple[int, ...]]


def parse_fusion_state(info: Any) -> FusionStateLayout:
    """The ``FusionStateLayout``: every region has every field (``region.field`` labels)."""
    m = _meta(info, FUSION_STATE_TYPE)
    _labelled(m)
    idx = m.index()
    fields = [f for f, _ in FUSION_STATE_FIELDS]
    regions: list[str] = []
    for lab in m.labels:
        region, _, f = lab.rpartition(".")
        if region and f in fields and region not in regions:
            regions.append(region)
    if not regions:
        raise StreamContractError(f"{m.where()} has no 'region.arkit_weight' channels")
    lacking = [f"{r}.{f}" for r in regions for f in fields if f"{r}.{f}" not in idx]
    if lacking:
        raise StreamContractError(f"{m.where()} lacks channel(s) {', '.join(lacking[:4])}")
    return FusionStateLayout(m.name, m.source_id, tuple(regions),
                             {f: tuple(idx[f"{r}.{f}"] for r in regions) for f in fields})


# --------------------------------------------------------------------------- inlets


@dataclass(frozen=True)
class InletSettings:
    """How an inlet is opened (see ``pylsl.StreamInlet``)."""

    max_buflen: int
    """Seconds (irregular streams: hundreds of samples) the inlet buffers before dropping."""
    max_chunklen: int
    """Samples per chunk the outlet sends (0: the sender's choice)."""
    recover: bool
    """Reconnect to the same source (by source_id) when it is lost and comes back."""
    clocksync: bool
    """Timestamps converted to the local clock (``proc_clocksync``)."""
    monotonize: bool
    """Timestamps forced non-decreasing (``proc_monotonize``)."""
    dejitter: bool = False
    """Timestamps smoothed onto a regular grid (``proc_dejitter``): never here, since imusic
    timestamps are already the device's (a regression would erase gaps)."""


INLETS: dict[str, InletSettings] = {
    # As LabRecorder: raw sender timestamps, clock offsets measured separately
    # (inlet.time_correction) and written beside them, so nothing is lost or smoothed.
    "record": InletSettings(max_buflen=360, max_chunklen=0, recover=True, clocksync=False,
                            monotonize=False),
    # A consumer acting on the newest data (the model, the hybrid's ARKit, the demo's truth):
    # local-clock timestamps that never go back; a short buffer (old data is useless).
    "live": InletSettings(max_buflen=5, max_chunklen=0, recover=True, clocksync=True,
                          monotonize=True),
    # The viewer: only the newest frame matters; local clock, so that latency shows right.
    "view": InletSettings(max_buflen=2, max_chunklen=0, recover=True, clocksync=True,
                          monotonize=False),
}
"""The inlet settings per purpose: the only ways imusic opens an inlet."""


def open_inlet(info: Any, purpose: str) -> Any:
    """A ``pylsl.StreamInlet`` on a resolved ``info`` with the settings ``INLETS[purpose]``."""
    import pylsl

    s = INLETS[purpose]
    flags = ((pylsl.proc_clocksync if s.clocksync else 0)
             | (pylsl.proc_monotonize if s.monotonize else 0)
             | (pylsl.proc_dejitter if s.dejitter else 0))
    return pylsl.StreamInlet(info, max_buflen=s.max_buflen, max_chunklen=s.max_chunklen,
                             recover=s.recover, processing_flags=flags)


def predicate(stype: str | None = None, name: str | None = None, extra: str = "") -> str:
    """An LSL XPath predicate: the type, and the stream named (or with source_id) ``name``;
    ``extra`` is and-ed on (``"desc/source='arkit'"``). Quotes are dropped from ``name``."""
    parts = [f"type='{stype}'"] if stype else []
    if name:
        n = name.replace("'", "")
        parts.append(f"(name='{n}' or source_id='{n}')")
    if extra:
        parts.append(extra)
    return " and ".join(parts) or "true()"


def resolve(pred: str, minimum: int = 1, timeout_s: float = 1.0) -> list:
    """The streams matching ``pred``: returns once ``minimum`` answered or ``timeout_s``
    passed (``minimum=0``: whatever answers within ``timeout_s``)."""
    import pylsl

    return list(pylsl.resolve_bypred(pred, minimum, timeout_s))


def resolve_one(pred: str, what: str, fix: str, timeout_s: float = 10.0,
                only_one_s: float | None = None) -> Any:
    """The first stream matching ``pred``; ``LookupError`` naming ``what`` and the ``fix``
    when none appears within ``timeout_s``. With ``only_one_s``, look that much longer for
    others and refuse to choose (``LookupError`` listing them) when there are several."""
    found = resolve(pred, 1, timeout_s)
    if not found:
        raise LookupError(f"no {what} found in {timeout_s:.0f} s: {fix}")
    if only_one_s is not None:
        streams = {i.uid(): i for i in found + resolve(pred, 0, only_one_s)}
        if len(streams) > 1:
            names = ", ".join(sorted(f"{i.name()} (source_id {i.source_id()})"
                                     for i in streams.values()))
            raise LookupError(f"{len(streams)} streams match {what}: {names}; name one with "
                              f"--lsl NAME (a name or a source_id)")
    return found[0]


def continuous_resolver(pred: str) -> Any:
    """liblsl's background resolver for ``pred`` (``.results()`` lists what it sees)."""
    import pylsl

    return pylsl.ContinuousResolver(pred=pred)
