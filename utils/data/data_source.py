"""One ``--data PATH`` for every script: what PATH is, and its training lists, built once and cached.

``resolve_data`` detects the dataset (``detect_data``): a ``.yaml`` / ``.yml`` file (ultralytics / Roboflow, see
utils/data/data_yaml.py), a ``.json`` (COCO instances), a folder holding ``data.yaml`` / ``data.yml``, a VOC folder
(``Annotations/`` + ``JPEGImages/``, or a VOCdevkit holding one ``VOC<year>/``) or a YOLO folder (``images/`` +
``labels/``). It writes the lists ``2007_{train,val,test}.txt`` and ``classes.txt`` with the converters
voc_annotation.py uses (utils/data/datasets.py; the dataset's own split when it has one, else ``seeded_split`` with
voc_annotation.py's defaults) into ``<cache_root>/<dataset name>-<hash of its absolute path>/``.

The cache: ``manifest.json`` records a signature of the inputs (path, size and mtime of every annotation, label and
image file and of the classes file, from ``os.stat`` alone) and of the parameters (format, classes source, split
settings). A call whose signature matches reuses the lists without reading the dataset; any changed, added or
removed file rebuilds them. The manifest is removed before a rebuild and written last, so a build cut short is
never taken for a finished one. Datasets are only read (they may be read-only).
"""
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field

from utils.atomic import atomic_write
from utils.data.coco_json import find_image_dir, load_coco
from utils.data.data_yaml import label_path, list_images, load_yaml_mapping, read_data_yaml, split_images
from utils.data.datasets import SPLIT_SETS, read_dataset, write_class_file, write_dataset_lists
from utils.errors import UserError
from utils.data.training_lists import seeded_split
from utils.utils import get_classes
from utils.data.voc import parse_voc_xml

# voc_annotation.py's defaults, so --data splits a dataset without a split the way voc_annotation.py does.
SPLIT_SETTINGS = {"trainval_percent": 0.9, "train_percent": 0.9, "seed": 0}
CACHE_VERSION = 1               # bump when the converters change what they write: old caches then rebuild
MANIFEST = "manifest.json"
CLASS_FILE = "classes.txt"
_YAML_NAMES = ("data.yaml", "data.yml")


@dataclass
class DataLists:
    """The training lists of a dataset: paths of the lists and the class file in ``cache_dir``."""
    format: str             # "yaml", "coco", "voc" or "yolo" (utils/data/datasets.py FORMATS)
    root: str               # what read_dataset reads: the yaml / json file or the dataset folder, absolute
    class_names: list       # list of str, the index is the class id
    classes_path: str       # the class file (one name a line), in cache_dir
    train: str              # list paths (utils/data/annotation.py line format)
    val: str
    test: str               # None when the dataset has no test image
    cache_dir: str
    reused: bool            # True when the cached lists were reused without reading the dataset
    counts: dict = field(default_factory=dict)   # {"train" | "val" | "test": images in the list}

    def list_path(self, split):
        """The list of ``split`` ("train", "val" or "test"); None for an empty test list."""
        return {"train": self.train, "val": self.val, "test": self.test}[split]


def _find_voc_dir(path):
    """The VOC<year> folder of ``path`` (itself or its one ``VOC*/`` child with Annotations/ + JPEGImages/), or
    None; ``UserError`` when a VOCdevkit holds several years."""
    def is_voc(folder):
        return all(os.path.isdir(os.path.join(folder, sub)) for sub in ("Annotations", "JPEGImages"))
    if is_voc(path):
        return path
    years = sorted(n for n in os.listdir(path) if n.startswith("VOC") and is_voc(os.path.join(path, n)))
    if len(years) > 1:
        raise UserError(f"{path} holds {', '.join(years)}: give one of them as --data")
    return os.path.join(path, years[0]) if years else None


def _is_yolo_folder(path):
    return all(os.path.isdir(os.path.join(path, sub)) for sub in ("images", "labels"))


def _yaml_or_yolo_folder(yaml_path):
    """A data.yaml names its splits (ultralytics); one that only names the classes, beside images/ + labels/, is
    the class file of a YOLO folder (utils/data/yolo_txt.py's layout)."""
    folder = os.path.dirname(yaml_path)
    if _is_yolo_folder(folder) and not any(key in load_yaml_mapping(yaml_path) for key in ("train", "val", "path")):
        return "yolo", folder
    return "yaml", yaml_path


def detect_data(path):
    """``(format, dataset path)`` of a ``--data`` argument: the format read_dataset takes and the file or folder
    it reads (absolute). ``FileNotFoundError`` when PATH does not exist, ``UserError`` naming PATH and what was
    expected when it is none of the known kinds."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data {path} does not exist")
    lower = path.lower()
    if os.path.isfile(path) and lower.endswith((".yaml", ".yml")):
        return _yaml_or_yolo_folder(path)
    if os.path.isfile(path) and lower.endswith(".json"):
        return "coco", path
    if os.path.isdir(path):
        for name in _YAML_NAMES:
            if os.path.isfile(os.path.join(path, name)):
                return _yaml_or_yolo_folder(os.path.join(path, name))
        voc_dir = _find_voc_dir(path)
        if voc_dir:
            return "voc", voc_dir
        if _is_yolo_folder(path):
            return "yolo", path
    raise UserError(f"--data {path} is not a dataset this project reads: expected a data.yaml (ultralytics / "
                    f"Roboflow), a COCO instances .json, a folder holding data.yaml, a VOC folder (Annotations/ + "
                    f"JPEGImages/, or a VOCdevkit with one VOC<year>/) or a YOLO folder (images/ + labels/)")


def _cache_dir(cache_root, dataset_path):
    """``<cache_root>/<name>-<8 hex of the absolute path>``: the name of a ``data.yaml`` is its folder's."""
    stem = os.path.splitext(os.path.basename(dataset_path))[0]
    if os.path.isfile(dataset_path) and stem == "data":
        stem = os.path.basename(os.path.dirname(dataset_path))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "dataset"
    digest = hashlib.sha1(os.path.abspath(dataset_path).encode("utf-8")).hexdigest()[:8]
    return os.path.abspath(os.path.join(cache_root, f"{name}-{digest}"))


def _voc_names_file(voc_dir, data_path, classes_path):
    """The classes file to use for a VOC folder: ``classes_path``, else a ``classes.txt`` in the given folder or
    its VOC<year> folder; None when there is none (the names then come from the XMLs)."""
    if classes_path:
        return os.path.abspath(classes_path)
    for folder in dict.fromkeys((os.path.abspath(data_path), voc_dir)):
        if os.path.isfile(os.path.join(folder, "classes.txt")):
            return os.path.join(folder, "classes.txt")
    return None


def _xml_class_names(voc_dir, out):
    """The sorted object names of every XML in ``Annotations/`` (printed, as they were guessed from the data)."""
    xml_dir = os.path.join(voc_dir, "Annotations")
    names = set()
    for name in sorted(os.listdir(xml_dir)):
        if name.endswith(".xml"):
            names.update(parse_voc_xml(os.path.join(xml_dir, name)).names)
    if not names:
        raise UserError(f"no object names in the XMLs of {xml_dir}: give the class names (classes_path)")
    names = sorted(names)
    print(f"Class names taken from the XMLs of {xml_dir}, sorted ({len(names)}): {', '.join(names)} "
          f"(give a classes file for another order)", file=out)
    return names


def _yaml_spec(yaml_path):
    """Inputs of a data.yaml: the yaml, its .txt lists and their images + labels; the split folders and their
    label folders (walked, so that an added image is seen)."""
    info = read_data_yaml(yaml_path)
    files, folders = [yaml_path], []
    for sources in info.sources.values():
        for source in sources:
            if os.path.isdir(source):
                folders += [source, os.path.dirname(label_path(os.path.join(source, "x.jpg")))]
            else:
                files.append(source)
                files += [p for image in list_images(source) for p in (image, label_path(image))]
    return {"files": sorted(set(files)), "folders": sorted(set(folders))}


def _format_spec(fmt, dataset_path, image_dir):
    if fmt == "yaml":
        return _yaml_spec(dataset_path)
    if fmt == "coco":
        image_dir = image_dir or find_image_dir(dataset_path, load_coco(dataset_path))
        return {"files": [dataset_path], "folders": [os.path.abspath(image_dir)]}
    if fmt == "voc":
        return {"files": [], "folders": [os.path.join(dataset_path, sub) for sub in
                                         ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main"))]}
    files = [os.path.join(dataset_path, n) for n in _YAML_NAMES + ("classes.txt", "obj.names")]
    return {"files": files, "folders": [os.path.join(dataset_path, "images"), os.path.join(dataset_path, "labels")]}


def input_spec(fmt, dataset_path, names_file=None, names_candidates=(), image_dir=None):
    """``{"files": [paths], "folders": [paths]}``: what the lists of the dataset depend on (the folders are
    walked). ``names_file``: the classes file used or checked against; else ``names_candidates``, the files
    that would be used if they appeared; ``image_dir``: a COCO dataset's image folder (from the JSON when None)."""
    spec = _format_spec(fmt, dataset_path, image_dir)
    spec["files"] = spec["files"] + ([names_file] if names_file else list(names_candidates))
    return spec


def _stat_entry(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return [path, None, None]
    return [path, stat.st_size, stat.st_mtime_ns]


def signature(spec, skip=()):
    """``(sha256 hex of every input's path, size and mtime, number of files)``; os.stat only, nothing is read.
    ``skip``: folders left out of the walks (the cache itself, when it lies inside the dataset)."""
    entries = [_stat_entry(p) for p in spec["files"]]
    for folder in spec["folders"]:
        if not os.path.isdir(folder):
            entries.append([folder, None, None])
            continue
        for parent, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if os.path.join(parent, d) not in skip)
            entries += [_stat_entry(os.path.join(parent, name)) for name in sorted(files)]
    blob = json.dumps([spec, entries], separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest(), sum(1 for e in entries if e[1] is not None)


_MANIFEST_KEYS = ("params", "signature", "outputs", "class_names", "counts", "built")


def _read_manifest(cache_dir):
    """The cache's manifest (dict), or None when it is absent, torn or not one this module wrote (then the lists
    are rebuilt)."""
    try:
        with open(os.path.join(cache_dir, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(manifest, dict) or not all(key in manifest for key in _MANIFEST_KEYS) \
            or not isinstance(manifest["outputs"], dict):
        return None
    return manifest


def _outputs_intact(cache_dir, manifest):
    """The lists and class file are still those the manifest wrote (not deleted or edited since)."""
    return all(_stat_entry(os.path.join(cache_dir, name))[1:] == stat for name, stat in manifest["outputs"].items())


def _lists_of(fmt, dataset_path, class_names, cache_dir, counts, reused):
    paths = {name: os.path.join(cache_dir, f"2007_{name}.txt") for name in SPLIT_SETS}
    return DataLists(fmt, dataset_path, list(class_names), os.path.join(cache_dir, CLASS_FILE), paths["train"],
                     paths["val"], paths["test"] if counts.get("test") else None, cache_dir, reused, dict(counts))


def _split_of(dataset, out):
    """The dataset's own split when it has one, else voc_annotation.py's seeded split; printed."""
    if dataset.split:
        split = {name: dataset.split.get(name, []) for name in SPLIT_SETS}
        print(f"Using the dataset's own split: {', '.join(f'{k}: {len(v)}' for k, v in split.items())}", file=out)
        return split
    split = seeded_split([r.image_id for r in dataset.records], **SPLIT_SETTINGS)
    print(f"No split in the dataset: split with seed {SPLIT_SETTINGS['seed']} (trainval "
          f"{SPLIT_SETTINGS['trainval_percent']}, train {SPLIT_SETTINGS['train_percent']} of it): "
          f"{', '.join(f'{k}: {len(split[k])}' for k in SPLIT_SETS)}", file=out)
    return split


def _class_names(fmt, dataset_path, names_file, out):
    """The class names to give read_dataset for a VOC folder (None for the formats that carry their own)."""
    if fmt != "voc":
        return None
    return get_classes(names_file)[0] if names_file else _xml_class_names(dataset_path, out)


def _check_given_classes(dataset, classes_path, dataset_path):
    """A classes file given for a dataset with its own names must agree with them (never silently overridden)."""
    given = get_classes(classes_path)[0]
    if given != dataset.class_names:
        raise UserError(f"the classes of {classes_path} ({', '.join(given)}) differ from those of {dataset_path} "
                        f"({', '.join(dataset.class_names)}); leave out the classes file or fix it")


def _build(fmt, dataset_path, class_names, cache_dir, classes_path, out):
    """Read the dataset, write the lists and class file into ``cache_dir``: ``(class names, {split: images})``."""
    dataset = read_dataset(fmt, dataset_path, class_names)
    if classes_path and fmt != "voc":
        _check_given_classes(dataset, classes_path, dataset_path)
    written = write_dataset_lists(dataset, _split_of(dataset, out), cache_dir, out=out)
    write_class_file(dataset.class_names, os.path.join(cache_dir, CLASS_FILE))
    counts = {name: written[os.path.join(cache_dir, f"2007_{name}.txt")] for name in SPLIT_SETS}
    return dataset.class_names, counts


def resolve_data(data, cache_root="data_cache", classes_path=None, out=None):
    """The training lists of the dataset at ``data`` (see ``detect_data``), built into the cache or reused from
    it: a ``DataLists``. ``classes_path``: the class names of a VOC folder (else its ``classes.txt``, else the
    sorted names in its XMLs); for the other formats, when given, it must equal the dataset's names."""
    out = out or sys.stdout
    fmt, dataset_path = detect_data(data)
    cache_dir = _cache_dir(cache_root, dataset_path)
    names_file, candidates = (os.path.abspath(classes_path) if classes_path else None), ()
    if fmt == "voc":
        names_file = _voc_names_file(dataset_path, data, classes_path)
        candidates = [os.path.join(f, "classes.txt") for f in dict.fromkeys((os.path.abspath(data), dataset_path))]
    params = {"version": CACHE_VERSION, "format": fmt, "dataset": dataset_path, "split": SPLIT_SETTINGS,
              "classes": os.path.abspath(classes_path) if classes_path else None, "names_file": names_file}
    manifest = _read_manifest(cache_dir)
    if manifest and manifest.get("params") == params:
        spec = input_spec(fmt, dataset_path, names_file, candidates, manifest.get("image_dir"))
        digest, files = signature(spec, skip={cache_dir})
        if digest == manifest["signature"] and _outputs_intact(cache_dir, manifest):
            print(f"Reusing the training lists of {data} in {cache_dir} ({files} input files unchanged since "
                  f"{manifest['built']}; {', '.join(f'{k}: {v}' for k, v in manifest['counts'].items())})", file=out)
            return _lists_of(fmt, dataset_path, manifest["class_names"], cache_dir, manifest["counts"], True)
    return _rebuild(fmt, dataset_path, cache_dir, params, (names_file, candidates), classes_path, out)


def _rebuild(fmt, dataset_path, cache_dir, params, names, classes_path, out):
    """Build the lists and write the manifest last; the signature is taken before the dataset is read, so a file
    changed while the lists are built makes the next call rebuild."""
    names_file, candidates = names
    os.makedirs(cache_dir, exist_ok=True)
    manifest_path = os.path.join(cache_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    image_dir = find_image_dir(dataset_path, load_coco(dataset_path)) if fmt == "coco" else None
    digest, files = signature(input_spec(fmt, dataset_path, names_file, candidates, image_dir), skip={cache_dir})
    print(f"Building the training lists of {dataset_path} ({fmt}, {files} input files) in {cache_dir}", file=out)
    class_names, counts = _build(fmt, dataset_path, _class_names(fmt, dataset_path, names_file, out),
                                 cache_dir, classes_path, out)
    outputs = {name: _stat_entry(os.path.join(cache_dir, name))[1:]
               for name in [f"2007_{s}.txt" for s in SPLIT_SETS] + [CLASS_FILE]}
    manifest = {"params": params, "signature": digest, "files": files, "image_dir": image_dir,
                "class_names": class_names, "counts": counts, "outputs": outputs,
                "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write(manifest_path, json.dumps(manifest, indent=1) + "\n")
    return _lists_of(fmt, dataset_path, class_names, cache_dir, counts, False)


def dataset_for(lists):
    """The ``Dataset`` (utils/data/datasets.py) of ``lists``' dataset as its reader gives it, e.g. the ground truth for
    evaluation: ``samples_from_records(dataset_for(lists).records, image paths of lists.val)``."""
    return read_dataset(lists.format, lists.root, lists.class_names if lists.format == "voc" else None)
