"""The paper's numbers: per-task full-model latency and accuracy, and the exit accuracy model.

The benchmarks scale latency profiles measured on this machine to these latencies, so the
load they replay is the paper's (:func:`pantheon.bench.benchmarks.paper_profiles`), and
model exit accuracies where no trained exits exist (:func:`modelled_accuracy`).

Example::

    PAPER_FULL_US["sign_recognition"]               # 9801 us on a Jetson Xavier NX
    modelled_accuracy([700, 300], [0, 0], 0.978)    # [0.97008, 0.978]: an exit after 70% loses 0.8%
"""

from __future__ import annotations

from typing import List, Sequence

# Full-model latency (us) of each paper task on the paper's board (Jetson Xavier NX), from the
# reference artifact's deployment repositories (github.com/PantheonInfer/Pantheon,
# experiments/model_repositories/*/<task>/config.pbtxt: sum of block latencies through the last
# exit plus that exit's latency). They fix the paper's load: traffic 1.33, robot 1.49 and UAV
# 1.38 times one 30 fps frame period of original-model work.
PAPER_FULL_US = {
    "object_detection": 12327, "sign_recognition": 9801, "face_detection": 15754,
    "age_classification": 12669, "gender_classification": 9259, "emotion_classification": 11886,
    "wildlife_recognition": 20371, "scene_recognition": 10163, "wildfire_detection": 15575,
}
# Original-exit accuracy of those repositories (top-1, mAP for detection), used as a_orig below.
PAPER_ORIGINAL_ACC = {
    "object_detection": 0.9944, "sign_recognition": 0.9780, "face_detection": 0.8702,
    "age_classification": 0.7174, "gender_classification": 0.8374, "emotion_classification": 0.6956,
    "wildlife_recognition": 0.8869, "scene_recognition": 0.8180, "wildfire_detection": 0.9141,
}
# Modelled exit accuracy: a_j = a_orig * (1 - ACC_DROP * (1 - f_j) ** ACC_POWER), f_j = latency
# fraction of the full model reached at exit j. Anchored on the reference's sign_recognition
# profile, whose exit after 71% of the latency loses 0.7% (0.3 * 0.29**3 = 0.7%).
ACC_DROP = 0.3
ACC_POWER = 3.0


def modelled_accuracy(block_us: Sequence[float], exit_us: Sequence[float], a_orig: float) -> List[float]:
    """Accuracy of an exit after every block (see ``ACC_DROP``/``ACC_POWER``); the last is ``a_orig``."""
    full = sum(block_us) + exit_us[-1]
    out, cum = [], 0.0
    for b, e in zip(block_us, exit_us):
        cum += b
        f = min(1.0, (cum + e) / full)
        out.append(a_orig * (1.0 - ACC_DROP * (1.0 - f) ** ACC_POWER))
    out[-1] = a_orig
    return out
