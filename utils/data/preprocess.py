"""The one image preprocessing of inference and evaluation: RGB pixels -> network input.

``YOLO.detect``, ``predict.py``, ``get_map.py``, the in-training mAP and the study tool all go through
``network_input``, so one image gives one input tensor everywhere. It resizes with OpenCV as the training
data loader does (``utils.data.augment.resize_rgb``), so inference sees the interpolation training saw.
``letterbox_image`` keeps the aspect ratio on a grey canvas (what training validates with); without it the
image is stretched to the input size (upstream's predict default). ``utils.deploy.decode.letterbox_geometry``
inverts exactly this placement.
"""
import os

import numpy as np
from PIL import Image

from utils.data.augment import grey_canvas, letterbox_size, resize_rgb, to_chw_float
from utils.errors import UserError
from utils.utils import cvtColor

# Recorded in the weights' metadata with letterbox_image, so a calibrated threshold names its preprocessing.
RESIZE_METHOD = "opencv area/linear"


def open_image(path):
    """The image file at ``path`` as a loaded PIL image (stored pixels: EXIF orientation is not applied)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None
    return image


def rgb_array(image):
    """uint8 ``(h, w, 3)`` RGB from a PIL image (any mode) or a uint8 ``(h, w)`` / ``(h, w, 3|4)`` array."""
    if isinstance(image, Image.Image):
        return np.asarray(cvtColor(image))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"expected a uint8 RGB array (H, W, 3), got dtype {image.dtype} shape {image.shape}")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        return np.ascontiguousarray(image[:, :, :3])
    raise TypeError(f"expected a PIL image or a numpy RGB array, got {type(image).__name__}")


def resize_for_input(rgb, input_shape, letterbox_image):
    """uint8 ``(h, w, 3)`` -> uint8 ``(H, W, 3)`` for ``input_shape = (H, W)``, letterboxed or stretched."""
    height, width = input_shape
    if not letterbox_image:
        return resize_rgb(rgb, (width, height))
    new_w, new_h = letterbox_size(rgb.shape[1::-1], (width, height))
    canvas = grey_canvas((width, height))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resize_rgb(rgb, (new_w, new_h))
    return canvas


def network_input(image, input_shape, letterbox_image):
    """``(float32 (3, H, W) in [0, 1], original (h, w))`` for a PIL image or RGB array."""
    rgb = rgb_array(image)
    return to_chw_float(resize_for_input(rgb, input_shape, letterbox_image)), rgb.shape[:2]
