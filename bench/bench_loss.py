"""Time the three-level YOLO loss (focal on, no grad): batch 16, 50 boxes/image, 416 input, 20 classes.

Side by side in one run: this repository's vectorized YOLOLoss, and a reference written the way
upstream's loss is (targets assigned box by box in a Python loop with host syncs, the ignore mask
image by image, BCE on clipped probabilities). Prints medians of several runs, their ratio, and both
loss values (equal up to upstream's probability clipping). Usage:
    python bench/bench_loss.py [--batch 16] [--device cpu] [--no_reference]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nets.yolo_training import YOLOLoss  # noqa: E402
from nets.boxes import aligned_ciou, box_iou, cxcywh_to_xyxy, wh_iou  # noqa: E402
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


def upstream_style_loss(loss_fn, l, input, targets):
    """Level-``l`` loss computed with upstream's control flow (``get_target`` / ``get_ignore`` loops)."""
    B, _, H, W = input.shape
    mask, C = loss_fn.anchors_mask[l], loss_fn.num_classes
    A = len(mask)
    pred = input.view(B, A, 5 + C, H, W).permute(0, 1, 3, 4, 2).contiguous()      # (B, A, H, W, 5+C)
    grid_scale = torch.tensor([W, H, W, H], dtype=input.dtype, device=input.device)
    anchors = loss_fn.anchors.to(input.device) * torch.tensor(
        [W / loss_fn.input_shape[1], H / loss_fn.input_shape[0]], device=input.device)   # (9, 2) grid units

    y_true = input.new_zeros(B, A, H, W, 5 + C)
    noobj = input.new_ones(B, A, H, W)
    for b in range(B):                                   # get_target: one Python step per box
        if len(targets[b]) == 0:
            continue
        gt = targets[b][:, :4] * grid_scale
        best = wh_iou(gt[:, 2:4], anchors).argmax(1)
        for n, best_n in enumerate(best.tolist()):
            if best_n not in mask:
                continue
            k = mask.index(best_n)
            i = min(max(int(gt[n, 0]), 0), W - 1)
            j = min(max(int(gt[n, 1]), 0), H - 1)
            noobj[b, k, j, i] = 0
            y_true[b, k, j, i, :4] = gt[n]
            y_true[b, k, j, i, 4] = 1
            y_true[b, k, j, i, 5 + int(targets[b][n, 4])] = 1

    gx = torch.arange(W, device=input.device, dtype=input.dtype)
    gy = torch.arange(H, device=input.device, dtype=input.dtype)[:, None]
    level_anchors = anchors[mask].view(1, A, 1, 1, 2)
    pred_boxes = torch.stack([torch.sigmoid(pred[..., 0]) + gx, torch.sigmoid(pred[..., 1]) + gy,
                              torch.exp(pred[..., 2]) * level_anchors[..., 0],
                              torch.exp(pred[..., 3]) * level_anchors[..., 1]], -1)     # (B, A, H, W, 4)
    for b in range(B):                                   # get_ignore: one image at a time
        if len(targets[b]) == 0:
            continue
        ious = box_iou(cxcywh_to_xyxy(pred_boxes[b].view(-1, 4)), cxcywh_to_xyxy(targets[b][:, :4] * grid_scale))
        noobj[b][ious.max(1).values.view(A, H, W) > loss_fn.ignore_threshold] = 0

    obj = y_true[..., 4] == 1
    loss = input.new_zeros(())
    eps = 1e-7
    if obj.sum() != 0:                                   # a host sync, as upstream
        loss_loc = (1 - aligned_ciou(pred_boxes[obj], y_true[..., :4][obj])).mean()
        p_cls = torch.sigmoid(pred[..., 5:][obj]).clamp(eps, 1 - eps)
        t_cls = y_true[..., 5:][obj]
        loss_cls = -(t_cls * torch.log(p_cls) + (1 - t_cls) * torch.log(1 - p_cls)).mean()
        loss = loss + loss_loc * loss_fn.box_ratio + loss_cls * loss_fn.cls_ratio
    conf = torch.sigmoid(pred[..., 4]).clamp(eps, 1 - eps)
    target = obj.to(conf.dtype)
    bce = -(target * torch.log(conf) + (1 - target) * torch.log(1 - conf))
    ratio = torch.where(obj, loss_fn.alpha, 1 - loss_fn.alpha) * torch.where(obj, 1 - conf, conf) ** loss_fn.gamma
    loss_conf = (bce * ratio)[noobj.bool() | obj].mean() * loss_fn.focal_loss_ratio
    return loss + loss_conf * loss_fn.balance[l] * loss_fn.obj_ratio


def median_ms(fn, runs, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no_reference", action="store_true", help="time only the vectorized loss")
    args = parser.parse_args()

    anchors, _ = get_anchors("model_data/yolo_anchors.txt")
    loss_fn = YOLOLoss(anchors, args.classes, (args.size, args.size), focal_loss=True)
    outputs, targets = make_inputs(args.batch, args.boxes, args.size, args.classes, args.device,
                                   torch.Generator().manual_seed(0))

    def vectorized():
        with torch.no_grad():
            return sum(loss_fn(l, out, targets) for l, out in enumerate(outputs))

    def reference():
        with torch.no_grad():
            return sum(upstream_style_loss(loss_fn, l, out, targets) for l, out in enumerate(outputs))

    print(f"yolo loss, 3 levels, focal, no grad: batch {args.batch}, {args.boxes} boxes/image, {args.size}px, "
          f"{args.classes} classes, {args.device} ({torch.get_num_threads()} threads), median of {args.runs} runs")
    median, best = median_ms(vectorized, args.runs, args.device)
    print(f"  vectorized YOLOLoss       {median:8.1f} ms  (min {best:.1f})   loss {vectorized().item():.6f}")
    if not args.no_reference:
        ref_median, ref_best = median_ms(reference, args.runs, args.device)
        print(f"  upstream-style loops      {ref_median:8.1f} ms  (min {ref_best:.1f})   loss {reference().item():.6f}")
        print(f"  speed-up                  {ref_median / median:8.1f}x")


if __name__ == "__main__":
    main()
