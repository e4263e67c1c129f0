"""Darknet ``.weights`` files (AlexeyAB's ``yolov4.weights``, ``yolov4.conv.137``) read into a YoloBody state_dict.

Format: a header of int32 ``major, minor, revision`` and ``seen`` (images trained on; uint64 when
``major * 10 + minor >= 2``, else uint32), then little-endian float32 values, convolution after
convolution in cfg order. A convolution with batch norm stores ``bias (BN beta), scale (BN gamma),
rolling_mean, rolling_variance, weights (OIHW)``; one without (the three 1x1 prediction convs)
stores ``bias, weights``. Nothing names or sizes the tensors: the reader takes them from YoloBody,
whose modules are registered in darknet's convolution order (tests/test_network.py checks it).

A file may hold only the leading convolutions (``yolov4.conv.137`` is the first 92 of 110: backbone,
SPP and the top-down path); the state_dict then holds just those and training initialises the rest.
"""
import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from nets.yolo import YoloBody
from utils.errors import UserError

DEFAULT_ANCHORS_MASK = ((6, 7, 8), (3, 4, 5), (0, 1, 2))
# Centre scale of yolov4.cfg's [yolo] layers (1.2 / 1.1 / 1.05 at strides 8 / 16 / 32), in
# YoloBody's output order (strides 32, 16, 8): weights trained by darknet expect this decoding.
DARKNET_SCALE_X_Y = (1.05, 1.1, 1.2)
# Darknet itself treats version fields of 1000 and above as a different layout (parser.c).
_MAX_VERSION = 1000
_FLOAT = np.dtype("<f4")


@dataclass(frozen=True)
class ConvSlot:
    """One darknet convolution and the YoloBody tensors its values go to."""
    conv: str                  # module name of the Conv2d
    bn: str | None             # module name of its BatchNorm2d; None for the bias-carrying prediction convs
    out_channels: int
    weight_shape: tuple

    def tensors(self):
        """``[(state_dict key, shape)]`` in the order darknet stores them."""
        vector = (self.out_channels,)
        if self.bn is None:
            return [(f"{self.conv}.bias", vector), (f"{self.conv}.weight", self.weight_shape)]
        return [(f"{self.bn}.bias", vector), (f"{self.bn}.weight", vector), (f"{self.bn}.running_mean", vector),
                (f"{self.bn}.running_var", vector), (f"{self.conv}.weight", self.weight_shape)]

    @property
    def num_floats(self):
        return sum(int(np.prod(shape)) for _, shape in self.tensors())


@dataclass(frozen=True)
class DarknetLayout:
    """The convolutions of the full-size YoloBody in darknet's order, and its state_dict key order."""
    slots: tuple
    keys: tuple
    boundaries: np.ndarray     # (n_convs,) float count of the first k + 1 convolutions

    @property
    def total_floats(self):
        return int(self.boundaries[-1])


@dataclass(frozen=True)
class DarknetHeader:
    major: int
    minor: int
    revision: int
    seen: int
    num_bytes: int             # 20 with a uint64 ``seen``, 16 with a uint32 one

    @property
    def version(self):
        return f"{self.major}.{self.minor}.{self.revision}"


@dataclass(frozen=True)
class DarknetWeights:
    """What a file held: its header, the state_dict of its convolutions, and how many of the layout's."""
    header: DarknetHeader
    state_dict: dict
    num_convs: int
    layout: DarknetLayout

    @property
    def complete(self):
        return self.num_convs == len(self.layout.slots)

    @property
    def missing_slots(self):
        return self.layout.slots[self.num_convs:]


def _mask_key(anchors_mask):
    return tuple(tuple(int(i) for i in level) for level in (DEFAULT_ANCHORS_MASK if anchors_mask is None
                                                              else anchors_mask))


@functools.lru_cache(maxsize=8)
def _layout(num_classes, anchors_mask):
    # A meta-device model has the module order and shapes without allocating 64M parameters.
    with torch.device("meta"):
        model = YoloBody([list(level) for level in anchors_mask], num_classes)
    modules = list(model.named_modules())
    slots = []
    for (name, module), (next_name, next_module) in zip(modules, modules[1:] + [("", None)]):
        if not isinstance(module, torch.nn.Conv2d):
            continue
        bn = next_name if isinstance(next_module, torch.nn.BatchNorm2d) else None
        if bn is None and module.bias is None:
            raise RuntimeError(f"YoloBody conv {name} has neither batch norm nor bias: no darknet layout for it")
        slots.append(ConvSlot(name, bn, module.out_channels, tuple(module.weight.shape)))
    boundaries = np.cumsum([slot.num_floats for slot in slots])
    return DarknetLayout(tuple(slots), tuple(model.state_dict()), boundaries)


def darknet_layout(num_classes, anchors_mask=None):
    """The full YOLOv4's convolutions in file order for ``num_classes`` classes (width and depth 1.0:
    darknet files always hold the full-size network)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    return _layout(num_classes, _mask_key(anchors_mask))


def read_header(f, path):
    """Parse the header at the start of the open file ``f``; clear errors for files that are not darknet's."""
    head = f.read(12)
    if len(head) < 12:
        raise UserError(f"{path} is truncated: {len(head)} bytes, shorter than a darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(head, dtype="<i4"))
    if not all(0 <= v < _MAX_VERSION for v in (major, minor, revision)):
        hint = " (it starts like a zip archive: a PyTorch .pth file renamed .weights?)" if head[:2] == b"PK" else ""
        raise UserError(f"{path} is not a darknet weights file: its header version {major}.{minor}.{revision} "
                         f"is not one darknet writes (small numbers, e.g. 0.2.5){hint}")
    seen_dtype = "<u8" if major * 10 + minor >= 2 else "<u4"
    seen_bytes = f.read(np.dtype(seen_dtype).itemsize)
    if len(seen_bytes) < np.dtype(seen_dtype).itemsize:
        raise UserError(f"{path} is truncated inside its darknet header")
    seen = int(np.frombuffer(seen_bytes, dtype=seen_dtype)[0])
    return DarknetHeader(major, minor, revision, seen, 12 + len(seen_bytes))


def _count_convs(path, num_floats, layout, num_classes, anchors_mask):
    """How many leading convolutions ``num_floats`` values fill exactly; a clear error when none does."""
    hit = int(np.searchsorted(layout.boundaries, num_floats))
    if num_floats > 0 and hit < len(layout.slots) and layout.boundaries[hit] == num_floats:
        return hit + 1
    raise UserError(_size_message(path, num_floats, layout, num_classes, anchors_mask))


def _boundary_note(layout, k):
    return f"{int(layout.boundaries[k - 1])} (first {k} convs, through {layout.slots[k - 1].conv})"


def _size_message(path, num_floats, layout, num_classes, anchors_mask):
    hit = int(np.searchsorted(layout.boundaries, num_floats))
    nearest = [_boundary_note(layout, k) for k in (hit, hit + 1) if 1 <= k <= len(layout.slots)]
    message = (f"{path} has {num_floats} floats after its header, but the full YOLOv4 with {num_classes} classes "
               f"has {layout.total_floats} and a file of leading convs must end at a conv boundary; the nearest "
               f"conv boundaries are {' and '.join(nearest)}.")
    # The prediction convs grow linearly with the class count: say which count would fit, if any.
    per_class = darknet_layout(num_classes + 1, anchors_mask).total_floats - layout.total_floats
    classes, remainder = divmod(num_floats - layout.total_floats, per_class)
    if remainder == 0 and num_classes + classes >= 1:
        message += (f" Its size fits the full network with {num_classes + classes} classes: use a classes file "
                    f"with that many names.")
    else:
        message += " The file is truncated, has extra data, or holds another network."
    return message


def read_darknet_file(path, num_classes, anchors_mask=None):
    """Read a darknet weights file against YoloBody(anchors_mask, num_classes); returns ``DarknetWeights``.

    The file must hold the full network or exactly its first k convolutions; anything else is
    refused with the numbers. BatchNorm's ``num_batches_tracked`` is set to 0 for each BN read.
    """
    layout = darknet_layout(num_classes, anchors_mask)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"darknet weights file not found: {path}")
    file_bytes = os.path.getsize(path)
    with open(path, "rb") as f:
        header = read_header(f, path)
        data_bytes = file_bytes - header.num_bytes
        if data_bytes % _FLOAT.itemsize:
            raise UserError(f"{path} is truncated: its {data_bytes} data bytes after the header end inside a float")
        num_convs = _count_convs(path, data_bytes // _FLOAT.itemsize, layout, num_classes, anchors_mask)
        values = np.fromfile(f, dtype=_FLOAT, count=data_bytes // _FLOAT.itemsize)      # (num_floats,)
    if values.size * _FLOAT.itemsize != data_bytes:
        raise UserError(f"{path} is truncated: read {values.size} floats of {data_bytes // _FLOAT.itemsize}")
    return DarknetWeights(header, _state_dict(values, layout, num_convs), num_convs, layout)


def _state_dict(values, layout, num_convs):
    """Views into ``values`` for the first ``num_convs`` convolutions, keyed and ordered as YoloBody's."""
    tensors, offset = {}, 0
    values = torch.from_numpy(values.astype(np.float32, copy=False))     # native byte order for torch
    for slot in layout.slots[:num_convs]:
        for key, shape in slot.tensors():
            size = int(np.prod(shape))
            tensors[key] = values[offset:offset + size].view(shape)
            offset += size
        if slot.bn is not None:
            tensors[f"{slot.bn}.num_batches_tracked"] = torch.tensor(0)
    return {key: tensors[key] for key in layout.keys if key in tensors}


def describe_darknet(weights, path):
    """Human-readable summary: version, images seen, convolutions read and those not in the file."""
    layout, k = weights.layout, weights.num_convs
    lines = [f"{path}: darknet weights v{weights.header.version}, {weights.header.seen} images seen, "
             f"{k} of {len(layout.slots)} convolutions ({int(layout.boundaries[k - 1])} floats)."]
    if not weights.complete:
        missing = [slot.conv for slot in weights.missing_slots]
        lines.append(f"Not in the file (a prefix through {layout.slots[k - 1].conv}): {len(missing)} convolutions, "
                     f"{missing[0]} ... {missing[-1]}; training initialises them.")
    return "\n".join(lines)


def read_darknet_weights(path, num_classes, anchors_mask=None):
    """A YoloBody state_dict from a darknet ``.weights`` file (see ``read_darknet_file``).

    ``anchors_mask`` None means YOLOv4's ``[[6, 7, 8], [3, 4, 5], [0, 1, 2]]``. A prefix file gives
    only its convolutions' tensors and prints which convolutions it lacks.
    """
    weights = read_darknet_file(path, num_classes, anchors_mask)
    if not weights.complete:
        print(describe_darknet(weights, path))
    return weights.state_dict
