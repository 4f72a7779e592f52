"""The hybrid study on twin data with the bundled model (a short version of
scripts/eval_hybrid.py): under simulated occlusions the hybrid beats the IMU alone where nothing
covers the face and overall, and ARKit holding its last value where the hand covers the face (mouth, jaw, cheeks) and overall.
Where nothing covers the face (brows, eyes, gaze, tongue) only the short whole-face losses separate
the two, and the hybrid ties the hold: within ``TIE`` of it (gaze and tongue are camera-only:
ARKit held through a loss)."""

from imusic.hardware.vocabulary import IMU_BLIND_REGIONS, SEEN_KEY
from imusic.model.fusion import REGION_NAMES
from imusic.model.occlusion import MOUTH_REGIONS, twin_study

TIE = 0.01
"""Relative margin within which the hybrid and the hold are a tie (1 %) ..."""
TIE_ABS = 0.01
"""... or this absolute margin in MAE x100, whichever is larger: where nothing covers the face
only the 5 % of frames with the face lost separate the two, and the hybrid's brows on two sets
of two wearers of the same take differ by about this much (0.186 on the validation head shapes
14-15, 0.197 on 16 and 18, against a hold of 0.188; model/MODEL.md, "Hybrid")."""
TIE_CAMERA_ONLY = 0.05
"""Gaze and tongue never see the IMU (tests/model/test_fusion.py checks that exactly); while the
face is lost they hold ARKit's last frame and relax to ARKit's own mean, a rule that moves them
by a few percent against a plain hold either way depending on the take: 8 % better in the
study that chose it, 4 % worse on this take (0.356 against 0.343)."""


def test_hybrid_beats_arkit_hold_and_imu_only_on_held_out_twin_wearers(shared_data):
    take = shared_data / "arkit" / "alexdjulin_llf" / "S07-001.csv"   # the held-out real take
    results, seconds, sessions = twin_study(None, identities=(16, 18), takes=(str(take),),
                                            seconds=60.0, seed=77)
    assert sessions == 2 and seconds > 100
    hybrid, hold, imu = results["hybrid"], results["arkit_hold"], results["imu_only"]
    for region in (*REGION_NAMES, SEEN_KEY, "all"):
        # Not gaze and tongue: the IMU never enters those (on this take its tongue, flat near 0,
        # beats ARKit's held guesses, 0.02 against 0.16).
        if region not in IMU_BLIND_REGIONS:
            assert hybrid[region] < imu[region], (region, results)
        if region in (*MOUTH_REGIONS, SEEN_KEY, "all"):
            assert hybrid[region] < hold[region], (region, results)
        else:
            tie = TIE_CAMERA_ONLY if region in IMU_BLIND_REGIONS else TIE
            assert hybrid[region] <= max(hold[region] * (1 + tie), hold[region] + TIE_ABS), (
                region, results)
