"""Time ``evaluate_detections`` (VOC AP@0.5 + COCO AP@[.5:.95] + best F1) on synthetic data:
5,000 images x 5 ground truths x 20 detections, 20 classes by default.

Detections mix jittered copies of the ground truths (some with a wrong class, some duplicated)
with random boxes, so every matching branch is exercised. Prints the median of several runs.
Usage: python bench/bench_map.py [--images 5000] [--runs 5] [--coco]  (--coco also times pycocotools)
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.metrics.mean_ap import coco_format, evaluate_detections  # noqa: E402


def random_boxes(rng, n, size=640):
    xy = rng.uniform(0, size * 0.8, (n, 2))
    wh = rng.uniform(10, size * 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], 1)


def make_data(rng, images, gts_per_image, dets_per_image, num_classes):
    ground_truths, detections = {}, {}
    for i in range(images):
        gt = np.concatenate([random_boxes(rng, gts_per_image), rng.integers(0, num_classes, (gts_per_image, 1))], 1)
        copies = gt[rng.integers(0, gts_per_image, dets_per_image // 2)]
        corners = copies[:, :4] + rng.normal(0, 8, (len(copies), 4))
        corners = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                                  np.maximum(corners[:, :2], corners[:, 2:])], 1)
        classes = np.where(rng.random(len(copies)) < 0.8, copies[:, 4], rng.integers(0, num_classes, len(copies)))
        near = np.concatenate([corners, classes[:, None]], 1)
        far = np.concatenate([random_boxes(rng, dets_per_image - len(near)),
                              rng.integers(0, num_classes, (dets_per_image - len(near), 1))], 1)
        boxes = np.concatenate([near, far])
        ground_truths[i] = gt
        detections[i] = np.concatenate([boxes[:, :4], rng.random((len(boxes), 1)), boxes[:, 4:]], 1)
    return ground_truths, detections


def time_runs(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def pycocotools_map(ground_truths, detections, num_classes):
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
    return evaluator.stats[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--gts", type=int, default=5)
    parser.add_argument("--dets", type=int, default=20)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--coco", action="store_true", help="also time pycocotools (one run) and compare")
    args = parser.parse_args()

    ground_truths, detections = make_data(np.random.default_rng(0), args.images, args.gts, args.dets, args.classes)
    evaluate_detections(ground_truths, detections, args.classes)   # warm-up
    median, best, result = time_runs(lambda: evaluate_detections(ground_truths, detections, args.classes), args.runs)
    print(f"evaluate_detections: {args.images} images x {args.gts} gts x {args.dets} dets, {args.classes} classes: "
          f"median {median:.3f} s, min {best:.3f} s over {args.runs} runs")
    print(f"  mAP@0.5 {result['map50']:.4f}  mAP@[.5:.95] {result['map50_95']:.4f}  best F1 {result['f1']:.4f} "
          f"at score {result['f1_threshold']:.3f} (P {result['precision_at_f1']:.3f}, R {result['recall_at_f1']:.3f})")
    if args.coco:
        seconds, _, stats0 = time_runs(lambda: pycocotools_map(ground_truths, detections, args.classes), 1)
        print(f"pycocotools COCOeval: {seconds:.3f} s, stats[0] {stats0:.4f} "
              f"(difference {abs(stats0 - result['map50_95']):.2e})")


if __name__ == "__main__":
    main()
