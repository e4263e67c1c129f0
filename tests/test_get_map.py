"""get_map.py on a tiny generated VOC dataset: the map_out files, the report, and mAP 1.0 when the
ground truth itself is fed back as detections."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import get_map
from utils.metrics.evaluation import samples_from_voc, score, score_detections
from test_predict import ANCHORS_PATH, ROOT, randomize_batchnorm, small_model

CLASSES = ["cat", "dog", "bird"]
# id -> (width, height, [(name, xmin, ymin, xmax, ymax, difficult)])
DATASET = {
    "img_a": (120, 90, [("cat", 10, 12, 60, 70, 0), ("dog", 70, 20, 110, 80, 0)]),
    "img_b": (96, 128, [("bird", 5, 5, 40, 50, 0), ("cat", 30, 60, 90, 120, 1), ("horse", 1, 1, 20, 20, 0)]),
    "img_c": (64, 64, [("dog", 8, 8, 56, 40, 0)]),
}


def write_voc(root):
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(7)
    for image_id, (width, height, objects) in DATASET.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        xml_objects = "".join(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for name, x1, y1, x2, y2, difficult in objects)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{xml_objects}</annotation>")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(DATASET) + "\n")
    return root / "VOCdevkit"


@pytest.fixture()
def dataset(tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {"voc": str(write_voc(tmp_path)), "classes": str(tmp_path / "classes.txt"), "out": str(tmp_path / "map_out")}


def test_full_run_writes_map_out_and_report(dataset, tmp_path):
    torch.save(randomize_batchnorm(small_model()).state_dict(), tmp_path / "weights.pth")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "get_map.py"), "--model_path", str(tmp_path / "weights.pth"),
         "--classes_path", dataset["classes"], "--anchors_path", ANCHORS_PATH, "--input_shape", "[64, 64]",
         "--VOCdevkit_path", dataset["voc"], "--map_out_path", dataset["out"], "--map_vis", "True", "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mAP@0.5" in result.stdout
    out = dataset["out"]
    assert sorted(os.listdir(os.path.join(out, "detection-results"))) == ["img_a.txt", "img_b.txt", "img_c.txt"]
    with open(os.path.join(out, "ground-truth", "img_b.txt")) as f:
        assert f.read().splitlines() == ["bird 5 5 40 50", "cat 30 60 90 120 difficult"]   # horse is not a class
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert set(metrics["classes"]) == set(CLASSES)
    assert metrics["counts"] == {"images": 3, "ground_truths": 4, "difficult": 1,
                                 "detections": sum(v["num_det"] for v in metrics["classes"].values())}
    assert 0 <= metrics["map50"] <= 1 and 0 <= metrics["map50_95"] <= metrics["map50"] + 1e-12
    pngs = [os.path.join(out, "results", name) for name in ("ap_bars.png", "confusion_matrix.png")]
    pngs += [os.path.join(out, "results", "pr", f"pr_{name}.png") for name in CLASSES]
    pngs += [os.path.join(out, "images-optional", f"{image_id}.png") for image_id in DATASET]
    for path in pngs:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 0


def test_nms_across_classes_reaches_the_written_detections(dataset, tmp_path):
    """A random-weights model gives low-score boxes of all three classes everywhere: with --nms_agnostic True
    fewer are written, and their classes still vary (batched_nms's own tests check the suppression itself)."""
    torch.save(randomize_batchnorm(small_model()).state_dict(), tmp_path / "weights.pth")
    written = {}
    for agnostic in (False, True):
        out = tmp_path / f"map_out_{agnostic}"
        argv = ["--model_path", str(tmp_path / "weights.pth"), "--classes_path", dataset["classes"], "--anchors_path",
                ANCHORS_PATH, "--input_shape", "[64, 64]", "--VOCdevkit_path", dataset["voc"], "--map_out_path",
                str(out), "--device", "cpu", "--map_mode", "1", "--nms_agnostic", str(agnostic)]
        get_map.main(get_map.settings(argv), given=get_map.command_line_names(argv))
        written[agnostic] = [line.split()[0] for name in sorted(os.listdir(out / "detection-results"))
                             for line in (out / "detection-results" / name).read_text().splitlines()]
    assert 0 < len(written[True]) < len(written[False]) and len(set(written[True])) > 1


def test_ground_truth_fed_back_as_detections_scores_map_1(dataset):
    base = ["--classes_path", dataset["classes"], "--VOCdevkit_path", dataset["voc"], "--map_out_path", dataset["out"]]
    get_map.main(get_map.settings([*base, "--map_mode", "2"]))
    detections = os.path.join(dataset["out"], "detection-results")
    os.makedirs(detections)
    for image_id in DATASET:
        with open(os.path.join(dataset["out"], "ground-truth", f"{image_id}.txt")) as f:
            lines = [line.split() for line in f]
        with open(os.path.join(detections, f"{image_id}.txt"), "w") as f:
            f.writelines(f"{name} 0.9 {' '.join(box)}\n" for name, *box in (parts[:5] for parts in lines))
    for mode in ("3", "4"):
        get_map.main(get_map.settings([*base, "--map_mode", mode]))
        with open(os.path.join(dataset["out"], "metrics.json")) as f:
            metrics = json.load(f)
        assert metrics["map50"] == 1.0 and metrics["map50_95"] == pytest.approx(1.0, abs=1e-12)
        assert metrics["best_f1"]["f1"] == 1.0 and metrics["best_f1"]["threshold"] == 0.9
        assert metrics["classes"]["cat"] == pytest.approx({"ap50": 1.0, "ap50_95": 1.0, "num_gt": 1, "num_det": 2,
                                                           "precision": 1.0, "recall": 1.0, "f1": 1.0}, abs=1e-12)


def test_precision_recall_at_score_threshold_by_hand():
    # Two cats; detections: TP 0.9, FP 0.6, TP 0.3. At score >= 0.5: 1 TP, 1 FP -> P = R = F1 = 0.5.
    ground_truths = {"a": np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 0]], dtype=float)}
    detections = {"a": np.array([[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.6, 0], [20, 20, 30, 30, 0.3, 0]])}
    metrics, _, _ = score(ground_truths, detections, CLASSES, score_threshold=0.5)
    cat = metrics["classes"]["cat"]
    assert (cat["precision"], cat["recall"], cat["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # VOC all-point AP: precision envelope 1 up to recall 0.5, then 2/3 up to recall 1 -> 0.5 + 0.5 * 2/3.
    assert cat["ap50"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert metrics["classes"]["dog"]["ap50"] is None                 # no ground truth: null in JSON
    assert metrics["map50"] == pytest.approx(0.5 + 0.5 * 2 / 3)      # averaged over classes with gts only
    # Confusion matrix at score >= 0.5: one cat -> cat, one false positive cat, one missed cat.
    assert metrics["confusion_matrix"][0][0] == 1 and metrics["confusion_matrix"][0][3] == 1
    assert metrics["confusion_matrix"][3][0] == 1


def test_voc_samples_scored_in_memory(dataset):
    """The image set read by the VOC reader, its own ground truth fed back as float detections: mAP 1.0, with
    the difficult cat ignored and the horse (not a class) left out."""
    samples, report = samples_from_voc(dataset["voc"], "test", CLASSES)
    assert [s.image_id for s in samples] == list(DATASET) and [p.kind for p in report.problems] == ["unknown class"]
    assert samples[1].ground_truth.tolist() == [[5, 5, 40, 50, 2, 0], [30, 60, 90, 120, 0, 1]]
    detections = [np.column_stack([s.ground_truth[:, :4] + 0.25, np.full(len(s.ground_truth), 0.8),
                                   s.ground_truth[:, 4]]) for s in samples]
    metrics = score_detections(samples, detections, CLASSES).metrics
    assert metrics["map50"] == 1.0 and metrics["counts"]["images"] == 3 and metrics["counts"]["difficult"] == 1


def test_clear_errors(dataset):
    with pytest.raises(FileNotFoundError, match="val.txt"):
        samples_from_voc(dataset["voc"], "val", CLASSES)
    voc = os.path.join(dataset["voc"], "VOC2007")
    with open(os.path.join(voc, "ImageSets", "Main", "test.txt"), "a") as f:
        f.write("missing_id\nno image\n")
    with open(os.path.join(voc, "Annotations", "no image.xml"), "w") as f:
        f.write("<annotation><filename>gone.jpg</filename></annotation>")
    samples, report = samples_from_voc(dataset["voc"], "test", CLASSES)
    assert len(samples) == 3
    reasons = {os.path.basename(p.file): p.reason for p in report.problems if p.kind != "missing size"}
    assert reasons["missing_id.xml"] == "annotation file not found; image skipped"
    assert reasons["no image"].startswith("no image for id 'no image' (gone.jpg, or the id with .jpg/")


def test_minoverlap_sets_the_voc_match_threshold():
    # Ground truth 0..10 x 0..10; the detection 0..10 x 0..6 overlaps it with IoU 60 / 100 = 0.6:
    # a true positive at MINOVERLAP 0.5 (AP 1), a false positive at 0.75 (AP 0).
    ground_truths = {"a": np.array([[0, 0, 10, 10, 0]], dtype=np.float64)}
    detections = {"a": np.array([[0, 0, 10, 6, 0.9, 0]], dtype=np.float64)}
    at_half = score(ground_truths, detections, CLASSES[:1], min_overlap=0.5)[0]
    at_075 = score(ground_truths, detections, CLASSES[:1], min_overlap=0.75)[0]
    assert at_half["map50"] == 1.0 and at_075["map50"] == 0.0
    assert at_075["min_overlap"] == 0.75
    with pytest.raises(ValueError, match="voc_iou_threshold"):
        score(ground_truths, detections, CLASSES[:1], min_overlap=1.5)
