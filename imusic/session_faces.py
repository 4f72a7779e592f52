"""The target face of a prompt as a picture, rendered once per distinct target and cached.

``FaceCache(targets)`` gives every distinct target of a protocol (ARKit names -> levels; the
empty target is the neutral face) a key (``face_key``: a hash of the levels and the picture
size) and renders the missing ones in the background with the viewer's snapshot machinery
(viewer/snapshot.py, which starts a private Xvfb as the viewer does). The rendering runs in a
child process (``python -m imusic.session_faces``) so that Open3D's window never shares a
process with the runner's threads, and one child renders them all. Pictures are PNG files
in ``FacesConfig.cache_dir``; one already there is used as is.

``status(target)`` says ``ready`` (with the file), ``rendering`` or ``unavailable`` with the
child's last line of error (no display, no Open3D): the pages say so instead of a picture.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imusic" / "session-faces"


@dataclass
class FacesConfig:
    """Where and how big the target pictures are rendered."""

    cache_dir: Path = field(default_factory=_default_cache)
    """Folder of the cached PNG files (default ``$XDG_CACHE_HOME/imusic/session-faces``)."""
    width: int = 360
    """Picture width in pixels."""
    height: int = 400
    """Picture height in pixels."""
    deadline_s: float = 300.0
    """Seconds the rendering child may take for all pictures before it is given up."""


def face_key(target: dict[str, float], width: int, height: int) -> str:
    """The cache key of one target picture (same levels and size: same key)."""
    canon = json.dumps({"t": {k: round(float(v), 4) for k, v in sorted(target.items())},
                        "size": [width, height]}, separators=(",", ":"))
    return hashlib.sha1(canon.encode()).hexdigest()[:16]


def weights_text(target: dict[str, float]) -> str:
    """A target as viewer/snapshot.parse_blendshapes reads it."""
    return ",".join(f"{k}={float(v):g}" for k, v in sorted(target.items()))


class FaceCache:
    """See the module doc."""

    def __init__(self, targets: Iterable[dict[str, float]],
                 config: FacesConfig | None = None) -> None:
        self.config = config or FacesConfig()
        self.targets: dict[str, dict[str, float]] = {}
        for tg in targets:
            self.targets[self.key(tg)] = dict(tg)
        self.error: str | None = None
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.proc: subprocess.Popen | None = None

    def key(self, target: dict[str, float]) -> str:
        """The key of ``target`` at this cache's size."""
        return face_key(target, self.config.width, self.config.height)

    def path(self, key: str) -> Path:
        """The PNG file of ``key``."""
        return self.config.cache_dir / f"{key}.png"

    def missing(self) -> dict[str, dict[str, float]]:
        """Targets without a cached picture."""
        return {k: t for k, t in self.targets.items() if not self.path(k).is_file()}

    def start(self) -> "FaceCache":
        """Render the missing pictures in the background (returns at once)."""
        todo = self.missing()
        if not todo:
            self.done.set()
            return self
        self.thread = threading.Thread(target=self._render, args=(todo,), daemon=True,
                                       name="imusic-session-faces")
        self.thread.start()
        return self

    def _render(self, todo: dict[str, dict[str, float]]) -> None:
        cfg = self.config
        try:
            cfg.cache_dir.mkdir(parents=True, exist_ok=True)
            job = json.dumps({"dir": str(cfg.cache_dir), "width": cfg.width,
                              "height": cfg.height,
                              "faces": {k: weights_text(t) for k, t in todo.items()}})
            self.proc = subprocess.Popen([sys.executable, "-m", "imusic.session_faces"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
            _, err = self.proc.communicate(job, timeout=cfg.deadline_s)
            if self.proc.returncode != 0:
                lines = [ln for ln in err.strip().splitlines() if ln.strip()]
                self.error = lines[-1] if lines else f"renderer exited {self.proc.returncode}"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.error = f"rendering took more than {cfg.deadline_s:g} s"
        except OSError as err:
            self.error = str(err)
        finally:
            self.done.set()

    def status(self, target: dict[str, float]) -> dict[str, Any]:
        """``{"key", "state": ready|rendering|unavailable, "reason"}`` for ``target``."""
        key = self.key(target)
        if self.path(key).is_file():
            return {"key": key, "state": "ready", "reason": ""}
        if key not in self.targets:
            return {"key": key, "state": "unavailable", "reason": "not a target of this protocol"}
        if not self.done.is_set():
            return {"key": key, "state": "rendering", "reason": ""}
        return {"key": key, "state": "unavailable",
                "reason": f"face rendering unavailable: {self.error or 'no picture made'}"}

    def close(self) -> None:
        """Stop a rendering still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


def main() -> int:
    """The rendering child: a JSON job on stdin, one PNG per face; errors as one line."""
    job = json.loads(sys.stdin.read())
    try:
        from imusic.viewer.display import ensure_display
        from imusic.viewer.snapshot import parse_blendshapes, snapshot

        out = Path(job["dir"])
        with ensure_display():
            for key, text in job["faces"].items():
                tmp = out / f".{key}.tmp.png"
                snapshot(tmp, parse_blendshapes(text), width=job["width"],
                         height=job["height"])
                tmp.replace(out / f"{key}.png")     # a picture appears whole or not at all
    except Exception as err:  # noqa: BLE001 - the parent shows it on the page
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
