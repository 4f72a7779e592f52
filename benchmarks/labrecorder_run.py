"""Run LabRecorder's recording engine on LSL streams, for bench_record's side-by-side run.

The ``labrecorder`` wheel on PyPI (1.0.0rc0) ships ``bin/LabRecorderCLI`` and a pybind11
module ``labrecorder`` with ``Recording(filename, streams, ...)``: LabRecorder's own C++
``recording`` class and libxdfwriter, the code LabRecorderCLI runs. The CLI binary in that
wheel crashes in the dynamic loader here (its ELF was patched badly), so this script drives the
same engine through the module. Nothing is installed: the unzipped wheel's folder goes on
``sys.path``.

    python benchmarks/labrecorder_run.py WHEEL_DIR OUT.xdf PREDICATE [PREDICATE ...]

Prints ``ready RSS_KB`` (its resident set before recording starts: Python and pylsl) once the
streams are found and recording, then records until a line arrives on stdin, stops, prints
``stopped`` and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path


def rss_kb() -> int:
    """VmRSS of this process, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    wheel, out, preds = argv[0], argv[1], argv[2:]
    sys.path.insert(0, wheel)
    import labrecorder
    import pylsl

    infos = []
    for pred in preds:
        found = pylsl.resolve_bypred(pred, 1, 30.0)
        if not found:
            print(f"labrecorder_run: no stream matches {pred}", file=sys.stderr)
            return 1
        infos.extend(found)
    base = rss_kb()
    rec = labrecorder.Recording(out, infos)
    print(f"ready {base}", flush=True)
    sys.stdin.readline()
    rec.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
