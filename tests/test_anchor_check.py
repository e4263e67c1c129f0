"""The anchor check: best possible recall by hand, boxes scaled as the letterbox scales their image."""
import numpy as np
import pytest

from utils.data.anchor_check import anchor_report, best_possible_recall, box_sizes_at_input


def test_best_possible_recall_by_hand():
    anchors = np.array([[40.0, 40.0], [100.0, 20.0]])
    # 10x10: 40/10 = 4.0 is not within 4x (strictly), 100x20 has side 100/10 = 10x: not recallable.
    # 11x11: 40/11 < 4: recallable.  30x6: 100/30 and 20/6 both < 4 for the second anchor: recallable.
    boxes = np.array([[10.0, 10.0], [11.0, 11.0], [30.0, 6.0], [400.0, 400.0]])
    assert best_possible_recall(boxes, anchors) == pytest.approx(2 / 4)


def test_boxes_are_scaled_to_the_input_and_a_low_recall_prints_the_kmeans_command():
    lines = ["/data/a.jpg 0,0,200,100,0", "/data/b c.jpg 10,10,30,30,1 0,0,400,400,0", "/data/missing.jpg 1,1,5,5,0"]
    sizes = {"/data/a.jpg": (400, 200), "/data/b c.jpg": (800, 800)}
    wh = box_sizes_at_input(lines, sizes, (160, 160))
    np.testing.assert_allclose(wh, [[80, 40], [4, 4], [80, 80]])               # scales 0.4 and 0.2
    text, bpr = anchor_report(lines, sizes, np.array([[80.0, 40.0], [80.0, 80.0]]), (160, 160), "anchors.txt")
    assert bpr == pytest.approx(2 / 3) and "best possible recall 0.667 of 3 training boxes at 160x160" in text
    assert 'python kmeans_for_anchors.py --input_shape "[160, 160]"' in text
    text, bpr = anchor_report(lines[:1], sizes, np.array([[80.0, 40.0]]), (160, 160), "anchors.txt")
    assert bpr == 1.0 and "Warning" not in text
