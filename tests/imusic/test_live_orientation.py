"""``imusic live`` with a wearable that reports orientation (the emulator's ``--report
orientation``): quaternion samples pass through the device session and the live pipeline;
a checkpoint whose features need channels the stream lacks (gyro, from an acc+quat device)
gets one clear line and a non-zero exit, no traceback."""

from __future__ import annotations

import pylsl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
from imusic.cli import main
from .test_live import _collect, _run_cli

pytestmark = pytest.mark.timeout(150)


def _orientation_emulator(unique_name: str, gyro: bool, mag: bool):
    return Emulator.run_in_thread(EmulatorConfig(
        transport="serial", rig="imusic11", rate_hz=100, seconds=40.0, seed=4,
        report="orientation", gyro=gyro, mag=mag, publish_truth=True,
        truth_name=f"{unique_name}-truth"))


def test_live_runs_on_an_orientation_device_that_also_sends_raw_readings(unique_name):
    # acc + gyro + mag + quat: the bundled (raw-feature) model finds its channels by label and
    # the quaternion channels ride along without error.
    with _orientation_emulator(unique_name, gyro=True, mag=True) as emu:
        name = f"{unique_name}-pred"
        th, result = _run_cli(["live", "--serial", emu.emulator.serial_path, "--seconds", "8",
                               "--name", name, "--quiet"])
        found = pylsl.resolve_byprop("name", name, 1, 30.0)
        assert found, "imusic live published no predictions stream"
        inlet = pylsl.StreamInlet(found[0])
        rows, ts = _collect(inlet, th)
        th.join(30)
        assert emu.emulator.info.has_quat
    assert result.get("code") == 0
    assert len(ts) > 60 * 3, f"only {len(ts)} predicted frames"


def test_live_says_one_line_when_the_model_needs_gyro_the_device_does_not_send(
        unique_name, capfd: pytest.CaptureFixture):
    with _orientation_emulator(unique_name, gyro=False, mag=False) as emu:
        code = main(["live", "--serial", emu.emulator.serial_path, "--seconds", "20",
                     "--name", f"{unique_name}-pred", "--quiet"])
    err = capfd.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("imusic live: the model")]
    assert len(lines) == 1, err
    line = lines[0]
    assert "sends acc+quat per site" in line and ".gyro." in line and "imusic train" in line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc.xyzwqu_", max_size=16), max_size=30))
def test_stream_quantities_reads_any_labels(labels):
    from imusic.live_loop import stream_quantities

    got = stream_quantities(labels)
    assert len(set(got)) == len(got)
    assert all(any(lb.split(".")[1:2] == [q] and lb.count(".") == 2 for lb in labels) for q in got)
