"""COCO-format datasets: one ``instances_*.json`` (``images``, ``annotations``, ``categories``) and its image folder.

Category ids need not be 0..n-1: classes are the categories sorted by id, numbered from 0 (the class file lists
their names in that order). ``bbox`` is ``[x, y, w, h]`` in pixels; ``iscrowd`` boxes are kept as *difficult*: left
out of the training lists and ignored by the mAP (neither TP nor FP, as COCO does). ``file_name`` may hold a
subfolder. Problems are reported and counted, never fatal: an annotation whose ``image_id`` or ``category_id``
does not exist is skipped, one without ``bbox`` takes the bounding box of its polygons (or is skipped when it has
none), a box of zero area is dropped, an image file that is missing is skipped.
"""
import json
import os

import numpy as np

from utils.data.annotation import ImageRecord
from utils.errors import UserError


class CocoFormatError(UserError):
    """The file is not a COCO instances JSON this reader understands."""


def load_coco(json_path):
    """The parsed JSON with its three lists checked; ``CocoFormatError`` naming the file otherwise."""
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO annotation file not found: {json_path}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CocoFormatError(f"{json_path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise CocoFormatError(f"{json_path} is not a COCO instances file: it needs 'images' and 'categories' lists")
    if not data["categories"]:
        raise CocoFormatError(f"{json_path} lists no categories")
    return data


def find_image_dir(json_path, data, image_dir=""):
    """``image_dir`` when given, else the first of the JSON's folder, ``../images``, ``../<split>`` (for
    ``instances_<split>.json``) and ``images/`` beside it that holds the first image."""
    if image_dir:
        return image_dir
    folder = os.path.dirname(os.path.abspath(json_path))
    split = os.path.splitext(os.path.basename(json_path))[0].replace("instances_", "")
    candidates = [folder, os.path.join(folder, "..", "images"), os.path.join(folder, "..", split),
                  os.path.join(folder, "images")]
    first = data["images"][0].get("file_name", "") if data["images"] else ""
    for candidate in candidates:
        if first and os.path.isfile(os.path.join(candidate, first)):
            return os.path.normpath(candidate)
    raise FileNotFoundError(f"cannot find the images of {json_path} (looked for {first!r} in "
                            f"{', '.join(os.path.normpath(c) for c in candidates)}); pass --image_dir")


def _polygon_box(segmentation):
    """The bounding box ``[x, y, w, h]`` of a polygon segmentation, or None (RLE or empty)."""
    if not isinstance(segmentation, list) or not segmentation:
        return None
    points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segmentation if len(p) >= 6]
                            or [np.zeros((0, 2))])
    if not len(points):
        return None
    (x1, y1), (x2, y2) = points.min(0), points.max(0)
    return [x1, y1, x2 - x1, y2 - y1]


def _annotation_box(annotation, json_path, report):
    """``[x1, y1, x2, y2]`` of one annotation, or None (reported) when it has no usable box."""
    where = f"{json_path}: annotation {annotation.get('id')}"
    bbox = annotation.get("bbox")
    if bbox is None:
        bbox = _polygon_box(annotation.get("segmentation"))
        if bbox is None:
            report.add(where, "no bbox", "annotation has neither a bbox nor a polygon; skipped")
            return None
        report.add(where, "polygon only", "no bbox: the bounding box of its polygon is used")
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        report.add(where, "bad bbox", f"bbox {bbox!r} is not [x, y, w, h]; skipped")
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        report.add(where, "empty box", f"bbox {bbox!r} has zero area; skipped")
        return None
    return [x, y, x + w, y + h]


def coco_records(json_path, report, image_dir=""):
    """``(records, class names)``: an ``ImageRecord`` per image of the JSON whose file exists."""
    data = load_coco(json_path)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    class_of = {c["id"]: index for index, c in enumerate(categories)}
    images = {image["id"]: image for image in data["images"]}
    folder = find_image_dir(json_path, data, image_dir)
    per_image = {image_id: [] for image_id in images}
    for annotation in data.get("annotations", []):
        where = f"{json_path}: annotation {annotation.get('id')}"
        if annotation.get("image_id") not in images:
            report.add(where, "unknown image_id", f"image_id {annotation.get('image_id')!r} is not in 'images'; skipped")
            report.boxes_dropped += 1
            continue
        if annotation.get("category_id") not in class_of:
            report.add(where, "unknown category_id",
                       f"category_id {annotation.get('category_id')!r} is not in 'categories'; skipped")
            report.boxes_dropped += 1
            continue
        box = _annotation_box(annotation, json_path, report)
        if box is None:
            report.boxes_dropped += 1
            continue
        per_image[annotation["image_id"]].append((box, class_of[annotation["category_id"]],
                                                  bool(annotation.get("iscrowd", 0))))
    records, stems = [], {}
    for image_id, image in images.items():
        path = os.path.join(folder, image.get("file_name", ""))
        if not os.path.isfile(path):
            report.add(path, "missing image", f"image {image_id} of {json_path} not found; image skipped")
            report.images_skipped += 1
            continue
        objects = per_image[image_id]
        boxes = np.array([o[0] for o in objects], dtype=np.float64).reshape(-1, 4)
        # The file's stem names the image (as in the VOC and YOLO readers), its COCO id when two stems collide.
        stem = os.path.splitext(os.path.basename(image["file_name"]))[0]
        name = stem if stems.setdefault(stem, image_id) == image_id else f"{stem}_{image_id}"
        records.append(ImageRecord(name, path, boxes, np.array([o[1] for o in objects], dtype=np.int64),
                                   np.array([o[2] for o in objects], dtype=bool)))
    return records, [str(c.get("name", c["id"])) for c in categories]
