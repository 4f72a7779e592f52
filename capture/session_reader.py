"""Reading a session: ``SessionReader`` (and ``open_session``), ``StreamData``, ``Event``.

Part of the session file package (``capture/session.py`` says how the pieces fit). The
reader opens the file through ``capture.session_h5.open_h5`` (so it reads live files and
those of a killed recorder, and fails fast on damaged ones), checks the schema and version,
and wraps every read in ``reading`` so that damage becomes one ``DamagedSessionError`` naming
the file and the part. A live or killed file may have one chunk more in ``time_series`` than
in ``time_stamps``: the reader keeps the common length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imusic.capture.session_h5 import _damaged, is_live, open_h5, reading
from imusic.capture.session_schema import (
    EVENTS,
    HEALTH_FIELDS,
    SCHEMA,
    SCHEMA_VERSION,
    STREAMS,
    DamagedSessionError,
    SessionError,
    StreamSpec,
)
from imusic.capture.session_schema import text_of as _s


@dataclass
class StreamData:
    """One stream of a session, loaded into memory."""

    key: str
    spec: StreamSpec
    time_series: np.ndarray        # (N, C)
    time_stamps: np.ndarray        # (N,) LSL seconds, as received (offsets not applied)
    clock_offsets: np.ndarray      # (M, 2) [local time, offset]
    gaps: np.ndarray               # (G, 2) [start, end]
    health: dict[str, int]

    def channel(self, label: str) -> np.ndarray:
        """The column of the channel named ``label`` (channels are found by label)."""
        try:
            return self.time_series[:, self.spec.labels.index(label)]
        except ValueError:
            raise KeyError(f"stream {self.spec.name!r} has no channel {label!r}") from None


@dataclass
class Event:
    """One row of /events."""

    time: float
    source: str
    text: str


class SessionReader:
    """Reads a session file; opens in SWMR read mode, so it works on live and killed files too.

    Use as a context manager (or call ``close``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SessionError(f"{self.path}: no such session file")
        self.h5 = open_h5(self.path)
        self.live = is_live(self.path)
        """True if a recorder was writing the file when it was opened (``open_h5``)."""
        try:
            with reading(self.path, "the root attributes"):
                schema = _s(self.h5.attrs.get("schema", ""))
                version = int(self.h5.attrs.get("schema_version", 0))
        except SessionError:
            self.h5.close()
            raise
        if schema != SCHEMA:
            self.h5.close()
            raise SessionError(f"{self.path} is not an imusic session (schema {schema!r}, "
                               f"expected {SCHEMA!r})")
        if version > SCHEMA_VERSION:
            self.h5.close()
            raise SessionError(f"{self.path} has schema_version {version}; this imusic reads "
                               f"up to {SCHEMA_VERSION}: upgrade imusic")

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (schema, created, subject, host, ...)."""
        with reading(self.path, "the root attributes"):
            return {k: (_s(v) if isinstance(v, (bytes, str)) else
                        (v.item() if isinstance(v, np.generic) else v))
                    for k, v in self.h5.attrs.items()}

    @property
    def closed_cleanly(self) -> bool:
        """False if the writer never finished (killed recorder, or still recording)."""
        with reading(self.path, "the root attributes"):
            return bool(self.h5.attrs.get("closed_cleanly", False))

    @property
    def keys(self) -> list[str]:
        """Stream keys (groups under /streams)."""
        with reading(self.path, f"/{STREAMS}"):
            return list(self.h5[STREAMS]) if STREAMS in self.h5 else []

    def spec(self, key: str) -> StreamSpec:
        """The stream's spec, rebuilt from its info XML and attributes."""
        g = self._group(key)
        with reading(self.path, f"the header of stream {key!r}"):
            try:
                spec = StreamSpec.from_xml(_s(g["info_xml"][()]))
            except SessionError as err:
                raise DamagedSessionError(f"{self.path}: stream {key!r}: {err}") from err
            spec.labels = [_s(x) for x in g["channel_labels"][()]]
            spec.units = [_s(x) for x in g["channel_units"][()]]
            spec.types = [_s(x) for x in g["channel_types"][()]]
            for attr in ("name", "type", "source_id", "channel_format"):
                if attr in g.attrs:
                    setattr(spec, attr, _s(g.attrs[attr]))
        return spec

    def keys_of_type(self, stream_type: str) -> list[str]:
        """Keys of the streams whose LSL type is ``stream_type`` (case-insensitive)."""
        with reading(self.path, "the stream attributes"):
            return [k for k in self.keys
                    if _s(self._group(k).attrs.get("type", "")).lower() == stream_type.lower()]

    def _group(self, key: str) -> h5py.Group:
        if key not in self.keys:
            raise SessionError(f"{self.path}: no stream {key!r} (streams: {self.keys})")
        # The link exists: a failure to open it is damage (h5py says KeyError for both).
        with reading(self.path, f"stream {key!r}"):
            try:
                return self.h5[STREAMS][key]
            except KeyError as err:
                raise _damaged(self.path, f"stream {key!r}", err) from err

    def stream(self, key: str) -> StreamData:
        """Load one stream's data."""
        g = self._group(key)
        with reading(self.path, f"the data of stream {key!r}"):
            # Rows are appended series-first: on a live or killed file keep the common length.
            n = min(g["time_series"].shape[0], g["time_stamps"].shape[0])
            ts = g["time_series"][:n]
            if ts.dtype == object:
                ts = np.vectorize(_s, otypes=[object])(ts) if ts.size else ts
            health = g["health"][()]
            cols = json.loads(_s(g["health"].attrs.get("columns",
                                                       json.dumps(list(HEALTH_FIELDS)))))
            return StreamData(
                key=key, spec=self.spec(key), time_series=ts, time_stamps=g["time_stamps"][:n],
                clock_offsets=g["clock_offsets"][()], gaps=g["gaps"][()],
                health=dict(zip(cols, (int(v) for v in health))),
            )

    def events(self) -> list[Event]:
        """All events, in the order written."""
        with reading(self.path, f"/{EVENTS}"):
            if EVENTS not in self.h5:
                return []
            ev = self.h5[EVENTS]
            n = min(ev["time"].shape[0], ev["source"].shape[0], ev["text"].shape[0])
            return [Event(float(t), _s(s), _s(x))
                    for t, s, x in zip(ev["time"][:n], ev["source"][:n], ev["text"][:n])]

    @property
    def has_aligned(self) -> bool:
        """True once ``imusic sync`` (or ``imusic simulate``) has written the aligned group."""
        with reading(self.path, "the root group"):
            return "aligned" in self.h5

    @property
    def has_calibration(self) -> bool:
        """True once calibration has been stored (/calibration)."""
        with reading(self.path, "the root group"):
            return "calibration" in self.h5

    def close(self) -> None:
        """Close the file."""
        self.h5.close()

    def __enter__(self) -> "SessionReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(path: str | Path) -> SessionReader:
    """Open a session for reading (``with open_session(p) as s: ...``)."""
    return SessionReader(path)
