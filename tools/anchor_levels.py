"""Where the training boxes go, per level, for one or more anchor files: the numbers behind an anchor choice.

For each anchors file it prints, per level (stride, grid), the boxes whose best anchor lives there, how many of
them keep a positive cell after collisions (two boxes of an image on the same anchor and cell: the later wins,
the other is lost), their median size in input pixels, and the objectness weight of the level. A second table
gives the mean shape IoU of each box with its best anchor, and the share of boxes whose best anchor moves to
another level when the box is rescaled by each of ``scales`` (what Mosaic, about x0.5, and the scale jitter do
to a box in training): anchors crowded into a narrow size range score a high IoU, but send the same object to
different levels from one epoch to the next. The boxes are
the training list's, letterboxed to ``input_shape`` as validation sees them (training augmentation moves them).
    python tools/anchor_levels.py --input_shape "[160, 160]" \\
        --anchors_paths "['model_data/yolo_anchors.txt', 'my_anchors_160.txt']"
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nets.boxes import wh_iou  # noqa: E402
from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.data.anchor_check import letterboxed_targets  # noqa: E402
from utils.data.annotation import read_annotation_file  # noqa: E402
from utils.data.dataset_check import scan_annotation_lines  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.errors import run_entry  # noqa: E402
from utils.utils import get_anchors, get_classes  # noqa: E402

input_shape = [160, 160]                                   # network input [height, width]
anchors_paths = ["model_data/yolo_anchors.txt"]            # anchor files to compare
train_annotation_path = "2007_train.txt"                   # the training list whose boxes are counted
classes_path = "model_data/sample_classes.txt"             # its classes
anchors_mask = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]           # anchors of the stride-32, 16 and 8 levels
scales = [0.5, 0.7, 1.3]                                   # box rescalings whose level changes are counted
_LIMITS = {"anchors_paths": "any length", "scales": "any length, >0"}  # lists of any length; the rest typed by their defaults


def level_rows(anchors, boxes, owners, images, config):
    """Per level: (stride, grid, boxes whose best anchor is there, of them positive, median w x h in pixels)."""
    height, width = config["input_shape"]
    loss = YOLOLoss(anchors, 1, config["input_shape"], anchors_mask=config["anchors_mask"])
    scale = np.array([width, height], dtype=np.float32)
    rows = []
    for level, stride in enumerate((32, 16, 8)):
        H, W = height // stride, width // stride
        grid = torch.from_numpy(boxes * np.array([W, H, W, H, 1], dtype=np.float32))
        box, _, _, _, valid = loss._candidates(level, grid, W, H)
        box = box[valid].numpy()
        assigned = loss._assign(level, grid, torch.from_numpy(owners), images, len(config["anchors_mask"][level]),
                                H, W)
        winners = int(assigned["winner"].sum())
        sizes = boxes[box, 2:4] * scale if len(box) else np.zeros((0, 2))
        median = "-" if not len(sizes) else f"{np.median(sizes[:, 0]):.0f}x{np.median(sizes[:, 1]):.0f}"
        rows.append((stride, f"{W}x{H}", len(box), winners, median, loss.balance[level]))
    return rows


def level_changes(anchors, box_wh, anchors_mask, scales):
    """Mean best shape IoU of the boxes ``(n, 2)`` (pixels) and, per scale, the share whose best level changes."""
    level_of = np.empty(sum(len(m) for m in anchors_mask), dtype=np.int64)
    for level, mask in enumerate(anchors_mask):
        level_of[mask] = level
    anchors = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
    iou = wh_iou(box_wh, anchors)                                   # (n, 9)
    home = level_of[iou.argmax(1).numpy()]
    moved = [float((level_of[wh_iou(box_wh * s, anchors).argmax(1).numpy()] != home).mean()) for s in scales]
    return float(iou.max(1).values.mean()), moved


def main(config):
    class_names, _ = get_classes(config["classes_path"])
    lines, report = scan_annotation_lines(read_annotation_file(config["train_annotation_path"]), len(class_names),
                                          class_names)
    boxes, owners, images = letterboxed_targets(lines, report.image_sizes, config["input_shape"])
    print(f"{len(boxes)} boxes of {images} images of {config['train_annotation_path']}, letterboxed to "
          f"{config['input_shape'][1]}x{config['input_shape'][0]}")
    print("| anchors | stride | grid | boxes (best anchor here) | keep a positive | lost to collisions "
          "| median box px | objectness weight |\n|---|---|---|---|---|---|---|---|")
    for path in config["anchors_paths"]:
        anchors, _ = get_anchors(path)
        for stride, grid, assigned, winners, median, weight in level_rows(anchors, boxes, owners, images, config):
            print(f"| {path} | {stride} | {grid} | {assigned} | {winners} | {assigned - winners} | {median} "
                  f"| {weight:g} |")
    box_wh = torch.from_numpy(boxes[:, 2:4] * np.array(config["input_shape"][::-1], dtype=np.float32))
    print("\n| anchors | mean best shape IoU | " + " | ".join(f"boxes changing level at x{s:g}" for s in config["scales"])
          + " |\n|---|---|" + "---|" * len(config["scales"]))
    for path in config["anchors_paths"]:
        mean_iou, moved = level_changes(get_anchors(path)[0], box_wh, config["anchors_mask"], config["scales"])
        print(f"| {path} | {mean_iou:.3f} | " + " | ".join(f"{m:.2f}" for m in moved) + " |")


if __name__ == "__main__":
    run_entry(lambda: main(resolve_config(globals(), sys.argv[1:])))
