"""utils/metrics/error_breakdown.py against detections whose kinds are counted by hand."""
import numpy as np
import pytest

from utils.metrics.error_breakdown import class_agnostic_map, detection_kinds

# Two gts: a class-0 box at (0, 0, 10, 10) and a class-1 box at (20, 0, 30, 10); a difficult class-0 at (40, 0, 50, 10).
GTS = {"a": np.array([[0, 0, 10, 10, 0, 0], [20, 0, 30, 10, 1, 0], [40, 0, 50, 10, 0, 1]], dtype=float)}
DETS = {"a": np.array([
    [0, 0, 10, 10, 0.9, 0],      # correct (matches gt 0)
    [0, 0, 10, 9, 0.8, 0],       # duplicate: gt 0 is taken
    [0, 0, 10, 10, 0.7, 1],      # wrong class on gt 0
    [20, 0, 30, 10, 0.6, 1],     # correct (gt 1)
    [20, 0, 26, 10, 0.55, 0],    # IoU 0.6 with gt 1 only, other class: wrong class
    [20, 0, 24, 10, 0.5, 1],     # IoU 0.4 with gt 1: poorly located
    [40, 0, 50, 10, 0.45, 0],    # on the difficult gt: not counted
    [70, 70, 80, 80, 0.4, 0],    # background
    [0, 0, 10, 10, 0.1, 1],      # below the threshold: not counted
], dtype=float)}


def test_kinds_counted_by_hand():
    assert detection_kinds(GTS, DETS, score_threshold=0.3) == {
        "correct": 2, "wrong class": 2, "duplicate": 1, "poorly located": 1, "background": 1}


def test_an_image_without_ground_truth_has_only_background():
    kinds = detection_kinds({}, {"b": np.array([[0, 0, 5, 5, 0.9, 0]])}, score_threshold=0.5)
    assert kinds["background"] == 1 and sum(kinds.values()) == 1


def test_class_agnostic_ap_ignores_the_predicted_class():
    gts = {"a": np.array([[0, 0, 10, 10, 0], [20, 0, 30, 10, 1]], dtype=float)}
    swapped = {"a": np.array([[0, 0, 10, 10, 0.9, 1], [20, 0, 30, 10, 0.8, 0]], dtype=float)}   # both classes wrong
    assert class_agnostic_map(gts, swapped) == pytest.approx(1.0)
    # one right box then a false positive: precision 1 at recall 0.5, 2/3 at recall 1 -> AP 0.5 + 0.5 * 2/3
    extra = {"a": np.array([[0, 0, 10, 10, 0.9, 1], [50, 50, 60, 60, 0.85, 0], [20, 0, 30, 10, 0.8, 0]],
                           dtype=float)}
    assert class_agnostic_map(gts, extra) == pytest.approx(0.5 + 0.5 * 2 / 3)
