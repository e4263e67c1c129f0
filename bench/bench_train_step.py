"""Time one training step (forward + three-level loss + backward + optimizer step) on the CPU.

Default: the full YOLOv4 at 416 x 416, batch 4, 20 classes, 20 boxes per image. Prints the median
of several steps for each variant, side by side in one run:
  upstream_mish  - the unoptimised reference: Mish written as x * tanh(softplus(x)) (as upstream), NCHW
  fused_mish     - this repository's Mish (torch's fused F.mish kernel), NCHW
  channels_last  - fused Mish, model and input in channels_last memory format (what train.py does on CPU)
Usage: python bench/bench_train_step.py [--size 416] [--batch 4] [--width 1.0] [--depth 1.0] [--steps 5]
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nets.fuse import replace_mish  # noqa: E402
from nets.yolo import YoloBody  # noqa: E402
from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.optim import build_optimizer  # noqa: E402
from utils.utils import get_anchors  # noqa: E402
from utils.utils_fit import total_loss  # noqa: E402

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


def make_batch(batch, size, num_classes, boxes, generator):
    images = torch.rand(batch, 3, size, size, generator=generator)
    targets = []
    for _ in range(batch):
        cxcy = torch.rand(boxes, 2, generator=generator) * 0.8 + 0.1
        wh = torch.rand(boxes, 2, generator=generator) * 0.3 + 0.02
        cls = torch.randint(0, num_classes, (boxes, 1), generator=generator).float()
        targets.append(torch.cat([cxcy, wh, cls], 1))
    return images, targets


class UpstreamMish(torch.nn.Module):
    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


def time_steps(model, loss_fn, optimizer, images, targets, steps):
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = total_loss(loss_fn, model(images), targets)
        loss.backward()
        optimizer.step()
        if i:                       # the first step allocates and warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--depth", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    anchors, _ = get_anchors("model_data/yolo_anchors.txt")
    images, targets = make_batch(args.batch, args.size, args.classes, 20, torch.Generator().manual_seed(0))
    loss_fn = YOLOLoss(anchors, args.classes, (args.size, args.size))
    results = {}
    for variant in ("upstream_mish", "fused_mish", "channels_last"):
        torch.manual_seed(0)
        model = YoloBody(MASK, args.classes, width_mult=args.width, depth_mult=args.depth).train()
        x = images
        if variant == "upstream_mish":
            model = replace_mish(model, UpstreamMish)
        if variant == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, "sgd", 1e-3, 0.937, 5e-4)
        results[variant] = time_steps(model, loss_fn, optimizer, x, targets, args.steps)
    print(f"train step, {args.size}px, batch {args.batch}, width {args.width}, depth {args.depth}, "
          f"{torch.get_num_threads()} threads (median of {args.steps}):")
    for variant, seconds in results.items():
        print(f"  {variant:<14} {seconds:7.3f} s   x{results['upstream_mish'] / seconds:.2f}")


if __name__ == "__main__":
    main()
