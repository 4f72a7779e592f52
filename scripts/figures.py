"""Build the README's one Figures table from the benchmark results (benchmarks/results/*.json).

Every figure the README quotes is measured by a benchmark that writes JSON; this script is the
only place that turns that JSON into prose, so a number is stated once and every other mention
links to the table. Each row names its source file, and the run's date and machine come from
that file, not from memory.

    python scripts/figures.py            # rewrite the table in README.md (between the markers)
    python scripts/figures.py --check    # exit 1 if README.md's table is not what the JSON says
    python scripts/figures.py --print    # print the table

A row whose JSON is missing says so in the table instead of keeping an old number.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # hardware.vocabulary names the no-gaze/tongue figure
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
BEGIN = "<!-- figures:begin (made by scripts/figures.py from benchmarks/results; do not edit) -->"
END = "<!-- figures:end -->"


@dataclass(frozen=True)
class Row:
    """One line of the table: what is measured, how to read it from its JSON, the target."""

    what: str
    source: str                                  # benchmarks/results/<source>.json
    figure: Callable[[dict[str, Any]], str]      # the JSON document -> the figure as text
    target: str = ""


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    for r in rows:
        if all(str(r.get(k, "")).startswith(str(v)) for k, v in match.items()):
            return r
    raise KeyError(f"no result row with {match}")


def _twin(d: dict[str, Any]) -> str:
    r = _find(d["results"], case="imusic11 (12 sensors), full error")
    return f"{r['wall_s']:.1f} s ({r['x_realtime']:.0f}x real time)"


def _decoder(d: dict[str, Any]) -> str:
    rows = d["results"]
    fast = _find(rows, **{"instants/frame": 4, "read bytes": 256, "path": "decode"})
    full = _find(rows, **{"instants/frame": 4, "read bytes": 256, "path": "decode+clock"})
    return (f"{fast['Msensor-samples/s']:.1f} M sensor-samples/s "
            f"({full['Msensor-samples/s']:.1f} M with clock map and SI rows)")


def _stream(d: dict[str, Any]) -> str:
    r = d["results"][0]
    return f"{r['cpu_%_of_core']:.1f}% of one core, {r['lost']} lost"


def _emulator(d: dict[str, Any]) -> str:
    by = {r["transport"]: r["stream_cpu_pct_of_core"] for r in d["results"]}
    serial_udp = "/".join(f"{by[t]:.1f}" for t in ("serial", "udp") if t in by)
    out = f"{serial_udp}% of a core (serial/UDP)"
    if "ble" in by:
        out += f", {by['ble']:.0f}% (BLE, both bumble stacks in one process)"
    return out


def _record(d: dict[str, Any]) -> str:
    r = d["results"][0]
    return (f"{r['session_min']:.0f} min at {r['speed_x']:.0f}x: {r['lost_imu'] + r['lost_arkit']}"
            f" samples lost, {r['peak_rss_mb']:.0f} MB peak RSS, {r['mb_per_hour']:.0f} MB per hour")


def _record_realtime(d: dict[str, Any]) -> str:
    r = d["results"][0]
    out = (f"{r['wearables']} wearable(s), {r['minutes']:g} min real time: file "
           f"{r['imusic_mb_per_hour']:.0f} MB/h, CPU {r['imusic_cpu_pct']:.1f}% of a core, "
           f"peak RSS {r['imusic_peak_rss_mb']:.0f} MB")
    if r.get("labrecorder") == "ran":
        out += (f"; LabRecorder {r['lr_mb_per_hour']:.0f} MB/h, {r['lr_cpu_pct']:.2f}% "
                f"(ratios: file {r['ratio_file']:.2f}x, CPU {r['ratio_cpu']:.1f}x)")
    else:
        out += f"; XDF of the same streams {r['xdf_computed_mb_per_hour']:.0f} MB/h (computed)"
    return out


def _runtime(d: dict[str, Any]) -> str:
    r = next(x for x in d["results"] if x.get("default"))
    return f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms per frame ({r['ddim_steps']} DDIM steps)"


def _train_time(d: dict[str, Any]) -> str:
    return f"{d['train_time_s']:.0f} s"


def _live(d: dict[str, Any]) -> str:
    r = d["results"]
    text = (f"--{r.get('link', 'serial')}: p50 {r['motion_to_output_p50_ms']:.1f} ms, p99 "
            f"{r['motion_to_output_p99_ms']:.1f} ms")
    for link, o in d.get("other_links", {}).items():
        text += (f"; --{link}: p50 {o['motion_to_output_p50_ms']:.1f} ms, p99 "
                 f"{o['motion_to_output_p99_ms']:.1f} ms")
    return text + (f" (frame delay incl. look-ahead: p50 {r['frame_delay_p50_ms']:.0f} ms, "
                   f"p99 {r['frame_delay_p99_ms']:.0f} ms)")


def _viewer(d: dict[str, Any]) -> str:
    parts = []
    for r in d["results"]:
        parts.append(f"{r['case']}: {r['fps']:.1f}")
    return "frames/s: " + "; ".join(parts)


def _firmware(d: dict[str, Any]) -> str:
    r = d["results"]["codec"][0]
    return f"{r['encode_us']:.1f} us encode, {r['decode_us']:.1f} us decode per {r['bytes']}-byte frame"


def _arkit(d: dict[str, Any]) -> str:
    rows = d["results"]
    parse = _find(rows, case="parse_packet")["rate"]
    udp = _find(rows, case="receiver UDP->LSL")["rate"]
    return f"{parse / 1e3:.0f} k parsed/s; UDP to LSL {udp / 1e3:.0f} k packets/s"


def _headpose(d: dict[str, Any]) -> str:
    rows = d["results"]
    mag = [r["angle_rms"] for r in rows if r["magnetometer"] == "yes"]
    nomag = [r["angle_rms"] for r in rows if r["magnetometer"] == "no"]
    return (f"{min(mag):.1f}-{max(mag):.1f} deg RMS with magnetometer, "
            f"{min(nomag):.1f}-{max(nomag):.1f} without (10 min twin takes)")


def _accuracy(held_out: str) -> Callable[[dict[str, Any]], str]:
    def figure(d: dict[str, Any]) -> str:
        r = d["results"][held_out]
        m = r["imusic"]
        return (f"{m['mae_no_gaze_tongue']:.2f} (stage 1 {r['stage1']['mae_no_gaze_tongue']:.2f}, "
                f"ridge {r['ridge']['mae_no_gaze_tongue']:.2f}, mean face "
                f"{r['mean_face']['mae_no_gaze_tongue']:.2f}); mouth {m['mouth']:.2f}, jaw "
                f"{m['jaw']:.2f}; jitter {m['jitter']:.2f}")
    return figure


def _hybrid(d: dict[str, Any]) -> str:
    from imusic.hardware.vocabulary import SEEN_KEY, SEEN_LABEL

    r = d["results"]
    key = SEEN_KEY if SEEN_KEY in r["hybrid"] else "all"   # results from before the split
    text = (f"hybrid {r['hybrid'][key]:.2f} vs ARKit hold {r['arkit_hold'][key]:.2f} "
            f"({r['hybrid'][key] / r['arkit_hold'][key]:.2f}x), IMU only {r['imu_only'][key]:.2f}")
    if key == SEEN_KEY:
        text = (f"{SEEN_LABEL}: {text}; all 52: hybrid {r['hybrid']['all']:.2f} vs hold "
                f"{r['arkit_hold']['all']:.2f}")
    return text


ROWS: tuple[Row, ...] = (
    Row("twin: 10 min of the 12-sensor rig at 200 Hz", "bench_twin", _twin, "< 30 s"),
    Row("decoder, 12 sensors, 4 instants/frame", "bench_decoder", _decoder),
    Row("`imusic stream`, 12 sensors at 200 Hz", "bench_stream", _stream, "< 10%"),
    Row("emulator, 12 sensors at 200 Hz", "bench_emulator", _emulator),
    Row("recorder, 1 h of 12 x 200 Hz IMU + 60 Hz ARKit played at 30x (losses)", "bench_record", _record),
    Row("C protocol codec on the host", "bench_firmware", _firmware),
    Row("Live Link Face packets", "bench_arkit", _arkit),
    Row("recorder beside LabRecorder, 12 x 200 Hz IMU + 60 Hz ARKit", "bench_record_realtime_w1",
        _record_realtime, "file <= 0.6x XDF, CPU <= 3x, RSS < 40 MB"),
    Row("recorder, two wearables", "bench_record_realtime_w2", _record_realtime,
        "+1 % of a core per wearable"),
    Row("model accuracy, held-out head shapes: MAE x100 without gaze/tongue (twin data)",
        "bench_accuracy", _accuracy("heldout_subjects"), "<= 2.0"),
    Row("model accuracy, held-out performer on held-out head shapes (twin data)",
        "bench_accuracy", _accuracy("heldout_performer"), "<= 3.0"),
    Row("model runtime per 60 Hz frame", "bench_runtime", _runtime, "p99 <= 10 ms"),
    Row("training the bundled model (CPU)", "bench_runtime", _train_time, "< 15 min"),
    Row("`imusic live`, newest sample to output", "bench_live", _live, "p99 < 16.7 ms"),
    Row("head pose from the reference sensor (twin data)", "bench_headpose", _headpose),
    Row("viewer, software GL under Xvfb", "bench_viewer", _viewer,
        ">= 30 one face, >= 20 side by side (live mesh)"),
    Row("hybrid under simulated occlusion, held-out performer, MAE x100 (twin data)",
        "eval_hybrid", _hybrid, "<= 0.5x hold"),
)


def _load(source: str) -> dict[str, Any] | None:
    path = RESULTS / f"{source}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def table() -> str:
    """The Markdown table, one row per ``ROWS`` entry, with each run's date and machine."""
    lines = ["| what | figure | target | measured | source |", "|---|---|---|---|---|"]
    for row in ROWS:
        doc = _load(row.source)
        link = f"[`{row.source}`](benchmarks/results/{row.source}.json)"
        if doc is None:
            lines.append(f"| {row.what} | not measured (no {row.source}.json) | {row.target} | | {link} |")
            continue
        try:
            figure = row.figure(doc)
        except (KeyError, IndexError, TypeError, StopIteration) as err:
            figure = f"unreadable result ({err})"
        m = doc.get("machine", {})
        when = str(doc.get("when", "?"))[:10]
        machine = f"{m.get('cores', '?')} cores" if m else "?"
        load = doc.get("load_average_1min", doc.get("load_1min"))
        if load:                                 # a busy machine's figures are floors
            machine += f", load {max(load) if isinstance(load, list) else load:.1f}"
        lines.append(f"| {row.what} | {figure} | {row.target} | {when}, {machine} | {link} |")
    return "\n".join(lines)


def render(readme: str) -> str:
    """``readme`` with the text between the markers replaced by a fresh table."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"figures: {README} has no figures markers; add the two lines\n{BEGIN}\n{END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md's table is stale")
    ap.add_argument("--print", action="store_true", help="print the table and exit")
    args = ap.parse_args(argv)
    if args.print:
        print(table())
        return 0
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"figures: the table in {README} is not what benchmarks/results says; run "
                  "python scripts/figures.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    print(f"figures: wrote {len(ROWS)} rows into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
