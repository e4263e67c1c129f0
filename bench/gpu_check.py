"""The prepared GPU check: one table of training and inference throughput, peak memory, loss agreement between the
GPU and the CPU, and a one-GPU torchrun (NCCL) smoke run. Meant to finish in under 8 minutes on one GPU.

    python bench/gpu_check.py                     # on a machine with CUDA
    python bench/gpu_check.py --quick --device cpu   # a tiny dry run of every row (checks the script itself)

Rows: training images/s at 416 px, batch 16, full YOLOv4 (20 classes, 20 boxes per image) with and without AMP, and
with an upstream-style per-box-loop loss in the same run; peak GPU memory of each; ``YOLO.get_FPS`` at batch 1;
inference images/s at batch 32 (fused network); the loss of one batch on the GPU against the CPU (to 1e-4); a 2-epoch
``torchrun --nproc_per_node=1`` run on the sample set with ``distributed=True``.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_loss import upstream_style_loss  # noqa: E402
from bench_train_step import make_batch  # noqa: E402
from nets.fuse import inference_model  # noqa: E402
from nets.yolo import YoloBody  # noqa: E402
from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.engine.optim import build_optimizer  # noqa: E402
from utils.utils import get_anchors  # noqa: E402
from utils.engine.epoch import total_loss  # noqa: E402

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
CLASSES = 20


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device, warmup, steps):
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def upstream_total(loss_fn, outputs, targets):
    return sum(upstream_style_loss(loss_fn, level, output, targets) for level, output in enumerate(outputs))


def train_row(args, device, amp, loss_kind):
    """Training images/s and peak memory of forward + loss + backward + step."""
    torch.manual_seed(0)
    model = YoloBody(MASK, CLASSES, width_mult=args.width, depth_mult=args.depth).to(device).train()
    # Focal objectness in both losses: the upstream-style reference (bench/bench_loss.py) computes that form.
    loss_fn = YOLOLoss(get_anchors(os.path.join(ROOT, "model_data", "yolo_anchors.txt"))[0], CLASSES,
                       (args.size, args.size), focal_loss=True)
    optimizer = build_optimizer(model, "sgd", 1e-3, 0.937, 5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    images, targets = make_batch(args.batch, args.size, CLASSES, 20, torch.Generator().manual_seed(1))
    images, targets = images.to(device), [t.to(device) for t in targets]

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            outputs = model(images)
        outputs = [o.float() for o in outputs]
        loss = total_loss(loss_fn, outputs, targets)[0] if loss_kind == "ours" else \
            upstream_total(loss_fn, outputs, targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    per_step = seconds(step, device, args.warmup, args.steps)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    return args.batch / per_step, peak


def inference_rows(args, device):
    """``(YOLO.get_FPS images/s at batch 1, fused-network images/s at batch args.infer_batch)``."""
    from PIL import Image

    from yolo import YOLO

    torch.manual_seed(0)
    model = YoloBody(MASK, CLASSES, width_mult=args.width, depth_mult=args.depth).eval()
    with tempfile.TemporaryDirectory() as folder:
        weights, classes = os.path.join(folder, "w.pth"), os.path.join(folder, "classes.txt")
        torch.save(model.state_dict(), weights)
        with open(classes, "w", encoding="utf-8") as f:
            f.writelines(f"c{i}\n" for i in range(CLASSES))
        yolo = YOLO(model_path=weights, classes_path=classes, input_shape=[args.size, args.size],
                    device=str(device), confidence=0.5)
        image = Image.open(os.path.join(ROOT, "img", "shapes_000023.jpg"))
        fps = 1 / yolo.get_FPS(image, args.steps)
    net = inference_model(model, device)
    batch = torch.rand(args.infer_batch, 3, args.size, args.size, device=device)
    with torch.inference_mode():
        per_batch = seconds(lambda: net(batch), device, args.warmup, args.steps)
    return fps, args.infer_batch / per_batch


def loss_agreement(args, device):
    """Largest |loss_gpu - loss_cpu| over the three terms, for one batch of head outputs."""
    generator = torch.Generator().manual_seed(2)
    outputs = [torch.randn(args.batch, 3 * (5 + CLASSES), args.size // s, args.size // s, generator=generator)
               for s in (32, 16, 8)]
    _, targets = make_batch(args.batch, args.size, CLASSES, 20, generator)
    loss_fn = YOLOLoss(get_anchors(os.path.join(ROOT, "model_data", "yolo_anchors.txt"))[0], CLASSES,
                       (args.size, args.size))
    _, cpu_terms = total_loss(loss_fn, outputs, targets)
    _, dev_terms = total_loss(loss_fn, [o.to(device) for o in outputs], [t.to(device) for t in targets])
    return max(abs(float(cpu_terms[k]) - float(dev_terms[k])) for k in cpu_terms)


def ddp_smoke(args, device):
    """Exit status of a 2-epoch torchrun run with one process on the sample set (NCCL on CUDA, Gloo on CPU)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "train.py",
                   "config/quickstart.py", "--UnFreeze_Epoch", "2", "--distributed", "True",
                   "--device", "cuda:0" if device.type == "cuda" else "cpu", "--num_workers", "0",
                   "--save_dir", folder]
        if args.quick:
            command += ["--width_mult", "0.125", "--input_shape", "[64, 64]"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=420)
    return result.returncode, (result.stderr.strip().splitlines() or [""])[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the script, not a measure")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; run on a GPU machine, or --quick --device cpu for a dry run")
    args.size, args.batch, args.infer_batch, args.width, args.depth = \
        (64, 2, 4, 0.125, 0.33) if args.quick else (416, 16, 32, 1.0, 1.0)
    args.warmup, args.steps = (1, 2) if args.quick else (3, 10)
    rows = []
    for amp, kind in ((False, "ours"), (True, "ours"), (False, "upstream_loop")):
        images_per_s, peak = train_row(args, device, amp, kind)
        label = f"training, {kind} loss{', AMP' if amp else ''}"
        rows.append((f"{label}: images/s (batch {args.batch}, {args.size} px)", f"{images_per_s:.1f}"))
        rows.append((f"{label}: peak GPU memory", f"{peak:.2f} GiB"))
    fps, throughput = inference_rows(args, device)
    rows.append(("YOLO.get_FPS, batch 1: images/s", f"{fps:.1f}"))
    rows.append((f"inference, fused network, batch {args.infer_batch}: images/s", f"{throughput:.1f}"))
    difference = loss_agreement(args, device)
    rows.append(("loss terms, device vs CPU: largest difference (≤ 1e-4)", f"{difference:.2e} "
                 f"{'ok' if difference <= 1e-4 else 'TOO LARGE'}"))
    status, last = ddp_smoke(args, device)
    rows.append(("torchrun, 1 process, 2 epochs on the sample set", "ok" if status == 0 else f"exit {status}: {last}"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"| {name}{' (quick dry run, not a measurement)' if args.quick else ''} | value |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
