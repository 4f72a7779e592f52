"""Start the viewer in its own process, so that drawing never slows a capture pipeline.

``imusic live`` / ``imusic demo`` can call ``launch_view(["--lsl", "imusic-model"])``: the
viewer then runs as ``python -m imusic.cli view ...`` beside them, reading the same LSL
streams, and a slow or closed window cannot stall the caller.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def view_command(arguments: Sequence[str]) -> list[str]:
    """The command line that runs ``imusic view`` with ``arguments`` in this interpreter."""
    return [sys.executable, "-m", "imusic.cli", "view", *arguments]


def launch_view(arguments: Sequence[str], **popen_options: object) -> subprocess.Popen:
    """Start ``imusic view ARGUMENTS`` as a child process and return it (not waited for).

    The caller owns the process: ``proc.terminate()`` closes the window.
    """
    return subprocess.Popen(view_command(arguments), **popen_options)  # type: ignore[arg-type]
