"""Ultralytics / Roboflow ``data.yaml`` datasets, parsed with PyYAML's ``safe_load`` (the format's own parser).

Keys, read the way ultralytics reads them:
- ``path``: the dataset root, relative to the yaml's folder; absent: the yaml's folder.
- ``train``, ``val`` (both required, as ultralytics requires them) and ``test`` (optional): an image folder
  (searched recursively), a ``.txt`` list of image paths (relative lines are relative to the list's folder), or a
  list of those; relative to ``path``. Roboflow writes ``../train/images``: when that does not exist it is tried
  without the ``../``, as ultralytics does. ``validation`` is read as ``val`` (ultralytics renames it too).
- ``names``: a list, or a mapping ``class id -> name`` covering 0..n-1; ``nc``: when given, the number of names.
- ``download``, ``roboflow``, ``channels``: nothing to do here; accepted with a note in the report.
Anything else the reader does not understand is a ``DataYamlError`` naming the file and the key, never a guess.

Labels: the image ``.../images/x.jpg`` has the label file ``.../labels/x.txt`` (the last ``/images/`` path
component replaced, as ultralytics does; an image outside any ``images/`` folder has it beside it);
``yaml_records`` in utils/data/yolo_txt.py reads them with that module's label parser.
"""
import os
from dataclasses import dataclass, field

import yaml

from utils.errors import UserError
from utils.data.voc import IMAGE_EXTENSIONS

SPLITS = ("train", "val", "test")
# Keys that need no action from this reader: key -> the note the report gets.
NOTED_KEYS = {
    "download": "not run: the dataset is read where it is",
    "roboflow": "Roboflow export metadata, not needed for training",
    "channels": "not needed: every image is read as RGB",
}
KNOWN_KEYS = ("path", "names", "nc", "validation") + SPLITS + tuple(NOTED_KEYS)


class DataYamlError(UserError):
    """A ``data.yaml`` this reader does not understand; the message names the file and the key."""


@dataclass
class DataYaml:
    """A checked ``data.yaml``: absolute paths, class names, and per split its sources (folders / ``.txt`` lists)."""
    path: str                   # the yaml file
    root: str                   # the dataset root (``path:``)
    names: list                 # class names, the index is the class id
    sources: dict               # {"train" | "val" | "test": [folder or .txt list]}; "test" may be []
    notes: list = field(default_factory=list)   # (key, note) of accepted keys that need no action


def load_yaml_mapping(path):
    """The top-level mapping of a yaml file (dict); ``DataYamlError`` naming the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"data.yaml not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataYamlError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise DataYamlError(f"{path} must hold a mapping of keys (path, train, val, test, names, nc), "
                            f"got {type(data).__name__}")
    return data


def _names_from_mapping(names, path):
    """``{0: a, 1: b}`` -> ``[a, b]``; the keys must be the ints 0..n-1."""
    keys = list(names)
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
        raise DataYamlError(f"{path}: 'names' as a mapping needs integer class ids as keys, got "
                            f"{', '.join(repr(k) for k in keys if not isinstance(k, int) or isinstance(k, bool))}")
    if sorted(keys) != list(range(len(keys))):
        missing = sorted(set(range(max(keys) + 1)) - set(keys)) if keys else []
        raise DataYamlError(f"{path}: 'names' must map every class id 0..{len(keys) - 1}, got ids {sorted(keys)}"
                            + (f" (missing {missing})" if missing else ""))
    return [names[k] for k in range(len(keys))]


def class_names(data, path):
    """The class names (list of str) of a loaded ``data.yaml`` mapping ``data``, checked against ``nc``.

    ``names`` is a list or a mapping ``id -> name``; each name a non-empty str (an unquoted ``yes`` / ``null``
    / ``1`` is a YAML bool / null / int, so it is an error to quote it rather than a guess)."""
    names = data.get("names")
    if names is None:
        raise DataYamlError(f"{path} has no 'names' (the class names, a list or a mapping 0: name)")
    if isinstance(names, dict):
        names = _names_from_mapping(names, path)
    elif not isinstance(names, list):
        raise DataYamlError(f"{path}: 'names' must be a list or a mapping of class names, got "
                            f"{type(names).__name__} {names!r}")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise DataYamlError(f"{path}: every entry of 'names' must be a non-empty string, got {bad[0]!r} "
                            f"({type(bad[0]).__name__}); YAML reads unquoted yes / no / on / off / null and "
                            f"numbers as such: quote the name")
    if not names:
        raise DataYamlError(f"{path}: 'names' lists no class names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataYamlError(f"{path}: 'names' repeats {', '.join(repeated)}")
    nc = data.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc != len(names)):
        raise DataYamlError(f"{path}: 'nc' is {nc!r} but 'names' lists {len(names)} class names")
    return list(names)


def read_names(path):
    """The class names of a ``data.yaml`` (``names`` and ``nc`` checked, other keys not looked at): list of str."""
    return class_names(load_yaml_mapping(path), path)


def _resolve_source(value, key, root, path):
    """The absolute path of one split entry (folder or ``.txt`` list), with the Roboflow ``../`` fallback."""
    if not isinstance(value, str) or not value.strip():
        raise DataYamlError(f"{path}: '{key}' must be a path (or a list of paths), got {value!r}")
    resolved = os.path.normpath(os.path.join(root, value))
    if not os.path.exists(resolved) and value.startswith("../"):
        resolved = os.path.normpath(os.path.join(root, value[3:]))   # Roboflow's paths are one level too high
    if not os.path.exists(resolved):
        raise DataYamlError(f"{path}: '{key}' names {value!r}, which does not exist (looked for {resolved}); "
                            f"fix the path" + (" or remove the key" if key == "test" else ""))
    if os.path.isfile(resolved) and not resolved.endswith(".txt"):
        raise DataYamlError(f"{path}: '{key}' names the file {resolved}; expected an image folder or a .txt list "
                            f"of image paths")
    return resolved


def _split_sources(data, key, root, path):
    """``[absolute folder or .txt list]`` of split ``key``; ``[]`` when it is absent or empty."""
    value = data.get(key)
    if value is None or value == "" or value == []:
        return []
    values = value if isinstance(value, list) else [value]
    return [_resolve_source(v, key, root, path) for v in values]


def _dataset_root(data, path):
    folder = os.path.dirname(os.path.abspath(path))
    value = data.get("path")
    if value is None or value == "":
        return folder
    if not isinstance(value, str):
        raise DataYamlError(f"{path}: 'path' must be the dataset folder, got {value!r}")
    root = os.path.normpath(os.path.join(folder, value))
    if not os.path.isdir(root):
        raise DataYamlError(f"{path}: 'path' is {value!r}, which is not a folder (looked for {root}); "
                            f"relative paths are relative to the yaml's folder")
    return root


def read_data_yaml(path):
    """The checked ``DataYaml`` of ``path`` (see the module docstring); ``DataYamlError`` naming file and key."""
    path = os.path.abspath(path)
    data = load_yaml_mapping(path)
    unknown = [k for k in data if k not in KNOWN_KEYS]
    if unknown:
        raise DataYamlError(f"{path}: unknown key {unknown[0]!r}; this reader knows {', '.join(KNOWN_KEYS)}")
    if "validation" in data:
        if "val" in data:
            raise DataYamlError(f"{path}: both 'val' and 'validation' are given; keep one")
        data = {**data, "val": data["validation"]}
    names = class_names(data, path)
    root = _dataset_root(data, path)
    sources = {key: _split_sources(data, key, root, path) for key in SPLITS}
    for key in ("train", "val"):
        if not sources[key]:
            raise DataYamlError(f"{path} has no '{key}' (its images: a folder, a .txt list or a list of them); "
                                f"ultralytics requires 'train' and 'val' too")
    notes = [(key, note) for key, note in NOTED_KEYS.items() if key in data]
    if "validation" in data:
        notes.append(("validation", "read as 'val', as ultralytics does"))
    return DataYaml(path, root, names, sources, notes)


def label_path(image_path):
    """The label file of an image: the last ``/images/`` component of its path replaced by ``/labels/``, the
    extension by ``.txt`` (ultralytics' ``img2label_paths``); beside the image when there is no such component."""
    marker, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = image_path.rpartition(marker)
    path = head + labels + tail if sep else image_path
    return os.path.splitext(path)[0] + ".txt"


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def folder_images(folder):
    """Every image under ``folder`` (recursively, as ultralytics globs ``**/*.*``), sorted: list of paths."""
    images = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        images += [os.path.join(parent, name) for name in sorted(files) if _is_image(name)]
    return images


def list_images(list_path):
    """The image paths of a ``.txt`` list, relative lines taken relative to the list's folder: list of paths."""
    folder = os.path.dirname(list_path)
    with open(list_path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    return [os.path.normpath(os.path.join(folder, line)) for line in lines]


def split_images(sources):
    """The images of one split's sources (folders and ``.txt`` lists), in order: list of absolute paths."""
    images = []
    for source in sources:
        images += folder_images(source) if os.path.isdir(source) else list_images(source)
    return images
