"""How imbalanced the objectness term is: positives per image and cells per positive under each assignment.

Focal loss exists for a term with very many easy negatives per positive. How many there are depends on the input
size (the cells: 3 anchors x (s/32)^2 + (s/16)^2 + (s/8)^2) and on the assignment (how many anchor cells each box
makes positive: one with upstream's, more with ``iou_thresh`` and ``neighbour_cells``). This prints both for the
training boxes, letterboxed to each input size as validation sees them, counted by the loss's own assignment
(``utils.data.anchor_check.positive_shares``, what ``focal_normalize = "positives"`` scales by), without augmentation.
A second table splits train.py's assignment by output level: how many easy negatives each positive faces there
(``stride 8: 1 positive per N negatives``), the imbalance focal objectness is for (docs/focal.md says when it helps).
    python tools/positives_per_image.py --data my_set/data.yaml --input_sizes "[320, 416]"
    python tools/positives_per_image.py --train_annotation_path 2007_train.txt --input_sizes "[160, 416]"
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nets.yolo_training import YOLOLoss  # noqa: E402
from utils.data.anchor_check import level_imbalance_rows, positive_shares  # noqa: E402
from utils.data.annotation import read_annotation_file  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.data.dataset_check import scan_annotation_lines  # noqa: E402
from utils.errors import run_entry  # noqa: E402
from utils.utils import get_anchors, get_classes  # noqa: E402

data = ""                                                  # a dataset as train.py --data takes it (then its training list and classes are counted)
train_annotation_path = "2007_train.txt"                   # the training list whose boxes are counted
classes_path = "model_data/sample_classes.txt"             # its classes
anchors_path = "model_data/yolo_anchors.txt"               # the anchors
anchors_mask = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]           # anchors of the stride-32, 16 and 8 levels
input_sizes = [160, 416]                                   # square input sizes to count at
iou_thresh = 0.213                                         # the multi-anchor threshold of the assignments below

# (name, iou_thresh or None, neighbour_cells) of the assignments compared; None is upstream's single best anchor.
ASSIGNMENTS = (("upstream (best anchor, centre cell)", False, False), ("iou_thresh", True, False),
               ("neighbour_cells", False, True), ("iou_thresh + neighbour_cells (train.py)", True, True))
_LIMITS = {"input_sizes": "any length, >=32"}  # lists of any length; the rest typed by their defaults


def cells_per_image(size, anchors_mask):
    """Anchor cells of all three levels for a ``size`` x ``size`` input."""
    return sum(len(mask) * (size // stride) ** 2 for mask, stride in zip(anchors_mask, (32, 16, 8)))


def positives_per_image(anchors, lines, image_sizes, size, anchors_mask, iou_thresh, neighbour_cells):
    """Mean positives (anchor cells of all levels) per training image under one assignment."""
    loss = YOLOLoss(anchors, 1, (size, size), anchors_mask=anchors_mask, iou_thresh=iou_thresh,
                    neighbour_cells=neighbour_cells)
    share = positive_shares(loss, lines, image_sizes, (size, size))[0]      # positives per stride-32 cell
    return share * len(anchors_mask[0]) * (size // 32) ** 2


def level_table(anchors, lines, image_sizes, config):
    """Markdown rows: per input size and level, positives and negatives per image under train.py's assignment."""
    rows = ["| input | level | positives per image | anchor cells per image | negatives per positive |",
            "|---|---|---|---|---|"]
    for size in config["input_sizes"]:
        loss = YOLOLoss(anchors, 1, (size, size), anchors_mask=config["anchors_mask"], iou_thresh=config["iou_thresh"],
                        neighbour_cells=True)
        rows += level_imbalance_rows(loss, lines, image_sizes, (size, size))
    return rows


def main(config):
    if config["data"]:
        from utils.data.data_source import resolve_data

        lists = resolve_data(config["data"])
        config = {**config, "train_annotation_path": lists.train, "classes_path": lists.classes_path}
    class_names, _ = get_classes(config["classes_path"])
    lines, report = scan_annotation_lines(read_annotation_file(config["train_annotation_path"]), len(class_names),
                                          class_names)
    anchors, _ = get_anchors(config["anchors_path"])
    print(f"{len(lines)} images of {config['train_annotation_path']}, letterboxed, no augmentation\n")
    print("| input | assignment | positives per image | cells per image | cells per positive |\n|---|---|---|---|---|")
    for size in config["input_sizes"]:
        cells = cells_per_image(size, config["anchors_mask"])
        for name, multi, neighbours in ASSIGNMENTS:
            positives = positives_per_image(anchors, lines, report.image_sizes, size, config["anchors_mask"],
                                            config["iou_thresh"] if multi else None, neighbours)
            ratio = f"{cells / positives:.0f}" if positives else "-"
            print(f"| {size} | {name} | {positives:.1f} | {cells} | {ratio} |")
    print("\nBy output level, train.py's assignment (iou_thresh + neighbour_cells):\n")
    print("\n".join(level_table(anchors, lines, report.image_sizes, config)))


if __name__ == "__main__":
    run_entry(lambda: main(resolve_config(globals(), sys.argv[1:])))
