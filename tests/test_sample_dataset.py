"""The shipped sample dataset (VOCdevkit/VOC2007) is complete, consistent, small and reproducible."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

import voc_annotation
from tools.make_sample_dataset import sample_files, write_dataset
from utils.errors import UserError
from utils.data.voc import parse_voc_xml
from utils.utils import get_classes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOC = os.path.join(ROOT, "VOCdevkit", "VOC2007")
CLASSES_PATH = os.path.join(ROOT, "model_data", "sample_classes.txt")
SEED = 0  # the seed the shipped files were generated with (the script's default)


def _image_set(name):
    with open(os.path.join(VOC, "ImageSets", "Main", f"{name}.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def test_split_is_complete_and_disjoint():
    xml_ids = sorted(name[:-4] for name in os.listdir(os.path.join(VOC, "Annotations")))
    trainval, train, val, test = (_image_set(name) for name in ("trainval", "train", "val", "test"))
    assert len(xml_ids) == 200
    assert (len(trainval), len(train), len(val), len(test)) == (180, 162, 18, 20)
    assert sorted(train + val) == sorted(trainval) and sorted(trainval + test) == xml_ids


def test_every_image_and_xml_is_consistent():
    class_names, _ = get_classes(CLASSES_PATH)
    n_difficult = 0
    for image_id in _image_set("trainval") + _image_set("test"):
        annotation = parse_voc_xml(os.path.join(VOC, "Annotations", f"{image_id}.xml"), class_names)
        assert annotation.ok and not annotation.problems, annotation.problems
        assert annotation.filename == f"{image_id}.jpg"
        with Image.open(os.path.join(VOC, "JPEGImages", annotation.filename)) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == annotation.size
        width, height = annotation.size
        assert 224 <= width <= 384 and 224 <= height <= 384
        boxes = annotation.boxes
        assert (boxes[:, :2] >= 1).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert 1 <= int((~annotation.difficult).sum()) <= 5
        n_difficult += int(annotation.difficult.sum())
    assert 3 <= n_difficult <= 40


def test_total_size_is_under_10_mb():
    total = sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(VOC) for name in names)
    assert total < 10 * 1024 * 1024


def test_regenerating_an_image_gives_identical_bytes():
    for index in (0, 57):
        image_id, jpeg, xml = sample_files(index, SEED)
        with open(os.path.join(VOC, "JPEGImages", f"{image_id}.jpg"), "rb") as f:
            assert f.read() == jpeg
        with open(os.path.join(VOC, "Annotations", f"{image_id}.xml"), encoding="utf-8") as f:
            assert f.read() == xml
    assert sample_files(3, SEED + 1)[1] != sample_files(3, SEED)[1]


def _segmented_extent(pixels, box, margin=4):
    """Extent (0-based inclusive l, t, r, b) of the blob at the box centre, found without the generator:
    pixels nearer the centre colour than the median colour of a ring around the box, then the
    8-connected component that holds the centre."""
    height, width = pixels.shape[:2]
    l, t, r, b = (int(v) for v in box - [1, 1, 1, 1])  # VOC corners are 1-based and inclusive
    left, top = max(l - margin, 0), max(t - margin, 0)
    window = pixels[top:min(b + margin, height - 1) + 1, left:min(r + margin, width - 1) + 1]
    cy, cx = (t + b) // 2 - top, (l + r) // 2 - left
    centre = window[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(axis=0)
    ring = np.ones(window.shape[:2], bool)
    ring[t - top:b - top + 1, l - left:r - left + 1] = False
    background = np.median(window[ring], axis=0)
    like = np.linalg.norm(window - centre, axis=-1) < np.linalg.norm(window - background, axis=-1)
    _, labels = cv2.connectedComponents(like.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(labels == labels[cy, cx])
    return np.array([xs.min() + left, ys.min() + top, xs.max() + left, ys.max() + top]), np.array([l, t, r, b])


def test_boxes_are_tight_around_the_drawn_shapes():
    errors = []
    for image_id in _image_set("trainval")[:40]:
        annotation = parse_voc_xml(os.path.join(VOC, "Annotations", f"{image_id}.xml"))
        pixels = np.asarray(Image.open(os.path.join(VOC, "JPEGImages", f"{image_id}.jpg")), dtype=np.float32)
        for box in annotation.boxes[~annotation.difficult]:
            found, expected = _segmented_extent(pixels, box)
            errors.append(found - expected)
    errors = np.array(errors)  # (n, 4) signed pixel errors per side
    # The rest leaked into clutter or background of a similar colour (errors of +-4 = the search margin),
    # or lost a thin star tip to JPEG; a wrong box would be off on most shapes, not on some.
    close = np.abs(errors).max(axis=1) <= 2
    assert close.mean() > 0.6
    assert (np.abs(errors[close].mean(axis=0)) < 0.6).all()  # no systematic off-by-one on any side


def test_conversion_of_the_sample_is_clean(tmp_path, capsys):
    written = voc_annotation.build_training_lists(os.path.join(ROOT, "VOCdevkit"), CLASSES_PATH,
                                                  [("2007", "train"), ("2007", "val")], str(tmp_path))
    text = capsys.readouterr().out
    assert list(written.values()) == [162, 18]
    assert "problem" not in text and "Skipped difficult objects" in text


def test_a_held_out_set_continues_the_stream_and_is_all_test(tmp_path):
    out = tmp_path / "holdout"
    write_dataset(str(out), 3, SEED, str(tmp_path / "classes.txt"), first_image=200, trainval_percent=0)
    main = out / "VOC2007" / "ImageSets" / "Main"
    assert (main / "test.txt").read_text().split() == ["000201", "000202", "000203"]
    assert (main / "trainval.txt").read_text().split() == []
    image_id, jpeg, xml = sample_files(201, SEED)
    assert (out / "VOC2007" / "JPEGImages" / f"{image_id}.jpg").read_bytes() == jpeg
    assert (out / "VOC2007" / "Annotations" / f"{image_id}.xml").read_text(encoding="utf-8") == xml
    # none of them is a shipped image: the shipped set is images 0-199 (ids 000001-000200)
    assert sorted(os.listdir(os.path.join(VOC, "Annotations")))[-1] == "000200.xml"


def test_an_empty_request_is_refused(tmp_path):
    with pytest.raises(UserError, match="num_images"):
        write_dataset(str(tmp_path / "none"), 0, SEED, str(tmp_path / "classes.txt"))
    with pytest.raises(UserError, match="trainval_percent"):
        write_dataset(str(tmp_path / "none"), 1, SEED, str(tmp_path / "classes.txt"), trainval_percent=2)
    assert not (tmp_path / "none").exists()
