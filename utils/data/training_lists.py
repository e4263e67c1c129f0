"""Training lists from a VOC folder: the seeded ImageSets split and ``<year>_<set>.txt`` lists, with every XML
and image checked by ``utils.data.dataset_check`` (problems reported once each, fixable boxes clipped, unusable objects
and images skipped). Used by voc_annotation.py and by train.py when its lists are missing.

Boxes are written as in the XML (VOC's 1-based inclusive corners, as upstream does); difficult objects are left
out of the training lists, as upstream (evaluation reads them from the XML and ignores them the VOC way).
"""
import os
import random
import sys
from collections import Counter

import numpy as np

from utils.data.annotation import parse_annotation_line
from utils.atomic import atomic_write_lines
from utils.data.dataset_check import DatasetError, DatasetReport, scan_annotation_lines
from utils.utils import get_classes
from utils.data.voc import read_image_set, voc_folder, voc_records

SPLIT_NAMES = ("trainval", "train", "val", "test")
_MIN_SPLIT_IMAGES = 10  # fewer images than this in a list gives noisy validation loss / mAP


def seeded_split(image_ids, trainval_percent=0.9, train_percent=0.9, seed=0):
    """``{trainval, train, val, test: ids}``: upstream's algorithm (``random.sample`` of trainval, then of train
    within it) on the sorted ids with a private ``random.Random(seed)``, so a seed always gives the same split."""
    for name, value in (("trainval_percent", trainval_percent), ("train_percent", train_percent)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be within [0, 1], got {value}")
    ids = sorted(image_ids)
    rng = random.Random(seed)
    trainval = set(rng.sample(range(len(ids)), int(len(ids) * trainval_percent)))
    train = set(rng.sample(sorted(trainval), int(len(trainval) * train_percent)))
    members = {"trainval": trainval, "train": train, "val": trainval - train, "test": set(range(len(ids))) - trainval}
    return {name: [ids[i] for i in sorted(members[name])] for name in SPLIT_NAMES}


def split_image_sets(VOCdevkit_path, trainval_percent=0.9, train_percent=0.9, seed=0, year="2007"):
    """Write ``ImageSets/Main/{trainval,train,val,test}.txt`` from the XML files (``seeded_split``); returns
    ``{name: ids}``."""
    xml_dir = voc_folder(VOCdevkit_path, year, "Annotations")
    if not os.path.isdir(xml_dir):
        raise FileNotFoundError(f"annotation folder not found: {xml_dir}")
    ids = sorted(name[:-4] for name in os.listdir(xml_dir) if name.endswith(".xml"))
    if not ids:
        raise DatasetError(f"no .xml annotation files in {xml_dir}")
    split = seeded_split(ids, trainval_percent, train_percent, seed)
    out_dir = voc_folder(VOCdevkit_path, year, os.path.join("ImageSets", "Main"))
    os.makedirs(out_dir, exist_ok=True)
    for name, names in split.items():
        atomic_write_lines(os.path.join(out_dir, f"{name}.txt"), names)
    return split


def annotation_lines(VOCdevkit_path, year, image_ids, class_names, report, skipped_difficult, skipped_unknown):
    """``[(line, image path, XML size)]``: training-list lines (absolute image path, known-class and
    non-difficult boxes) for ``image_ids``; skipped objects are counted per class name."""
    xml_sizes = {}
    records = voc_records(os.path.abspath(voc_folder(VOCdevkit_path, year, "")), class_names, report, image_ids,
                          unknown=skipped_unknown, xml_sizes=xml_sizes)
    lines = []
    for record in records:
        skipped_difficult.update(class_names[c] for c in record.classes[record.difficult])
        lines.append((record.training_line(), record.image_path, xml_sizes[record.image_path]))
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
    usable_lists = {}
    os.makedirs(lists_dir, exist_ok=True)
    for year, image_set in VOCdevkit_sets:
        image_ids = read_image_set(VOCdevkit_path, year, image_set)
        entries = annotation_lines(VOCdevkit_path, year, image_ids, class_names, report, skipped_difficult, unknown)
        usable, _ = scan_annotation_lines([line for line, _, _ in entries], num_classes, class_names, report,
                                          allow_empty=True)
        _check_xml_sizes(entries, report)
        list_path = os.path.join(lists_dir, f"{year}_{image_set}.txt")
        atomic_write_lines(list_path, usable)
        usable_lists[list_path] = usable
    report.print(out)
    _print_skipped("Skipped difficult objects", skipped_difficult, out)
    _print_skipped(f"Skipped objects of classes not in {classes_path}", unknown, out)
    written = report_lists(usable_lists, class_names, classes_path, out)
    if not any(written.values()):
        raise DatasetError(f"no usable image in {', '.join(written)} (from {VOCdevkit_path}); see the problems above")
    return written


def report_lists(usable_lists, class_names, classes_source, out):
    """Print the per-class object table of the written lists (``{path: lines}``), their sizes and warnings about
    tiny lists and classes without objects; returns ``{path: number of images}``."""
    counts = sum((class_counts(lines, len(class_names)) for lines in usable_lists.values()),
                 np.zeros(len(class_names), np.int64))
    print_class_table(class_names, counts, out)
    for list_path, lines in usable_lists.items():
        print(f"{list_path}: {len(lines)} images", file=out)
        if len(lines) < _MIN_SPLIT_IMAGES:
            print(f"Warning: {list_path} has {len(lines)} images; check the split and its percentages "
                  f"(validation loss and mAP on so few images are unreliable).", file=out)
    for name, count in zip(class_names, counts):
        if count == 0:
            print(f"Warning: class '{name}' has no objects in these lists; check {classes_source} against the "
                  f"class names of the annotations.", file=out)
    return {path: len(lines) for path, lines in usable_lists.items()}


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
