"""mAP of the onnxruntime int8 model against the fp32 torch path, for trained weights, through the one
evaluation path (utils/metrics/evaluation.py): same images, preprocessing, decode, NMS and scoring; only the network
differs. The int8 model is calibrated on ``--calibration_images`` images of the training list (as
predict.py --mode export_onnx --onnx_int8 True does). Prints mAP@0.5 and mAP@.5:.95 of each and the change.
Usage: python bench/bench_int8_map.py --model_path <run>/last_epoch_weights.pth --train_list 2007_train.txt \\
           --val_list 2007_val.txt [--threads 1]
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from predict import calibration_paths  # noqa: E402
from utils.data.annotation import read_annotation_file  # noqa: E402
from utils.metrics.evaluation import evaluate_model, samples_from_annotation_lines  # noqa: E402
from yolo import YOLO, YOLO_ONNX, int8_path  # noqa: E402


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
    yolo = YOLO(model_path=args.model_path, device="cpu")
    settings = {k: getattr(yolo, k) for k in ("classes_path", "anchors_path", "input_shape", "letterbox_image",
                                               "scale_x_y", "anchors_mask")}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        start = time.perf_counter()
        yolo.convert_to_onnx(False, onnx_path, calibration_paths(args.train_list, args.calibration_images))
        seconds = time.perf_counter() - start
        int8 = YOLO_ONNX(onnx_path=int8_path(onnx_path), threads=args.threads, **settings)
    int8.class_names, int8.anchors = yolo.class_names, yolo.anchors       # as the weights' metadata gave them
    print(f"{args.model_path}: export + int8 calibration on {args.calibration_images} images of "
          f"{args.train_list} took {seconds:.0f} s")
    print("| list | images | fp32 torch mAP@0.5 | int8 onnxruntime mAP@0.5 | change | fp32 mAP@.5:.95 | "
          "int8 mAP@.5:.95 |\n|---|---|---|---|---|---|---|")
    for path in args.val_list:
        samples = samples_from_annotation_lines(read_annotation_file(path), yolo.class_names)
        fp32 = evaluate_model(yolo.net, samples, yolo.decoding, yolo.class_names, torch.device("cpu")).metrics
        quant = evaluate_model(int8._forward, samples, int8.decoding, yolo.class_names, torch.device("cpu")).metrics
        print(f"| {path} | {len(samples)} | {fp32['map50']:.4f} | {quant['map50']:.4f} | "
              f"{quant['map50'] - fp32['map50']:+.4f} | {fp32['map50_95']:.4f} | {quant['map50_95']:.4f} |")


if __name__ == "__main__":
    main()
