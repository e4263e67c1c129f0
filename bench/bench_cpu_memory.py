"""Two CPU set-ups side by side in two spawned processes that take turns, one step each (the order alternating per
round), so background load hits both alike. Both build the same model (same seed) and batch. With --separate the
two are never alive at once: each round runs a fresh process per set-up to its end, one after the other, so that
the memory one process holds (freed memory kept) cannot make the other's page faults dearer.

--pair memory (default): glibc's default allocator against freed memory kept for reuse (utils/engine/cpu_memory.py):
    one process calls ``keep_freed_memory()`` first, as train.py does on the CPU; both run this repository's
    step (channels_last, BCE objectness).
--pair upstream: upstream's step against train.py's: upstream's Mish (``x * tanh(softplus(x))``), NCHW, glibc's
    defaults and the loss assigned box by box in Python loops (bench/bench_loss.py's upstream-style loss, focal
    objectness), against channels_last, freed memory kept and the vectorized loss (the same focal loss; the
    first step's loss of each is printed). Its inference forward is upstream's unfused model under no_grad.

Timed: a fused inference forward of one image (as YOLO.get_FPS, without decode + NMS), then a training step
(forward + loss + backward + SGD step, channels_last as train.py): inference first, while the processes are as
fresh as a predict.py one (after training steps glibc's adaptive threshold already serves a forward from the
heap). Prints the median seconds and page faults of each, and the ratio.
Usage: python bench/bench_cpu_memory.py [--pair memory|upstream] [--separate ROUNDS] [--size 416] [--batch 4]
                                        [--steps 7] [--threads 2] [--infer_threads 1] [--kinds infer,train]
"""
import argparse
import copy
import multiprocessing
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_step import MASK, UpstreamMish, make_batch, upstream_loss  # noqa: E402
from nets.fuse import inference_model, replace_mish  # noqa: E402
from nets.yolo import YoloBody  # noqa: E402
from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.engine.cpu_memory import keep_freed_memory  # noqa: E402
from utils.engine.optim import build_optimizer  # noqa: E402
from utils.utils import get_anchors  # noqa: E402
from utils.engine.epoch import total_loss  # noqa: E402


PAIRS = {"memory": ("glibc defaults", "kept for reuse"), "upstream": ("upstream", "train.py")}
KEEPS_FREED_MEMORY = {"glibc defaults": False, "kept for reuse": True, "upstream": False, "train.py": True}


def worker(connection, name, args):
    """Answers "train" / "infer" with (seconds, page faults, loss or None) of one such step, until "stop"."""
    if KEEPS_FREED_MEMORY[name] and not keep_freed_memory():
        raise SystemExit("not on glibc: nothing to compare")
    anchors, _ = get_anchors("model_data/yolo_anchors.txt")
    images, targets = make_batch(args.batch, args.size, 20, 20, torch.Generator().manual_seed(0))
    loss_fn = YOLOLoss(anchors, 20, (args.size, args.size), focal_loss=args.pair == "upstream")
    torch.manual_seed(0)
    model = YoloBody(MASK, 20).train()
    if name == "upstream":
        model = replace_mish(model, UpstreamMish)
        loss_of = upstream_loss(loss_fn)
        net = copy.deepcopy(model).eval()
        infer_context = torch.no_grad
    else:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        loss_of = lambda outputs, targets: total_loss(loss_fn, outputs, targets)     # noqa: E731
        net = inference_model(copy.deepcopy(model).eval())
        infer_context = torch.inference_mode
    optimizer = build_optimizer(model, "sgd", 1e-3, 0.937, 5e-4)
    image = images[:1]

    def train_step():
        torch.set_num_threads(args.threads)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(images), targets)[0]
        loss.backward()
        optimizer.step()
        return loss.detach()

    def infer_step():
        torch.set_num_threads(args.infer_threads)
        with infer_context():
            net(image)

    steps = {"train": train_step, "infer": infer_step}
    while (message := connection.recv()) != "stop":
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        loss = steps[message]()
        seconds = time.perf_counter() - start
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        connection.send((seconds, faults, None if loss is None else loss.item()))   # read back after the timing


def start_worker(context, name, args):
    connection, child = context.Pipe()
    context.Process(target=worker, args=(child, name, args), daemon=True).start()
    return connection


def measure_alternating(args, names, kinds):
    """Both processes alive, one step each in turn: yields ``(name, kind, round, (seconds, faults, loss))``."""
    context = multiprocessing.get_context("spawn")
    connections = {name: start_worker(context, name, args) for name in names}
    for kind in kinds:
        for round_ in range(args.steps + 1):
            for name in (names if round_ % 2 else names[::-1]):
                connections[name].send(kind)
                yield name, kind, round_, connections[name].recv()
    for connection in connections.values():
        connection.send("stop")


def measure_separately(args, names, kinds):
    """``args.separate`` rounds; in each, one fresh process per set-up runs its warm-up and ``args.steps`` steps
    of every kind and ends before the next starts. Yields as ``measure_alternating``."""
    context = multiprocessing.get_context("spawn")
    for round_ in range(args.separate):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            connection = start_worker(context, name, args)
            for kind in kinds:
                for step in range(args.steps + 1):
                    connection.send(kind)
                    yield name, kind, step, connection.recv()
            connection.send("stop")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=sorted(PAIRS), default="memory", help="what to compare (see above)")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="threads of the training step")
    parser.add_argument("--infer_threads", type=int, default=1, help="threads of the inference forward")
    parser.add_argument("--kinds", default="infer,train", help="what to time, in this order")
    parser.add_argument("--separate", type=int, default=0, metavar="ROUNDS",
                        help="instead of two processes taking turns, ROUNDS rounds of one fresh process per set-up "
                             "after the other (order alternating), so the memory one holds cannot slow the other")
    args = parser.parse_args()
    names = PAIRS[args.pair]
    kinds = args.kinds.split(",")
    results = {(kind, name): [] for kind in kinds for name in names}
    first_loss = {}
    rounds = measure_separately(args, names, kinds) if args.separate else measure_alternating(args, names, kinds)
    for name, kind, round_, (seconds, faults, loss) in rounds:
        if round_:                                           # round 0 warms up: allocations, primitive creation
            results[kind, name].append((seconds, faults))
        elif loss is not None:
            first_loss[name] = loss
    how = (f"{args.separate} rounds of a fresh process per set-up, {args.steps} steps each, never two at once"
           if args.separate else f"{args.steps} alternating steps per process")
    print(f"YOLOv4 {args.size}x{args.size}, 20 classes; medians of {how}")
    if first_loss:
        print("  first training step's loss: " + ", ".join(f"{n} {v:.6f}" for n, v in first_loss.items()))
    labels = {"train": f"training step, batch {args.batch}, {args.threads} threads",
              "infer": f"inference forward, 1 image, {args.infer_threads} thread(s)"}
    for kind, label in ((kind, labels[kind]) for kind in kinds):
        base = statistics.median(s for s, _ in results[kind, names[0]])
        print(f"  {label}:")
        for name in names:
            times = [s for s, _ in results[kind, name]]
            faults = statistics.median(f for _, f in results[kind, name])
            print(f"    {name:<15} {statistics.median(times):8.3f} s (steps {min(times):.3f}-{max(times):.3f})  "
                  f"{faults:>10,.0f} page faults  x{base / statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
