"""Latency of one image through ``YOLO.detect`` (fused network + decode + NMS, inference_mode) against
the bare unfused network's forward (eval, no_grad): full-size YOLOv4, 20 classes, 416x416, CPU.

Also times the inference rewrites one by one (BN folding, the cheaper Mish, channels_last) so each
one's share shows. Runs of all variants are interleaved, so background load hits them alike.
Weights are random, with BN statistics gathered on random images so activations stay in range.

Usage: python bench/bench_infer.py [--runs 7] [--size 416] [--threads N]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from nets.fuse import fuse_conv_bn, replace_mish  # noqa: E402
from nets.yolo import YoloBody  # noqa: E402
from yolo import YOLO  # noqa: E402

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
CLASSES_PATH = os.path.join(ROOT, "model_data", "voc_classes.txt")
ANCHORS_PATH = os.path.join(ROOT, "model_data", "yolo_anchors.txt")


def random_model(size, num_classes):
    """Random YOLOv4 whose BN running statistics come from two random batches (train-mode passes)."""
    torch.manual_seed(0)
    model = YoloBody(MASK, num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None        # cumulative average over the calibration passes
        model.train()
        for _ in range(2):
            model(torch.rand(2, 3, size, size))
    return model.eval()


def median_ms(times):
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = random_model(args.size, 20)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "yolov4_random.pth")
        torch.save(model.state_dict(), weights)
        yolo = YOLO(model_path=weights, classes_path=CLASSES_PATH, anchors_path=ANCHORS_PATH,
                    input_shape=[args.size, args.size], device="cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    x = torch.rand(1, 3, args.size, args.size)

    fused = fuse_conv_bn(model)
    fused_mish = replace_mish(fuse_conv_bn(model))
    variants = {
        "unfused forward (eval, no_grad)": lambda: model(x),
        "BN folded forward": lambda: fused(x),
        "BN folded + inference Mish forward": lambda: fused_mish(x),
        "+ channels_last forward (YOLO.net)": lambda: yolo.net(x),
        "YOLO.detect (+ resize, decode, NMS)": lambda: yolo.detect(image),
    }
    times = {name: [] for name in variants}
    with torch.no_grad():
        for run in variants.values():
            run()                                           # warm-up: oneDNN primitive creation
        for _ in range(args.runs):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    boxes, _, _ = yolo.detect(image)
    print(f"YOLOv4 {args.size}x{args.size}, 20 classes, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.runs} interleaved runs ({len(boxes)} detections at confidence {yolo.confidence}):")
    baseline = median_ms(times["unfused forward (eval, no_grad)"])
    for name, values in times.items():
        print(f"  {name:<45} {median_ms(values):8.1f} ms  (min {min(values) * 1e3:.1f})  "
              f"speed-up x{baseline / median_ms(values):.2f}")


if __name__ == "__main__":
    main()
