"""Live Link Face CSV takes: reader and writer.

The iPhone app writes one CSV per take: a header ``Timecode,<count column>,<61 names>`` and one
row per captured frame, ``HH:MM:SS:FF.fff,61,<61 values>``. A frame on which the face was lost
is written as ``HH:MM:SS:FF.fff,0`` with no values. Details that vary between app versions and
that this reader copes with (see capture/ARKIT.md):

* the count column is ``BlendShapeCount`` (2021 app) or ``BlendshapeCount`` (later): matched
  without regard to case, and optional;
* the value columns are in the app's CSV order, which is not the UDP wire order (``JawRight``
  before ``JawLeft``): columns are read by name, any case, any order;
* ``FF`` in the timecode counts frames at 60 per second whatever the capture rate, and
  ``.fff`` is a sub-frame fraction, so the time of day is ``HH*3600 + MM*60 + SS + FF.fff/60``.

Face-lost rows stay in the take as NaN rows with ``face_found`` False: they are gaps, never zeros.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from imusic.hardware.vocabulary import (
    LIVELINK_CSV_NAMES,
    LIVELINK_WIRE_NAMES,
    N_BLENDSHAPES,
    N_STREAM_CHANNELS,
    csv_column_index,
)

TIMECODE_FRAME_RATE = 60
"""``FF`` of a Live Link Face timecode counts at this rate whatever the capture rate."""

COUNT_COLUMN = "BlendshapeCount"
"""Spelling of the count column that the current app writes (the 2021 app wrote
``BlendShapeCount``; the reader accepts either)."""

DECIMALS = 10
"""Decimals the app writes for each value."""

SHIPPED_TAKES_DIR = Path(__file__).resolve().parent.parent / "hardware" / "data" / "takes"
"""Short real takes shipped with the package (MIT, see PROVENANCE.md there): the default
motion of the examples, so that they run from a plain clone."""

_TIMECODE = re.compile(r"^\s*(\d{1,2}):(\d{1,2}):(\d{1,2})[:;.](\d{1,3})(?:\.(\d+))?\s*$")
_DAY = 86400.0


class LiveLinkCSVError(ValueError):
    """A Live Link Face CSV take that cannot be read; the message names the file and line."""


@dataclass
class LiveLinkTake:
    """One Live Link Face take, values in ``hardware.vocabulary.STREAM_NAMES`` order."""

    t: np.ndarray            # (T,) float64 seconds since the first row's timecode
    values: np.ndarray       # (T, 61) float32, stream order; NaN rows where the face was lost
    face_found: np.ndarray   # (T,) bool
    fps: float               # capture rate estimated from the timecodes (30 or 60 in practice)
    path: Path
    start_timecode_s: float = 0.0   # the first row's timecode as seconds of the day

    @property
    def n_frames(self) -> int:
        """Number of rows (face-lost rows included)."""
        return len(self.t)

    @property
    def blendshapes(self) -> np.ndarray:
        """``(T, 52)`` blendshapes in Apple's order (NaN on face-lost rows)."""
        return self.values[:, :N_BLENDSHAPES]

    @property
    def pose(self) -> np.ndarray:
        """``(T, 9)`` head and eye yaw/pitch/roll (NaN on face-lost rows)."""
        return self.values[:, N_BLENDSHAPES:]

    @property
    def duration(self) -> float:
        """Seconds from the first to the last row."""
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0


def shipped_takes() -> list[Path]:
    """The shipped takes (``hardware/data/takes/*.csv``), sorted by name."""
    takes = sorted(SHIPPED_TAKES_DIR.glob("*.csv"))
    if not takes:
        raise FileNotFoundError(f"no shipped takes in {SHIPPED_TAKES_DIR}: reinstall the "
                                "package, or give Live Link Face CSV files")
    return takes


def shipped_take(name: str = "alex_rom_3") -> Path:
    """One shipped take by name (default: the range-of-motion excerpt)."""
    path = SHIPPED_TAKES_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped take {name!r} in {SHIPPED_TAKES_DIR}; there are "
                                f"{[p.stem for p in SHIPPED_TAKES_DIR.glob('*.csv')]}")
    return path


def parse_timecode(text: str) -> float:
    """``HH:MM:SS:FF.fff`` to seconds of the day (``FF.fff`` in 1/60 s frames).

    Raises ``ValueError`` for anything else.
    """
    m = _TIMECODE.match(text)
    if not m:
        raise ValueError(f"timecode {text!r} is not HH:MM:SS:FF.fff")
    h, mi, s, ff = (int(g) for g in m.groups()[:4])
    frac = float("0." + m.group(5)) if m.group(5) else 0.0
    if mi >= 60 or s >= 60 or ff >= TIMECODE_FRAME_RATE or h >= 24:
        raise ValueError(f"timecode {text!r} has a field out of range")
    return h * 3600.0 + mi * 60.0 + s + (ff + frac) / TIMECODE_FRAME_RATE


def format_timecode(seconds: float) -> str:
    """Seconds of the day to the app's ``HH:MM:SS:FF.fff`` (wraps at midnight)."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot write a timecode for {seconds!r} seconds")
    # Integer thousandths of a 1/60 s frame, so that rounding never yields FF == 60.
    milli = int(round(seconds * TIMECODE_FRAME_RATE * 1000)) % int(_DAY * TIMECODE_FRAME_RATE * 1000)
    frames, sub = divmod(milli, 1000)
    secs, ff = divmod(frames, TIMECODE_FRAME_RATE)
    mins, s = divmod(secs, 60)
    h, mi = divmod(mins, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}:{ff:02d}.{sub:03d}"


def estimate_fps(t: np.ndarray) -> float:
    """Capture rate from row times: 1 / median step, snapped to a whole rate within 1 %."""
    d = np.diff(np.asarray(t, np.float64))
    d = d[d > 0]
    if len(d) == 0:
        return float("nan")
    fps = 1.0 / float(np.median(d))
    whole = round(fps)
    return float(whole) if whole > 0 and abs(fps - whole) <= 0.01 * whole else fps


def read_take(path: str | Path) -> LiveLinkTake:
    """Read a Live Link Face CSV take.

    Raises ``FileNotFoundError`` for a missing file and ``LiveLinkCSVError`` (naming the file
    and line) for a binary file, a header without the 61 value columns, a bad timecode or a
    short row.
    """
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            return parse_take(f, path)
    except UnicodeDecodeError as err:
        raise LiveLinkCSVError(
            f"{path}: not a text file (byte {err.start} is not UTF-8); a Live Link Face take "
            "is the CSV the app saves with each recording") from None
    except IsADirectoryError:
        raise LiveLinkCSVError(f"{path}: is a folder, not a Live Link Face CSV take") from None


def parse_take(lines: Iterable[str] | str, path: str | Path = "<string>") -> LiveLinkTake:
    """Parse a take from text (or an iterable of lines); ``path`` only names it in errors."""
    path = Path(path)
    if isinstance(lines, str):
        lines = io.StringIO(lines, newline="")
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise LiveLinkCSVError(f"{path}: empty file, expected a Live Link Face CSV header") from None
    except csv.Error as err:
        raise LiveLinkCSVError(f"{path}:1: unreadable CSV header ({err})") from None
    lower = [h.strip().lower() for h in header]
    if "timecode" not in lower:
        raise LiveLinkCSVError(
            f"{path}:1: no 'Timecode' column; is this a Live Link Face CSV take? "
            f"(header starts {','.join(header[:3])!r})"
        )
    tc_col = lower.index("timecode")
    count_col = lower.index("blendshapecount") if "blendshapecount" in lower else None
    try:
        idx = csv_column_index(header)
    except ValueError as err:
        raise LiveLinkCSVError(f"{path}:1: {err}") from None
    need = int(idx.max()) + 1

    times: list[float] = []
    rows: list[np.ndarray] = []
    found: list[bool] = []
    lost_row = np.full(N_STREAM_CHANNELS, np.nan, np.float32)
    day_offset = 0.0
    prev = None
    line = 1
    try:
        for line_no, row in enumerate(reader, start=2):
            line = line_no
            if not row or all(not c.strip() for c in row):
                continue  # blank line (e.g. at the end)
            where = f"{path}:{line_no}"
            if len(row) <= tc_col:
                raise LiveLinkCSVError(f"{where}: row has no timecode")
            try:
                tod = parse_timecode(row[tc_col])
            except ValueError as err:
                raise LiveLinkCSVError(f"{where}: {err}") from None
            tod += day_offset
            if prev is not None and tod < prev:
                if prev - tod > _DAY / 2:  # the take ran past midnight
                    day_offset += _DAY
                    tod += _DAY
                else:
                    raise LiveLinkCSVError(
                        f"{where}: timecode {row[tc_col]!r} goes back in time "
                        f"({prev - tod:.3f} s before the previous row)"
                    )
            prev = tod
            count = None
            if count_col is not None and len(row) > count_col and row[count_col].strip():
                try:
                    count = int(row[count_col])
                except ValueError:
                    raise LiveLinkCSVError(
                        f"{where}: count column {row[count_col]!r} is not an integer"
                    ) from None
            has_values = len(row) >= need and any(row[i].strip() for i in idx)
            if count == 0 or (count is None and not has_values):
                times.append(tod)
                rows.append(lost_row)
                found.append(False)
                continue
            if len(row) < need:
                raise LiveLinkCSVError(
                    f"{where}: row has {len(row)} fields, the header needs {need} "
                    "(a face-lost row is just 'Timecode,0')"
                )
            try:
                vals = np.array([float(row[i]) for i in idx], dtype=np.float32)
            except ValueError as err:
                raise LiveLinkCSVError(f"{where}: value is not a number ({err})") from None
            if not np.isfinite(vals).all():
                bad = [h for h, v in zip(np.array(header)[idx], vals) if not np.isfinite(v)]
                raise LiveLinkCSVError(
                    f"{where}: {bad[0]} is not a finite number (a face-lost row is "
                    "'Timecode,0', not NaN values)")
            times.append(tod)
            rows.append(vals)
            found.append(True)
    except csv.Error as err:
        raise LiveLinkCSVError(f"{path}:{line}: unreadable CSV ({err})") from None
    if not times:
        raise LiveLinkCSVError(f"{path}: header only, the take has no frames")
    tod = np.asarray(times, np.float64)
    t = tod - tod[0]
    return LiveLinkTake(
        t=t, values=np.vstack(rows).astype(np.float32, copy=False),
        face_found=np.asarray(found, bool), fps=estimate_fps(t), path=path,
        start_timecode_s=float(tod[0] % _DAY),
    )


def write_take(
    path: str | Path,
    t: Sequence[float] | np.ndarray,
    values: np.ndarray,
    face_found: Sequence[bool] | np.ndarray | None = None,
    *,
    start_timecode_s: float = 0.0,
    count_column: str = COUNT_COLUMN,
) -> Path:
    """Write a take as the app writes it (header, timecodes, 10 decimals, face-lost rows).

    ``t`` is seconds (any origin: the first row gets ``start_timecode_s``); ``values`` is
    ``(T, 61)`` in stream order (or ``(T, 52)`` blendshapes, poses written as 0). Rows where
    ``face_found`` is False, or (when it is None) rows with any NaN, are written as
    ``Timecode,0``. Returns the path.
    """
    path = Path(path)
    t = np.asarray(t, np.float64).reshape(-1)
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[1] not in (N_BLENDSHAPES, N_STREAM_CHANNELS):
        raise ValueError(f"values for {path} must be (T, 61) or (T, 52), got {values.shape}")
    if len(values) != len(t):
        raise ValueError(f"{path}: {len(t)} times but {len(values)} rows of values")
    if values.shape[1] == N_BLENDSHAPES:
        values = np.hstack([values, np.zeros((len(values), N_STREAM_CHANNELS - N_BLENDSHAPES))])
    if face_found is None:
        found = ~np.isnan(values).any(axis=1)
    else:
        found = np.asarray(face_found, bool).reshape(-1)
        if len(found) != len(t):
            raise ValueError(f"{path}: {len(t)} times but {len(found)} face_found flags")
    if not np.isfinite(t).all():
        raise ValueError(f"{path}: times must be finite")
    if len(t) > 1 and (np.diff(t) < 0).any():
        raise ValueError(f"{path}: times must not decrease")
    ok = found.copy()
    if (ok & ~np.isfinite(values).all(axis=1)).any():
        raise ValueError(f"{path}: a row marked face_found has NaN or inf values")
    # CSV column order differs from stream order (JawRight before JawLeft, ...).
    to_csv = np.array([LIVELINK_WIRE_NAMES.index(n) for n in LIVELINK_CSV_NAMES], np.intp)
    csv_values = values[:, to_csv]
    t0 = t[0] if len(t) else 0.0
    out = io.StringIO()
    out.write(",".join(("Timecode", count_column) + LIVELINK_CSV_NAMES) + "\n")
    row_fmt = ",".join([f"%.{DECIMALS}f"] * N_STREAM_CHANNELS)
    for ti, row, ok_i in zip(t, csv_values.tolist(), found):
        tc = format_timecode(start_timecode_s + (ti - t0))
        if ok_i:
            out.write(f"{tc},{N_STREAM_CHANNELS},{row_fmt % tuple(row)}\n")
        else:
            out.write(f"{tc},0\n")
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    return path
