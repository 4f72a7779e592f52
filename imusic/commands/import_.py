"""``imusic import``: a LabRecorder XDF recording, or IMUSIC release take folders, into imusic
session files."""

from __future__ import annotations

import argparse

HELP = ("import a LabRecorder XDF recording, or IMUSIC release takes "
        "(participant_N_testcase_M folders), into HDF5 sessions")
EXAMPLE = ("imusic import recording.xdf -o session.h5 | "
           "imusic import data/participant_1_testcase_2 -o take.h5 | "
           "imusic import data/ -o sessions/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic import``."""
    parser.add_argument("recording", metavar="RECORDING",
                        help="XDF file (LabRecorder), an IMUSIC release take folder, or a "
                             "folder of take folders (a release's data/)")
    parser.add_argument("-o", "--output", default=None, metavar="OUT",
                        help="new session file (default: RECORDING.h5; never overwritten); "
                             "for a folder of takes, the folder to write one session per take")
    parser.add_argument("--subject", default="", help="participant id stored in the session "
                                                      "(XDF; release takes name their own)")


def _import_release(src, out, takes) -> int:
    import sys
    from pathlib import Path

    from imusic.capture.imusic_release import ReleaseError, import_take
    from imusic.capture.session import SessionError

    src = Path(src)
    single = len(takes) == 1 and takes[0] == src
    if single:
        targets = [Path(out) if out else src.with_suffix(".h5")]
    else:
        if not out:
            print(f"imusic import: {src} holds {len(takes)} takes: give -o OUT_DIR for their "
                  "sessions", file=sys.stderr)
            return 2
        out_dir = Path(out)
        if out_dir.suffix == ".h5":
            print(f"imusic import: {src} holds {len(takes)} takes: -o must be a folder, "
                  f"not {out_dir}", file=sys.stderr)
            return 2
        out_dir.mkdir(parents=True, exist_ok=True)
        targets = [out_dir / f"{t.name}.h5" for t in takes]
    failed = 0
    for take, target in zip(takes, targets):
        try:
            t = import_take(take, target)
        except (ReleaseError, SessionError, FileNotFoundError) as err:
            print(f"imusic import: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"wrote {target}: {t.subject} {t.take}, {t.n_frames} frames "
              f"({t.n_frames / 60:.1f} s) of {len(t.sensors)} sensors, source={t.source}",
              file=sys.stderr)
    if failed and not single:
        print(f"imusic import: {failed} of {len(takes)} takes not imported (see above)",
              file=sys.stderr)
    return 2 if failed else 0


def run(args: argparse.Namespace) -> int:
    """Import and print what was imported; exit 2 with a message naming the file on error,
    1 when the XDF file is damaged or truncated (the session then holds what could be read)."""
    import sys
    from pathlib import Path

    from imusic.capture.imusic_release import find_takes
    from imusic.capture.session import SessionError
    from imusic.capture.xdf import XdfImportError, import_xdf

    src = Path(args.recording)
    if src.is_dir():
        takes = find_takes(src)
        if not takes:
            print(f"imusic import: {src} is a folder but holds no IMUSIC release take "
                  "(participant_N_testcase_M with IMU_data/ and Arkit/)", file=sys.stderr)
            return 2
        return _import_release(src, args.output, takes)
    out = Path(args.output) if args.output else src.with_suffix(".h5")
    try:
        report = import_xdf(args.recording, out, subject=args.subject)
    except (FileNotFoundError, XdfImportError, SessionError) as err:
        print(f"imusic import: {err}", file=sys.stderr)
        return 2
    for s in report.streams:
        note = " (clock reset: timestamps synchronized)" if s.clock_reset else ""
        lost = f" ({s.lost} of {s.expected} lost)" if s.lost else ""
        gaps = f", {s.gaps} gaps ({s.gap_s:.1f} s)" if s.gaps else ""
        print(f"  {s.key}: {s.type or '-'} {s.samples} samples{lost}, {s.clock_offsets} clock "
              f"offsets{gaps}{note}", file=sys.stderr)
    print(f"wrote {out}: {len(report.streams)} streams, {report.events} events "
          f"(check it with 'imusic info {out}')", file=sys.stderr)
    if not report.complete:
        lost = sum(s.lost for s in report.streams)
        where = f" ({report.problems[0]})" if report.problems else ""
        print(f"imusic import: {args.recording} is damaged or truncated{where}: {lost} samples "
              f"lost in {sum(1 for s in report.streams if s.lost)} streams; {out} holds what "
              "could be read", file=sys.stderr)
        return 1
    return 0
