"""The anchor check before training: how many training boxes the anchors can recall at the input size.

yolov5's measure: a box is recallable when some anchor has both sides within ``RATIO_LIMIT`` times the box's
(its loss can still reach the box through exp(tw)); the best possible recall (BPR) is the share of recallable
boxes. Boxes are scaled to the input as the letterbox scales their image.
"""
import numpy as np

from utils.annotation import parse_annotation_line

RATIO_LIMIT = 4.0       # yolov5's anchor_t
BPR_TARGET = 0.98       # below this, clustering anchors for the data is worth it


def box_sizes_at_input(lines, image_sizes, input_shape):
    """``(n, 2)`` box (w, h) in input pixels of training-list ``lines`` (``image_sizes``: path -> (w, h))."""
    height, width = input_shape
    sizes = []
    for line in lines:
        path, boxes = parse_annotation_line(line)
        if path not in image_sizes or not len(boxes):
            continue
        iw, ih = image_sizes[path]
        scale = min(width / iw, height / ih)
        sizes.append((boxes[:, 2:4] - boxes[:, 0:2]) * scale)
    return np.concatenate(sizes) if sizes else np.zeros((0, 2))


def best_possible_recall(box_wh, anchors, limit=RATIO_LIMIT):
    """Share of boxes ``(n, 2)`` with an anchor ``(k, 2)`` whose sides are both within ``limit`` x the box's."""
    if not len(box_wh):
        return float("nan")
    ratio = box_wh[:, None, :] / np.asarray(anchors, dtype=np.float64)[None]        # (n, k, 2)
    worst_side = np.minimum(ratio, 1 / ratio).min(axis=2)                            # (n, k)
    return float((worst_side.max(axis=1) > 1 / limit).mean())


def anchor_report(lines, image_sizes, anchors, input_shape, anchors_path):
    """The check's message: the BPR, and below ``BPR_TARGET`` the kmeans_for_anchors.py command to run."""
    box_wh = box_sizes_at_input(lines, image_sizes, input_shape)
    bpr = best_possible_recall(box_wh, anchors)
    text = (f"Anchor check: best possible recall {bpr:.3f} of {len(box_wh)} training boxes at "
            f"{input_shape[1]}x{input_shape[0]} with {anchors_path} (an anchor within {RATIO_LIMIT:g}x of both sides)")
    if bpr < BPR_TARGET:
        text += (f"\nWarning: below {BPR_TARGET}: some boxes fit no anchor. Cluster anchors for this data and input "
                 f"size: python kmeans_for_anchors.py --input_shape \"[{input_shape[0]}, {input_shape[1]}]\" "
                 f"--anchors_path model_data/my_anchors.txt, then train with --anchors_path model_data/my_anchors.txt")
    return text, bpr
