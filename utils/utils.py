"""Small shared helpers with upstream's names: class / anchor files, image conversion, seeding."""
import os
import random

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.paths import resource_path


def _read_lines(path, what):
    """The stripped lines of a ``what`` file; a shipped file (model_data/...) is found from any directory."""
    path = resource_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f]


def get_classes(classes_path):
    """Class names, one per non-empty line. Returns ``(names, count)``."""
    class_names = [c for c in _read_lines(classes_path, "classes") if c]
    if not class_names:
        raise UserError(f"classes file {classes_path} lists no class names")
    if len(set(class_names)) != len(class_names):
        dup = sorted({c for c in class_names if class_names.count(c) > 1})
        raise UserError(f"classes file {classes_path} repeats class names: {', '.join(dup)}")
    return class_names, len(class_names)


def get_anchors(anchors_path):
    """Anchors ``(9, 2)`` as ``(w, h)`` pixels from a comma-separated line. Returns ``(anchors, count)``."""
    text = ",".join(_read_lines(anchors_path, "anchors"))
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise UserError(f"anchors file {anchors_path} is not a comma-separated list of numbers: {err}") from None
    if not values or len(values) % 2:
        raise UserError(f"anchors file {anchors_path} must hold an even number of values (w, h pairs), got {len(values)}")
    anchors = np.array(values, dtype=np.float32).reshape(-1, 2)
    return anchors, len(anchors)


def cvtColor(image):
    """PIL image as 3-channel RGB (grayscale, palette, RGBA, 16-bit modes converted)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits by the image's own range before converting.
        array = np.asarray(image, dtype=np.float64)
        hi = array.max() if array.size else 0
        array = (array * (255.0 / hi) if hi > 0 else array).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    return image.convert("RGB")


def resize_image(image, size, letterbox_image):
    """Resize a PIL image to ``size = (w, h)``; with ``letterbox_image`` keep its aspect ratio on grey."""
    iw, ih = image.size
    w, h = size
    if not letterbox_image:
        return image.resize((w, h), Image.BICUBIC)
    scale = min(w / iw, h / ih)
    nw, nh = int(iw * scale), int(ih * scale)
    new_image = Image.new("RGB", size, (128, 128, 128))
    new_image.paste(image.resize((nw, nh), Image.BICUBIC), ((w - nw) // 2, (h - nh) // 2))
    return new_image


def preprocess_input(image):
    """uint8-range pixels -> [0, 1] floats."""
    return np.asarray(image, dtype=np.float32) / 255.0


def get_lr(optimizer):
    return optimizer.param_groups[0]["lr"]


def seed_everything(seed=11):
    """Seed Python, NumPy and torch (all devices) for reproducible runs."""
    import torch    # here, not at the top: the scripts' --help and the dataset tools import this module without torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def resolve_device(device="auto"):
    """``'auto'`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but CUDA is not available; use device='auto' or 'cpu'")
    return device


def show_config(**kwargs):
    """Print a two-column table of settings."""
    width = max([len(k) for k in kwargs] + [10])
    rows = [(k, str(v)) for k, v in kwargs.items()]
    value_width = min(max([len(v) for _, v in rows] + [10]), 80)
    line = "-" * (width + value_width + 7)
    print("Configurations:")
    print(line)
    print(f"| {'keys':>{width}} | {'values':>{value_width}} |")
    print(line)
    for k, v in rows:
        print(f"| {k:>{width}} | {v:>{value_width}} |")
    print(line)
