"""The rig and its digital twin: vocabulary, face model, rigs, sensor physics, motion."""
