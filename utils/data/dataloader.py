"""The augmenting YOLO dataset (upstream's ``YoloDataset`` / ``yolo_dataset_collate`` / ``worker_init_fn``).

Images are decoded with OpenCV as 8-bit RGB (EXIF orientation ignored: boxes refer to the stored pixels),
JPEGs straight at a reduced size when they will be shrunk at least 2x anyway. All augmentation randomness
comes from the dataset's own ``numpy.random.Generator``, seeded from ``(seed, epoch, rank, worker)``: a
batch depends only on those and the sampler's order, never on earlier epochs, which makes resuming exact.
"""
import io
import random
import struct
import warnings

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import get_worker_info
from torch.utils.data.dataset import Dataset

from utils.data.annotation import parse_annotation_line
from utils.errors import UserError
from utils.data.augment import (crop, hflip, hsv_jitter, jittered_size, letterbox_size, mixup, mosaic, mosaic_cut,
                                normalized_cxcywh, place, rand, random_hsv_gains, random_offset, resize_rgb, scale_boxes,
                                to_chw_float)
from utils.utils import cvtColor

JITTER = 0.3                    # aspect-ratio jitter of the random resize (upstream)
SCALE_RANGE = (0.25, 2.0)       # longer side over the input side, single-image samples (upstream)
MOSAIC_SCALE_RANGE = (0.4, 1.0)  # the same for each Mosaic tile (upstream)
FLIP_PROB = 0.5                 # horizontal flip probability
HSV_GAINS = (0.1, 0.7, 0.4)     # hue, saturation, value jitter amplitudes (upstream)

# Formats and PIL modes that OpenCV's 8-bit colour decode converts exactly as utils.utils.cvtColor does;
# the rest (16/32-bit, CMYK, GIF, ...) are decoded with PIL and cvtColor, so training sees what inference sees.
_OPENCV_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP"})
_OPENCV_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "1"})
# Size bits of the imread flags (IMREAD_REDUCED_COLOR_n = IMREAD_REDUCED_GRAYSCALE_n | IMREAD_COLOR).
_REDUCTION_FLAGS = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                    8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}     # JPEG start-of-frame markers
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])
_JPEG_MODES = {1: "L", 3: "RGB"}   # colour components -> PIL mode; CMYK (4) goes through PIL
_DECODES_RGB = hasattr(cv2, "IMREAD_COLOR_RGB")      # OpenCV >= 4.10 decodes to RGB directly
_COLOR_FLAG = cv2.IMREAD_COLOR_RGB if _DECODES_RGB else cv2.IMREAD_COLOR
_COUNTER_SLOTS = 64             # skip counters, one per worker (mod 64), so that workers' increments do not race


class UnreadableImageError(OSError):
    """An image file that is missing, empty or cannot be decoded."""


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise UnreadableImageError(f"cannot read image {path}: {err.strerror or err}") from None
    if not raw:
        raise UnreadableImageError(f"image file {path} is empty")
    return raw


def _jpeg_header(raw):
    """``((w, h), components)`` from a JPEG's start-of-frame segment, or None when ``raw`` is not a JPEG or
    its frame header is missing or unusual (not 8-bit). Skips the other segments by their lengths: much
    faster than a full header parse, which reads every quantisation table.
    """
    if raw[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 10 <= len(raw):
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF or marker in _STANDALONE_MARKERS:      # fill byte, or a marker without length
            pos += 1 if marker == 0xFF else 2
            continue
        if marker in _SOF_MARKERS:
            precision, h, w, components = struct.unpack_from(">BHHB", raw, pos + 4)
            return ((w, h), components) if precision == 8 and w and h else None
        pos += 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
    return None


def _peek(raw):
    """``(size, mode, format)`` from the file's header, or None when it is not an image format PIL knows."""
    jpeg = _jpeg_header(raw)
    if jpeg is not None and jpeg[1] in _JPEG_MODES:
        return jpeg[0], _JPEG_MODES[jpeg[1]], "JPEG"
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return image.size, image.mode, image.format
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _jpeg_reduction(image_size, target_size):
    """The largest JPEG decode reduction (8, 4, 2) that still leaves at least the target size, else 1."""
    (iw, ih), (nw, nh) = image_size, target_size
    return next((f for f in (8, 4, 2) if iw >= nw * f and ih >= nh * f), 1)


def _decode_opencv(raw, path, reduction=1):
    """uint8 RGB ``(h, w, 3)``; ``reduction`` > 1 decodes a JPEG directly at 1/reduction of its size."""
    flags = _COLOR_FLAG | _REDUCTION_FLAGS[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), flags)
    if image is None:
        raise UnreadableImageError(f"cannot decode image {path} (corrupt or not an image)")
    return image if _DECODES_RGB else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_pil(raw, path):
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return np.asarray(cvtColor(image))
    except (OSError, ValueError) as err:
        raise UnreadableImageError(f"cannot decode image {path}: {err}") from None


def load_resized(path, target_size):
    """Image file -> ``(uint8 RGB (nh, nw, 3), (iw, ih))`` with ``(nw, nh) = target_size((iw, ih))``.

    ``(iw, ih)`` is the stored size. Raises ``UnreadableImageError`` for missing, empty or corrupt files.
    """
    raw = _read_bytes(path)
    header = _peek(raw)
    if header is not None and header[2] in _OPENCV_FORMATS and header[1] in _OPENCV_MODES:
        image_size = header[0]
        new_size = target_size(image_size)
        reduction = _jpeg_reduction(image_size, new_size) if header[2] == "JPEG" else 1
        image = _decode_opencv(raw, path, reduction)
        expected = tuple(-(-side // reduction) for side in image_size)     # JPEG scaling rounds up
        if image.shape[1::-1] != expected:
            raise UnreadableImageError(f"image {path}: decoded size {image.shape[1]}x{image.shape[0]} disagrees "
                                       f"with the {image_size[0]}x{image_size[1]} its header gives")
    else:
        image = _decode_pil(raw, path) if header is not None else _decode_opencv(raw, path)
        image_size = (image.shape[1], image.shape[0])
        new_size = target_size(image_size)
    return resize_rgb(image, new_size), image_size


def _pack_annotations(annotation_lines, num_classes):
    """Parse all lines once into flat arrays: paths ``S`` bytes (n,), boxes ``(total, 5)``, starts ``(n + 1,)``.

    Flat arrays instead of per-line Python objects keep forked workers from copying the pages (reference
    counting writes to every object it touches).
    """
    paths, boxes = [], []
    for number, line in enumerate(annotation_lines, 1):
        try:
            path, line_boxes = parse_annotation_line(line)
        except ValueError as err:
            raise UserError(f"annotation line {number}: {err}") from None
        bad = line_boxes[:, 4] >= num_classes
        if bad.any():
            raise UserError(f"annotation line {number} ({path}): class id {int(line_boxes[bad, 4][0])} is not "
                             f"below num_classes={num_classes}")
        paths.append(path.encode("utf-8"))
        boxes.append(line_boxes)
    if not paths:
        raise UserError("the annotation list is empty: no images to load")
    starts = np.cumsum([0] + [len(b) for b in boxes])
    return np.array(paths, dtype=bytes), np.concatenate(boxes), starts


class YoloDataset(Dataset):
    """Training / validation samples ``(image float32 (3, H, W) in [0, 1] RGB, boxes float32 (n, 5))``,
    boxes as ``cx, cy, w, h`` over the input width / height and the class id.

    ``train=True``: upstream's augmentation (random scale and aspect, placement on grey, flip, HSV; Mosaic
    with ``mosaic_prob``, then MixUp with ``mixup_prob``, both only while ``epoch_now < epoch_length *
    special_aug_ratio``); ``scale_range`` (keyword-only) bounds the random rescale of single-image samples;
    ``min_visible`` (keyword-only) drops boxes that the augmentation crops to less than that fraction of their area;
    ``min_class_visible`` keeps those cropped below its fraction with class ``UNKNOWN_CLASS`` (no class target).
    ``crop_shape`` (keyword-only, training only): each sample, made at ``input_shape``, is cut to a random window
    of this ``(h, w)``, so objects keep the scale the whole ``input_shape`` image is detected at while a step costs
    the crop's pixels. ``train=False``: letterbox only. ``seed`` and ``rank`` (keyword-only) pick the
    random streams; ``set_epoch`` or assigning ``epoch_now`` re-seeds them. Unreadable images are replaced
    by random others: ``skipped`` counts the replacements and ``unreadable_paths()`` lists the files, in the
    main process too when DataLoader workers do the reading.
    """

    def __init__(self, annotation_lines, input_shape, num_classes, epoch_length, mosaic, mixup, mosaic_prob,
                 mixup_prob, train, special_aug_ratio=0.7, *, seed=11, rank=0, scale_range=SCALE_RANGE,
                 min_visible=0.0, min_class_visible=0.0, crop_shape=None):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) != 2 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be (height, width) in pixels, got {input_shape!r}")
        for name, p in (("mosaic_prob", mosaic_prob), ("mixup_prob", mixup_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        for name, fraction in (("min_visible", min_visible), ("min_class_visible", min_class_visible)):
            if not 0 <= fraction <= 1:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {fraction!r}")
        if int(seed) < 0 or int(rank) < 0:
            raise ValueError(f"seed and rank must be non-negative integers, got seed={seed}, rank={rank}")
        self.input_size = self.input_shape[::-1]          # (w, h), the order of the array functions
        self.crop_size = None if crop_shape is None or not train else tuple(int(s) for s in crop_shape)[::-1]
        if self.crop_size is not None and not (0 < self.crop_size[0] <= self.input_size[0]
                                               and 0 < self.crop_size[1] <= self.input_size[1]):
            raise ValueError(f"crop_shape must fit in input_shape {input_shape}, got {crop_shape!r}")
        self.num_classes = num_classes
        self.epoch_length = epoch_length
        self.mosaic, self.mixup = mosaic, mixup
        self.mosaic_prob, self.mixup_prob = mosaic_prob, mixup_prob
        self.train = train
        self.special_aug_ratio = special_aug_ratio
        self.scale_range = tuple(float(v) for v in scale_range)
        self.min_visible, self.min_class_visible = float(min_visible), float(min_class_visible)
        self.seed, self.rank = int(seed), int(rank)
        self._paths, self._boxes, self._box_starts = _pack_annotations(annotation_lines, num_classes)
        # Shared memory, so that the main process sees what the workers record and the workers see set_epoch.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._unreadable = torch.zeros(len(self._paths), dtype=torch.bool).share_memory_()
        self._skip_counts = torch.zeros(_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self._worker_slot = 0                               # 0: main process, 1 + id: DataLoader worker
        self._reseed()

    def __len__(self):
        return len(self._paths)

    @property
    def epoch_now(self):
        return int(self._epoch[0])

    @epoch_now.setter
    def epoch_now(self, epoch):
        self.set_epoch(epoch)

    def set_epoch(self, epoch):
        """Start epoch ``epoch``: its samples depend only on (seed, epoch, rank, worker) and the sampler."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self._epoch[0] = int(epoch)
        self._reseed()

    def seed_worker(self, worker_id, rank, seed):
        """Give this (worker's) copy its own stream ``(seed, epoch, rank, worker_id)``; see ``worker_init_fn``."""
        self.seed, self.rank = int(seed), int(rank)
        self._worker_slot = worker_id + 1
        self._reseed()

    def _sync_stream(self):
        """Re-seed where a worker started without ``worker_init_fn`` (it would repeat its siblings' draws),
        or when the main process started another epoch (a persistent worker learns of it only here)."""
        worker = get_worker_info()
        if worker is not None and self._worker_slot == 0:
            self.seed_worker(worker.id, self.rank, self.seed)
        elif self._rng_epoch != self.epoch_now:
            self._reseed()

    def _reseed(self):
        self._rng_epoch = self.epoch_now
        self.rng = np.random.default_rng([self.seed, self._rng_epoch, self.rank, self._worker_slot])

    @property
    def skipped(self):
        """How many samples replaced an unreadable image, over all processes."""
        return int(self._skip_counts.sum())

    def unreadable_paths(self):
        return [self._path(i) for i in torch.nonzero(self._unreadable).flatten().tolist()]

    def _path(self, index):
        return self._paths[index].decode("utf-8")

    def __getitem__(self, index):
        self._sync_stream()
        image, boxes = self._sample(index % len(self))
        if self.crop_size is not None:
            room = np.subtract(self.input_size, self.crop_size) + 1
            offset = (int(self.rng.integers(room[0])), int(self.rng.integers(room[1])))
            image, boxes = crop(image, boxes, offset, self.crop_size, self.min_visible, self.min_class_visible)
        return to_chw_float(image), normalized_cxcywh(boxes, self.crop_size or self.input_size)

    def _sample(self, index):
        """uint8 ``(h, w, 3)`` image and ``(n, 5)`` pixel ``x1, y1, x2, y2, class`` boxes of one sample."""
        if not self.train:
            return self._letterboxed(index)
        special_aug = self.epoch_now < self.epoch_length * self.special_aug_ratio
        if self.mosaic and rand(self.rng) < self.mosaic_prob and special_aug:
            image, boxes = self._mosaic(index)
            if self.mixup and rand(self.rng) < self.mixup_prob:
                image, boxes = mixup(image, boxes, *self._random_placed(self._random_index()))
            return image, boxes
        return self._random_placed(index)

    def _random_index(self):
        return int(self.rng.integers(len(self)))

    def _letterboxed(self, index):
        image, boxes = self._read(index, lambda size: letterbox_size(size, self.input_size))
        (nh, nw), (w, h) = image.shape[:2], self.input_size
        return place(image, boxes, (w - nw) // 2, (h - nh) // 2, self.input_size)

    def _random_placed(self, index):
        """Upstream's ``get_random_data``: random scale / aspect, flip, random placement on grey, HSV."""
        image, boxes = self._jittered_flipped(index, self.scale_range)
        offset = random_offset(self.rng, image.shape[1::-1], self.input_size)
        image, boxes = place(image, boxes, *offset, self.input_size, self.min_visible, self.min_class_visible)
        image = hsv_jitter(image, random_hsv_gains(self.rng, *HSV_GAINS))
        return image, boxes[self.rng.permutation(len(boxes))]

    def _mosaic(self, index):
        """Upstream's ``get_random_data_with_Mosaic``: this image and three random ones around a random cut."""
        indices = [index] + [self._random_index() for _ in range(3)]
        self.rng.shuffle(indices)
        cut = mosaic_cut(self.rng, self.input_size)
        tiles, tile_boxes = zip(*(self._jittered_flipped(i, MOSAIC_SCALE_RANGE) for i in indices))
        image, boxes = mosaic(tiles, tile_boxes, cut, self.input_size, self.min_visible, self.min_class_visible)
        image = hsv_jitter(image, random_hsv_gains(self.rng, *HSV_GAINS))
        return image, boxes[self.rng.permutation(len(boxes))]

    def _jittered_flipped(self, index, scale_range):
        """Image ``index`` at a random scale and aspect (upstream's), flipped with ``FLIP_PROB``."""
        draws = self.rng.random(3)         # drawn before reading, so an unreadable file shifts no later draw
        image, boxes = self._read(index, lambda size: jittered_size(size, self.input_size, JITTER, scale_range, draws))
        return hflip(image, boxes) if rand(self.rng) < FLIP_PROB else (image, boxes)

    def _read(self, index, target_size):
        """Image ``index`` resized to ``target_size((iw, ih))`` with its boxes scaled to match.

        An unreadable image is replaced by a random other one and counted, so that a deleted or corrupt
        file never stops training; known-unreadable files are skipped without another read.
        """
        while True:
            if not self._unreadable[index]:
                try:
                    image, (iw, ih) = load_resized(self._path(index), target_size)
                    boxes = self._boxes[self._box_starts[index]:self._box_starts[index + 1]]
                    return image, scale_boxes(boxes, image.shape[1] / iw, image.shape[0] / ih)
                except UnreadableImageError as err:
                    self._mark_unreadable(index, err)
            self._skip_counts[self._worker_slot % _COUNTER_SLOTS] += 1
            if bool(self._unreadable.all()):
                raise UserError(f"none of the {len(self)} images in the annotation list can be read "
                                   f"(e.g. {self._path(index)}); check the paths in the list")
            index = self._random_index()

    def _mark_unreadable(self, index, err):
        self._unreadable[index] = True
        warnings.warn(f"{err}; using a random other image instead (this file is skipped from now on)",
                      RuntimeWarning, stacklevel=2)


def yolo_dataset_collate(batch):
    """``[(image (3, H, W), boxes (n_i, 5))]`` -> ``(float32 tensor (B, 3, H, W), [float32 tensor (n_i, 5)])``."""
    images = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32) for image, _ in batch]))
    boxes = [torch.as_tensor(np.asarray(b, dtype=np.float32)).reshape(-1, 5) for _, b in batch]
    return images, boxes


def worker_init_fn(worker_id, rank=0, seed=11):
    """Upstream's name: pass ``functools.partial(worker_init_fn, rank=rank, seed=seed)`` to a DataLoader.

    Re-seeds the worker's copy of a ``YoloDataset`` from ``(seed, its epoch_now, rank, worker_id)`` (the
    ``seed`` and ``rank`` given here replace the dataset's in the worker), so that every worker draws its
    own augmentations and a run is repeatable; seeds Python's and NumPy's global RNGs the same way for
    any other code in the worker; and stops OpenCV from starting threads inside each worker.
    """
    info = get_worker_info()
    if info is None:
        raise RuntimeError("worker_init_fn runs inside DataLoader workers only (pass it as worker_init_fn=)")
    cv2.setNumThreads(0)
    dataset = info.dataset
    epoch = dataset.epoch_now if hasattr(dataset, "epoch_now") else 0
    sequence = np.random.SeedSequence([seed, epoch, rank, worker_id + 1])
    random.seed(int(sequence.generate_state(1)[0]))
    np.random.seed(sequence.generate_state(1))
    if hasattr(dataset, "seed_worker"):
        dataset.seed_worker(worker_id, rank=rank, seed=seed)
