"""Fixtures shared by every suite."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real recordings no one here wrote (see each PROVENANCE.md)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}: check out shared/ beside the repo")
    return SHARED_DATA


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test (or parallel run) uses: give it to LSL streams and source ids so
    that a test resolves only its own streams."""
    return f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
