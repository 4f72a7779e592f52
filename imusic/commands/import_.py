"""``imusic import``: a LabRecorder XDF recording into an imusic session file."""

from __future__ import annotations

import argparse

HELP = "import a LabRecorder XDF recording into an HDF5 session (streams, clock offsets, markers)"
EXAMPLE = "imusic import recording.xdf -o session.h5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic import``."""
    parser.add_argument("recording", metavar="RECORDING.xdf", help="XDF file (LabRecorder)")
    parser.add_argument("-o", "--output", default=None, metavar="SESSION.h5",
                        help="new session file (default: RECORDING.h5; never overwritten)")
    parser.add_argument("--subject", default="", help="participant id stored in the session")


def run(args: argparse.Namespace) -> int:
    """Import and print what was imported; exit 2 with a message naming the file on error,
    1 when the XDF file is damaged or truncated (the session then holds what could be read)."""
    import sys
    from pathlib import Path

    from capture.session import SessionError
    from capture.xdf import XdfImportError, import_xdf

    out = Path(args.output) if args.output else Path(args.recording).with_suffix(".h5")
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
