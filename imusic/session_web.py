"""``imusic session --web PORT``: the participant and experimenter pages, served locally.

A stdlib ``ThreadingHTTPServer`` in a daemon thread (bound to 127.0.0.1 unless told
otherwise). Routes:

* ``GET /`` links both pages; ``GET /participant`` and ``GET /experimenter`` are the pages
  (imusic/session_pages.py), which poll ``GET /state`` (imusic/session_state.py's dict as
  JSON) a few times a second;
* ``GET /curves?shapes=jawOpen,browInnerUp`` (default: capture/live_curves.py's
  ``CURVE_SHAPES``): the runner's live Blendshapes curves, the last seconds at ~20 Hz; an
  unknown channel name is a 400 naming it;
* ``GET /face/<key>.png``: a target face picture from imusic/session_faces.py's cache;
* ``POST /continue``, ``POST /stop`` and ``POST /redo`` (JSON body ``{"task": NAME}``; without
  one the current or last take's task) call the runner's thread-safe ``request_continue``,
  ``request_stop`` and ``request_redo``. Each answers JSON ``{"ok": ...}``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from imusic.capture.live_curves import ShapesError, parse_shapes

from imusic.session_pages import EXPERIMENTER, INDEX, PARTICIPANT
from imusic.session_state import clean

_FACE_RE = re.compile(r"^/face/([0-9a-f]{16})\.png$")


class SessionWeb:
    """See the module doc. ``state()`` gives the dict ``/state`` serves."""

    def __init__(self, runner: Any, state: Callable[[], dict], faces: Any = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.runner = runner
        self.state = state
        self.faces = faces
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` the server listens on (the port chosen if 0 was asked)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SessionWeb":
        """Serve in a daemon thread."""
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="imusic-session-web")
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()

    def redo_task(self, task: str | None) -> str | None:
        """The task a redo without a name means: the current take's, else the last one's."""
        if task:
            return task
        takes = self.runner.takes
        return takes[-1].task if takes else None

    def _handler(self) -> type:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:   # the terminal is the runner's
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, obj: Any, code: int = 200) -> None:
                self._send(code, json.dumps(obj, allow_nan=False).encode(), "application/json")

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                pages = {"/": INDEX, "/participant": PARTICIPANT, "/experimenter": EXPERIMENTER}
                if path in pages:
                    self._send(200, pages[path].encode(), "text/html; charset=utf-8")
                elif path == "/state":
                    self._json(web.state())
                elif path == "/curves":
                    query = parse_qs(urlsplit(self.path).query)
                    try:
                        shapes = parse_shapes(",".join(query.get("shapes", [])))
                    except ShapesError as err:
                        self._json({"ok": False, "error": str(err)}, 400)
                        return
                    self._json(clean(web.runner.curves.as_dict(shapes)))
                elif (m := _FACE_RE.match(path)) and web.faces is not None \
                        and web.faces.path(m.group(1)).is_file():
                    self._send(200, web.faces.path(m.group(1)).read_bytes(), "image/png")
                else:
                    self._json({"ok": False, "error": f"no such page {path}"}, 404)

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}") if n else {}
                except ValueError:
                    self._json({"ok": False, "error": "body is not JSON"}, 400)
                    return
                path = self.path.split("?", 1)[0]
                if path == "/continue":
                    web.runner.request_continue()
                    self._json({"ok": True})
                elif path == "/stop":
                    web.runner.request_stop()
                    self._json({"ok": True})
                elif path == "/redo":
                    task = web.redo_task(body.get("task") if isinstance(body, dict) else None)
                    ok = task is not None and web.runner.request_redo(task)
                    self._json({"ok": bool(ok), "task": task},
                               200 if ok else 400)
                else:
                    self._json({"ok": False, "error": f"no such action {path}"}, 404)

        return Handler
