"""Builds the portable C codec and its host tool once per test session.

One ``cc`` invocation compiles hardware/firmware/protocol, hardware/firmware/core and
hardware/firmware/host into ``imp_tool`` with AddressSanitizer and UBSan, warnings as errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "hardware" / "firmware"
SOURCES = [
    FIRMWARE / "protocol" / "imusic_protocol.c",
    *sorted((FIRMWARE / "core").glob("*.c")),
    *sorted((FIRMWARE / "host").glob("*.c")),
]
CFLAGS = [
    "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O1", "-g", "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
    "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wstrict-prototypes",
]
# Sanitizer findings end the process with a distinctive exit code and a report on stderr.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "abort_on_error=0:exitcode=86:detect_leaks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
}


class ImpTool:
    """The compiled ``imp_tool``: ``run(mode, stdin_bytes) -> CompletedProcess``."""

    def __init__(self, path: Path):
        self.path = path
        self.env = {**os.environ, **SANITIZER_ENV}
        """Environment to run it with (sanitizer options)."""

    def run(self, mode: str, data: bytes = b"", *, timeout: float = 60,
            args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """Run one mode (with ``args``) with ``data`` on stdin; raises AssertionError naming a
        sanitizer report."""
        proc = subprocess.run([str(self.path), mode, *args], input=data, capture_output=True,
                              timeout=timeout, env=self.env, check=False)
        stderr = proc.stderr.decode(errors="replace")
        assert "Sanitizer" not in stderr and "runtime error" not in stderr, (
            f"imp_tool {mode}: sanitizer report:\n{stderr[-4000:]}")
        return proc


@pytest.fixture(scope="session")
def imp_tool(tmp_path_factory: pytest.TempPathFactory) -> ImpTool:
    """The C codec's host tool, built with sanitizers (fails with a clear message if no cc)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler (cc) on PATH: install gcc or clang (apt-get install gcc) to "
                    "build hardware/firmware's portable codec")
    out = tmp_path_factory.mktemp("imp_tool") / "imp_tool"
    cmd = [cc, *CFLAGS, f"-I{FIRMWARE / 'protocol'}", f"-I{FIRMWARE / 'core'}",
           *map(str, SOURCES), "-lm", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        pytest.fail(f"compiling the C codec failed ({' '.join(cmd)}):\n{proc.stderr[-6000:]}")
    return ImpTool(out)
