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
    """Import and print what was imported; exit 2 with a message naming the file on error."""
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
        print(f"  {s.key}: {s.type or '-'} {s.samples} samples, {s.clock_offsets} clock offsets{note}",
              file=sys.stderr)
    print(f"wrote {out}: {len(report.streams)} streams, {report.events} events "
          f"(check it with 'imusic info {out}')", file=sys.stderr)
    return 0
