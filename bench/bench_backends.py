"""CPU inference per image against upstream's ``get_FPS``: the default path, eager torch, onnxruntime fp32 and int8.

One image (416 x 416 by default, full YOLOv4, 20 classes, random weights with BN statistics gathered on random
images), forward + decode + NMS each time, as ``get_FPS`` times it, preprocessing excluded. Variants, interleaved
run by run so background load hits them alike:
  upstream get_FPS   - the reference: upstream's network as it runs there (BN not folded, Mish written as
                       x * tanh(softplus(x)), NCHW, torch.no_grad), with this repository's decode + NMS
  YOLO() get_FPS     - what a user gets without flags: compile="auto", which compiles for get_FPS (a long run);
                       the compile is timed apart
  YOLO eager         - compile=False: BN folded, inference Mish, channels_last, inference_mode
  onnxruntime fp32   - YOLO_ONNX on the export of predict.py --mode export_onnx (decode in the graph)
  onnxruntime int8   - YOLO_ONNX on its int8 model (--onnx_int8 True), calibrated here on random images (speed
                       only: for its mAP see bench/bench_int8_map.py)
Each is also given as a fraction of the fp32 floor: the network's multiply-accumulates at the best rate this CPU
reaches on one large 3x3 convolution (oneDNN, the same threads), i.e. how far from the hardware each path is.
Usage: python bench/bench_backends.py [--threads 1] [--runs 7] [--size 416]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_infer import ANCHORS_PATH, CLASSES_PATH, random_model  # noqa: E402
from bench_train_step import UpstreamMish  # noqa: E402

from nets.fuse import replace_mish  # noqa: E402
from utils.deploy.model_stats import count_macs  # noqa: E402
from utils.metrics.evaluation import detections_from_outputs  # noqa: E402
from yolo import YOLO, YOLO_ONNX, int8_path  # noqa: E402


def upstream_get_fps_step(model, yolo):
    """One step of upstream's get_FPS loop on a preprocessed image: forward, decode, NMS."""
    def step(images, image_shape):
        with torch.no_grad():
            outputs = model(images)
            return detections_from_outputs(outputs, yolo.decoding, [image_shape], yolo.confidence, yolo.nms_iou)
    return step


def write_calibration_images(folder, count, size, rng):
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"calibration_{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def conv_peak_macs_per_s(threads_note, repeats=5):
    """The best MAC rate of one large 3x3 convolution (256 -> 256 channels, 52 x 52, channels_last, fp32):
    what this CPU's oneDNN reaches on the network's bread-and-butter layer."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 256, 52, 52).to(memory_format=torch.channels_last)
    macs = 256 * 256 * 9 * 52 * 52
    with torch.inference_mode():
        conv(x)
        best = min(_timed(lambda: conv(x)) for _ in range(repeats))
    return macs / best


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def build_variants(args, rng, tmp):
    """``(variants, compile seconds, yolo)``: name -> step(images, image_shape), built from one weights file."""
    model = random_model(args.size, 20)
    settings = dict(classes_path=CLASSES_PATH, anchors_path=ANCHORS_PATH, input_shape=[args.size, args.size])
    weights = os.path.join(tmp, "yolov4_random.pth")
    torch.save(model.state_dict(), weights)
    default = YOLO(model_path=weights, device="cpu", **settings)                  # compile="auto"
    eager = YOLO(model_path=weights, device="cpu", compile=False, **settings)
    onnx_path = os.path.join(tmp, "model.onnx")
    eager.convert_to_onnx(False, onnx_path, int8_images=write_calibration_images(
        tmp, args.calibration_images, args.size, rng))
    fp32 = YOLO_ONNX(onnx_path=onnx_path, threads=args.threads)
    int8 = YOLO_ONNX(onnx_path=int8_path(onnx_path), threads=args.threads)
    upstream = replace_mish(random_model(args.size, 20), UpstreamMish).eval()
    image = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    start = time.perf_counter()
    default.get_FPS(image, 1)                      # what get_FPS runs: the compile happens in its warm-up
    compile_seconds = time.perf_counter() - start
    variants = {"upstream get_FPS": upstream_get_fps_step(upstream, eager), "YOLO() get_FPS": default._detect_tensor,
                "YOLO eager": eager._detect_tensor, "onnxruntime fp32": fp32._detect_tensor,
                "onnxruntime int8": int8._detect_tensor}
    return variants, compile_seconds, eager, image


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--calibration_images", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        variants, compile_seconds, yolo, image = build_variants(args, rng, tmp)
    print(f"YOLO() get_FPS: compiled in its warm-up, {compile_seconds:.0f} s (inductor's cache makes later runs faster)")
    images, image_shape, _ = yolo._preprocess(image)
    times = {name: [] for name in variants}
    for run in variants.values():
        run(images, image_shape)                               # warm-up: primitive creation, allocations
    for _ in range(args.runs):
        for name, run in variants.items():
            times[name].append(_timed(lambda: run(images, image_shape)))
    macs, _ = count_macs(yolo.net, (args.size, args.size))
    peak = conv_peak_macs_per_s(args.threads)
    floor = macs / peak

    reference = statistics.median(times["upstream get_FPS"])
    print(f"YOLOv4 {args.size}x{args.size}, 20 classes, {args.threads} thread(s), forward + decode + NMS per "
          f"image, median of {args.runs} interleaved runs; fp32 floor {floor * 1e3:.0f} ms ({macs / 1e9:.1f} GMAC at "
          f"{2 * peak / 1e9:.0f} GFLOP/s, the best rate of a 3x3 convolution here):")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<18} {median * 1e3:8.1f} ms  (min {min(values) * 1e3:.1f})  x{reference / median:.2f} "
              f"vs upstream get_FPS, {floor / median:4.0%} of the fp32 floor")


if __name__ == "__main__":
    main()
