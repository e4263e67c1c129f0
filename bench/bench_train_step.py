"""Time one training step (forward + three-level loss + backward + optimizer step) on the CPU.

Default: the full YOLOv4 at 416 x 416, batch 4, 20 classes, 20 boxes per image, focal objectness (the form the
upstream-style loss computes), SGD. Prints the median of several steps for each variant, side by side in one run:
  upstream       - upstream's step: Mish written as x * tanh(softplus(x)), NCHW, and the loss assigned box by
                   box in Python loops (bench/bench_loss.py's upstream-style loss, equal in value)
  upstream_mish  - upstream's Mish and layout with this repository's vectorized loss
  fused_mish     - this repository's Mish (torch's fused F.mish kernel), NCHW
  channels_last  - fused Mish, model and input in channels_last memory format
  compiled       - channels_last under torch.compile (inductor); its compile time is printed apart
                   (--no_compile leaves it out)
  train.py       - channels_last with freed memory kept for reuse (utils/engine/cpu_memory.py), what train.py does on
                   CPU; run after the others, since the allocator setting cannot be undone in the process
The first step's loss of every variant is printed: all equal to float tolerance (same weights and batch), and
the page faults of a step (the kernel zero-fills each faulted 4 KB page).
Usage: python bench/bench_train_step.py [--size 416] [--batch 4] [--width 1.0] [--depth 1.0] [--steps 5]
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nets.fuse import replace_mish  # noqa: E402
from nets.yolo import YoloBody  # noqa: E402
from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.engine.cpu_memory import keep_freed_memory  # noqa: E402
from utils.engine.optim import build_optimizer  # noqa: E402
from utils.utils import get_anchors  # noqa: E402
from utils.engine.epoch import total_loss  # noqa: E402
from bench_loss import upstream_style_loss  # noqa: E402

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


def upstream_loss(loss_fn):
    def loss_of(outputs, targets):
        return sum(upstream_style_loss(loss_fn, level, output, targets) for level, output in enumerate(outputs)), None
    return loss_of


def time_steps(model, loss_of, optimizer, images, targets, steps):
    """(median seconds of ``steps`` steps, seconds of the first step, its loss, median page faults of a step)."""
    times, faults, first = [], [], None
    for i in range(steps + 1):
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_of(model(images), targets)
        loss.backward()
        optimizer.step()
        if i:                       # the first step allocates and warms up (and compiles)
            times.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
        else:
            first = (time.perf_counter() - start, loss.item())
    return statistics.median(times), *first, statistics.median(faults)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--depth", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--no_compile", action="store_true")
    args = parser.parse_args()

    anchors, _ = get_anchors("model_data/yolo_anchors.txt")
    images, targets = make_batch(args.batch, args.size, args.classes, 20, torch.Generator().manual_seed(0))
    loss_fn = YOLOLoss(anchors, args.classes, (args.size, args.size), focal_loss=True)
    ours = lambda outputs, targets: total_loss(loss_fn, outputs, targets)              # noqa: E731
    variants = (["upstream", "upstream_mish", "fused_mish", "channels_last"] + ([] if args.no_compile else ["compiled"])
                + ["train.py"])
    results = {}
    for variant in variants:
        torch.manual_seed(0)
        model = YoloBody(MASK, args.classes, width_mult=args.width, depth_mult=args.depth).train()
        x = images
        if variant in ("upstream", "upstream_mish"):
            model = replace_mish(model, UpstreamMish)
        if variant == "train.py" and not keep_freed_memory():
            print("train.py variant: not on glibc, freed memory is not kept (same as channels_last)")
        if variant in ("channels_last", "compiled", "train.py"):
            model = model.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, "sgd", 1e-3, 0.937, 5e-4)
        net = torch.compile(model) if variant == "compiled" else model
        results[variant] = time_steps(net, upstream_loss(loss_fn) if variant == "upstream" else ours, optimizer, x,
                                      targets, args.steps)
    print(f"train step, {args.size}px, batch {args.batch}, width {args.width}, depth {args.depth}, "
          f"{torch.get_num_threads()} threads (median of {args.steps}):")
    for variant, (seconds, first, loss, faults) in results.items():
        note = f", first step {first:.1f} s (compiles)" if variant == "compiled" else ""
        print(f"  {variant:<14} {seconds:7.3f} s   x{results['upstream'][0] / seconds:.2f} vs upstream   "
              f"loss {loss:.6f}   {faults:>8,.0f} page faults a step{note}")

if __name__ == "__main__":
    main()
