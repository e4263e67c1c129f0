"""Detection metrics: VOC AP@0.5, COCO AP@[.50:.95], the best-F1 operating point, a confusion
matrix, and upstream's ``map_out/`` text files.

Boxes are ``x1, y1, x2, y2`` in continuous pixel coordinates; areas and IoUs use no ``+1``.
``ground_truths`` maps an image id to ``(n, 5)`` / ``(n, 6)`` rows ``[x1, y1, x2, y2, class(, difficult)]``,
``detections`` maps an image id to ``(m, 6)`` rows ``[x1, y1, x2, y2, score, class]``.

Everything is flattened into one array per field; matching works on the sparse list of
(detection, ground truth) pairs that share an image and a class, so no loop runs per detection.
"""
import os

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError

# Built exactly as pycocotools builds them, so threshold comparisons agree bit for bit.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
VOC_IOU_THRESHOLD = 0.5
# COCO's object sizes by box area in the evaluated image's pixels, bounds included as pycocotools has them.
AREA_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}
_TINY = np.finfo(np.float64).tiny


def _rows(array, widths, what, image_id):
    """``array`` as float64 ``(n, w)`` with ``w`` in ``widths``; an empty input becomes ``(0, widths[0])``."""
    rows = np.asarray(array if array is not None else [], dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, rows.shape[1] if rows.ndim == 2 and rows.shape[1] in widths else widths[0]))
    if rows.ndim != 2 or rows.shape[1] not in widths:
        raise ValueError(f"{what} of image {image_id!r} must be an array (n, {' or '.join(map(str, widths))}), "
                         f"got shape {rows.shape}")
    return rows


def _check_rows(boxes, classes, image_index, image_ids, num_classes, what):
    """Finite values, x2 >= x1, y2 >= y1 and integer classes in range; errors name the image."""
    problems = (
        (~np.isfinite(boxes).all(1), "a non-finite value"),
        ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]), "a box with x2 < x1 or y2 < y1"),
        ((classes != np.round(classes)) | (classes < 0) | (classes >= num_classes),
         f"a class id that is not an integer in [0, {num_classes})"),
    )
    for bad, problem in problems:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{what} of image {image_ids[image_index[row]]!r} has {problem}: "
                             f"{boxes[row].tolist()} class {classes[row]}")


def _with_difficult_column(gt):
    """``(n, 5)`` ground truth -> ``(n, 6)`` with difficult = 0."""
    return gt if gt.shape[1] == 6 else np.concatenate([gt, np.zeros((len(gt), 1))], axis=1)


class _Flat:
    """All images' boxes as flat arrays. Detections are sorted by image, then score descending
    (stable, so equal scores keep their input order), which is the order greedy matching uses."""

    def __init__(self, ground_truths, detections, num_classes):
        self.image_ids = list(dict.fromkeys([*ground_truths, *detections]))
        gts = [_rows(ground_truths.get(i), (5, 6), "ground truth", i) for i in self.image_ids]
        dets = [_rows(detections.get(i), (6,), "detections", i) for i in self.image_ids]
        gt_image = np.repeat(np.arange(len(gts)), [len(g) for g in gts])
        det_image = np.repeat(np.arange(len(dets)), [len(d) for d in dets])
        gt = np.concatenate([_with_difficult_column(g) for g in gts]) if gts else np.zeros((0, 6))
        det = np.concatenate(dets) if dets else np.zeros((0, 6))
        _check_rows(gt[:, :4], gt[:, 4], gt_image, self.image_ids, num_classes, "ground truth")
        _check_rows(det[:, :4], det[:, 5], det_image, self.image_ids, num_classes, "detections")
        if not np.isfinite(det[:, 4]).all():
            bad = int(np.flatnonzero(~np.isfinite(det[:, 4]))[0])
            raise ValueError(f"detections of image {self.image_ids[det_image[bad]]!r} have a non-finite score")

        order = np.lexsort((-det[:, 4], det_image))
        self.num_classes = num_classes
        self.gt_boxes, self.gt_class = gt[:, :4], gt[:, 4].astype(np.int64)
        self.gt_difficult, self.gt_image = gt[:, 5] != 0, gt_image
        self.det_boxes, self.det_score = det[order, :4], det[order, 4]
        self.det_class, self.det_image = det[order, 5].astype(np.int64), det_image[order]

    def det_rank(self, group):
        """Rank of each detection by score inside its group of ``group`` (a key per detection)."""
        order = np.lexsort((np.arange(len(group)), group))
        starts = _run_starts(group[order])
        sizes = np.diff(np.r_[starts, len(group)])
        rank = np.empty(len(group), dtype=np.int64)
        rank[order] = np.arange(len(group)) - np.repeat(starts, sizes)
        return rank


def _run_starts(values):
    """Indices where a run of equal values starts in a sorted 1-D array (empty for an empty array)."""
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, dtype=np.int64)


def _pairs_sharing_key(det_key, gt_key):
    """Every (detection, ground truth) index pair with equal keys; gts of a key stay in input order."""
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    start = np.searchsorted(sorted_keys, det_key, "left")
    count = np.searchsorted(sorted_keys, det_key, "right") - start
    det_index = np.repeat(np.arange(len(det_key)), count)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return det_index, gt_order[np.repeat(start, count) + within]


def _pair_overlaps(det_boxes, gt_boxes):
    """Aligned ``(P, 4) x (P, 4)`` -> (IoU, intersection over the detection's area) per pair."""
    lt = np.maximum(det_boxes[:, :2], gt_boxes[:, :2])
    rb = np.minimum(det_boxes[:, 2:], gt_boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    det_area = (det_boxes[:, 2:] - det_boxes[:, :2]).prod(1)
    gt_area = (gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(1)
    return inter / np.maximum(det_area + gt_area - inter, _TINY), inter / np.maximum(det_area, _TINY)


def _voc_match(flat, det, gt, iou, threshold):
    """VOC devkit matching at IoU ``threshold``. Each detection targets its highest-IoU ground truth of
    its class (already matched or not; ties -> first gt). It is a TP when it is the highest-scoring
    detection targeting a non-difficult gt, ignored when the target is difficult, else an FP.
    Returns ``(tp, ignored)`` bool ``(D,)``."""
    keep = iou >= threshold
    det, gt, iou = det[keep], gt[keep], iou[keep]
    order = np.lexsort((gt, -iou, det))
    det, gt = det[order], gt[order]
    first = _run_starts(det)
    target_det, target_gt = det[first], gt[first]          # ascending det index = score order
    ignored = np.zeros(len(flat.det_score), dtype=bool)
    ignored[target_det[flat.gt_difficult[target_gt]]] = True
    normal = ~flat.gt_difficult[target_gt]
    _, first_hit = np.unique(target_gt[normal], return_index=True)
    tp = np.zeros(len(flat.det_score), dtype=bool)
    tp[target_det[normal][first_hit]] = True
    return tp, ignored


def _coco_match(flat, det, gt, overlap, thresholds, gt_ignore=None):
    """pycocotools' ``evaluateImg`` matching for all thresholds at once (difficult = crowd).

    In score order inside each image, a detection takes the best still-free gt with ``overlap >= t``
    (ties -> later gt) among those not ignored; failing that, the best ignored one. Ignored gts
    (``gt_ignore``, bool ``(G,)``: crowd, or outside the evaluated area range; default crowd only)
    make their detections ignored; crowd gts never get used up. Detections of one image are
    processed one rank at a time; all images advance together. Returns ``(matched, ignored)`` bool
    ``(T, D)``.
    """
    crowd = flat.gt_difficult
    gt_ignore = crowd if gt_ignore is None else gt_ignore
    num_thr, num_det = len(thresholds), len(flat.det_score)
    keep = overlap >= thresholds.min()
    det, gt, overlap = det[keep], gt[keep], overlap[keep]
    rank = flat.det_rank(flat.det_image)[det]
    order = np.lexsort((-gt, -overlap, gt_ignore[gt], det, rank))
    det, gt, overlap, rank = det[order], gt[order], overlap[order], rank[order]

    taken = np.zeros((num_thr, len(crowd)), dtype=bool)
    matched = np.zeros((num_thr, num_det), dtype=bool)
    ignored = np.zeros((num_thr, num_det), dtype=bool)
    bounds = np.r_[_run_starts(rank), len(rank)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        d, g = det[lo:hi], gt[lo:hi]                   # at most one detection per image here
        eligible = (overlap[lo:hi] >= thresholds[:, None]) & (~taken[:, g] | crowd[g])    # (T, P)
        candidate = np.where(eligible, np.arange(hi - lo), hi - lo)
        winner = np.minimum.reduceat(candidate, _run_starts(d), axis=1)                   # (T, S)
        t_index, s_index = np.nonzero(winner < hi - lo)
        pair = winner[t_index, s_index]
        taken[t_index, g[pair]] = True
        matched[t_index, d[pair]] = True
        ignored[t_index, d[pair]] = gt_ignore[g[pair]]
    return matched, ignored


def _class_slices(flat, keep):
    """Indices of kept detections per class, each sorted by score descending (stable)."""
    index = np.flatnonzero(keep)
    index = index[np.lexsort((index, -flat.det_score[index], flat.det_class[index]))]
    bounds = np.searchsorted(flat.det_class[index], np.arange(flat.num_classes + 1))
    return [index[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def voc_ap(recall, precision):
    """All-point interpolated AP (VOC2010+): area under the monotone precision envelope."""
    mrec = np.r_[0.0, recall, 1.0]
    mpre = np.maximum.accumulate(np.r_[0.0, precision, 0.0][::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _voc_curves(tp, num_gt):
    """Cumulative recall / precision of a score-sorted TP flag list."""
    tp_sum = np.cumsum(tp)
    fp_sum = np.arange(1, len(tp) + 1) - tp_sum
    return tp_sum / max(num_gt, 1), tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)


def _coco_ap(matched, ignored, num_gt):
    """101-point AP per threshold from score-sorted ``(T, n)`` flags, as pycocotools accumulates."""
    tp_sum = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)
    recall = tp_sum / num_gt
    precision = np.maximum.accumulate((tp_sum / (tp_sum + fp_sum + np.spacing(1)))[:, ::-1], axis=1)[:, ::-1]
    ap = np.zeros(len(matched))
    for t in range(len(matched)):
        at = np.searchsorted(recall[t], COCO_RECALL_POINTS, side="left")
        reached = at < recall.shape[1]
        ap[t] = precision[t, at[reached]].sum() / len(COCO_RECALL_POINTS)
    return ap


def _coco_recall(matched, ignored, num_gt):
    """Final recall per threshold (pycocotools' ``recall`` at maxDets): ``(T,)``."""
    return (matched & ~ignored).sum(1) / num_gt


def _coco_by_size(flat, det, gt, overlap, thresholds, in_top):
    """COCO AP and AR per object size (``AREA_RANGES``): gts outside the range are ignored like crowd
    boxes, and so are the unmatched detections outside it, as pycocotools' ``evaluateImg`` does.
    Returns ``{size: (ap (T, C), ar (T, C), num_gt (C,))}``, NaN for classes without gts of that size."""
    gt_area = (flat.gt_boxes[:, 2:] - flat.gt_boxes[:, :2]).prod(1)
    det_area = (flat.det_boxes[:, 2:] - flat.det_boxes[:, :2]).prod(1)
    sizes = {}
    for name, (low, high) in AREA_RANGES.items():
        gt_ignore = flat.gt_difficult | (gt_area < low) | (gt_area > high)
        matched, ignored = _coco_match(flat, det, gt, overlap, thresholds, gt_ignore)
        ignored |= ~matched & ((det_area < low) | (det_area > high))[None, :]
        num_gt = np.bincount(flat.gt_class[~gt_ignore], minlength=flat.num_classes)
        ap, ar = (np.full((len(thresholds), flat.num_classes), np.nan) for _ in range(2))
        for c, index in enumerate(_class_slices(flat, in_top)):
            if num_gt[c]:
                ap[:, c] = _coco_ap(matched[:, index], ignored[:, index], num_gt[c])
                ar[:, c] = _coco_recall(matched[:, index], ignored[:, index], num_gt[c])
        sizes[name] = (ap, ar, num_gt)
    return sizes


def _mean_or_missing(values, has_gt):
    """COCO's summary of a ``(T, C)`` array: the mean over classes with gts, -1 when there are none."""
    return float(values[:, has_gt].mean()) if has_gt.any() else -1.0


def _best_f1(flat, tp, ignored, total_gt):
    """Score threshold maximising F1 over all classes pooled (a threshold keeps scores >= it)."""
    index = np.flatnonzero(~ignored)
    index = index[np.lexsort((index, -flat.det_score[index]))]
    if len(index) == 0 or total_gt == 0:
        return {"f1_threshold": float("nan"), "f1": 0.0, "precision_at_f1": 0.0, "recall_at_f1": 0.0}
    scores = flat.det_score[index]
    recall, precision = _voc_curves(tp[index], total_gt)
    # Only the last detection of a run of equal scores is a reachable cut.
    cut = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    f1 = 2 * precision[cut] * recall[cut] / np.maximum(precision[cut] + recall[cut], _TINY)
    best = cut[int(np.argmax(f1))]
    return {"f1_threshold": float(scores[best]), "f1": float(f1.max()),
            "precision_at_f1": float(precision[best]), "recall_at_f1": float(recall[best])}


def evaluate_detections(ground_truths, detections, num_classes, iou_thresholds=None, max_dets=100,
                        voc_iou_threshold=VOC_IOU_THRESHOLD):
    """VOC and COCO box AP plus the best-F1 point. See the module docstring for the input layout.

    ``map50`` (VOC2010+, all-point AP at IoU >= ``voc_iou_threshold``, default 0.5, as upstream's
    get_map.py with its MINOVERLAP): detections of a class
    sorted by score over all images, matched as in ``_voc_match``; detections on difficult gts are
    dropped; AP is averaged over classes with at least one non-difficult gt.

    ``map50_95`` (COCO, equal to pycocotools' ``COCOeval.stats[0]``): thresholds ``iou_thresholds``
    (default 0.50:0.05:0.95), 101 recall points, area range "all", at most ``max_dets`` detections
    per image *and class* (pycocotools truncates each image-category list to ``maxDets``).
    A difficult gt is treated exactly as a COCO ``iscrowd=1`` box: its overlap with a detection is
    intersection / detection area, it can absorb any number of detections, those detections are
    ignored, and it does not count towards recall. Averaged over classes with a non-crowd gt.

    Returns a dict: ``map50``, ``map50_95`` (NaN when no class has gts); per class ``ap50``,
    ``ap50_95`` (NaN without gts), ``num_gt`` (non-difficult), ``num_det``; ``ap`` ``(T, C)`` and
    ``iou_thresholds``; ``precision``, ``recall``, ``scores``: per-class lists of curves at IoU 0.5
    (score order, difficult-matched detections left out); ``f1_threshold``, ``f1``,
    ``precision_at_f1``, ``recall_at_f1`` for all classes pooled (threshold NaN without detections);
    COCO's ``ap_small`` / ``ap_medium`` / ``ap_large`` (``AREA_RANGES``), ``ar100`` and ``ar_small`` /
    ``ar_medium`` / ``ar_large`` (recall at ``max_dets``), -1 when no gt has that size, as pycocotools.
    """
    thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or ((thresholds <= 0) | (thresholds > 1)).any():
        raise ValueError(f"iou_thresholds must be a non-empty list of values in (0, 1], got {iou_thresholds}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be at least 1, got {max_dets}")
    if not 0 < voc_iou_threshold <= 1:
        raise ValueError(f"voc_iou_threshold must be in (0, 1], got {voc_iou_threshold}")
    flat = _Flat(ground_truths, detections, num_classes)
    det, gt = _pairs_sharing_key(flat.det_image * num_classes + flat.det_class,
                                 flat.gt_image * num_classes + flat.gt_class)
    iou, inter_over_det = _pair_overlaps(flat.det_boxes[det], flat.gt_boxes[gt])
    voc_tp, voc_ignored = _voc_match(flat, det, gt, iou, voc_iou_threshold)
    in_top = flat.det_rank(flat.det_image * num_classes + flat.det_class) < max_dets
    pair_in_top = in_top[det]
    coco_overlap = np.where(flat.gt_difficult[gt], inter_over_det, iou)[pair_in_top]
    coco_matched, coco_ignored = _coco_match(flat, det[pair_in_top], gt[pair_in_top], coco_overlap, thresholds)

    num_gt = np.bincount(flat.gt_class[~flat.gt_difficult], minlength=num_classes)
    ap50, ap = np.full(num_classes, np.nan), np.full((len(thresholds), num_classes), np.nan)
    ar = np.full((len(thresholds), num_classes), np.nan)
    curves = {"precision": [], "recall": [], "scores": []}
    for c, (voc_index, coco_index) in enumerate(zip(_class_slices(flat, ~voc_ignored), _class_slices(flat, in_top))):
        recall, precision = _voc_curves(voc_tp[voc_index], num_gt[c])
        curves["precision"].append(precision)
        curves["recall"].append(recall)
        curves["scores"].append(flat.det_score[voc_index])
        if num_gt[c]:
            ap50[c] = voc_ap(recall, precision)
            ap[:, c] = _coco_ap(coco_matched[:, coco_index], coco_ignored[:, coco_index], num_gt[c])
            ar[:, c] = _coco_recall(coco_matched[:, coco_index], coco_ignored[:, coco_index], num_gt[c])
    has_gt = num_gt > 0
    ap50_95 = ap.mean(0)
    by_size = _coco_by_size(flat, det[pair_in_top], gt[pair_in_top], coco_overlap, thresholds, in_top)
    size_metrics = {"ar100": _mean_or_missing(ar, has_gt)}
    for name, (size_ap, size_ar, size_gt) in by_size.items():
        size_metrics[f"ap_{name}"] = _mean_or_missing(size_ap, size_gt > 0)
        size_metrics[f"ar_{name}"] = _mean_or_missing(size_ar, size_gt > 0)
    return {
        "map50": float(ap50[has_gt].mean()) if has_gt.any() else float("nan"),
        "map50_95": float(ap50_95[has_gt].mean()) if has_gt.any() else float("nan"),
        "ap50": ap50, "ap50_95": ap50_95, "ap": ap, "iou_thresholds": thresholds,
        **curves,
        **_best_f1(flat, voc_tp, voc_ignored, int(num_gt.sum())),
        "num_gt": num_gt, "num_det": np.bincount(flat.det_class, minlength=num_classes),
        **size_metrics,
    }


def coco_format(ground_truths, detections, num_classes):
    """The same data as pycocotools inputs: ``(dataset, results)`` for ``COCO.dataset`` and
    ``COCO.loadRes``. Images are numbered from 1 in first-seen order, category id = class + 1,
    boxes become ``[x, y, w, h]`` and a difficult gt becomes ``iscrowd=1`` (see evaluate_detections)."""
    flat = _Flat(ground_truths, detections, num_classes)
    gt_wh = flat.gt_boxes[:, 2:] - flat.gt_boxes[:, :2]
    det_wh = flat.det_boxes[:, 2:] - flat.det_boxes[:, :2]
    annotations = [{"id": n + 1, "image_id": int(image) + 1, "category_id": int(cls) + 1, "iscrowd": int(crowd),
                    "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)}
                   for n, (image, cls, crowd, (x, y), (w, h)) in enumerate(
                       zip(flat.gt_image, flat.gt_class, flat.gt_difficult, flat.gt_boxes[:, :2], gt_wh))]
    results = [{"image_id": int(image) + 1, "category_id": int(cls) + 1, "score": float(score),
                "bbox": [float(x), float(y), float(w), float(h)]}
               for image, cls, score, (x, y), (w, h) in zip(
                   flat.det_image, flat.det_class, flat.det_score, flat.det_boxes[:, :2], det_wh)]
    dataset = {"images": [{"id": i + 1} for i in range(len(flat.image_ids))], "annotations": annotations,
               "categories": [{"id": c + 1} for c in range(num_classes)]}
    return dataset, results


def _greedy_pairs(det, gt, iou):
    """Greedy one-to-one matching by descending IoU. Each round accepts every pair that is the best
    remaining pair of both its detection and its gt; this equals the sequential greedy result."""
    order = np.lexsort((gt, det, -iou))
    det, gt = det[order], gt[order]
    chosen_det, chosen_gt = [], []
    while len(det):
        det_first = np.zeros(len(det), dtype=bool)
        det_first[np.unique(det, return_index=True)[1]] = True
        gt_first = np.zeros(len(gt), dtype=bool)
        gt_first[np.unique(gt, return_index=True)[1]] = True
        accept = det_first & gt_first
        chosen_det.append(det[accept])
        chosen_gt.append(gt[accept])
        free = ~np.isin(det, det[accept]) & ~np.isin(gt, gt[accept])
        det, gt = det[free], gt[free]
    if not chosen_det:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(chosen_det), np.concatenate(chosen_gt)


def confusion_matrix(ground_truths, detections, num_classes, conf_threshold=0.25, iou_threshold=0.5):
    """``(C + 1, C + 1)`` counts: row = predicted class, column = true class; the last row counts
    missed gts (background predicted), the last column false positives (background true).

    Detections with ``score >= conf_threshold`` are matched to gts of the same image regardless of
    class, one-to-one, greedily by descending IoU (pairs with ``IoU >= iou_threshold``). A match
    with a difficult gt is not counted, nor is an unmatched difficult gt.
    """
    flat = _Flat(ground_truths, detections, num_classes)
    confident = flat.det_score >= conf_threshold
    det, gt = _pairs_sharing_key(flat.det_image, flat.gt_image)
    keep = confident[det]
    det, gt = det[keep], gt[keep]
    iou, _ = _pair_overlaps(flat.det_boxes[det], flat.gt_boxes[gt])
    close = iou >= iou_threshold
    det, gt = _greedy_pairs(det[close], gt[close], iou[close])
    counted = ~flat.gt_difficult[gt]

    background = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    np.add.at(matrix, (flat.det_class[det[counted]], flat.gt_class[gt[counted]]), 1)
    missed = np.ones(len(flat.gt_class), dtype=bool)
    missed[gt] = False
    np.add.at(matrix, (background, flat.gt_class[missed & ~flat.gt_difficult]), 1)
    unmatched = confident.copy()
    unmatched[det] = False
    np.add.at(matrix, (flat.det_class[unmatched], background), 1)
    return matrix


def _check_names(class_names):
    spaced = [name for name in class_names if not name or any(ch.isspace() for ch in name)]
    if spaced:
        raise UserError(f"class names {spaced} are empty or contain whitespace; the map_out text format "
                         "separates fields by spaces, so rename these classes")


def write_map_txt(map_out_path, image_id, ground_truth_rows, detection_rows, class_names):
    """Write ``map_out/ground-truth/<id>.txt`` (``name left top right bottom [difficult]``) and
    ``map_out/detection-results/<id>.txt`` (``name confidence left top right bottom``) with integer
    (truncated) pixel coordinates, as upstream's get_map.py does. Pass ``None`` to skip either file."""
    _check_names(class_names)
    image_id = str(image_id)
    if not image_id or os.sep in image_id or (os.altsep and os.altsep in image_id):
        raise UserError(f"image id {image_id!r} cannot be used as a file name")
    if ground_truth_rows is not None:
        rows = _rows(ground_truth_rows, (5, 6), "ground truth", image_id)
        names = _names_of(rows[:, 4], class_names, image_id)
        lines = [f"{name} {int(r[0])} {int(r[1])} {int(r[2])} {int(r[3])}"
                 + (" difficult" if len(r) == 6 and r[5] else "") for name, r in zip(names, rows)]
        _write_lines(os.path.join(map_out_path, "ground-truth", image_id + ".txt"), lines)
    if detection_rows is not None:
        rows = _rows(detection_rows, (6,), "detections", image_id)
        names = _names_of(rows[:, 5], class_names, image_id)
        lines = [f"{name} {r[4]:.6f} {int(r[0])} {int(r[1])} {int(r[2])} {int(r[3])}" for name, r in zip(names, rows)]
        _write_lines(os.path.join(map_out_path, "detection-results", image_id + ".txt"), lines)


def _names_of(classes, class_names, image_id):
    bad = (classes != np.round(classes)) | (classes < 0) | (classes >= len(class_names))
    if bad.any():
        raise ValueError(f"image {image_id!r} has class id {classes[bad][0]} outside the {len(class_names)} class names")
    return [class_names[int(c)] for c in classes]


def _write_lines(path, lines):
    atomic_write(path, "".join(line + "\n" for line in lines))


def _read_txt_rows(path, class_index, kind):
    """Rows of one map_out text file; ``kind`` is "gt" or "det". Errors name the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            difficult = kind == "gt" and len(tokens) == 6 and tokens[5] == "difficult"
            expected = 6 if kind == "det" or difficult else 5
            if len(tokens) != expected:
                layout = ("name left top right bottom [difficult]" if kind == "gt"
                          else "name confidence left top right bottom")
                raise UserError(f"{path}:{number}: expected '{layout}', got {line.strip()!r}")
            if tokens[0] not in class_index:
                raise UserError(f"{path}:{number}: unknown class name {tokens[0]!r}")
            try:
                numbers = [float(t) for t in tokens[1:expected - difficult]]
            except ValueError:
                raise UserError(f"{path}:{number}: non-numeric field in {line.strip()!r}") from None
            cls = float(class_index[tokens[0]])
            rows.append(numbers + [cls, float(difficult)] if kind == "gt" else numbers[1:] + [numbers[0], cls])
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def read_map_txt(map_out_path, class_names):
    """Read a ``map_out/`` folder back into ``(ground_truths, detections)`` dicts keyed by file stem.

    Every ground-truth file is an image; a missing detection file means no detections."""
    _check_names(class_names)
    class_index = {name: i for i, name in enumerate(class_names)}
    folders = {kind: os.path.join(map_out_path, sub) for kind, sub in
               (("gt", "ground-truth"), ("det", "detection-results"))}
    for folder in folders.values():
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"map_out folder {folder} not found (run get_map.py to write it)")
    results = {}
    for kind, folder in folders.items():
        names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
        results[kind] = {n[:-4]: _read_txt_rows(os.path.join(folder, n), class_index, kind) for n in names}
    detections = {i: results["det"].get(i, np.zeros((0, 6))) for i in results["gt"]}
    detections.update({i: d for i, d in results["det"].items() if i not in detections})
    return results["gt"], detections
