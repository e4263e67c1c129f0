"""Datasets in the formats users have: a VOC folder anywhere, a YOLO txt folder, a COCO JSON, an ultralytics /
Roboflow ``data.yaml``.

``read_dataset`` turns any of them into ``ImageRecord``s (utils/data/annotation.py) with the dataset's class names and,
when it has one, its own split; ``write_dataset_lists`` writes the training lists ``<year>_<set>.txt`` from them
through the same checks and reports as upstream's VOC path (utils/data/training_lists.py). Evaluation reads the same
records (utils/metrics/evaluation.py ``samples_from_list``), so VOC ``difficult`` and COCO ``iscrowd`` boxes are ignored the
way each format means.
"""
import os
import sys
from dataclasses import dataclass, field


from utils.atomic import atomic_write_lines
from utils.data.coco_json import coco_records
from utils.data.dataset_check import DatasetError, DatasetReport, scan_annotation_lines
from utils.data.training_lists import report_lists
from utils.data.voc import read_split, resolve_voc_dir, voc_records
from utils.data.yolo_txt import yaml_records, yolo_records

# "yaml", not "roboflow": the file is ultralytics' data.yaml, written by Roboflow, ultralytics, CVAT and others alike.
FORMATS = ("voc", "yolo", "coco", "yaml")
SPLIT_SETS = ("train", "val", "test")


@dataclass
class Dataset:
    """What a reader found: records, class names, the dataset's own split (or None) and the problems."""
    records: list
    class_names: list
    split: dict = None
    report: DatasetReport = field(default_factory=DatasetReport)


def read_dataset(dataset_format, dataset_path, class_names=None, image_dir=""):
    """Read ``dataset_path`` in ``dataset_format`` ("voc": a folder with Annotations/ and JPEGImages/, classes from
    ``class_names``; "yolo": a folder with images/ and labels/; "coco": an instances JSON, images in ``image_dir``
    or found beside it; "yaml": an ultralytics / Roboflow ``data.yaml``, its own split and class names, see
    utils/data/data_yaml.py). Raises ``DatasetError`` when no image is usable."""
    report = DatasetReport()
    if dataset_format == "voc":
        if not class_names:
            raise ValueError("a VOC dataset needs its class names (classes_path)")
        voc_dir = os.path.abspath(resolve_voc_dir(dataset_path))
        records, split = voc_records(voc_dir, class_names, report), read_split(voc_dir)
        names = list(class_names)
    elif dataset_format == "yolo":
        records, names, split = yolo_records(os.path.abspath(dataset_path), report)
    elif dataset_format == "yaml":
        records, names, split = yaml_records(dataset_path, report)
    elif dataset_format == "coco":
        records, names = coco_records(dataset_path, report, image_dir)
        split = None
    else:
        raise ValueError(f"dataset_format must be one of {', '.join(FORMATS)}, got {dataset_format!r}")
    if not records:
        report.print()
        raise DatasetError(f"no usable image in {dataset_path} ({dataset_format} format); see the problems above")
    return Dataset(records, names, split, report)


def write_dataset_lists(dataset, split, lists_dir, year="2007", out=None):
    """Write ``<lists_dir>/<year>_<set>.txt`` for train, val and test of ``split`` (image ids); returns
    ``{list path: number of images}``. Every image and box is checked once, problems and the per-class object
    counts are printed; ``DatasetError`` when no list has a usable image."""
    out = out or sys.stdout
    by_id = {record.image_id: record for record in dataset.records}
    os.makedirs(lists_dir, exist_ok=True)
    usable_lists = {}
    for name in SPLIT_SETS:
        records = [by_id[i] for i in split.get(name, []) if i in by_id]
        usable, _ = scan_annotation_lines([r.training_line() for r in records], len(dataset.class_names),
                                          dataset.class_names, dataset.report, allow_empty=True)
        usable_lists[os.path.join(lists_dir, f"{year}_{name}.txt")] = usable
    for path, lines in usable_lists.items():
        atomic_write_lines(path, lines)
    dataset.report.print(out)
    difficult = sum(int(r.difficult.sum()) for r in dataset.records)
    if difficult:
        print(f"Left out of the training lists (difficult / iscrowd, ignored by the mAP): {difficult} objects", file=out)
    written = report_lists(usable_lists, dataset.class_names, "the dataset's class names", out)
    if not any(written.values()):
        raise DatasetError(f"no usable image in {', '.join(written)}; see the problems above")
    return written


def write_class_file(class_names, path):
    """The class names one per line (the order gives the class ids), as train.py's classes_path reads them."""
    return atomic_write_lines(path, class_names)
