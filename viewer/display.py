"""Finding an X display for Open3D: the user's own, or a private Xvfb started on demand.

Open3D's legacy ``Visualizer`` opens a GLFW window, which needs an X server. On a desktop
``DISPLAY`` is set and used as is. On a headless machine (CI, a server) the viewer starts
``Xvfb`` itself on a free display number and stops it afterwards, so ``imusic view
--snapshot`` works without ``xvfb-run``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
from collections.abc import Iterator


class DisplayError(RuntimeError):
    """No X display can be had: neither ``DISPLAY`` is set nor ``Xvfb`` installed."""


def _read_display_number(fd: int, proc: subprocess.Popen, timeout_s: float) -> str:
    """Read the display number Xvfb writes to ``-displayfd`` once it accepts clients."""
    buf = b""
    ready, _, _ = select.select([fd], [], [], timeout_s)
    while ready:
        chunk = os.read(fd, 64)
        if not chunk:
            break
        buf += chunk
        if buf.endswith(b"\n"):
            break
        ready, _, _ = select.select([fd], [], [], timeout_s)
    number = buf.strip().decode()
    if not number.isdigit():
        err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
        raise DisplayError(f"Xvfb did not start within {timeout_s:.0f} s: {err.strip()[-400:]}")
    return f":{number}"


@contextlib.contextmanager
def virtual_display(width: int = 1920, height: int = 1080,
                    timeout_s: float = 20.0) -> Iterator[str]:
    """Run a private ``Xvfb`` on a free display number; yields ``":N"`` and stops it on exit.

    Xvfb chooses the number itself (``-displayfd``), so parallel runs never collide.
    """
    exe = shutil.which("Xvfb")
    if exe is None:
        raise DisplayError(
            "no X display: DISPLAY is not set and Xvfb is not installed. Fix: "
            "'sudo apt-get install xvfb' (the viewer then starts it itself), run under "
            "'xvfb-run -a imusic view ...', or set DISPLAY to a running X server"
        )
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    try:
        display = _read_display_number(read_fd, proc, timeout_s)
        yield display
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.contextmanager
def ensure_display() -> Iterator[str]:
    """Use ``DISPLAY`` when set; otherwise start Xvfb for the duration and set ``DISPLAY``.

    Raises ``DisplayError`` (naming the fix) when there is no display and no Xvfb.
    """
    current = os.environ.get("DISPLAY")
    if current:
        yield current
        return
    with virtual_display() as display:
        os.environ["DISPLAY"] = display
        try:
            yield display
        finally:
            os.environ.pop("DISPLAY", None)
