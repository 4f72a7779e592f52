"""The hybrid study on twin data with the bundled model (a short version of
scripts/eval_hybrid.py): under simulated occlusions the hybrid beats ARKit holding its last value
and the IMU alone, in every region."""

from model.fusion import REGION_NAMES
from model.occlusion import twin_study


def test_hybrid_beats_arkit_hold_and_imu_only_on_held_out_twin_wearers(shared_data):
    take = shared_data / "arkit" / "alexdjulin_llf" / "S07-001.csv"   # the held-out real take
    results, seconds, sessions = twin_study(None, identities=(16, 18), takes=(str(take),),
                                            seconds=60.0, seed=77)
    assert sessions == 2 and seconds > 100
    for region in (*REGION_NAMES, "all"):
        hybrid = results["hybrid"][region]
        assert hybrid <= results["arkit_hold"][region], (region, results)
        assert hybrid < results["imu_only"][region], (region, results)
