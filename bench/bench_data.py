"""Samples/s of the training YoloDataset (Mosaic always, MixUp half the time) in one process, side by side
with a compact PIL reference of the same pipeline as upstream writes it (PIL bicubic resize and paste,
HSV through cv2 LUTs split per channel, float64 Mosaic canvas, float32 MixUp).

Writes its own seeded VOC-like JPEGs (textured, about 500x375, a few boxes each) to a temporary folder.
Rounds of both pipelines alternate and the best round of each is reported, to damp a shared machine's noise.
Usage: python bench/bench_data.py [--images 64] [--size 416] [--rounds 3] [--samples 96] [--cv2_threads 0]
"""
import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.data.annotation import format_annotation_line, parse_annotation_line  # noqa: E402
from utils.data.dataloader import YoloDataset  # noqa: E402
from utils.utils import cvtColor  # noqa: E402


def make_image(rng, width, height):
    """A smooth random colour field plus fine noise and a few solid shapes; returns (uint8 RGB, boxes)."""
    field = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(field + rng.normal(0, 18, (height, width, 3)), 0, 255).astype(np.uint8)
    boxes = []
    for _ in range(rng.integers(1, 5)):
        bw, bh = rng.integers(30, width // 2), rng.integers(30, height // 2)
        x1, y1 = rng.integers(0, width - bw), rng.integers(0, height - bh)
        image[y1:y1 + bh, x1:x1 + bw] = rng.integers(0, 256, 3)
        boxes.append((x1, y1, x1 + bw, y1 + bh, rng.integers(0, 20)))
    return image, boxes


def make_dataset(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        image, boxes = make_image(rng, int(rng.integers(440, 501)), int(rng.integers(333, 376)))
        path = os.path.join(folder, f"{i:04d}.jpg")
        Image.fromarray(image).save(path, quality=90)
        lines.append(format_annotation_line(path, boxes))
    return lines


class PilReference:
    """Upstream's get_random_data / Mosaic / MixUp on PIL images, for the side-by-side throughput."""

    def __init__(self, lines, size, seed=0):
        self.samples = [parse_annotation_line(line) for line in lines]
        self.w = self.h = size
        self.rng = np.random.default_rng(seed)

    def rand(self, a=0.0, b=1.0):
        return self.rng.random() * (b - a) + a

    def resized(self, index, scale_range):
        path, box = self.samples[index]
        image = cvtColor(Image.open(path))
        iw, ih = image.size
        new_ar = iw / ih * self.rand(0.7, 1.3) / self.rand(0.7, 1.3)
        scale = self.rand(*scale_range)
        if new_ar < 1:
            nh = int(scale * self.h)
            nw = int(nh * new_ar)
        else:
            nw = int(scale * self.w)
            nh = int(nw / new_ar)
        box = box.copy()
        box[:, [0, 2]] *= nw / iw
        box[:, [1, 3]] *= nh / ih
        return image.resize((nw, nh), Image.BICUBIC), box

    def hsv(self, image_data):
        r = self.rng.uniform(-1, 1, 3) * [0.1, 0.7, 0.4] + 1
        hue, sat, val = cv2.split(cv2.cvtColor(image_data, cv2.COLOR_RGB2HSV))
        x = np.arange(0, 256, dtype=r.dtype)
        luts = ((x * r[0]) % 180, np.clip(x * r[1], 0, 255), np.clip(x * r[2], 0, 255))
        channels = [cv2.LUT(c, lut.astype(np.uint8)) for c, lut in zip((hue, sat, val), luts)]
        return cv2.cvtColor(cv2.merge(channels), cv2.COLOR_HSV2RGB)

    def clip(self, box, x0=0, y0=0, x1=None, y1=None):
        box[:, [0, 2]] = box[:, [0, 2]].clip(x0, self.w if x1 is None else x1)
        box[:, [1, 3]] = box[:, [1, 3]].clip(y0, self.h if y1 is None else y1)
        return box[(box[:, 2] - box[:, 0] > 1) & (box[:, 3] - box[:, 1] > 1)]

    def random_data(self, index):
        image, box = self.resized(index, (0.25, 2))
        nw, nh = image.size
        dx, dy = int(self.rand(0, self.w - nw)), int(self.rand(0, self.h - nh))
        canvas = Image.new("RGB", (self.w, self.h), (128, 128, 128))
        canvas.paste(image, (dx, dy))
        box[:, [0, 2]] += dx
        box[:, [1, 3]] += dy
        if self.rand() < 0.5:
            canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)
            box[:, [0, 2]] = self.w - box[:, [2, 0]]
        return self.hsv(np.array(canvas, np.uint8)), self.clip(box)

    def mosaic(self, index):
        indices = [index] + list(self.rng.integers(len(self.samples), size=3))
        cutx, cuty = int(self.w * self.rand(0.3, 0.7)), int(self.h * self.rand(0.3, 0.7))
        new_image, boxes = np.zeros([self.h, self.w, 3]), []
        for q, i in enumerate(indices):
            image, box = self.resized(i, (0.4, 1))
            if self.rand() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
                box[:, [0, 2]] = image.size[0] - box[:, [2, 0]]
            dx = cutx - image.size[0] if q in (0, 1) else cutx
            dy = cuty - image.size[1] if q in (0, 3) else cuty
            canvas = Image.new("RGB", (self.w, self.h), (128, 128, 128))
            canvas.paste(image, (dx, dy))
            region = [(0, 0, cutx, cuty), (0, cuty, cutx, self.h), (cutx, cuty, self.w, self.h),
                      (cutx, 0, self.w, cuty)][q]
            x0, y0, x1, y1 = region
            new_image[y0:y1, x0:x1] = np.array(canvas)[y0:y1, x0:x1]
            box[:, [0, 2]] += dx
            box[:, [1, 3]] += dy
            boxes.append(self.clip(box, *region))
        return self.hsv(np.array(new_image, np.uint8)), np.concatenate(boxes)

    def __getitem__(self, index):
        image, box = self.mosaic(index)
        if self.rand() < 0.5:
            image_2, box_2 = self.random_data(int(self.rng.integers(len(self.samples))))
            image = np.array(image, np.float32) * 0.5 + np.array(image_2, np.float32) * 0.5
            box = np.concatenate([box, box_2])
        return np.transpose(np.array(image, dtype=np.float32) / 255.0, (2, 0, 1)), box


def samples_per_second(dataset, count, length):
    start = time.perf_counter()
    for i in range(count):
        dataset[i % length]
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=96, help="samples per round and pipeline")
    parser.add_argument("--cv2_threads", type=int, default=0, help="0 = no OpenCV threads, as in DataLoader workers")
    args = parser.parse_args()
    cv2.setNumThreads(args.cv2_threads)

    with tempfile.TemporaryDirectory() as folder:
        lines = make_dataset(folder, args.images)
        ours = YoloDataset(lines, (args.size, args.size), 20, epoch_length=100, mosaic=True, mixup=True,
                           mosaic_prob=1.0, mixup_prob=0.5, train=True)
        reference = PilReference(lines, args.size)
        for dataset in (ours, reference):
            samples_per_second(dataset, 8, args.images)     # warm caches and lazy imports
        rates = {"opencv": [], "pil": []}
        for _ in range(args.rounds):
            rates["opencv"].append(samples_per_second(ours, args.samples, args.images))
            rates["pil"].append(samples_per_second(reference, args.samples, args.images))

    best = {name: max(r) for name, r in rates.items()}
    print(f"train samples at {args.size}px, mosaic_prob 1.0, mixup_prob 0.5, {args.images} generated JPEGs, "
          f"one process, cv2.setNumThreads({args.cv2_threads}), best of {args.rounds} rounds x {args.samples}:")
    print(f"  YoloDataset (OpenCV)     {best['opencv']:7.1f} samples/s  (rounds: "
          f"{', '.join(f'{r:.1f}' for r in rates['opencv'])})")
    print(f"  PIL reference (upstream) {best['pil']:7.1f} samples/s  (rounds: "
          f"{', '.join(f'{r:.1f}' for r in rates['pil'])})")
    print(f"  ratio                    {best['opencv'] / best['pil']:7.2f}x")


if __name__ == "__main__":
    main()
