"""Generate the small shapes dataset shipped in VOCdevkit/VOC2007, so a fresh clone trains offline.

Images of 224-384 px per side show 1-5 filled shapes (circle, square, triangle, star) of random
colour, size 15-50% of the shorter side, rotation and mild stretch, on varied backgrounds
(gradients, smooth colour noise, stripes, checkers, flat noise) with clutter that is not an object
(lines, arcs, scribbles, thin bars, irregular blobs), so a detector has to learn the shapes
rather than "anything non-flat". Objects overlap little and contrast with what lies under them.
Some images also get a tiny shape marked ``difficult``.

Image ``i`` depends only on ``(seed, i)``: the same seed regenerates byte-identical files, and
one image can be regenerated on its own (``sample_files``). Writes VOC XML + JPEG files, the
classes file and the ImageSets split (voc_annotation.py's defaults). A larger test set of the same
distribution: ``--first_image 200 --num_images 500 --trainval_percent 0 --out <folder>``.
"""
import io
import os
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

import voc_annotation  # noqa: E402
from utils.atomic import atomic_write, atomic_write_lines  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.errors import UserError, run_entry  # noqa: E402

out = 'VOCdevkit'                                 # folder that receives VOC2007/{Annotations,JPEGImages,ImageSets/Main}
num_images = 200                                  # number of images to generate
first_image = 0                                   # index of the first; 200 and up: images the shipped set lacks
seed = 0                                          # image i is drawn from the random stream (seed, i)
trainval_percent = voc_annotation.trainval_percent  # share of the images in trainval; 0: all test (a held-out set)
classes_path = 'model_data/sample_classes.txt'    # where the class names are written

_CLASS_NAMES = ("circle", "square", "triangle", "star")
_IMAGE_SIDE = (224, 384)        # range of image width and height, pixels
_OBJECT_SCALE = (0.15, 0.5)     # object size as a fraction of the shorter image side (log-uniform)
_DIFFICULT_SCALE = (0.03, 0.045)
_DIFFICULT_PROBABILITY = 0.12   # chance that an image gets one extra tiny, difficult object
_MAX_OBJECTS = 5
_MIN_CONTRAST = 100.0           # RGB distance between an object and the mean colour under it
_MAX_IOU, _MAX_COVER = 0.1, 0.2  # overlap limits: IoU, and intersection over the smaller box
_JPEG_QUALITY = (72, 90)


def _unit_polygon(class_name):
    """Outline ``(m, 2)`` of a shape of radius about 1 around the origin."""
    if class_name == "circle":
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if class_name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / np.sqrt(2)
    if class_name == "triangle":
        angles = np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    angles = np.pi / 2 + np.pi / 5 * np.arange(10)  # star: 5 outer points, 5 inner
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def shape_polygon(rng, class_name, size):
    """A rotated, mildly stretched shape outline ``(m, 2)`` whose bounding box's longer side is ``size``."""
    points = _unit_polygon(class_name) * [1.0, rng.uniform(0.8, 1.25)]
    max_angle = 20 if class_name == "square" else 180  # squares stay square-looking, not diamonds
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = points @ rotation.T
    points -= (points.min(axis=0) + points.max(axis=0)) / 2
    return points * (size / (points.max(axis=0) - points.min(axis=0)).max())


def _colour(rng):
    return rng.uniform(0, 255, 3)


def _near(rng, colour, spread):
    return np.clip(colour + rng.uniform(-spread, spread, 3), 0, 255)


def _coords(width, height, rng):
    """Pixel coordinates projected on a random direction, scaled to [0, 1]: ``(h, w)``."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    return (t - t.min()) / max(float(t.max() - t.min()), 1e-6)


def gradient_background(rng, width, height):
    start, end = _colour(rng), _colour(rng)
    return start + _coords(width, height, rng)[..., None] * (end - start)


def noise_background(rng, width, height):
    """Smooth colour noise: a coarse random grid upsampled with cubic interpolation."""
    grid = rng.uniform(-1, 1, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)).astype(np.float32)
    smooth = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return _colour(rng) + smooth * rng.uniform(30, 90)


def stripes_background(rng, width, height):
    period = rng.uniform(6, 40)
    phase = _coords(width, height, rng) * max(width, height) * 1.5 / period * 2 * np.pi
    wave = np.sin(phase) if rng.random() < 0.5 else np.sign(np.sin(phase))
    base = _colour(rng)
    other = _near(rng, base, 70)
    return base + (wave[..., None] + 1) / 2 * (other - base)


def checker_background(rng, width, height):
    cell = int(rng.integers(8, 40))
    yy, xx = np.mgrid[0:height, 0:width]
    board = ((yy // cell + xx // cell) % 2).astype(np.float32)
    base = _colour(rng)
    return base + board[..., None] * (_near(rng, base, 60) - base)


def flat_noise_background(rng, width, height):
    return _colour(rng) + rng.normal(0, rng.uniform(4, 12), (height, width, 3))


_BACKGROUNDS = (gradient_background, noise_background, stripes_background, checker_background, flat_noise_background)


def _random_points(rng, width, height, n):
    return np.stack([rng.uniform(0, width, n), rng.uniform(0, height, n)], axis=1)


def draw_clutter(rng, image):
    """Draw 2-10 non-object marks (lines, arcs, scribbles, thin bars, irregular blobs) in place."""
    height, width = image.shape[:2]
    side = min(width, height)
    for _ in range(int(rng.integers(2, 11))):
        colour = tuple(float(c) for c in _colour(rng))
        thickness = int(rng.integers(1, 4))
        kind = int(rng.integers(5))
        if kind == 0:
            p = np.round(_random_points(rng, width, height, 2)).astype(np.int32)
            cv2.line(image, tuple(map(int, p[0])), tuple(map(int, p[1])), colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            centre = tuple(map(int, _random_points(rng, width, height, 1)[0]))
            axes = tuple(int(a) for a in rng.uniform(0.05, 0.3, 2) * side)
            start = float(rng.uniform(0, 360))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), start, start + float(rng.uniform(60, 240)),
                        colour, thickness, cv2.LINE_AA)
        elif kind == 2:
            walk = _random_points(rng, width, height, 1) + np.cumsum(rng.normal(0, 0.08 * side, (5, 2)), axis=0)
            cv2.polylines(image, [np.round(walk).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
        elif kind == 3:
            length = rng.uniform(0.1, 0.4) * side
            bar = ((float(rng.uniform(0, width)), float(rng.uniform(0, height))),
                   (float(length), float(length / rng.uniform(5, 12))), float(rng.uniform(0, 180)))
            cv2.fillPoly(image, [np.round(cv2.boxPoints(bar)).astype(np.int32)], colour, cv2.LINE_AA)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(7, 12))))
            radii = rng.uniform(0.4, 1.0, len(angles)) * rng.uniform(0.03, 0.08) * side
            blob = _random_points(rng, width, height, 1) + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
            cv2.fillPoly(image, [np.round(blob).astype(np.int32)], colour, cv2.LINE_AA)


def _overlaps(box, boxes):
    """Whether ``box`` (x1, y1, x2, y2) overlaps any of ``boxes`` ``(n, 4)`` beyond the limits."""
    if not boxes:
        return False
    others = np.array(boxes, dtype=np.float64)
    wh = np.clip(np.minimum(others[:, 2:], box[2:]) - np.maximum(others[:, :2], box[:2]), 0, None)
    inter = wh.prod(axis=1)
    areas = (others[:, 2:] - others[:, :2]).prod(axis=1)
    area = np.prod(box[2:] - box[:2])
    iou = inter / (areas + area - inter)
    return bool((iou > _MAX_IOU).any() or (inter / np.minimum(areas, area) > _MAX_COVER).any())


def _object_colour(rng, under):
    """A random colour at least _MIN_CONTRAST from the mean colour ``under`` the object."""
    for _ in range(30):
        colour = _colour(rng)
        if np.linalg.norm(colour - under) >= _MIN_CONTRAST:
            return colour
    return np.where(under < 128, 255.0, 0.0)  # the opposite corner of the RGB cube is always far enough


def place_object(rng, image, class_name, scale_range, boxes):
    """Draw one shape where it overlaps ``boxes`` (pixel extents, appended to) little.

    Returns its VOC box (1-based, inclusive corners) or None when no free place was found.
    """
    height, width = image.shape[:2]
    low, high = np.log(np.array(scale_range) * min(width, height))
    for _ in range(40):
        polygon = shape_polygon(rng, class_name, np.exp(rng.uniform(low, high)))
        lo, hi = polygon.min(axis=0), polygon.max(axis=0)
        centre = rng.uniform(1 - lo, [width - 1, height - 1] - hi)
        if not _overlaps(np.concatenate([centre + lo, centre + hi]), boxes):
            break
    else:
        return None
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round((polygon + centre) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    ys, xs = np.nonzero(mask >= 128)  # the visible extent; anti-aliased fringe pixels below half do not count
    if len(xs) == 0:
        return None
    alpha = mask[..., None].astype(np.float32) / 255  # (h, w, 1)
    colour = _object_colour(rng, image[mask >= 128].mean(axis=0))
    shading = 1 + rng.uniform(-0.15, 0.15) * (_coords(width, height, rng)[..., None] - 0.5)  # mild light falloff
    image[:] = image * (1 - alpha) + np.clip(colour * shading, 0, 255) * alpha
    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return [int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1]


def render_sample(index, seed):
    """Image ``index`` of the set: ``(RGB uint8 (h, w, 3), [(class name, VOC box, difficult)], JPEG quality)``."""
    rng = np.random.default_rng([seed, index])
    width, height = (int(v) for v in rng.integers(_IMAGE_SIDE[0], _IMAGE_SIDE[1] + 1, 2))
    background = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))](rng, width, height)
    image = np.clip(background, 0, 255).astype(np.uint8)
    draw_clutter(rng, image)
    image = image.astype(np.float32)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, _MAX_OBJECTS + 1))):
        name = _CLASS_NAMES[int(rng.integers(len(_CLASS_NAMES)))]
        box = place_object(rng, image, name, _OBJECT_SCALE, boxes)
        if box:
            objects.append((name, box, False))
    if rng.random() < _DIFFICULT_PROBABILITY:
        name = _CLASS_NAMES[int(rng.integers(len(_CLASS_NAMES)))]
        box = place_object(rng, image, name, _DIFFICULT_SCALE, boxes)
        if box:
            objects.append((name, box, True))
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.0))
    image += rng.normal(0, rng.uniform(1, 5), image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), objects, int(rng.integers(*_JPEG_QUALITY))


def image_id(index):
    return f"{index + 1:06d}"


def voc_xml(image_id_, width, height, objects):
    """VOC annotation text for one image."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id_}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "yolov4-pytorch generated shapes"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, box, difficult in objects:
        obj = ET.SubElement(root, "object")
        for tag, value in (("name", name), ("pose", "Unspecified"), ("truncated", "0"),
                           ("difficult", str(int(difficult)))):
            ET.SubElement(obj, tag).text = value
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def sample_files(index, seed):
    """``(id, JPEG bytes, XML text)`` of image ``index``."""
    image, objects, quality = render_sample(index, seed)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    height, width = image.shape[:2]
    return image_id(index), buffer.getvalue(), voc_xml(image_id(index), width, height, objects)


def _check_output_folder(xml_dir, ids):
    """Refuse to mix with another dataset: the folder may only hold files this run (re)writes."""
    if os.path.isdir(xml_dir):
        foreign = sorted(set(name[:-4] for name in os.listdir(xml_dir) if name.endswith(".xml")) - set(ids))
        if foreign:
            raise UserError(f"{xml_dir} holds other annotations ({', '.join(foreign[:3])}, ...); "
                             f"choose an empty --out or delete them first")


def write_dataset(out, num_images, seed, classes_path, first_image=0, trainval_percent=voc_annotation.trainval_percent):
    """Images ``first_image ... first_image + num_images - 1`` of stream ``seed`` as a VOC folder, split with
    voc_annotation's seeded split. The shipped set is images 0-199, so ``first_image 200`` with
    ``trainval_percent 0`` gives a test set of the same distribution that no shipped image is part of."""
    if num_images < 1 or first_image < 0:
        raise UserError(f"num_images must be at least 1 and first_image at least 0, got {num_images} and "
                        f"{first_image}")
    if not 0 <= trainval_percent <= 1:   # checked before any file is written
        raise UserError(f"trainval_percent must be within [0, 1], got {trainval_percent}")
    indices = range(first_image, first_image + num_images)
    voc_dir = os.path.join(out, "VOC2007")
    xml_dir, jpeg_dir = os.path.join(voc_dir, "Annotations"), os.path.join(voc_dir, "JPEGImages")
    _check_output_folder(xml_dir, [image_id(i) for i in indices])
    os.makedirs(xml_dir, exist_ok=True)
    os.makedirs(jpeg_dir, exist_ok=True)
    for index in indices:
        id_, jpeg, xml = sample_files(index, seed)
        atomic_write(os.path.join(jpeg_dir, f"{id_}.jpg"), jpeg)
        atomic_write(os.path.join(xml_dir, f"{id_}.xml"), xml)
    atomic_write_lines(classes_path, _CLASS_NAMES)
    split = voc_annotation.split_image_sets(out, trainval_percent, voc_annotation.train_percent, voc_annotation.seed)
    print(f"wrote {num_images} images to {voc_dir} and {classes_path}; "
          + ", ".join(f"{name}: {len(ids)}" for name, ids in split.items()))


if __name__ == "__main__":
    config = resolve_config(globals(), sys.argv[1:], __file__)
    run_entry(write_dataset, config["out"], config["num_images"], config["seed"], config["classes_path"],
              config["first_image"], config["trainval_percent"])
