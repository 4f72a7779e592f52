"""imusic: wearable facial capture with micro-IMUs.

One namespace for the whole product. The parts live in the repository's top-level folders and
install under this package: ``imusic.hardware``, ``imusic.firmware_bridge``, ``imusic.capture``,
``imusic.model`` and ``imusic.viewer`` (pyproject.toml maps each folder with setuptools'
``package-dir``); ``imusic.cli``, ``imusic.commands`` and the pipelines are this folder.

In a source checkout (the folders beside this one, nothing installed, e.g. ``PYTHONPATH=.``) the
same names resolve to the same folders: the repository root is appended to this package's
search path, so ``import imusic.model`` finds ``<root>/model``. An installed copy has the parts
inside the package and skips this.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_PARTS = ("hardware", "firmware_bridge", "capture", "model", "viewer")
_here = _Path(__file__).resolve().parent
if not (_here / "model").is_dir() and all((_here.parent / p / "__init__.py").is_file() for p in _PARTS):
    __path__.append(str(_here.parent))  # noqa: F821 - a package's __path__
