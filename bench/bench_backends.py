"""CPU inference per image against upstream's ``get_FPS``: the torch path, onnxruntime fp32 and int8.

One image (416 x 416 by default, full YOLOv4, 20 classes, random weights with BN statistics gathered on random
images), forward + decode + NMS each time, as ``get_FPS`` times it, preprocessing excluded. Variants, interleaved
run by run so background load hits them alike:
  upstream get_FPS - the reference: upstream's network as it runs there (BN not folded, Mish written as
                     x * tanh(softplus(x)), NCHW, torch.no_grad), with this repository's decode + NMS
  YOLO.get_FPS     - this repository's torch path (BN folded, inference Mish, channels_last, inference_mode)
  ... compiled     - the same with compile=True (torch.compile, frozen weights; --compile; compile time apart)
  onnxruntime fp32 - YOLO_ONNX on the export of predict.py --mode export_onnx
  onnxruntime int8 - YOLO_ONNX on its int8 model (--onnx_int8 True), calibrated here on random images (speed
                     only: for its mAP see bench/bench_int8_map.py)
Usage: python bench/bench_backends.py [--threads 1] [--runs 7] [--size 416] [--compile]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--calibration_images", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also time YOLO(compile=True) (compiles first)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = random_model(args.size, 20)
    rng = np.random.default_rng(0)
    settings = dict(classes_path=CLASSES_PATH, anchors_path=ANCHORS_PATH, input_shape=[args.size, args.size])
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "yolov4_random.pth")
        torch.save(model.state_dict(), weights)
        yolo = YOLO(model_path=weights, device="cpu", **settings)
        compiled = YOLO(model_path=weights, device="cpu", compile=True, **settings) if args.compile else None
        onnx_path = os.path.join(tmp, "model.onnx")
        yolo.convert_to_onnx(False, onnx_path, int8_images=write_calibration_images(
            tmp, args.calibration_images, args.size, rng))
        fp32 = YOLO_ONNX(onnx_path=onnx_path, threads=args.threads, **settings)
        int8 = YOLO_ONNX(onnx_path=int8_path(onnx_path), threads=args.threads, **settings)
    upstream = replace_mish(random_model(args.size, 20), UpstreamMish).eval()
    image = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    images, image_shape, _ = yolo._preprocess(image)
    variants = {"upstream get_FPS": upstream_get_fps_step(upstream, yolo), "YOLO.get_FPS": yolo._detect_tensor,
                "onnxruntime fp32": fp32._detect_tensor, "onnxruntime int8": int8._detect_tensor}
    if compiled is not None:
        variants["YOLO.get_FPS compiled"] = compiled._detect_tensor
        start = time.perf_counter()
        compiled._detect_tensor(images, image_shape)           # compiles
        print(f"compile=True: the first image took {time.perf_counter() - start:.0f} s (compiling)")
    times = {name: [] for name in variants}
    for run in variants.values():
        run(images, image_shape)                               # warm-up: primitive creation, allocations
    for _ in range(args.runs):
        for name, run in variants.items():
            start = time.perf_counter()
            run(images, image_shape)
            times[name].append(time.perf_counter() - start)

    reference = statistics.median(times["upstream get_FPS"])
    print(f"YOLOv4 {args.size}x{args.size}, 20 classes, {args.threads} thread(s), forward + decode + NMS per "
          f"image, median of {args.runs} interleaved runs:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<22} {median * 1e3:8.1f} ms  (min {min(values) * 1e3:.1f})  x{reference / median:.2f} "
              "vs upstream get_FPS")


if __name__ == "__main__":
    main()
