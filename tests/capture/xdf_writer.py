"""A small XDF writer for the import tests (format: https://github.com/sccn/xdf/wiki/Specifications).

Not a test module: it writes what LabRecorder writes (file header, stream headers, samples in
chunks, clock offsets, boundary chunks, stream footers with ``sample_count``) so that tests can
make files with clock resets, empty streams, holes and damage.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

BOUNDARY = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")


def chunk(tag: int, content: bytes) -> bytes:
    """One chunk: 4-byte length (tag included), tag, content."""
    return bytes([4]) + struct.pack("<IH", len(content) + 2, tag) + content


def varlen(n: int) -> bytes:
    """An XDF variable-length integer (always the 4-byte form)."""
    return bytes([4]) + struct.pack("<I", n)


def _header(s: dict) -> str:
    chans = "".join(f"<channel><label>c{i}</label><unit>u</unit></channel>"
                    for i in range(s["channels"]))
    return (f'<?xml version="1.0"?><info><name>{s["name"]}</name><type>{s["type"]}</type>'
            f'<channel_count>{s["channels"]}</channel_count><nominal_srate>{s["srate"]}'
            f'</nominal_srate><channel_format>{s["format"]}</channel_format>'
            f'<source_id>{s["name"]}-src</source_id><created_at>1</created_at>'
            f"<desc><channels>{chans}</channels></desc></info>")


def _samples(sid: int, s: dict, rows: slice) -> bytes:
    t, x = s["t"][rows], s["x"][rows]
    body = [struct.pack("<I", sid), varlen(len(t))]
    for ti, row in zip(t, x):
        body.append(bytes([8]) + struct.pack("<d", ti))
        if s["format"] == "string":
            for v in row:
                body.append(varlen(len(v.encode())) + v.encode())
        else:
            body.append(np.asarray(row, "<f4").tobytes())
    return chunk(3, b"".join(body))


def write_xdf(path: Path, streams: list[dict], *, per_chunk: int = 0,
              footers: bool = False) -> bytes:
    """Write ``streams`` (dicts: name, type, channels, srate, format, t, x, offsets) to
    ``path``; samples in chunks of ``per_chunk`` rows (0: one chunk per stream) with a
    boundary chunk after each; a footer per stream when ``footers``. Returns the bytes."""
    out = [b"XDF:", chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, start=1):
        out.append(chunk(2, struct.pack("<I", sid) + _header(s).encode()))
    for sid, s in enumerate(streams, start=1):
        n = len(s["t"])
        step = per_chunk or max(n, 1)
        for a in range(0, n, step):
            out.append(_samples(sid, s, slice(a, a + step)))
            out.append(chunk(5, BOUNDARY))
        for ct, cv in s["offsets"]:
            out.append(chunk(4, struct.pack("<Idd", sid, ct, cv)))
    if footers:
        for sid, s in enumerate(streams, start=1):
            t = s["t"]
            xml = (f'<?xml version="1.0"?><info><first_timestamp>{t[0] if len(t) else 0}'
                   f'</first_timestamp><last_timestamp>{t[-1] if len(t) else 0}'
                   f'</last_timestamp><sample_count>{len(t)}</sample_count></info>')
            out.append(chunk(6, struct.pack("<I", sid) + xml.encode()))
    data = b"".join(out)
    path.write_bytes(data)
    return data
