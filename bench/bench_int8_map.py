"""Exports of trained weights against the PyTorch path, through the one evaluation path (utils/metrics/evaluation.py):
same images, preprocessing, NMS and scoring; only the network (and, for ONNX, the decode in its graph) differs.

For each list: mAP@0.5 and mAP@.5:.95 of the fp32 torch path, the fp32 ONNX export and its int8 model (calibrated
on ``--calibration_images`` images of the training list, as predict.py --mode export_onnx --onnx_int8 True does),
and how far the exports' detections at the weights' confidence lie from PyTorch's: each PyTorch detection
matched to the export's detection of the same class with the highest IoU, the largest (fp32) or mean (int8)
coordinate difference in image pixels, the largest score difference, and the share of PyTorch detections matched
at IoU >= 0.5.
Usage: python bench/bench_int8_map.py --model_path <run>/last_epoch_weights.pth --train_list 2007_train.txt \\
           --val_list 2007_val.txt 2007_test.txt [--threads 1]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from predict import calibration_paths  # noqa: E402
from utils.data.annotation import read_annotation_file  # noqa: E402
from utils.metrics.evaluation import detect_samples, evaluate_model, samples_from_annotation_lines  # noqa: E402
from nets.boxes import box_iou  # noqa: E402
from yolo import YOLO, YOLO_ONNX, int8_path  # noqa: E402


def detection_gaps(reference, other):
    """``(max coordinate gap px, mean coordinate gap px, max score gap, matched share)`` of per-image ``(k, 6)``
    detections ``other`` against ``reference``: each reference box paired with the same-class box of ``other`` of
    highest IoU (a pair counts when its IoU >= 0.5)."""
    gaps, score_gaps, matched, total = [], [], 0, 0
    for ref, got in zip(reference, other):
        total += len(ref)
        if not len(ref) or not len(got):
            continue
        iou = box_iou(torch.from_numpy(ref[:, :4]), torch.from_numpy(got[:, :4])).numpy() * (ref[:, None, 5] == got[None, :, 5])
        best = iou.argmax(1)
        keep = iou[np.arange(len(ref)), best] >= 0.5
        matched += int(keep.sum())
        gaps.append(np.abs(ref[keep, :4] - got[best[keep], :4]).ravel())
        score_gaps.append(np.abs(ref[keep, 4] - got[best[keep], 4]))
    gaps = np.concatenate(gaps) if gaps else np.zeros(1)
    score_gaps = np.concatenate(score_gaps) if score_gaps else np.zeros(1)
    return float(gaps.max()), float(gaps.mean()), float(score_gaps.max()), matched / max(total, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--train_list", required=True, help="calibration images come from this list")
    parser.add_argument("--val_list", required=True, nargs="+", help="lists scored (e.g. the val and test lists)")
    parser.add_argument("--calibration_images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch / onnxruntime threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    yolo = YOLO(model_path=args.model_path, device="cpu", compile=False)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        start = time.perf_counter()
        yolo.convert_to_onnx(False, onnx_path, calibration_paths(args.train_list, args.calibration_images))
        seconds = time.perf_counter() - start
        fp32 = YOLO_ONNX(onnx_path=onnx_path, threads=args.threads)          # everything from the file's metadata
        int8 = YOLO_ONNX(onnx_path=int8_path(onnx_path), threads=args.threads)
    print(f"{args.model_path}: export + int8 calibration on {args.calibration_images} images of "
          f"{args.train_list} took {seconds:.0f} s; detections compared at confidence {yolo.confidence:.4g}")
    print("| list | images | mAP@0.5 torch / ONNX fp32 / int8 | mAP@.5:.95 torch / fp32 / int8 | fp32 vs torch: "
          "max box gap, max score gap | int8 vs torch: mean box gap, matched |\n|---|---|---|---|---|---|")
    for path in args.val_list:
        samples = samples_from_annotation_lines(read_annotation_file(path), yolo.class_names)
        scores = [evaluate_model(net, samples, yolo.decoding, yolo.class_names, cpu).metrics
                  for net in (yolo.net, fp32._decoded, int8._decoded)]
        found = [detect_samples(net, samples, yolo.decoding, cpu, confidence=yolo.confidence, nms_iou=yolo.nms_iou)
                 for net in (yolo.net, fp32._decoded, int8._decoded)]
        fp32_max, _, fp32_score, _ = detection_gaps(found[0], found[1])
        _, int8_mean, _, int8_matched = detection_gaps(found[0], found[2])
        map50, map50_95 = (" / ".join(f"{m[key]:.4f}" for m in scores) for key in ("map50", "map50_95"))
        print(f"| {path} | {len(samples)} | {map50} | {map50_95} | {fp32_max:.3g} px, {fp32_score:.2g} | "
              f"{int8_mean:.2f} px, {int8_matched:.1%} |")


if __name__ == "__main__":
    main()
