"""Fixtures for the end-to-end pipeline tests: a running emulator on a real pty."""

from __future__ import annotations

import pytest

from firmware_bridge.emulator import Emulator, EmulatorConfig


@pytest.fixture
def emulator(unique_name):
    """A virtual imusic11 wearable on a new pseudo-terminal, procedural motion, publishing its
    ground truth as the LSL stream ``<unique_name>-truth``."""
    config = EmulatorConfig(transport="serial", rig="imusic11", rate_hz=100, seconds=60.0,
                            seed=3, publish_truth=True, truth_name=f"{unique_name}-truth")
    with Emulator.run_in_thread(config) as emu:
        yield emu

