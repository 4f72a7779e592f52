"""One namespace (issue 15 item 7): the parts install as imusic.hardware, imusic.capture, ...

Nothing imports them by their folder names, and a user's own ``model.py`` (or ``capture/``)
beside their script does not shadow any part of imusic.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ("hardware", "firmware_bridge", "capture", "model", "viewer")
SCANNED = (*PARTS, "imusic", "tests", "benchmarks", "scripts")
CODE_IMPORT = re.compile(r"(?:^|\n)\s*(?:from|import) ([\w.]+)")
"""An import statement inside a string (the code a test runs with ``python -c``)."""


def _top_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):   # code for -c
            names = [m[1] for m in CODE_IMPORT.finditer(node.value)]
        bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                if n.split(".")[0] in PARTS]
    return bad


def test_nothing_imports_a_part_by_its_folder_name():
    files = [p for d in SCANNED for p in (REPO / d).rglob("*.py") if "idf_stubs" not in p.parts]
    assert len(files) > 100
    bad = [b for f in files for b in _top_level_imports(f)]
    assert not bad, "import these as imusic.<part>: " + ", ".join(bad[:10])


def test_a_users_own_model_and_capture_do_not_shadow_imusic(tmp_path):
    (tmp_path / "model.py").write_text("WHOSE = 'user'\n")
    (tmp_path / "capture").mkdir()
    (tmp_path / "capture" / "__init__.py").write_text("WHOSE = 'user'\n")
    code = ("import importlib; mine = [importlib.import_module(n) for n in ('model', 'capture')];"
            "import imusic.model.features as f, imusic.capture.session as s;"
            "print(mine[0].WHOSE, mine[1].WHOSE, f.__name__, s.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["user", "user", "imusic.model.features", "imusic.capture.session"]
