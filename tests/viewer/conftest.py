"""Viewer tests draw in a real Open3D window on a private Xvfb started for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from imusic.viewer.display import virtual_display


@pytest.fixture(scope="session", autouse=True)
def xvfb_display() -> Iterator[str]:
    """Start Xvfb on a free display number, point DISPLAY at it, stop it afterwards."""
    before = os.environ.get("DISPLAY")
    with virtual_display() as display:
        os.environ["DISPLAY"] = display
        try:
            yield display
        finally:
            if before is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = before


@pytest.fixture(scope="session")
def face():
    """The packaged face model (loaded once)."""
    from imusic.hardware.face import FaceModel

    return FaceModel.load()


def _weights(**values: float) -> np.ndarray:
    from imusic.hardware.vocabulary import ARKIT_NAMES

    w = np.zeros(52, np.float32)
    for name, v in values.items():
        w[ARKIT_NAMES.index(name)] = v
    return w


@pytest.fixture(scope="session")
def weights():
    """``weights(jawOpen=1.0)`` -> (52,) weights with the named blendshapes set."""
    return _weights
