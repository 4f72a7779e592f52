"""``imusic demo --headless``: the whole system on the emulator, with a summary and a snapshot."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np

from imusic.cli import main
from imusic.model.fusion import REGION_NAMES


def test_demo_headless_prints_a_summary_and_saves_a_snapshot(tmp_path, capsys):
    png, summary = tmp_path / "demo.png", tmp_path / "summary.json"
    code = main(["demo", "--headless", "--seconds", "8", "--snapshot", str(png),
                 "--summary-json", str(summary)])
    assert code == 0
    s = json.loads(summary.read_text())
    assert s["data"].startswith("twin")
    assert s["frames"] > 60 * 4, s["frames"]
    assert set(REGION_NAMES) | {"gaze", "tongue", "all_no_gaze_tongue", "all"} \
        <= set(s["mae_x100_per_region"])
    assert all(np.isfinite(v) for v in s["mae_x100_per_region"].values())
    assert 0 < s["motion_to_output_p50_ms"] < s["motion_to_output_p99_ms"] + 1e-9
    assert s["health"]["lost"] == 0 and s["health"]["crc_errors"] == 0
    out = capsys.readouterr().out
    assert "imusic demo summary" in out
    # the headline leaves gaze and tongue out; they are reported on a line of their own
    mae = s["mae_x100_per_region"]
    assert f"MAE x100, all (no gaze/tongue): {mae['all_no_gaze_tongue']:.2f};" in out
    apart = next(line for line in out.splitlines() if "apart" in line)
    assert f"gaze {mae['gaze']:.2f}" in apart and f"tongue {mae['tongue']:.2f}" in apart
    headline = next(line for line in out.splitlines() if "all (no gaze/tongue)" in line)
    assert "gaze" not in headline.split(":", 1)[1] and "tongue" not in headline.split(":", 1)[1]
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 200
    assert float(np.std(image[..., :3])) > 0.02   # two faces and a colour bar, not a blank
