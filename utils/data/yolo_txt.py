"""YOLO-format datasets: ``images/`` + ``labels/`` with one ``<image stem>.txt`` per image holding
``class cx cy w h`` lines (normalized to the image size), and the class names in ``data.yaml`` or ``classes.txt``.

Layouts (``<root>`` = the dataset path):
- ``<root>/images/*.jpg`` and ``<root>/labels/*.txt``: no split of its own;
- ``<root>/images/{train,val,test}/`` and ``<root>/labels/{train,val,test}/``: that split, kept by voc_annotation.py
  with ``annotation_mode 2``.

Problems are reported in a ``DatasetReport`` and counted, never fatal: a line without 5 numbers is skipped, a box
partly outside [0, 1] is clipped, one wholly outside or of zero size is dropped, an unknown class id is dropped, a
label file without an image is reported, an image without a label file is a background image.

``yaml_records`` reads an ultralytics / Roboflow ``data.yaml`` dataset (utils/data/data_yaml.py resolves the file) with
the same label parser.
"""
import os

import numpy as np
from PIL import Image

from utils.data.annotation import ImageRecord
from utils.data.data_yaml import SPLITS, label_path, read_data_yaml as read_yaml_dataset, read_names, split_images
from utils.errors import UserError
from utils.data.voc import IMAGE_EXTENSIONS

SPLIT_FOLDERS = ("train", "val", "test")


class YoloFormatError(UserError):
    """The folder is not a YOLO dataset this reader understands (no images/, no class names)."""


def read_data_yaml(path):
    """Class names (list of str) of a yolov5/ultralytics ``data.yaml``, parsed by utils/data/data_yaml.py (the one
    names reader: a list, a mapping ``0: a``, any YAML layout); ``DataYamlError`` naming the file otherwise."""
    return read_names(path)


def class_names_of(root):
    """The dataset's class names: ``data.yaml`` (or ``.yml``), else ``classes.txt`` / ``obj.names``."""
    for name in ("data.yaml", "data.yml"):
        if os.path.isfile(os.path.join(root, name)):
            return read_data_yaml(os.path.join(root, name))
    for name in ("classes.txt", "obj.names"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
            if names:
                return names
    raise YoloFormatError(f"no class names in {root}: expected data.yaml (names: [...]) or classes.txt")


def _images_in(folder):
    return sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))


def split_folders(root):
    """``{split: (images folder, labels folder)}``: the split subfolders when there are any, else ``{"": ...}``."""
    images, labels = os.path.join(root, "images"), os.path.join(root, "labels")
    if not os.path.isdir(images):
        hint = "; it has a data.yaml: read it with dataset_format 'yaml'" if any(
            os.path.isfile(os.path.join(root, n)) for n in ("data.yaml", "data.yml")) else ""
        raise YoloFormatError(f"{root} has no images/ folder (a YOLO dataset is images/ + labels/){hint}")
    present = [s for s in SPLIT_FOLDERS if os.path.isdir(os.path.join(images, s))]
    if present:
        return {s: (os.path.join(images, s), os.path.join(labels, s)) for s in present}
    return {"": (images, labels)}


def parse_label_file(path, width, height, num_classes, report):
    """``(boxes (n, 4) float64 pixel corners, classes (n,) int64)`` of one label file; problems go to ``report``."""
    boxes, classes = [], []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            values = None
        if values is None or len(values) != 5 or values[0] != int(values[0]):
            report.add(where, "bad label line", f"expected 'class cx cy w h' (5 numbers), got {line.strip()!r}; "
                                                "line skipped")
            report.boxes_dropped += 1
            continue
        class_id, cx, cy, w, h = values
        if not 0 <= class_id < num_classes:
            report.add(where, "unknown class", f"class id {int(class_id)} is not in the {num_classes} class names; "
                                               "box dropped")
            report.boxes_dropped += 1
            continue
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if not all(0 <= v <= 1 for v in (x1, y1, x2, y2)):
            report.add(where, "coordinates outside [0, 1]", f"box {line.strip()!r} reaches outside the image; "
                                                            "clipped to it")
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
        if x2 <= x1 or y2 <= y1:
            report.add(where, "empty box", f"box {line.strip()!r} has no area inside the image; box dropped")
            report.boxes_dropped += 1
            continue
        boxes.append([x1 * width, y1 * height, x2 * width, y2 * height])
        classes.append(int(class_id))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(classes, dtype=np.int64)


def yolo_records(root, report):
    """``(records, class names, split or None)`` of a YOLO folder: ``ImageRecord`` per image, ``split`` maps
    "train"/"val"/"test" to image ids when the folder has split subfolders."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"YOLO dataset folder not found: {root}")
    class_names = class_names_of(root)
    records, split = [], {}
    for split_name, (image_dir, label_dir) in split_folders(root).items():
        images = _images_in(image_dir)
        stems = {os.path.splitext(name)[0] for name in images}
        if os.path.isdir(label_dir):
            for name in sorted(os.listdir(label_dir)):
                if name.endswith(".txt") and name[:-4] not in stems and name != "classes.txt":
                    report.add(os.path.join(label_dir, name), "label without image",
                               f"no image named {name[:-4]}.<{'|'.join(e[1:] for e in IMAGE_EXTENSIONS)}>; ignored")
        ids = []
        for name in images:
            path = os.path.join(image_dir, name)
            stem = os.path.splitext(name)[0]
            image_id = f"{split_name}_{stem}" if split_name else stem          # a file name, unique over splits
            record = _image_record(image_id, path, len(class_names), report, os.path.join(label_dir, stem + ".txt"))
            if record is not None:
                records.append(record)
                ids.append(image_id)
        if split_name:
            split[split_name] = ids
    return records, class_names, split or None


def _unique_id(split, image_path, taken):
    """``<split>_<stem>`` (a file name, as the VOC and YOLO readers use), numbered when two images share it."""
    base = f"{split}_{os.path.splitext(os.path.basename(image_path))[0]}"
    image_id, number = base, 1
    while image_id in taken:
        number += 1
        image_id = f"{base}_{number}"
    taken.add(image_id)
    return image_id


def _image_record(image_id, path, num_classes, report, labels):
    """The ``ImageRecord`` of one image and its label file ``labels``, or None (reported) when the image is
    unusable."""
    if not os.path.isfile(path):
        report.add(path, "missing image", "listed in the dataset but not found; image skipped")
        report.images_skipped += 1
        return None
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        report.add(path, "unreadable image", f"cannot read the image size ({err}); image skipped")
        report.images_skipped += 1
        return None
    if os.path.isfile(labels):
        boxes, classes = parse_label_file(labels, width, height, num_classes, report)
    else:
        report.add(path, "no label file", f"no {labels}: kept as a background image (no objects)")
        boxes, classes = np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    return ImageRecord(image_id, path, boxes, classes, np.zeros(len(classes), dtype=bool))


def yaml_records(path, report):
    """``(records, class names, split)`` of a ``data.yaml``: an ``ImageRecord`` per usable image of each split,
    ``split`` = ``{"train", "val", "test": [image ids]}`` (ids unique over the splits; an image listed in two
    splits has a record in each). Problems go to ``report`` (utils/data/dataset_check.py ``DatasetReport``)."""
    info = read_yaml_dataset(path)
    for key, note in info.notes:
        report.add(f"{info.path}: {key}", "data.yaml key not used", note)
    records, split, taken = [], {}, set()
    for name in SPLITS:
        split[name] = []
        for image_path in split_images(info.sources[name]):
            record = _image_record(_unique_id(name, image_path, taken), image_path, len(info.names), report,
                                   label_path(image_path))
            if record is not None:
                records.append(record)
                split[name].append(record.image_id)
    return records, info.names, split
