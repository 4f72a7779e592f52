"""The Open3D face viewer: live from LSL, replay from a session, side by side, snapshots."""
