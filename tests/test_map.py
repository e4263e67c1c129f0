"""Detection metrics against pycocotools, a slow loop-based VOC reference and hand-computed cases."""
import contextlib
import io

import numpy as np
import pytest

from utils.metrics.mean_ap import coco_format, confusion_matrix, evaluate_detections, read_map_txt, write_map_txt


def slow_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def slow_voc_ap(recall, precision):
    """VOC2010 devkit ``VOCap`` written with plain loops."""
    mrec, mpre = [0.0] + list(recall) + [1.0], [0.0] + list(precision) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def reference_voc(ground_truths, detections, num_classes, threshold=0.5):
    """Per-class VOC AP, devkit style: one detection at a time, best-IoU gt, difficult ignored."""
    aps = np.full(num_classes, np.nan)
    for c in range(num_classes):
        gts = {i: [g for g in rows if int(g[4]) == c] for i, rows in ground_truths.items()}
        num_pos = sum(1 for rows in gts.values() for g in rows if not (len(g) > 5 and g[5]))
        if num_pos == 0:
            continue
        used = {i: [False] * len(rows) for i, rows in gts.items()}
        dets = sorted(((d[4], i, d[:4]) for i, rows in detections.items() for d in rows if int(d[5]) == c),
                      key=lambda item: -item[0])
        tp, fp = [], []
        for _, image, box in dets:
            best, best_j = 0.0, -1
            for j, g in enumerate(gts.get(image, [])):
                overlap = slow_iou(box, g[:4])
                if overlap > best:
                    best, best_j = overlap, j
            hit = best_j >= 0 and best >= threshold
            if hit and len(gts[image][best_j]) > 5 and gts[image][best_j][5]:
                continue
            is_tp = hit and not used[image][best_j]
            if is_tp:
                used[image][best_j] = True
            tp.append(int(is_tp))
            fp.append(int(not is_tp))
        tp_sum, fp_sum = np.cumsum(tp), np.cumsum(fp)
        recall = [t / num_pos for t in tp_sum]
        precision = [t / max(t + f, 1e-12) for t, f in zip(tp_sum, fp_sum)]
        aps[c] = slow_voc_ap(recall, precision)
    return aps


def pycocotools_eval(ground_truths, detections, num_classes):
    """pycocotools' ``COCOeval`` of the same data, evaluated, accumulated and summarized."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = coco_format(ground_truths, detections, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def pycocotools_stats(ground_truths, detections, num_classes):
    """``(stats[0], per-class AP over the IoU thresholds)`` from pycocotools."""
    evaluator = pycocotools_eval(ground_truths, detections, num_classes)
    precision = evaluator.eval["precision"][:, :, :, 0, 2]           # (T, R, K), area all, maxDets 100
    per_class = np.array([precision[:, :, k][precision[:, :, k] > -1].mean() if (precision[:, :, k] > -1).any()
                          else np.nan for k in range(num_classes)])
    return evaluator.stats[0], per_class


def random_data(seed, num_images=40, num_classes=4, difficult=True, size=160):
    """Jittered and duplicated hits, wrong classes, random false positives, empty images,
    images only in one of the dicts, and (optionally) difficult flags."""
    rng = np.random.default_rng(seed)
    ground_truths, detections = {}, {}
    for image in range(num_images):
        n = rng.integers(0, 7)
        xy = rng.uniform(0, size * 0.7, (n, 2))
        gt = np.concatenate([xy, xy + rng.uniform(4, size * 0.3, (n, 2)), rng.integers(0, num_classes, (n, 1)),
                             (rng.random((n, 1)) < 0.15) & difficult], 1)
        hits = gt[rng.random(n) < 0.7]
        hits = np.concatenate([hits, hits[rng.random(len(hits)) < 0.3]])      # duplicates
        corners = hits[:, :4] + rng.normal(0, 3, (len(hits), 4))
        corners = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                                  np.maximum(corners[:, :2], corners[:, 2:])], 1)
        classes = np.where(rng.random(len(hits)) < 0.85, hits[:, 4], rng.integers(0, num_classes, len(hits)))
        m = rng.integers(0, 4)
        fxy = rng.uniform(0, size * 0.7, (m, 2))
        false = np.concatenate([fxy, fxy + rng.uniform(4, size * 0.3, (m, 2))], 1)
        boxes = np.concatenate([corners, false])
        det = np.concatenate([boxes, rng.random((len(boxes), 1)),
                              np.concatenate([classes, rng.integers(0, num_classes, m)])[:, None]], 1)
        if image % 7 != 3:                     # some images have detections but no gt entry
            ground_truths[image] = gt
        if image % 5 != 1:                     # some have no detection entry
            detections[image] = det
    ground_truths[num_images] = np.zeros((0, 6))   # explicitly empty
    detections[num_images + 1] = np.zeros((0, 6))
    return ground_truths, detections


@pytest.mark.parametrize("seed", range(5))
def test_map50_matches_loop_reference_with_difficult_boxes(seed):
    gts, dets = random_data(seed)
    result = evaluate_detections(gts, dets, 4)
    reference = reference_voc(gts, dets, 4)
    np.testing.assert_allclose(result["ap50"], reference, atol=1e-9, equal_nan=True)
    assert result["map50"] == pytest.approx(np.nanmean(reference), abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("difficult", [False, True])
def test_map50_95_matches_pycocotools(seed, difficult):
    gts, dets = random_data(seed + 10, difficult=difficult)
    stats0, per_class = pycocotools_stats(gts, dets, 4)
    result = evaluate_detections(gts, dets, 4)
    assert result["map50_95"] == pytest.approx(stats0, abs=1e-4)
    np.testing.assert_allclose(result["ap50_95"], per_class, atol=1e-4, equal_nan=True)


def test_max_dets_applies_per_image_and_class_like_pycocotools():
    rng = np.random.default_rng(3)
    gts = {0: np.array([[10, 10, 50, 50, 0], [60, 60, 90, 90, 0], [100, 10, 140, 50, 1]], float)}

    def far_boxes(n):
        xy = rng.uniform(200, 400, (n, 2))
        return np.concatenate([xy, xy + 20], 1)

    class0 = far_boxes(150)
    class0[90], class0[120] = gts[0][0, :4], gts[0][1, :4]      # hits at score ranks 90 and 120
    class1 = far_boxes(60)
    class1[0] = gts[0][2, :4]
    dets = {0: np.concatenate([
        np.c_[class0, np.sort(rng.uniform(0.01, 0.5, 150))[::-1], np.zeros(150)],
        np.c_[class1, np.sort(rng.uniform(0.6, 1.0, 60))[::-1], np.ones(60)]])}
    stats0, _ = pycocotools_stats(gts, dets, 2)
    result = evaluate_detections(gts, dets, 2)
    assert result["map50_95"] == pytest.approx(stats0, abs=1e-4)
    # The rank-90 hit counts (a top-100 over all classes would have cut it), the rank-120 one does not.
    assert 0 < result["ap50_95"][0] < evaluate_detections(gts, dets, 2, max_dets=1000)["ap50_95"][0]


def test_two_gts_three_detections_by_hand():
    gts = {"a": np.array([[0, 0, 10, 10, 0]], float), "b": np.array([[20, 20, 40, 40, 0]], float)}
    dets = {"a": np.array([[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.8, 0]], float),
            "b": np.array([[20, 20, 40, 40, 0.7, 0]], float)}
    result = evaluate_detections(gts, dets, 1)
    # TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope 1 then 2/3.
    assert result["map50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # 101-point: recall points 0..0.50 (51 of them) at precision 1, 0.51..1.00 (50) at 2/3.
    assert result["map50_95"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    np.testing.assert_allclose(result["precision"][0], [1, 0.5, 2 / 3])
    np.testing.assert_allclose(result["recall"][0], [0.5, 0.5, 1])


def test_duplicate_is_false_positive_and_voc_targets_best_gt_even_if_taken():
    # A = [0,0,10,10], B = [5,0,15,10]. d2 overlaps A (IoU 2/3, already taken) more than B (IoU 7/13).
    gts = {0: np.array([[0, 0, 10, 10, 0], [5, 0, 15, 10, 0]], float)}
    dets = {0: np.array([[0, 0, 10, 10, 0.9, 0], [2, 0, 12, 10, 0.8, 0]], float)}
    result = evaluate_detections(gts, dets, 1)
    assert result["map50"] == pytest.approx(0.5)          # VOC: d2 hits taken A -> FP; recall 1/2 at precision 1
    # COCO: d2 takes the free B at t = 0.50 only (7/13 < 0.55): AP 1 there, 51/101 at the other nine.
    np.testing.assert_allclose(result["ap"][:, 0], [1.0] + [51 / 101] * 9, atol=1e-12)
    assert result["map50_95"] == pytest.approx((1 + 9 * 51 / 101) / 10)


def test_difficult_gt_neither_hit_nor_miss():
    gts = {0: np.array([[0, 0, 10, 10, 0, 1], [20, 20, 30, 30, 0, 0]], float)}
    dets = {0: np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 0], [1, 1, 11, 11, 0.7, 0]], float)}
    result = evaluate_detections(gts, dets, 1)
    assert result["map50"] == 1.0 and result["map50_95"] == pytest.approx(1.0)
    assert result["num_gt"].tolist() == [1]
    assert len(result["precision"][0]) == 1                # the two detections on the difficult box are dropped


def test_classes_without_gt_are_nan_and_excluded_and_empty_input():
    gts = {0: np.array([[0, 0, 10, 10, 1]], float)}
    dets = {0: np.array([[0, 0, 10, 10, 0.5, 0], [0, 0, 10, 10, 0.4, 1]], float)}
    result = evaluate_detections(gts, dets, 3)
    assert np.isnan(result["ap50"][[0, 2]]).all() and result["ap50"][1] == 1.0
    assert result["map50"] == 1.0 and result["num_det"].tolist() == [1, 1, 0]
    empty = evaluate_detections({}, {}, 2)
    assert np.isnan(empty["map50"]) and np.isnan(empty["map50_95"]) and empty["f1"] == 0.0
    missed = evaluate_detections({0: np.array([[0, 0, 5, 5, 0]])}, {}, 1)
    assert missed["map50"] == 0.0 and missed["map50_95"] == 0.0


def test_best_f1_point_by_hand_and_ties_cut_whole_groups():
    gts = {0: np.array([[0, 0, 10, 10, 0], [20, 0, 30, 10, 0]], float)}
    dets = {0: np.array([[0, 0, 10, 10, 0.9, 0], [50, 0, 60, 10, 0.8, 0],
                         [20, 0, 30, 10, 0.7, 0], [70, 0, 80, 10, 0.6, 0]], float)}
    result = evaluate_detections(gts, dets, 1)
    # Cuts: (P, R) = (1, .5) F1 .667; (.5, .5) .5; (2/3, 1) .8; (.5, 1) .667.
    assert result["f1_threshold"] == 0.7 and result["f1"] == pytest.approx(0.8)
    assert result["precision_at_f1"] == pytest.approx(2 / 3) and result["recall_at_f1"] == 1.0

    gts = {0: np.array([[0, 0, 10, 10, 0], [20, 0, 30, 10, 0], [40, 0, 50, 10, 0]], float)}
    dets = {0: np.array([[0, 0, 10, 10, 0.9, 0], [20, 0, 30, 10, 0.5, 0], [70, 0, 80, 10, 0.5, 0]], float)}
    result = evaluate_detections(gts, dets, 1)
    # Splitting the two 0.5 scores would give F1 .8; the reachable cut keeps both: P = R = 2/3.
    assert result["f1_threshold"] == 0.5 and result["f1"] == pytest.approx(2 / 3)


def test_bad_input_names_the_image():
    with pytest.raises(ValueError, match="'img7'.*shape"):
        evaluate_detections({"img7": np.zeros((2, 4))}, {}, 2)
    with pytest.raises(ValueError, match="'img3'.*class id"):
        evaluate_detections({"img3": np.array([[0, 0, 1, 1, 5]])}, {}, 2)
    with pytest.raises(ValueError, match="'img4'.*x2 < x1"):
        evaluate_detections({}, {"img4": np.array([[5, 0, 1, 1, 0.5, 0]])}, 2)


def test_confusion_matrix_by_hand():
    gts = {
        "a": np.array([[0, 0, 10, 10, 0, 0], [20, 0, 30, 10, 1, 0], [40, 0, 50, 10, 1, 1]], float),  # last: difficult
        "b": np.array([[0, 0, 10, 10, 1], [100, 0, 110, 10, 0], [104, 0, 115, 10, 1]], float),   # .., X, Y
    }
    dets = {
        "a": np.array([[0, 0, 10, 10, 0.9, 0],        # correct class 0
                       [20, 0, 30, 10, 0.8, 0],       # class 0 on a class-1 box
                       [40, 0, 50, 10, 0.8, 0],       # on the difficult box: not counted
                       [60, 0, 70, 10, 0.1, 1]], float),   # below conf_threshold: not counted
        # P = X; Q overlaps X (IoU 2/3) more than Y (8/13). Greedy by IoU gives P-X then Q-Y
        # (matching each detection to its best gt first would leave Q unmatched).
        "b": np.array([[200, 0, 210, 10, 0.6, 1],     # nothing there: false positive of class 1
                       [100, 0, 110, 10, 0.7, 0], [102, 0, 112, 10, 0.7, 1]], float),
    }
    matrix = confusion_matrix(gts, dets, 2, conf_threshold=0.25, iou_threshold=0.5)
    expected = np.array([[2, 1, 0],
                         [0, 1, 1],
                         [0, 1, 0]])     # the class-1 box at (0,0) in image b is missed
    np.testing.assert_array_equal(matrix, expected)


def test_map_txt_round_trip_and_errors(tmp_path):
    names = ["cat", "dog"]
    gt = np.array([[1.7, 2.2, 30.9, 40.0, 1, 0], [5, 6, 7, 8, 0, 1]])
    det = np.array([[1.5, 2.5, 30.5, 40.5, 0.1234567, 1]])
    write_map_txt(tmp_path, "img 1", gt, det, names)
    write_map_txt(tmp_path, "img2", np.zeros((0, 5)), None, names)
    assert (tmp_path / "ground-truth" / "img 1.txt").read_text() == "dog 1 2 30 40\ncat 5 6 7 8 difficult\n"
    assert (tmp_path / "detection-results" / "img 1.txt").read_text() == "dog 0.123457 1 2 30 40\n"
    gts, dets = read_map_txt(tmp_path, names)
    np.testing.assert_array_equal(gts["img 1"], [[1, 2, 30, 40, 1, 0], [5, 6, 7, 8, 0, 1]])
    np.testing.assert_allclose(dets["img 1"], [[1, 2, 30, 40, 0.123457, 1]])
    assert gts["img2"].shape == (0, 6) and dets["img2"].shape == (0, 6)

    with pytest.raises(ValueError, match="whitespace"):
        write_map_txt(tmp_path, "x", gt, None, ["potted plant", "dog"])
    with pytest.raises(ValueError, match="'x' has class id 5.0 outside"):
        write_map_txt(tmp_path, "x", None, np.array([[0, 0, 1, 1, 0.5, 5]]), names)
    (tmp_path / "detection-results" / "bad.txt").write_text("dog 0.5 1 2 3\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected"):
        read_map_txt(tmp_path, names)
    (tmp_path / "detection-results" / "bad.txt").write_text("cow 0.5 1 2 3 4\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: unknown class name 'cow'"):
        read_map_txt(tmp_path, names)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("difficult", [False, True])
def test_ap_and_ar_by_object_size_match_pycocotools(seed, difficult):
    # 400-px images: boxes of 4-120 px sides fall into all three of COCO's sizes.
    gts, dets = random_data(seed + 20, difficult=difficult, size=400)
    evaluator = pycocotools_eval(gts, dets, 4)
    result = evaluate_detections(gts, dets, 4)
    names = ["ap_small", "ap_medium", "ap_large", "ar100", "ar_small", "ar_medium", "ar_large"]
    expected = [evaluator.stats[i] for i in (3, 4, 5, 8, 9, 10, 11)]
    assert [result[n] for n in names] == pytest.approx(expected, abs=1e-6)
    assert min(expected) > 0                      # every size is present, so none is the -1 of a missing range


def test_a_size_without_ground_truth_is_minus_one():
    # One 10 x 10 box found exactly: small only; COCO reports -1 for the medium and large ranges.
    gts = {"a": np.array([[0, 0, 10, 10, 0]], dtype=float)}
    dets = {"a": np.array([[0, 0, 10, 10, 0.9, 0]], dtype=float)}
    result = evaluate_detections(gts, dets, 1)
    assert result["ap_small"] == pytest.approx(1.0) and result["ar_small"] == pytest.approx(1.0)
    assert result["ap_medium"] == result["ap_large"] == result["ar_medium"] == result["ar_large"] == -1.0
