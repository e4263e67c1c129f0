"""The training-list line format shared by voc_annotation.py, the data loader and the checks.

One image per line: ``<image path> x1,y1,x2,y2,class_id x1,y1,x2,y2,class_id ...``. The path may
contain spaces, so boxes are parsed from the end of the line: trailing tokens of five
comma-separated integers are boxes, everything before them is the path.
"""
import re
from typing import NamedTuple

import numpy as np

from utils.errors import UserError

_BOX = re.compile(r"^-?\d+(\.\d+)?,-?\d+(\.\d+)?,-?\d+(\.\d+)?,-?\d+(\.\d+)?,\d+$")


class ImageRecord(NamedTuple):
    """One image of a dataset in any format (VOC XML, YOLO txt, COCO JSON), boxes in original-image pixels."""
    image_id: str
    image_path: str
    boxes: np.ndarray       # (n, 4) float64 x1, y1, x2, y2
    classes: np.ndarray     # (n,) int64 class ids
    difficult: np.ndarray   # (n,) bool: VOC difficult / COCO iscrowd (left out of training, ignored by mAP)

    def training_line(self):
        """The training-list line: the image path and its non-difficult boxes."""
        keep = ~self.difficult
        return format_annotation_line(self.image_path, np.column_stack([self.boxes[keep], self.classes[keep]]))

    def ground_truth(self):
        """``(n, 6)`` float64 rows ``[x1, y1, x2, y2, class, difficult]`` for evaluation."""
        return np.column_stack([self.boxes, self.classes, self.difficult]).astype(np.float64).reshape(-1, 6)


def format_annotation_line(image_path, boxes):
    """``boxes``: iterable of ``(x1, y1, x2, y2, class_id)``."""
    parts = [str(image_path)]
    parts += [",".join(str(int(round(v))) for v in box[:4]) + f",{int(box[4])}" for box in boxes]
    return " ".join(parts)


def parse_annotation_line(line):
    """Returns ``(image_path, boxes)`` with ``boxes`` a float32 array ``(n, 5)``: x1, y1, x2, y2, class."""
    tokens = line.rstrip("\r\n").split(" ")
    n = len(tokens)
    while n > 1 and _BOX.match(tokens[n - 1]):
        n -= 1
    path = " ".join(tokens[:n]).strip()
    if not path:
        raise UserError(f"annotation line has no image path: {line.strip()!r}")
    boxes = [[float(v) for v in token.split(",")] for token in tokens[n:]]
    return path, np.array(boxes, dtype=np.float32).reshape(-1, 5)


def read_annotation_file(path):
    """Non-empty lines of a training list, with a clear error when the file is missing."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"training list not found: {path} (run voc_annotation.py to create it)") from None
