"""The one VOC reader: ImageSets ids, annotation XMLs and their images, for voc_annotation.py, get_map.py,
training and the study tool.

Layout: ``<VOCdevkit>/VOC<year>/{Annotations,JPEGImages,ImageSets/Main}``. An image id is a whole line of an
ImageSets file (ids may contain spaces); its image is the XML's ``<filename>`` when that file exists in
``JPEGImages/``, else ``<id>`` with one of ``IMAGE_EXTENSIONS``. Boxes are read as written in the XML (VOC's
1-based pixel corners, as upstream), at the image's original resolution.
"""
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from utils.data.annotation import ImageRecord
from utils.data.dataset_check import Problem, inverted_reason
from utils.paths import resource_path

# Image files an id may name, in lookup order (lower and upper case); every one decodes in training too.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def voc_folder(VOCdevkit_path, year, sub):
    """``<VOCdevkit>/VOC<year>/<sub>``; the default ``VOCdevkit`` is the shipped sample from any directory."""
    return os.path.join(resource_path(VOCdevkit_path), f"VOC{year}", sub)


def image_set_path(VOCdevkit_path, year, image_set):
    return os.path.join(voc_folder(VOCdevkit_path, year, os.path.join("ImageSets", "Main")), f"{image_set}.txt")


def read_image_set(VOCdevkit_path, year, image_set):
    """Image ids of ``ImageSets/Main/<image_set>.txt``, one whole line each (ids may contain spaces)."""
    path = image_set_path(VOCdevkit_path, year, image_set)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image set not found: {path} (run voc_annotation.py with annotation_mode 0 or 1 "
                                f"to create the split, or choose another image set)")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def find_image(image_dir, image_id, filename=None):
    """The image of ``image_id``: the XML's ``filename`` when it exists, else ``<id>`` + a known extension;
    None when there is none."""
    candidates = [filename] if filename else []
    candidates += [image_id + ext for ext in IMAGE_EXTENSIONS] + [image_id + ext.upper() for ext in IMAGE_EXTENSIONS]
    for name in candidates:
        path = os.path.join(image_dir, name)
        if os.path.isfile(path):
            return path
    return None


def missing_image_reason(image_id, filename):
    return (f"no image for id '{image_id}' ({filename or 'no <filename>'}, or the id with "
            f"{'/'.join(IMAGE_EXTENSIONS)}); image skipped")


def annotation_of_image(image_path):
    """The VOC XML of an image in a ``JPEGImages/`` folder (``../Annotations/<stem>.xml``), or None."""
    folder, name = os.path.split(os.path.abspath(image_path))
    if os.path.basename(folder) != "JPEGImages":
        return None
    xml_path = os.path.join(os.path.dirname(folder), "Annotations", os.path.splitext(name)[0] + ".xml")
    return xml_path if os.path.isfile(xml_path) else None


def voc_records(voc_dir, class_names, report, image_ids=None, unknown=None, xml_sizes=None):
    """``ImageRecord`` per image id of a ``VOC<year>`` folder (all ids of ``Annotations/`` when ``image_ids`` is
    None), with every object of ``class_names`` (difficult ones flagged). Unreadable XMLs and missing images are
    reported and skipped. ``unknown`` (a Counter) counts objects of other classes; ``xml_sizes`` (a dict) receives
    each kept image's XML ``<size>``."""
    xml_dir, image_dir = os.path.join(voc_dir, "Annotations"), os.path.join(voc_dir, "JPEGImages")
    if image_ids is None:
        if not os.path.isdir(xml_dir):
            raise FileNotFoundError(f"annotation folder not found: {xml_dir}")
        image_ids = sorted(name[:-4] for name in os.listdir(xml_dir) if name.endswith(".xml"))
    index = {name: i for i, name in enumerate(class_names)}
    records = []
    for image_id in image_ids:
        annotation = parse_voc_xml(os.path.join(xml_dir, image_id + ".xml"), class_names)
        report.record_xml(annotation)
        if unknown is not None:
            unknown.update(annotation.unknown)
        if not annotation.ok:
            continue
        image_path = find_image(image_dir, image_id, annotation.filename)
        if image_path is None:
            report.add(os.path.join(image_dir, image_id), "missing image",
                       missing_image_reason(image_id, annotation.filename))
            report.images_skipped += 1
            continue
        if xml_sizes is not None:
            xml_sizes[image_path] = annotation.size
        classes = np.array([index[name] for name in annotation.names], dtype=np.int64)
        records.append(ImageRecord(image_id, image_path, annotation.boxes.astype(np.float64), classes,
                                   annotation.difficult.copy()))
    return records


def resolve_voc_dir(path):
    """The folder holding ``Annotations/``: ``path`` itself, or its ``VOC<year>`` subfolder (a VOCdevkit root with
    one year in it, as many public sets ship)."""
    if os.path.isdir(os.path.join(path, "Annotations")):
        return path
    years = sorted(name for name in os.listdir(path) if name.startswith("VOC")
                   and os.path.isdir(os.path.join(path, name, "Annotations"))) if os.path.isdir(path) else []
    if len(years) == 1:
        return os.path.join(path, years[0])
    found = f"it holds {', '.join(years)}; give one of them" if years else "nor a VOC<year>/Annotations/ folder"
    raise FileNotFoundError(f"{path} is not a VOC folder: no Annotations/ in it, {found}")


def read_split(voc_dir):
    """The folder's own split from ``ImageSets/Main/{train,val,test}.txt`` (those present), or None."""
    folder = os.path.join(voc_dir, "ImageSets", "Main")
    split = {}
    for name in ("train", "val", "test"):
        path = os.path.join(folder, f"{name}.txt")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                split[name] = [line.strip() for line in f if line.strip()]
    return split or None


@dataclass
class VocAnnotation:
    """One VOC XML file: its well-formed objects and the problems found in it."""
    xml_path: str
    ok: bool                    # False when the file is missing or not parseable (image to be skipped)
    filename: str = None        # <filename>, when present
    size: tuple = None          # (width, height) from <size>, when present and valid
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (n, 4) xmin, ymin, xmax, ymax
    names: list = field(default_factory=list)                                       # n class names
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))        # (n,)
    unknown: Counter = field(default_factory=Counter)  # class name -> objects skipped (not in class_names)
    dropped: int = 0                                   # malformed or unknown-class objects left out
    problems: list = field(default_factory=list)


def _xml_size(root):
    try:
        width, height = (int(float(root.findtext(f"size/{tag}", ""))) for tag in ("width", "height"))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _xml_object(obj):
    """``((name, [xmin, ymin, xmax, ymax], difficult), None)``, or ``(None, (kind, reason))`` when malformed."""
    name = (obj.findtext("name") or "").strip()
    if not name:
        return None, ("missing name", "object without <name>; object dropped")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return None, ("missing bndbox", f"object '{name}' has no <bndbox>; object dropped")
    box = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = (bndbox.findtext(tag) or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value):
            return None, ("non-numeric box", f"object '{name}' has <{tag}> {text!r}, not a number; object dropped")
        box.append(value)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None, ("inverted box", f"object '{name}' {inverted_reason(box, 'object')}")
    return (name, box, (obj.findtext("difficult") or "0").strip() == "1"), None


def parse_voc_xml(xml_path, class_names=None):
    """Read a VOC annotation. Objects whose class is not in ``class_names`` are left out and
    reported once per class name (all classes are kept when ``class_names`` is None)."""
    xml_path = str(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        return VocAnnotation(xml_path, False, problems=[Problem(xml_path, "missing annotation",
                                                                "annotation file not found; image skipped")])
    except (ET.ParseError, OSError) as err:
        return VocAnnotation(xml_path, False, problems=[Problem(xml_path, "malformed XML",
                                                                f"XML parse error ({err}); image skipped")])
    result = VocAnnotation(xml_path, True, filename=(root.findtext("filename") or "").strip() or None,
                           size=_xml_size(root))
    if result.size is None:
        result.problems.append(Problem(xml_path, "missing size", "no valid <size> width/height; "
                                                                 "the image's own size is used"))
    known = set(class_names) if class_names is not None else None
    boxes, difficult = [], []
    for obj in root.iter("object"):
        parsed, problem = _xml_object(obj)
        if problem:
            result.problems.append(Problem(xml_path, *problem))
            result.dropped += 1
            continue
        name, box, is_difficult = parsed
        if known is not None and name not in known:
            result.unknown[name] += 1
            continue
        result.names.append(name)
        boxes.append(box)
        difficult.append(is_difficult)
    for name, count in sorted(result.unknown.items()):
        result.problems.append(Problem(xml_path, "unknown class", f"{count} object(s) of class '{name}', which is "
                                                                  f"not in the classes file; skipped"))
        result.dropped += count
    result.boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    result.difficult = np.array(difficult, dtype=bool)
    return result
