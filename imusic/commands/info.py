"""``imusic info``: summarise and validate a session file."""

from __future__ import annotations

import argparse

HELP = "summarise and validate a session file (streams, rates, gaps, offsets, aligned, lag)"
EXAMPLE = "imusic info session.h5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic info``."""
    parser.add_argument("session", metavar="SESSION.h5", help="session file to inspect")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 1 if the file is invalid."""
    import dataclasses
    import sys

    from imusic.capture.session_check import check_session, format_report
    from imusic.commands._json import dumps

    rep = check_session(args.session)
    if args.json:
        d = dataclasses.asdict(rep)
        d["path"], d["valid"] = str(rep.path), rep.valid
        print(dumps(d))
    else:
        print(format_report(rep))
    if not rep.valid:
        print(f"imusic info: {args.session} is invalid: {rep.errors[0]}", file=sys.stderr)
        return 1
    return 0
