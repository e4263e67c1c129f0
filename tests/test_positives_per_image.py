"""tools/positives_per_image.py: positives per image and cells per image against counts made by hand."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from positives_per_image import cells_per_image, positives_per_image  # noqa: E402

ANCHORS = np.array([[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146], [142, 110], [192, 243], [459, 401]],
                   dtype=np.float32)
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
# One 160 x 160 image (no letterbox scaling), two boxes far from each other and from the borders.
LINES = ["/data/a.jpg 40,40,80,80,0 100,100,124,124,0"]
SIZES = {"/data/a.jpg": (160, 160)}


def anchors_taken(w, h, thresh):
    """Anchors a w x h box trains: the best by shape IoU, and with ``thresh`` every one above it (numpy by hand)."""
    inter = np.minimum(ANCHORS[:, 0], w) * np.minimum(ANCHORS[:, 1], h)
    iou = inter / (ANCHORS.prod(1) + w * h - inter)
    return 1 if thresh is None else int(((iou > thresh) | (iou == iou.max())).sum())


def test_cells_per_image_is_three_anchors_on_each_grid():
    assert cells_per_image(160, MASK) == 3 * (5 * 5 + 10 * 10 + 20 * 20) == 1575
    assert cells_per_image(416, MASK) == 3 * (13 * 13 + 26 * 26 + 52 * 52)


@pytest.mark.parametrize("thresh,neighbours,expected", [(None, False, 2), (0.213, False, 8), (None, True, 6),
                                                         (0.213, True, 24)])
def test_positives_per_image_match_the_anchors_and_cells_counted_by_hand(thresh, neighbours, expected):
    # Shape IoU above 0.213: 19x36, 40x28, 36x75, 76x55 for the 40 x 40 box; 12x16, 19x36, 40x28, 36x75 (0.2133)
    # for the 24 x 24 one. With neighbour cells each anchor trains the centre cell and its 2 nearest neighbours.
    cells = 3 if neighbours else 1
    assert cells * (anchors_taken(40, 40, thresh) + anchors_taken(24, 24, thresh)) == expected
    assert positives_per_image(ANCHORS, LINES, SIZES, 160, MASK, thresh, neighbours) == pytest.approx(expected)


def test_level_table_splits_the_positives_by_stride_by_hand():
    from positives_per_image import level_table

    # train.py's assignment (the 0.213 list above, 3 cells each): the 40 x 40 box trains anchors 1, 2 (stride 8) and
    # 3, 4 (stride 16); the 24 x 24 one anchors 0, 1, 2 (stride 8) and 3 (stride 16). Stride 8: 5 x 3 = 15
    # positives of 3 x 20 x 20 = 1200 cells; stride 16: 3 x 3 = 9 of 300; stride 32: none of 75.
    config = {"input_sizes": [160], "anchors_mask": MASK, "iou_thresh": 0.213}
    rows = level_table(ANCHORS, LINES, SIZES, config)
    assert rows[2:] == ["| 160 | stride 32 | 0.0 | 75 | no positive |",
                        "| 160 | stride 16 | 9.0 | 300 | 1 positive per 32 negatives |",
                        "| 160 | stride 8 | 15.0 | 1200 | 1 positive per 79 negatives |"]
