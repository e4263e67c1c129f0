"""Focal-aware confidence: yolo.py's note when a user-set confidence hides what the calibrated threshold
of focal-loss weights finds, and get_map.py storing the validation best-F1 threshold in the sidecar."""
import json
import math
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import get_map
from nets.yolo import YoloBody
from utils.engine.run_metadata import read_metadata, write_metadata
from yolo import YOLO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHORS_PATH = os.path.join(ROOT, "model_data", "yolo_anchors.txt")
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
CLASSES = ["cat", "dog", "bird"]
# Heads with zero weights: every prediction scores sigmoid(OBJ_BIAS) * sigmoid(CLASS_BIAS), whatever the image.
OBJ_BIAS, CLASS_BIAS = -2.0, 0.0
SCORE = 1 / (1 + math.exp(-OBJ_BIAS)) / (1 + math.exp(-CLASS_BIAS))       # 0.0596
NOTE = re.compile(r"no boxes at confidence 0\.99, but (\d+) at the calibrated 0\.01 .*focal-loss training lowers "
                  r"objectness scores; drop --confidence")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids OpenMP spin-waiting on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def constant_score_weights(path):
    torch.manual_seed(0)
    model = YoloBody(MASK, len(CLASSES), width_mult=0.125, depth_mult=0.33)
    with torch.no_grad():
        for head in (model.yolo_head1, model.yolo_head2, model.yolo_head3):
            head[1].weight.zero_()
            bias = head[1].bias.view(3, 5 + len(CLASSES))
            bias.zero_()
            bias[:, 4] = OBJ_BIAS
            bias[:, 5] = CLASS_BIAS
            bias[:, 6:] = -4.0                                  # class 0 wins everywhere
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture()
def files(tmp_path):
    weights = constant_score_weights(tmp_path / "best_epoch_weights.pth")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(image)
    return {"weights": weights, "classes": str(tmp_path / "classes.txt"), "image": Image.open(image)}


def make_yolo(files, capsys, focal_loss=True, score_threshold=0.01, **settings):
    write_metadata(files["weights"], {"focal_loss": focal_loss, "score_threshold": score_threshold,
                                      "input_shape": [64, 64]})
    yolo = YOLO(model_path=files["weights"], classes_path=files["classes"], anchors_path=ANCHORS_PATH,
                nms_iou=0.3, device="cpu", **settings)
    capsys.readouterr()                                         # drop the settings table
    return yolo


def test_note_when_user_confidence_hides_calibrated_boxes(files, capsys):
    yolo = make_yolo(files, capsys, confidence=0.99)
    boxes, _, _ = yolo.detect(files["image"])
    assert len(boxes) == 0
    match = NOTE.search(capsys.readouterr().out)
    assert match, "expected the focal-loss confidence note"
    # The count it names is what the calibrated threshold really gives.
    yolo.confidence = 0.01
    assert int(match.group(1)) == len(yolo.detect(files["image"])[0]) > 0
    yolo.confidence = 0.99
    yolo.detect(files["image"])
    assert "calibrated" not in capsys.readouterr().out          # once per instance
    make_yolo(files, capsys, confidence=0.99).detect(files["image"])
    assert NOTE.search(capsys.readouterr().out)                 # a new instance says it again


@pytest.mark.parametrize("case", ["box survives", "bce weights", "calibrated finds none too", "adopted confidence"])
def test_no_note(files, capsys, case):
    settings = {"box survives": dict(confidence=SCORE - 0.01),
                "bce weights": dict(confidence=0.99, focal_loss=False),
                "calibrated finds none too": dict(confidence=0.99, score_threshold=SCORE + 0.01),
                "adopted confidence": dict()}[case]
    yolo = make_yolo(files, capsys, **settings)
    boxes, _, _ = yolo.detect(files["image"])
    assert (len(boxes) > 0) == (case in ("box survives", "adopted confidence"))
    assert "calibrated" not in capsys.readouterr().out


def write_voc(root, image_sets):
    """One 64x64 image with one cat, listed in each of ``image_sets``."""
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(voc / "JPEGImages" / "a.png")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><size><width>64</width><height>64</height><depth>3</depth></size><object><name>cat</name>"
        "<difficult>0</difficult><bndbox><xmin>20</xmin><ymin>24</ymin><xmax>44</xmax><ymax>40</ymax></bndbox>"
        "</object></annotation>")
    for name in image_sets:
        (voc / "ImageSets" / "Main" / f"{name}.txt").write_text("a\n")
    return str(root / "VOCdevkit")


@pytest.mark.parametrize("image_set", ["val", "test"])
def test_get_map_stores_threshold_only_for_val(files, tmp_path, capsys, image_set):
    voc = write_voc(tmp_path, ["val", "test"])
    before = {"focal_loss": True, "score_threshold": 0.5, "val_map50": 0.1, "input_shape": [64, 64], "epoch": 7}
    write_metadata(files["weights"], before)
    argv = ["--model_path", files["weights"], "--classes_path", files["classes"], "--anchors_path", ANCHORS_PATH,
            "--VOCdevkit_path", voc, "--map_out_path", str(tmp_path / "map_out"), "--image_set", image_set,
            "--calibrate", "True", "--device", "cpu"]
    get_map.main(get_map.settings(argv), given=get_map.command_line_names(argv))
    out = capsys.readouterr().out
    with open(tmp_path / "map_out" / "metrics.json") as f:
        best = json.load(f)["best_f1"]
    # Every box scores SCORE, so the best-F1 cut is SCORE itself.
    assert best["threshold"] == pytest.approx(SCORE, rel=1e-5)
    assert f"Best-F1 score threshold on '{image_set}': {best['threshold']:.4f}" in out
    after = read_metadata(files["weights"])
    if image_set == "val":
        assert after["score_threshold"] == best["threshold"] and after["val_f1"] == best["f1"]
        assert after["epoch"] == 7 and after["focal_loss"] is True and after["input_shape"] == [64, 64]
        assert "Stored in" in out
    else:
        assert {k: after[k] for k in before} == before
        assert out.count("would leak test labels") == 1


@pytest.mark.parametrize("extra, stores", [([], False), (["--image_set", "val"], True),
                                           (["--image_set", "val", "--calibrate", "False"], False)])
def test_evaluation_writes_the_metadata_only_when_asked(files, tmp_path, capsys, extra, stores):
    # The default image_set is test: a plain evaluation must leave the weights' metadata byte for byte as it was.
    voc = write_voc(tmp_path, ["val", "test"])
    write_metadata(files["weights"], {"score_threshold": 0.5, "input_shape": [64, 64]})
    sidecar = files["weights"][:-4] + ".json"
    with open(sidecar, "rb") as f:
        before = f.read()
    argv = ["--model_path", files["weights"], "--classes_path", files["classes"], "--anchors_path", ANCHORS_PATH,
            "--VOCdevkit_path", voc, "--map_out_path", str(tmp_path / "map_out"), "--device", "cpu", *extra]
    get_map.main(get_map.settings(argv), given=get_map.command_line_names(argv))
    out = capsys.readouterr().out
    with open(sidecar, "rb") as f:
        after = f.read()
    assert (after != before) == stores
    assert ("Stored in" in out) == stores and ("Not stored: evaluation leaves" in out) != stores


def test_get_map_without_sidecar_stores_nothing(files, tmp_path, capsys):
    voc = write_voc(tmp_path, ["val"])
    argv = ["--model_path", files["weights"], "--classes_path", files["classes"], "--anchors_path", ANCHORS_PATH,
            "--VOCdevkit_path", voc, "--map_out_path", str(tmp_path / "map_out"), "--image_set", "val",
            "--input_shape", "[64, 64]", "--calibrate", "True", "--device", "cpu"]
    get_map.main(get_map.settings(argv), given=get_map.command_line_names(argv))
    assert "best_epoch_weights.json does not exist" in capsys.readouterr().out
    assert read_metadata(files["weights"]) == {}


def test_model_scale_comes_from_metadata_when_not_given(files, capsys):
    # depth_mult 0.33 and 0.37 give the same block counts: the shapes alone cannot tell which one was
    # trained, the metadata can.
    write_metadata(files["weights"], {"width_mult": 0.125, "depth_mult": 0.33, "input_shape": [64, 64]})
    yolo = YOLO(model_path=files["weights"], classes_path=files["classes"], anchors_path=ANCHORS_PATH, device="cpu")
    assert (yolo.width_mult, yolo.depth_mult) == (0.125, 0.33)
    assert "width_mult, depth_mult" in capsys.readouterr().out
