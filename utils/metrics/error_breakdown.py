"""Where a detector's mAP goes: its confident detections sorted by what they hit, and the AP it would have if
classes did not matter (localisation and objectness alone). get_map.py prints both under its table.

Ground truths and detections are dicts image key -> rows, as utils/metrics/mean_ap.py takes them: gts
``[x1, y1, x2, y2, class(, difficult)]``, detections ``[x1, y1, x2, y2, score, class]``.
"""
import numpy as np

from utils.metrics.mean_ap import _pair_overlaps, evaluate_detections

KINDS = ("correct", "wrong class", "duplicate", "poorly located", "background")
LOCATED = 0.1      # IoU below which a detection is background rather than a poorly located box


def detection_kinds(ground_truths, detections, score_threshold, min_overlap=0.5):
    """Counts (a dict over ``KINDS``) of the detections scoring at least ``score_threshold``, each image's in
    descending score. A detection is *correct* when a gt of its class not yet matched overlaps it by
    ``min_overlap`` (the gt is then matched), a *duplicate* when only already matched gts of its class do,
    *wrong class* when only gts of other classes do, *poorly located* when its best IoU with any gt is in
    [0.1, min_overlap), else *background*. Detections on a difficult gt (at ``min_overlap``) are not counted,
    as the VOC mAP ignores them."""
    counts = dict.fromkeys(KINDS, 0)
    for key, rows in detections.items():
        gts = np.asarray(ground_truths.get(key, []), dtype=np.float64)
        gts = gts.reshape(-1, gts.shape[-1] if gts.ndim == 2 else 5)
        difficult = gts[:, 5].astype(bool) if gts.shape[1] > 5 else np.zeros(len(gts), bool)
        matched = np.zeros(len(gts), bool)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        for row in rows[np.argsort(-rows[:, 4], kind="stable")]:
            if row[4] < score_threshold:
                continue
            iou = _pair_overlaps(np.repeat(row[None, :4], len(gts), 0), gts[:, :4])[0]    # (n,) IoU with each gt
            hit, same = iou >= min_overlap, gts[:, 4] == row[5]
            if (hit & difficult).any() and not (hit & same & ~difficult).any():
                continue
            free = np.flatnonzero(hit & same & ~matched & ~difficult)
            if len(free):
                matched[free[np.argmax(iou[free])]] = True
                counts["correct"] += 1
            elif (hit & same).any():
                counts["duplicate"] += 1
            elif hit.any():
                counts["wrong class"] += 1
            elif (iou >= LOCATED).any():
                counts["poorly located"] += 1
            else:
                counts["background"] += 1
    return counts


def class_agnostic_map(ground_truths, detections, min_overlap=0.5):
    """AP at ``min_overlap`` with every class merged into one: what the mAP would be if every detection had the
    right class (duplicates of another class on a matched object still count as false positives)."""
    def merged(rows, class_column):
        rows = np.array(rows, dtype=np.float64, copy=True)
        if len(rows):
            rows[:, class_column] = 0
        return rows
    gts = {k: merged(v, 4) for k, v in ground_truths.items()}
    dets = {k: merged(v, 5) for k, v in detections.items()}
    return float(evaluate_detections(gts, dets, 1, voc_iou_threshold=min_overlap)["map50"])
