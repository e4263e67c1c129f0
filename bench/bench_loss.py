"""Time the three-level YOLO loss (focal on, no grad): batch 16, 50 boxes/image, 416 input, 20 classes.

Prints the median of several runs. Usage: python bench/bench_loss.py [--batch 16] [--device cpu]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.utils import get_anchors  # noqa: E402


def make_inputs(batch, boxes, size, num_classes, device, generator):
    outputs = [torch.randn(batch, 3 * (5 + num_classes), size // s, size // s, generator=generator).to(device)
               for s in (32, 16, 8)]
    targets = []
    for _ in range(batch):
        cxcy = torch.rand(boxes, 2, generator=generator) * 0.8 + 0.1
        wh = torch.rand(boxes, 2, generator=generator) * 0.3 + 0.02
        cls = torch.randint(0, num_classes, (boxes, 1), generator=generator).float()
        targets.append(torch.cat([cxcy, wh, cls], 1).to(device))
    return outputs, targets


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    anchors, _ = get_anchors("model_data/yolo_anchors.txt")
    loss_fn = YOLOLoss(anchors, args.classes, (args.size, args.size), focal_loss=True)
    outputs, targets = make_inputs(args.batch, args.boxes, args.size, args.classes, args.device,
                                   torch.Generator().manual_seed(0))

    def run():
        with torch.no_grad():
            total = sum(loss_fn(l, out, targets) for l, out in enumerate(outputs))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return total

    for _ in range(3):
        run()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(f"yolo loss, 3 levels, focal, no grad: batch {args.batch}, {args.boxes} boxes/image, {args.size}px, "
          f"{args.classes} classes, {args.device} ({torch.get_num_threads()} threads): "
          f"median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
