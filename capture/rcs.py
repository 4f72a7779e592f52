"""LabRecorder's remote-control socket (RCS) for ``imusic record --rcs``.

Lab scripts (PsychoPy, MATLAB) drive LabRecorder over TCP (default port 22345) with one text
command per line; imusic accepts the same lines, so those scripts drive imusic unchanged:

* ``select all`` / ``select none``: record every matching stream (imusic records all IMU,
  Blendshapes and Markers streams; ``select none`` is accepted and changes nothing);
* ``filename {root:DIR} {template:T} {participant:P} {session:S} {task:T} {acquisition:A}
  {modality:M} {run:R}``: the next file. Fields may come in any order; a missing field keeps
  its value. Without a template the BIDS-like name ``sub-P_ses-S_task-T_run-R.h5`` is used
  (capture/protocol_session.take_file_name); a template may use ``%p %s %b %n %m %a`` (p:
  participant, s: session, b: task, n: run, m: modality, a: acquisition) as LabRecorder's;
  ``.xdf`` becomes ``.h5``;
* ``start`` (a new file; an existing one is never overwritten), ``stop``, ``update`` (streams
  are re-resolved continuously, so it only answers).

Every line is answered ``OK`` with no newline, as LabRecorder does; a line imusic cannot do
(an unknown command, ``start`` while recording, a bad ``filename``) is answered
``ERROR <why>`` followed by a newline, and logged. The socket binds to 127.0.0.1 unless told.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imusic.capture.protocol_session import take_file_name

DEFAULT_PORT = 22345
_FIELD_RE = re.compile(r"\{(\w+):([^}]*)\}")
FIELDS = ("root", "template", "participant", "session", "task", "acquisition", "modality", "run")


class RcsError(ValueError):
    """A command that cannot be carried out (the reply says why)."""


@dataclass
class RcsState:
    """The file-name fields as the last ``filename`` set them."""

    fields: dict[str, str] = field(default_factory=lambda: {
        "root": ".", "template": "", "participant": "P001", "session": "1", "task": "task",
        "acquisition": "", "modality": "", "run": "1"})

    def update(self, line: str) -> None:
        """Apply a ``filename {key:value} ...`` line."""
        found = _FIELD_RE.findall(line)
        if not found:
            raise RcsError("filename needs {key:value} fields, e.g. {participant:P01}")
        for k, v in found:
            if k not in FIELDS:
                raise RcsError(f"unknown filename field {k!r} (known: {', '.join(FIELDS)})")
        for k, v in found:
            self.fields[k] = v.strip()

    def path(self) -> Path:
        """The file the next ``start`` records to."""
        f = self.fields
        root = Path(f["root"] or ".")
        if f["template"]:
            name = f["template"]
            for code, key in (("%p", "participant"), ("%s", "session"), ("%b", "task"),
                              ("%n", "run"), ("%m", "modality"), ("%a", "acquisition")):
                name = name.replace(code, f[key])
            p = root / name
            return p.with_suffix(".h5") if p.suffix.lower() in (".xdf", "") else p
        try:
            run = int(f["run"] or 1)
        except ValueError:
            raise RcsError(f"run must be a number, got {f['run']!r}") from None
        try:
            return root / take_file_name(f["participant"], f["session"] or 1, f["task"], run)
        except ValueError as err:
            raise RcsError(str(err)) from None


class RcsServer:
    """Serves RCS lines; ``start(path)`` / ``stop()`` callbacks do the recording."""

    def __init__(self, start: Callable[[Path], None], stop: Callable[[], None],
                 host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 log: Callable[[str], None] | None = None) -> None:
        self.on_start, self.on_stop, self.log = start, stop, log or (lambda s: None)
        self.state = RcsState()
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="imusic-rcs")
        self.lock = threading.Lock()

    def serve(self) -> "RcsServer":
        """Accept clients in a background thread."""
        self.thread.start()
        return self

    def handle(self, line: str) -> str:
        """One command line -> the reply text."""
        cmd = line.strip()
        try:
            with self.lock:
                if cmd == "start":
                    self.on_start(self.state.path())
                elif cmd == "stop":
                    self.on_stop()
                elif cmd in ("update", "select all", "select none"):
                    pass
                elif cmd.startswith("filename"):
                    self.state.update(cmd)
                elif cmd.startswith("select"):
                    raise RcsError("only 'select all' and 'select none' are supported")
                elif not cmd:
                    return ""
                else:
                    raise RcsError(f"unknown command {cmd[:40]!r}")
        except (RcsError, OSError, ValueError) as err:
            self.log(f"rcs: {cmd[:60]!r}: {err}")
            return f"ERROR {err}\n"
        self.log(f"rcs: {cmd[:80]}")
        return "OK"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            for raw in f:
                reply = self.handle(raw.decode("utf-8", "replace"))
                if reply:
                    try:
                        conn.sendall(reply.encode())
                    except OSError:
                        return

    def close(self) -> None:
        """Stop accepting."""
        self.closed.set()
        self.sock.close()
