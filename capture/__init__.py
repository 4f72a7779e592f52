"""ARKit ground truth, the LSL recorder, session files, sync and calibration, import/export."""
