"""The ``imusic`` command line.

Each subcommand lives in its own module under ``imusic/commands/`` and defines:

* ``HELP``: one line for ``imusic --help``;
* ``EXAMPLE``: an example invocation shown at the end of the command's ``--help``;
* ``add_arguments(parser)``: its options;
* ``run(args) -> int``: the work (heavy imports go inside, so ``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from imusic import __version__

COMMANDS: tuple[str, ...] = (
    "demo", "emulate", "devices", "stream", "arkit", "record", "session", "info", "sync",
    "import", "simulate", "train", "eval", "live", "hybrid", "view", "export", "bench",
)
"""Subcommands in the order ``imusic --help`` lists them (module ``imusic.commands.<name>``)."""


def _module(name: str) -> ModuleType | None:
    module = "import_" if name == "import" else name  # 'import' is a Python keyword
    try:
        return importlib.import_module(f"imusic.commands.{module}")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("imusic.commands"):
            return None  # not built yet
        raise


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="imusic",
        description="Wearable facial capture with micro-IMUs: record, train, live, hybrid.",
        epilog="Run 'imusic COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"imusic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        if mod is None:
            continue
        p = sub.add_parser(
            name, help=mod.HELP, description=mod.HELP,
            epilog=f"example:\n  {mod.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imusic`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        rc = int(args._run(args) or 0)
        sys.stdout.flush()   # a closed pipe shows here, inside the boundary, not at exit
        return rc
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()


SIGPIPE_EXIT = 128 + 13
"""Exit status after the reader of stdout went away (``imusic info | head``): what a shell
reports for a Unix tool killed by SIGPIPE."""


def _reader_went_away() -> int:
    """Stop quietly, as Unix tools do when the other end of their pipe closes: point stdout
    at /dev/null so that the interpreter's last flush has nowhere to fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return SIGPIPE_EXIT


if __name__ == "__main__":
    sys.exit(main())
