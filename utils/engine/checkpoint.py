"""Weight files: safe loading, atomic saving, and loading into a model by matching keys and shapes.

Every load goes through ``torch.load(..., weights_only=True)``: a file that carries arbitrary
pickled objects is refused before any of its code can run.
"""
import os
import pickle
import re

import torch

from utils.atomic import atomic_save  # noqa: F401 (weights are saved through the one atomic write)
from utils.errors import UserError

# Keys under which a resumable checkpoint keeps weights, in order of preference.
_WRAPPER_KEYS = ("ema", "model", "state_dict", "model_state_dict")
# Darknet's file names: full weights, and the leading layers its partial command writes.
_DARKNET_NAME = re.compile(r"\.(weights|conv\.\d+)$")


class UnsafeWeightsError(UserError, RuntimeError):
    """The file holds pickled objects other than tensors and plain containers."""


def safe_load(path, map_location="cpu"):
    """``torch.load`` restricted to tensors and plain containers; clear errors for bad files."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if os.path.getsize(path) == 0:
        raise UserError(f"weights file is empty (0 bytes): {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeWeightsError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors, and unpickling "
            f"them could run arbitrary code. Load it in a trusted session and re-save model.state_dict(). "
            f"(torch said: {str(err).splitlines()[0]})") from None
    except Exception as err:  # torch.load raises many types on corrupt data (struct.error, EOFError, ...)
        raise UserError(f"cannot read weights file {path}: it is truncated or not a PyTorch file ({err})") from None


def extract_state_dict(obj, path="<weights>"):
    """The ``{name: tensor}`` mapping in a loaded file: a plain state_dict or a checkpoint wrapping one."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and obj[key] and all(torch.is_tensor(v) for v in obj[key].values()):
                return obj[key]
        if obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
            return obj
    raise UserError(f"{path} holds no state_dict (expected a mapping of parameter names to tensors)")


def is_darknet_path(path):
    """Whether ``path`` names a darknet weights file: ``*.weights`` or a partial ``*.conv.<layers>``
    (darknet's own names, e.g. ``yolov4.weights``, ``yolov4.conv.137``)."""
    return _DARKNET_NAME.search(str(path)) is not None


def load_state_dict_file(path, map_location="cpu", num_classes=None, anchors_mask=None):
    """Read a weights file into a state_dict (``.pth``/``.pt`` or a darknet file, see ``is_darknet_path``).

    A darknet file names no tensors: it is read onto the CPU against the full YoloBody with
    ``num_classes`` (required for it) and ``anchors_mask`` (None: YOLOv4's), see utils/deploy/darknet.py.
    """
    if is_darknet_path(path):
        if num_classes is None:
            raise UserError(f"{path} is a darknet weights file: reading it needs the class count (num_classes), "
                             f"which sets the size of its prediction convolutions")
        from utils.deploy.darknet import read_darknet_weights  # noqa: local import keeps torch-only loads light

        return read_darknet_weights(path, num_classes, anchors_mask)
    return extract_state_dict(safe_load(path, map_location), path)


def load_matching(model, state_dict):
    """Copy the tensors whose key and shape match ``model``; return a report of the rest.

    Returns a dict with ``loaded``, ``mismatched`` (key: (file shape, model shape)), ``missing``
    (model keys absent from the file) and ``unexpected`` (file keys the model lacks).
    """
    own = model.state_dict()
    loaded, mismatched = {}, {}
    for key, value in state_dict.items():
        if key in own:
            if own[key].shape == value.shape:
                loaded[key] = value
            else:
                mismatched[key] = (tuple(value.shape), tuple(own[key].shape))
    model.load_state_dict(loaded, strict=False)
    return {
        "loaded": sorted(loaded),
        "mismatched": mismatched,
        "missing": [k for k in own if k not in state_dict],
        "unexpected": [k for k in state_dict if k not in own],
    }


def describe_load(report, path):
    """Human-readable summary of ``load_matching``'s report."""
    lines = [f"Loaded {len(report['loaded'])} tensors from {path}."]
    if report["mismatched"]:
        lines.append(f"{len(report['mismatched'])} tensors skipped for a shape mismatch (e.g. another class count):")
        lines += [f"  {k}: file {a} vs model {b}" for k, (a, b) in list(report["mismatched"].items())[:10]]
    if report["missing"]:
        lines.append(f"{len(report['missing'])} model tensors not in the file (left initialised), e.g. "
                     + ", ".join(report["missing"][:5]))
    if report["unexpected"]:
        lines.append(f"{len(report['unexpected'])} file tensors not in the model, e.g. " + ", ".join(report["unexpected"][:5]))
    return "\n".join(lines)
