"""The hybrid's head pose: ARKit's where its head yaw/pitch/roll are non-zero, else the IMU's."""

from __future__ import annotations

import numpy as np

from imusic.pipelines import HybridPipeline
from imusic.sources import LinkOptions


def test_hybrid_prefers_arkit_head_pose_where_non_zero_else_the_imu():
    hy = HybridPipeline(LinkOptions(lsl="none"), arkit_lsl="none")
    hy.live.head_track.add(10.0, np.array([0.1, 0.2, 0.3]))
    row = np.zeros(61)
    row[52:55] = [0.5, -0.1, 0.05]
    hy.arkit.add(10.0, row)
    np.testing.assert_allclose(hy.head_for(10.0, 10.0), [0.5, -0.1, 0.05])
    assert hy.head_source == "arkit"
    hy.arkit.add(10.02, np.zeros(61))                 # ARKit without head rotation (a CSV take)
    np.testing.assert_allclose(hy.head_for(10.02, 10.02), [0.1, 0.2, 0.3])
    assert hy.head_source == "imu"
    np.testing.assert_allclose(hy.head_for(10.03, None), [0.1, 0.2, 0.3])   # no ARKit frame
    hy.arkit.add(10.04, np.zeros(52))                 # 52-value rows have no pose at all
    np.testing.assert_allclose(hy.head_for(10.04, 10.04), [0.1, 0.2, 0.3])
