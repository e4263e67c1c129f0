"""The one evaluation path: the in-training mAP equals get_map.py's for the same weights and split, ground truth
comes from the VOC XML (difficult objects, ids with spaces, <filename>), YOLO.detect equals the evaluation's
detections, and the letterbox choice travels with the weights' metadata."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import get_map
from nets.yolo import YoloBody
from utils.data.annotation import format_annotation_line
from utils.metrics.evaluation import (Decoding, detect_samples, detect_views, fused_net,
                                      samples_from_annotation_lines, samples_from_voc)
from utils.engine.run_metadata import read_metadata, write_metadata
from utils.data.training_lists import build_training_lists, split_image_sets
from utils.utils import get_anchors, get_classes
from yolo import YOLO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "VOCdevkit", "VOC2007")
CLASSES_PATH = os.path.join(ROOT, "model_data", "sample_classes.txt")
ANCHORS_PATH = os.path.join(ROOT, "model_data", "yolo_anchors.txt")
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
SCALE = ["--width_mult", "0.125", "--depth_mult", "0.33"]


def copy_sample_voc(root, count=12):
    """``count`` sample images as a VOC folder, every other one with a difficult object; its VOCdevkit path."""
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    ids = sorted(name[:-4] for name in os.listdir(os.path.join(SAMPLE, "Annotations")))[:count]
    for k, image_id in enumerate(ids):
        with open(os.path.join(SAMPLE, "Annotations", f"{image_id}.xml"), encoding="utf-8") as f:
            xml = f.read()
        if k % 2:
            xml = xml.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1)
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
        shutil.copy(os.path.join(SAMPLE, "JPEGImages", f"{image_id}.jpg"), voc / "JPEGImages" / f"{image_id}.jpg")
    return root / "VOCdevkit"


def rename_image(voc, old, new):
    """Give image ``old`` the id ``new`` everywhere: files, the XML's <filename>, the ImageSets lists."""
    folder = voc / "VOC2007"
    xml = (folder / "Annotations" / f"{old}.xml").read_text(encoding="utf-8")
    (folder / "Annotations" / f"{new}.xml").write_text(
        re.sub(r"<filename>.*?</filename>", f"<filename>{new}.jpg</filename>", xml), encoding="utf-8")
    os.remove(folder / "Annotations" / f"{old}.xml")
    os.rename(folder / "JPEGImages" / f"{old}.jpg", folder / "JPEGImages" / f"{new}.jpg")
    for image_set in (folder / "ImageSets" / "Main").iterdir():
        ids = image_set.read_text(encoding="utf-8").splitlines()
        image_set.write_text("".join(f"{new if i == old else i}\n" for i in ids), encoding="utf-8")


def detector_weights(path):
    """A tiny model whose heads, damped, lean to objectness 0.73 everywhere: untrained, it still puts boxes on
    some objects, and its scores still depend on the image through the damped weights."""
    torch.manual_seed(0)
    model = YoloBody(MASK, 4, width_mult=0.125, depth_mult=0.33)
    with torch.no_grad():
        for head in (model.yolo_head1, model.yolo_head2, model.yolo_head3):
            head[1].weight.mul_(0.3)
            bias = head[1].bias.view(3, 9)
            bias.zero_()
            bias[:, 4] = 1.0
    torch.save(model.state_dict(), path)
    return model


@pytest.fixture()
def voc_lists(tmp_path):
    voc = copy_sample_voc(tmp_path)
    split = split_image_sets(str(voc), trainval_percent=1.0, train_percent=0.5, seed=0)
    rename_image(voc, split["val"][0], f"{split['val'][0]} copy")          # an id with a space, in val
    build_training_lists(str(voc), CLASSES_PATH, lists_dir=str(tmp_path), out=io.StringIO())
    return voc


def test_in_training_map_equals_get_map(tmp_path, voc_lists):
    detector_weights(tmp_path / "start.pth")
    save = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "train.py", "--model_path", str(tmp_path / "start.pth"), *SCALE, "--input_shape", "[96, 96]",
         "--Freeze_Train", "False", "--UnFreeze_Epoch", "1", "--Unfreeze_batch_size", "2", "--num_workers", "0",
         "--optimizer_type", "adam", "--Init_lr", "1e-6", "--weight_decay", "0", "--mosaic", "False",
         "--train_annotation_path", str(tmp_path / "2007_train.txt"),
         "--val_annotation_path", str(tmp_path / "2007_val.txt"), "--save_dir", str(save)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = save / "last_epoch_weights.pth"
    trained = read_metadata(str(weights))
    assert trained["letterbox_image"] is True and trained["val_map50"] > 0.001

    argv = ["--model_path", str(weights), "--image_set", "val", "--VOCdevkit_path", str(voc_lists),
            "--map_out_path", str(tmp_path / "map_out"), "--device", "cpu"]
    get_map.main(get_map.settings(argv), given={"model_path", "image_set", "VOCdevkit_path", "map_out_path", "device"})
    with open(tmp_path / "map_out" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["map50"] == pytest.approx(trained["val_map50"], abs=1e-6)
    assert metrics["map50_95"] == pytest.approx(trained["val_map50_95"], abs=1e-6)
    assert metrics["best_f1"]["threshold"] == pytest.approx(trained["score_threshold"], abs=1e-6)
    # The val split has 6 images, one with a space in its id, and difficult objects that the training list left
    # out: both paths read them from the XML and ignore them the VOC way.
    assert metrics["counts"]["images"] == 6 and metrics["counts"]["difficult"] >= 2
    assert metrics["counts"]["detections"] > 100
    files = os.listdir(tmp_path / "map_out" / "detection-results")
    assert len(files) == 6 and any(" " in name for name in files)


def test_annotation_lines_take_voc_ground_truth_with_difficult(tmp_path, voc_lists):
    names, _ = get_classes(CLASSES_PATH)
    with open(tmp_path / "2007_val.txt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    from_lists = samples_from_annotation_lines(lines, names)
    from_voc, _ = samples_from_voc(str(voc_lists), "val", names)
    assert [s.image_id for s in from_lists] == [s.image_id for s in from_voc]
    for a, b in zip(from_lists, from_voc):
        np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    assert sum(int(s.ground_truth[:, 5].sum()) for s in from_lists) >= 2

    # Outside a VOC folder the list's own boxes are the ground truth (nothing difficult).
    image = tmp_path / "loose image.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(image)
    loose = samples_from_annotation_lines([format_annotation_line(image, [(1, 2, 30, 20, 3)])], names)
    assert loose[0].ground_truth.tolist() == [[1, 2, 30, 20, 3, 0]] and loose[0].image_path == str(image)


def test_yolo_detect_equals_the_evaluation_detections(tmp_path, voc_lists):
    model = detector_weights(tmp_path / "weights.pth")
    names, _ = get_classes(CLASSES_PATH)
    samples, _ = samples_from_voc(str(voc_lists), "val", names)
    yolo = YOLO(model_path=str(tmp_path / "weights.pth"), classes_path=CLASSES_PATH, anchors_path=ANCHORS_PATH,
                input_shape=[96, 96], confidence=0.05, nms_iou=0.5, device="cpu")
    anchors, _ = get_anchors(ANCHORS_PATH)
    decoding = Decoding(anchors, tuple(map(tuple, MASK)), (96, 96), True)
    batched = detect_samples(fused_net(model, "cpu"), samples, decoding, "cpu", confidence=0.05, nms_iou=0.5,
                             batch_size=1)
    for sample, expected in zip(samples, batched):
        boxes, scores, classes = yolo.detect(Image.open(sample.image_path))
        assert len(expected) > 0
        np.testing.assert_allclose(np.column_stack([boxes, scores, classes]), expected, rtol=1e-5, atol=1e-4)


def test_views_of_one_pass_equal_separate_passes(tmp_path, voc_lists):
    """detect_views: the model's detections, class-agnostic NMS and each level alone from one forward pass equal
    separate passes, a level's computed by a network that returns that level only, decoded with its anchors only."""
    model = detector_weights(tmp_path / "weights.pth")
    names, _ = get_classes(CLASSES_PATH)
    samples, _ = samples_from_voc(str(voc_lists), "val", names)
    anchors, _ = get_anchors(ANCHORS_PATH)
    decoding = Decoding(anchors, tuple(map(tuple, MASK)), (96, 96), True, (2.0, 1.5, 1.0))
    net = fused_net(model, "cpu")
    views = [(False, None), (True, None), (False, 0), (False, 1), (False, 2)]
    found = detect_views(net, samples, decoding, "cpu", views, confidence=0.05, nms_iou=0.5, batch_size=4)
    assert any(len(rows) for rows in found[(False, 2)])
    for agnostic in (False, True):
        expected = detect_samples(net, samples, decoding, "cpu", 0.05, 0.5, batch_size=3, nms_agnostic=agnostic)
        for got, want in zip(found[(agnostic, None)], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    for level, scale in enumerate((2.0, 1.5, 1.0)):
        alone = Decoding(anchors, (tuple(MASK[level]),), (96, 96), True, (scale,))
        expected = detect_samples(lambda images, level=level: [net(images)[level]], samples, alone, "cpu", 0.05, 0.5)
        for got, want in zip(found[(False, level)], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_letterbox_choice_comes_from_the_metadata_and_a_different_one_warns(tmp_path, capsys):
    detector_weights(tmp_path / "weights.pth")
    common = dict(model_path=str(tmp_path / "weights.pth"), classes_path=CLASSES_PATH, anchors_path=ANCHORS_PATH,
                  input_shape=[64, 64], device="cpu")
    assert YOLO(**common).letterbox_image is True                      # no metadata: training's choice
    write_metadata(str(tmp_path / "weights.pth"), {"letterbox_image": False, "resize": "opencv area/linear"})
    assert YOLO(**common).letterbox_image is False
    assert "letterbox_image" in capsys.readouterr().out                # says where the setting came from
    with pytest.warns(UserWarning, match="letterbox_image=True differs from the letterbox_image=False"):
        YOLO(**common, letterbox_image=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        YOLO(**common, letterbox_image=False)                            # the same choice: no warning
