"""Training lists from a VOC folder: the seeded ImageSets split and ``<year>_<set>.txt`` lists, with every XML
and image checked by ``utils.dataset_check`` (problems reported once each, fixable boxes clipped, unusable objects
and images skipped). Used by voc_annotation.py and by train.py when its lists are missing.

Boxes are written as in the XML (VOC's 1-based inclusive corners, as upstream does); difficult objects are left
out of the training lists, as upstream (evaluation reads them from the XML and ignores them the VOC way).
"""
import os
import random
import sys
from collections import Counter
from itertools import compress

import numpy as np

from utils.annotation import format_annotation_line, parse_annotation_line
from utils.dataset_check import DatasetError, DatasetReport, scan_annotation_lines
from utils.utils import get_classes
from utils.voc import (annotation_path, find_image, missing_image_reason, parse_voc_xml, read_image_set,
                       voc_folder)

SPLIT_NAMES = ("trainval", "train", "val", "test")
_MIN_SPLIT_IMAGES = 10  # fewer images than this in a list gives noisy validation loss / mAP


def split_image_sets(VOCdevkit_path, trainval_percent=0.9, train_percent=0.9, seed=0, year="2007"):
    """Write ``ImageSets/Main/{trainval,train,val,test}.txt`` from the XML files; returns ``{name: ids}``.

    Upstream's algorithm (``random.sample`` of trainval, then of train within it) on the sorted
    ids with a private ``random.Random(seed)``, so a seed always gives the same split.
    """
    for name, value in (("trainval_percent", trainval_percent), ("train_percent", train_percent)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be within [0, 1], got {value}")
    xml_dir = voc_folder(VOCdevkit_path, year, "Annotations")
    if not os.path.isdir(xml_dir):
        raise FileNotFoundError(f"annotation folder not found: {xml_dir}")
    ids = sorted(name[:-4] for name in os.listdir(xml_dir) if name.endswith(".xml"))
    if not ids:
        raise DatasetError(f"no .xml annotation files in {xml_dir}")
    rng = random.Random(seed)
    trainval = set(rng.sample(range(len(ids)), int(len(ids) * trainval_percent)))
    train = set(rng.sample(sorted(trainval), int(len(trainval) * train_percent)))
    members = {"trainval": trainval, "train": train, "val": trainval - train, "test": set(range(len(ids))) - trainval}
    split = {name: [ids[i] for i in sorted(members[name])] for name in SPLIT_NAMES}
    out_dir = voc_folder(VOCdevkit_path, year, os.path.join("ImageSets", "Main"))
    os.makedirs(out_dir, exist_ok=True)
    for name, names in split.items():
        with open(os.path.join(out_dir, f"{name}.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(image_id + "\n" for image_id in names)
    return split


def annotation_lines(VOCdevkit_path, year, image_ids, class_names, report, skipped_difficult, skipped_unknown):
    """``[(line, image path, XML size)]``: training-list lines (absolute image path, known-class and
    non-difficult boxes) for ``image_ids``; skipped objects are counted per class name."""
    class_index = {name: i for i, name in enumerate(class_names)}
    image_dir = os.path.abspath(voc_folder(VOCdevkit_path, year, "JPEGImages"))
    lines = []
    for image_id in image_ids:
        annotation = parse_voc_xml(annotation_path(VOCdevkit_path, year, image_id), class_names)
        report.record_xml(annotation)
        skipped_unknown.update(annotation.unknown)
        if not annotation.ok:
            continue
        image_path = find_image(image_dir, image_id, annotation.filename)
        if image_path is None:
            report.add(os.path.join(image_dir, image_id), "missing image",
                       missing_image_reason(image_id, annotation.filename))
            report.images_skipped += 1
            continue
        skipped_difficult.update(compress(annotation.names, annotation.difficult))
        keep = ~annotation.difficult
        class_ids = np.array([class_index[name] for name in annotation.names], dtype=np.float32)[keep]
        boxes = np.concatenate([annotation.boxes[keep], class_ids[:, None]], axis=1)  # (n, 5)
        lines.append((format_annotation_line(image_path, boxes), image_path, annotation.size))
    return lines


def _check_xml_sizes(entries, report):
    """Note XMLs whose <size> disagrees with the image: their boxes may have been drawn on another size."""
    for _, path, xml_size in entries:
        actual = report.image_sizes.get(path)
        if xml_size and actual and tuple(xml_size) != tuple(actual):
            report.add(path, "size mismatch", f"XML <size> {xml_size[0]}x{xml_size[1]} differs from the image's "
                                              f"{actual[0]}x{actual[1]}; boxes checked against the image")


def class_counts(lines, num_classes):
    """Objects per class id over training-list lines."""
    ids = [parse_annotation_line(line)[1][:, 4].astype(np.int64) for line in lines]
    return np.bincount(np.concatenate(ids + [np.zeros(0, np.int64)]), minlength=num_classes)


def print_class_table(class_names, counts, out):
    width = max(len(name) for name in class_names + ["class"])
    print(f"| {'class':<{width}} | objects |", file=out)
    print(f"|{'-' * (width + 2)}|---------|", file=out)
    for name, count in zip(class_names, counts):
        print(f"| {name:<{width}} | {count:>7} |", file=out)


def _print_skipped(title, counter, out):
    if counter:
        detail = ", ".join(f"{name}: {count}" for name, count in sorted(counter.items()))
        print(f"{title}: {sum(counter.values())} ({detail})", file=out)


def build_training_lists(VOCdevkit_path, classes_path, VOCdevkit_sets=(("2007", "train"), ("2007", "val")),
                         lists_dir=".", out=None):
    """Write ``<lists_dir>/<year>_<set>.txt`` for each set; returns ``{list path: number of images}``.

    Every XML and image is checked once; the problems and the per-class object counts are printed.
    Raises ``DatasetError`` when no set has a usable image.
    """
    out = out or sys.stdout
    class_names, num_classes = get_classes(classes_path)
    report, skipped_difficult, unknown = DatasetReport(), Counter(), Counter()
    written, counts = {}, np.zeros(num_classes, np.int64)
    os.makedirs(lists_dir, exist_ok=True)
    for year, image_set in VOCdevkit_sets:
        image_ids = read_image_set(VOCdevkit_path, year, image_set)
        entries = annotation_lines(VOCdevkit_path, year, image_ids, class_names, report, skipped_difficult, unknown)
        usable, _ = scan_annotation_lines([line for line, _, _ in entries], num_classes, class_names, report,
                                          allow_empty=True)
        _check_xml_sizes(entries, report)
        list_path = os.path.join(lists_dir, f"{year}_{image_set}.txt")
        with open(list_path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(line + "\n" for line in usable)
        written[list_path] = len(usable)
        counts += class_counts(usable, num_classes)
    report.print(out)
    _print_skipped("Skipped difficult objects", skipped_difficult, out)
    _print_skipped(f"Skipped objects of classes not in {classes_path}", unknown, out)
    print_class_table(class_names, counts, out)
    for list_path, n_images in written.items():
        print(f"{list_path}: {n_images} images", file=out)
        if n_images < _MIN_SPLIT_IMAGES:
            print(f"Warning: {list_path} has {n_images} images; check the ImageSets files and the split "
                  f"percentages (validation loss and mAP on so few images are unreliable).", file=out)
    for name, count in zip(class_names, counts):
        if count == 0:
            print(f"Warning: class '{name}' has no objects in these lists; check {classes_path} against the "
                  f"<name> tags of the XML files.", file=out)
    if not any(written.values()):
        raise DatasetError(f"no usable image in {', '.join(written)} (from {VOCdevkit_path}); see the problems above")
    return written


def build_missing_lists(train_annotation_path, val_annotation_path, VOCdevkit_path, classes_path):
    """Build the 2007 train/val lists from ``VOCdevkit_path`` (splitting it first when it has no ImageSets) when
    either list is missing, as train.py does on a fresh clone. The lists are written next to the training list."""
    missing = [p for p in (train_annotation_path, val_annotation_path) if not os.path.isfile(p)]
    if not missing:
        return
    print(f"Training lists {', '.join(missing)} not found: building them from {VOCdevkit_path}/ ...")
    if not os.path.isfile(os.path.join(voc_folder(VOCdevkit_path, "2007", "ImageSets"), "Main", "train.txt")):
        split_image_sets(VOCdevkit_path)
    build_training_lists(VOCdevkit_path=VOCdevkit_path, classes_path=classes_path,
                         lists_dir=os.path.dirname(os.path.abspath(train_annotation_path)))
