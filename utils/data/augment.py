"""Pure array functions of the training augmentation (upstream YOLOv4's recipe, on uint8 RGB arrays).

Images are ``uint8 (H, W, 3)`` RGB; boxes are ``float32 (n, 5)``: ``x1, y1, x2, y2, class`` in the pixels
of the image they belong to. Sizes are ``(w, h)`` and regions ``(x0, y0, x1, y1)``, both in pixels.
Functions that draw random numbers take a ``numpy.random.Generator``.
"""
import cv2
import numpy as np

GREY = 128                  # canvas colour around placed images (upstream's letterbox grey)
MIN_BOX_SIZE = 1.0          # boxes no wider or taller than this (input pixels) are dropped, as upstream
UNKNOWN_CLASS = -1          # class id of a box that is an object but whose class is not taught (YOLOLoss skips it)


def _lerp(a, b, t):
    return a + (b - a) * t


def rand(rng, a=0.0, b=1.0):
    """Uniform in ``[a, b)``, also when ``b < a`` (upstream's ``rand``; numpy's uniform wants ``a <= b``)."""
    return _lerp(a, b, rng.random())


def jittered_size(image_size, input_size, jitter, scale_range, draws):
    """Upstream's random resize: aspect ratio ``iw/ih * rand(1-j, 1+j) / rand(1-j, 1+j)`` and the longer
    side ``rand(*scale_range)`` times the input's matching side. Returns ``(nw, nh)``, each at least 1.

    ``draws`` are the three uniform [0, 1) numbers behind the three ``rand`` calls, drawn by the caller
    before the image is read, so that an unreadable image changes no later random number.
    """
    iw, ih = image_size
    w, h = input_size
    ar_up, ar_down, scale_draw = draws
    new_ar = iw / ih * _lerp(1 - jitter, 1 + jitter, ar_up) / _lerp(1 - jitter, 1 + jitter, ar_down)
    scale = _lerp(*scale_range, scale_draw)
    if new_ar < 1:
        nh = int(scale * h)
        nw = int(nh * new_ar)
    else:
        nw = int(scale * w)
        nh = int(nw / new_ar)
    return max(nw, 1), max(nh, 1)


def letterbox_size(image_size, input_size):
    """The largest ``(nw, nh)`` with the image's aspect ratio that fits the input."""
    iw, ih = image_size
    w, h = input_size
    scale = min(w / iw, h / ih)
    return max(int(iw * scale), 1), max(int(ih * scale), 1)


def resize_rgb(image, size):
    """Resize a uint8 ``(h, w, 3)`` image to ``size = (w, h)``: area averaging when shrinking 2x or more
    (no aliasing), else bilinear. Training and inference both resize with this."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    shrink_2x = w >= 2 * size[0] and h >= 2 * size[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink_2x else cv2.INTER_LINEAR)


def scale_boxes(boxes, sx, sy):
    """Boxes of an image resized by ``(sx, sy)``."""
    return boxes * np.array([sx, sy, sx, sy, 1], dtype=np.float32)


def shift_boxes(boxes, dx, dy):
    return boxes + np.array([dx, dy, dx, dy, 0], dtype=np.float32)


def clip_boxes(boxes, region, min_visible=0.0, min_class_visible=0.0):
    """Boxes clipped to ``region``; those left no larger than ``MIN_BOX_SIZE`` either way are dropped, and so
    are those of which less than the fraction ``min_visible`` of their area is left (a fragment of a shape
    can look like another class: half a star is a triangle). Those of which less than ``min_class_visible``
    is left stay, with class ``UNKNOWN_CLASS``: an object to find whose class the loss does not teach."""
    x0, y0, x1, y1 = region
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(x0, x1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(y0, y1)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (w > MIN_BOX_SIZE) & (h > MIN_BOX_SIZE) & (w * h >= min_visible * area)
    boxes[w * h < min_class_visible * area, 4] = UNKNOWN_CLASS
    return boxes[keep]


def hflip(image, boxes):
    """Mirror an image and its boxes left-right."""
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, [0, 2]] = width - boxes[:, [2, 0]]
    return cv2.flip(image, 1), flipped


def paste(canvas, image, dx, dy, region):
    """Copy ``image`` into ``canvas`` (in place) with its top-left corner at ``(dx, dy)``, only inside ``region``.

    Offsets may be negative or push the image past the region: only the overlap is copied.
    """
    ih, iw = image.shape[:2]
    x0, y0 = max(dx, region[0]), max(dy, region[1])
    x1, y1 = min(dx + iw, region[2]), min(dy + ih, region[3])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = image[y0 - dy:y1 - dy, x0 - dx:x1 - dx]


def crop(image, boxes, offset, crop_size, min_visible=0.0, min_class_visible=0.0):
    """The ``crop_size (w, h)`` window of ``image`` at ``offset (x, y)``, its boxes moved and clipped
    (``clip_boxes``): the part of a sample that a crop-trained network sees, at the sample's own scale."""
    (x, y), (w, h) = offset, crop_size
    return image[y:y + h, x:x + w], clip_boxes(shift_boxes(boxes, -x, -y), (0, 0, w, h), min_visible, min_class_visible)


def grey_canvas(input_size):
    w, h = input_size
    return np.full((h, w, 3), GREY, dtype=np.uint8)


def place(image, boxes, dx, dy, input_size, min_visible=0.0, min_class_visible=0.0):
    """A resized image on a grey canvas of ``input_size`` at offset ``(dx, dy)``, boxes moved and clipped
    (``clip_boxes``)."""
    canvas = grey_canvas(input_size)
    region = (0, 0, *input_size)
    paste(canvas, image, dx, dy, region)
    return canvas, clip_boxes(shift_boxes(boxes, dx, dy), region, min_visible, min_class_visible)


def random_offset(rng, image_size, input_size):
    """Upstream's random placement ``(int(rand(0, w - nw)), int(rand(0, h - nh)))``: negative when the image
    is larger than the input, so that a random part of it is kept."""
    (nw, nh), (w, h) = image_size, input_size
    return int(rand(rng, 0, w - nw)), int(rand(rng, 0, h - nh))


def mosaic_cut(rng, input_size, low=0.3, high=0.7):
    """Upstream's Mosaic split point ``(cutx, cuty)``, each between 30 % and 70 % of the side."""
    w, h = input_size
    return int(w * rand(rng, low, high)), int(h * rand(rng, low, high))


def mosaic_regions(cut, input_size):
    """Quadrants in upstream's order: top-left, bottom-left, bottom-right, top-right."""
    (cx, cy), (w, h) = cut, input_size
    return [(0, 0, cx, cy), (0, cy, cx, h), (cx, cy, w, h), (cx, 0, w, cy)]


def mosaic(tiles, tile_boxes, cut, input_size, min_visible=0.0, min_class_visible=0.0):
    """Upstream's Mosaic: four resized images, each with its corner at the split point ``cut`` and reaching
    away from it into its quadrant (cropped there); boxes are moved and clipped to their quadrant
    (``clip_boxes``). As a tile starts at the cut, only the canvas edges actually crop it, as in upstream's
    ``merge_bboxes``.

    ``tiles``: four ``uint8 (nh_i, nw_i, 3)``; ``tile_boxes``: four ``(n_i, 5)`` in tile pixels.
    Returns ``(uint8 (h, w, 3), (m, 5))``.
    """
    canvas = grey_canvas(input_size)
    cx, cy = cut
    merged = []
    for quadrant, (tile, boxes, region) in enumerate(zip(tiles, tile_boxes, mosaic_regions(cut, input_size))):
        th, tw = tile.shape[:2]
        dx = cx - tw if quadrant in (0, 1) else cx        # left quadrants end at the cut
        dy = cy - th if quadrant in (0, 3) else cy        # top quadrants end at the cut
        paste(canvas, tile, dx, dy, region)
        merged.append(clip_boxes(shift_boxes(boxes, dx, dy), region, min_visible, min_class_visible))
    return canvas, np.concatenate(merged)


def random_hsv_gains(rng, hue, sat, val):
    """Upstream's gains ``uniform(-1, 1, 3) * [hue, sat, val] + 1``."""
    return rng.uniform(-1, 1, 3) * np.array([hue, sat, val]) + 1


def hsv_lut(gains):
    """``uint8 (256, 1, 3)`` lookup table multiplying OpenCV's H (0..179, wrapping), S and V channels."""
    x = np.arange(256, dtype=np.float64)
    lut = np.stack([(x * gains[0]) % 180, np.clip(x * gains[1], 0, 255), np.clip(x * gains[2], 0, 255)], axis=-1)
    return lut.astype(np.uint8).reshape(256, 1, 3)


def hsv_jitter(image, gains):
    """Multiply hue, saturation and value of an RGB image by ``gains`` through one 3-channel LUT on uint8 HSV."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return cv2.cvtColor(cv2.LUT(hsv, hsv_lut(gains)), cv2.COLOR_HSV2RGB)


def mixup(image_a, boxes_a, image_b, boxes_b):
    """Upstream's MixUp: the 0.5 / 0.5 blend (rounded to uint8) and both images' boxes, ``a`` first."""
    blended = cv2.addWeighted(image_a, 0.5, image_b, 0.5, 0)
    return blended, np.concatenate([boxes_a, boxes_b])


def normalized_cxcywh(boxes, input_size):
    """``(n, 5)`` pixel ``x1, y1, x2, y2, class`` -> centre x, centre y, width, height over the input size, class."""
    w, h = input_size
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0:2] = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    out[:, 2:4] = boxes[:, 2:4] - boxes[:, 0:2]
    out[:, [0, 2]] /= w
    out[:, [1, 3]] /= h
    out[:, 4] = boxes[:, 4]
    return out


def to_chw_float(image):
    """``uint8 (H, W, 3)`` -> C-contiguous ``float32 (3, H, W)`` in [0, 1] with a single conversion pass."""
    out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    np.multiply(image.transpose(2, 0, 1), np.float32(1 / 255), out=out)
    return out
