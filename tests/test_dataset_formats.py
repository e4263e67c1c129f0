"""Datasets in VOC (anywhere), YOLO txt and COCO JSON: the same boxes give the same training lists, each format's
bad input is a reported, counted skip or fix, and get_map.py evaluates them with their own ground truth."""
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import get_map
import voc_annotation
from nets.yolo import YoloBody
from utils.data.datasets import read_dataset, write_dataset_lists
from utils.errors import UserError
from utils.metrics.evaluation import samples_from_records, score_detections
from utils.data.training_lists import seeded_split
from utils.data.yolo_txt import read_data_yaml

CLASSES = ["cat", "dog"]
# stem -> (width, height, [(class, x1, y1, x2, y2)]) in pixels (integers, so every format holds them exactly)
IMAGES = {f"img {i}": (64 + 8 * i, 48 + 4 * i, [(i % 2, 4 + i, 6, 30 + i, 40), (1 - i % 2, 33, 2 + i, 60, 20 + i)])
          for i in range(8)}


def write_pngs(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        width, height, _ = IMAGES[name]
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"{name}.png")


def write_voc(root):
    write_pngs(root / "JPEGImages", IMAGES)
    (root / "Annotations").mkdir()
    for name, (width, height, boxes) in IMAGES.items():
        objects = "".join(f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin>"
                          f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                          for c, x1, y1, x2, y2 in boxes)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><size><width>{width}</width><height>{height}</height>"
            f"</size>{objects}</annotation>")
    return root


def write_yolo(root, names_line="names: [cat, dog]"):
    write_pngs(root / "images", IMAGES)
    (root / "labels").mkdir()
    for name, (width, height, boxes) in IMAGES.items():
        lines = [f"{c} {(x1 + x2) / 2 / width!r} {(y1 + y2) / 2 / height!r} {(x2 - x1) / width!r} {(y2 - y1) / height!r}"
                 for c, x1, y1, x2, y2 in boxes]
        (root / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"path: .\ntrain: images\n{names_line}\nnc: 2\n")
    return root


def write_coco(root, extra_annotations=()):
    """Category ids 3 and 7 (not 0..n-1), images in a subfolder, one crowd box."""
    write_pngs(root / "images" / "part", IMAGES)
    images, annotations = [], []
    for number, (name, (width, height, boxes)) in enumerate(IMAGES.items(), 1):
        images.append({"id": 100 + number, "file_name": f"part/{name}.png", "width": width, "height": height})
        for c, x1, y1, x2, y2 in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + number, "category_id": (3, 7)[c],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, "area": (x2 - x1) * (y2 - y1)})
    annotations.append({"id": 900, "image_id": 101, "category_id": 7, "bbox": [1, 1, 10, 10], "iscrowd": 1})
    annotations.extend(extra_annotations)
    (root / "annotations").mkdir(parents=True)
    path = root / "annotations" / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}))
    return path


def convert(tmp_path, fmt, path, lists, **settings):
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    config = {**{k: getattr(voc_annotation, k) for k in ("trainval_percent", "train_percent", "seed", "VOCdevkit_path",
                                                         "VOCdevkit_sets", "image_dir")},
              "annotation_mode": 0, "classes_path": str(classes), "dataset_format": fmt, "dataset_path": str(path),
              "lists_dir": str(lists), **settings}
    voc_annotation.main(config)
    return {name: (lists / f"2007_{name}.txt").read_text().splitlines() for name in ("train", "val", "test")}


def by_image(lines):
    """List lines as (image file name, boxes) so that lists of different folders compare."""
    return [(os.path.basename(line.split(".png")[0]), line.split(".png")[1]) for line in lines]


def test_the_same_boxes_in_three_formats_give_the_same_training_lists(tmp_path):
    voc = convert(tmp_path, "voc", write_voc(tmp_path / "voc"), tmp_path / "lists_voc")
    yolo = convert(tmp_path, "yolo", write_yolo(tmp_path / "yolo"), tmp_path / "lists_yolo")
    coco = convert(tmp_path, "coco", write_coco(tmp_path / "coco"), tmp_path / "lists_coco")
    for name in ("train", "val", "test"):
        assert by_image(voc[name]) == by_image(yolo[name]) == by_image(coco[name]), name
    assert sum(len(v) for v in voc.values()) == 8 and len(voc["train"]) >= 5
    # The boxes are the drawn ones (the crowd box of COCO is not among them).
    first = next(line for line in voc["train"] + voc["val"] + voc["test"] if "img 0.png" in line)
    assert first.endswith(" 4,6,30,40,0 33,2,60,20,1")
    assert (tmp_path / "lists_coco" / "dataset_classes.txt").read_text() == "cat\ndog\n"   # sorted by category id
    assert (tmp_path / "lists_yolo" / "dataset_classes.txt").read_text() == "cat\ndog\n"


def test_voc_folder_with_its_own_split_is_kept_and_never_written_to(tmp_path, capsys):
    root = write_voc(tmp_path / "public set")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("img 0\nimg 1\nimg 2\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("img 3\n")
    before = sorted(os.walk(root))
    lists = convert(tmp_path, "voc", tmp_path / "public set", tmp_path / "kept", annotation_mode=2)
    assert [os.path.basename(l.split(".png")[0]) for l in lists["train"]] == ["img 0", "img 1", "img 2"]
    assert len(lists["val"]) == 1 and lists["test"] == []
    resplit = convert(tmp_path, "voc", tmp_path / "public set", tmp_path / "new", annotation_mode=0)
    assert sum(len(v) for v in resplit.values()) == 8
    assert "annotation_mode 2 keeps the dataset's own split (train: 3, val: 1)" in capsys.readouterr().out
    assert sorted(os.walk(root)) == before                                    # the dataset folder is untouched
    with pytest.raises(UserError, match="no split of its own"):
        convert(tmp_path, "yolo", write_yolo(tmp_path / "yolo"), tmp_path / "y", annotation_mode=2)


def test_yolo_bad_input_is_reported_and_counted(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    (root / "labels" / "img 0.txt").write_text("0 0.5 0.5 0.2\n"              # 4 numbers: skipped
                                               "1 0.95 0.5 0.2 0.2\n"          # reaches past x = 1: clipped
                                               "5 0.5 0.5 0.1 0.1\n"           # class 5 of 2: dropped
                                               "0 1.5 1.5 0.2 0.2\n")          # wholly outside: dropped
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")        # a label without an image
    os.remove(root / "labels" / "img 1.txt")                                   # an image without labels
    dataset = read_dataset("yolo", str(root))
    kinds = {p.kind: p for p in dataset.report.problems}
    assert set(kinds) == {"bad label line", "coordinates outside [0, 1]", "unknown class", "empty box",
                          "label without image", "no label file"}
    assert kinds["bad label line"].file.endswith("img 0.txt:1") and dataset.report.boxes_dropped == 3
    record = next(r for r in dataset.records if r.image_id == "img 0")
    width, height, _ = IMAGES["img 0"]
    np.testing.assert_allclose(record.boxes, [[0.85 * width, 0.4 * height, width, 0.6 * height]])
    assert next(r for r in dataset.records if r.image_id == "img 1").boxes.shape == (0, 4)
    lists = write_dataset_lists(dataset, seeded_split([r.image_id for r in dataset.records], 1.0, 1.0),
                                str(tmp_path / "lists"), out=io.StringIO())
    assert lists[str(tmp_path / "lists" / "2007_train.txt")] == 8 and dataset.report.background_images == 1


@pytest.mark.parametrize("text", ["names: [cat, 'dog']", "names:\n  - cat\n  - dog", "names:\n  0: cat\n  1: dog"])
def test_data_yaml_class_names_in_each_layout(tmp_path, text):
    (tmp_path / "data.yaml").write_text(f"train: images/train  # a comment\n{text}\nnc: 2\n")
    assert read_data_yaml(tmp_path / "data.yaml") == ["cat", "dog"]


def test_yolo_split_folders_are_the_dataset_split(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    for split, names in (("train", ["img 0", "img 1", "img 2"]), ("val", ["img 3"])):
        for sub in ("images", "labels"):
            (root / sub / split).mkdir()
        for name in names:
            os.rename(root / "images" / f"{name}.png", root / "images" / split / f"{name}.png")
            os.rename(root / "labels" / f"{name}.txt", root / "labels" / split / f"{name}.txt")
    dataset = read_dataset("yolo", str(root))
    assert dataset.split == {"train": ["train_img 0", "train_img 1", "train_img 2"], "val": ["val_img 3"]}


def test_coco_bad_input_is_reported_and_crowd_boxes_are_ignored_by_the_map(tmp_path):
    path = write_coco(tmp_path / "coco", extra_annotations=[
        {"id": 901, "image_id": 999, "category_id": 3, "bbox": [1, 1, 5, 5]},                     # unknown image
        {"id": 902, "image_id": 101, "category_id": 4, "bbox": [1, 1, 5, 5]},                     # unknown category
        {"id": 903, "image_id": 101, "category_id": 3, "bbox": [1, 1, 0, 5]},                     # zero area
        {"id": 904, "image_id": 102, "category_id": 3, "segmentation": [[2, 3, 12, 3, 12, 9, 2, 9]]},   # polygon
        {"id": 905, "image_id": 102, "category_id": 3, "segmentation": {"counts": "xyz", "size": [4, 4]}}])
    os.remove(tmp_path / "coco" / "images" / "part" / "img 7.png")
    dataset = read_dataset("coco", str(path))
    kinds = sorted(p.kind for p in dataset.report.problems)
    assert kinds == ["empty box", "missing image", "no bbox", "polygon only", "unknown category_id",
                     "unknown image_id"]
    assert dataset.class_names == CLASSES and len(dataset.records) == 7
    polygon = next(r for r in dataset.records if r.image_id == "img 1")
    assert polygon.boxes[-1].tolist() == [2, 3, 12, 9] and polygon.classes[-1] == 0
    crowded = next(r for r in dataset.records if r.image_id == "img 0")
    assert crowded.difficult.tolist() == [False, False, True]
    assert " 1,1,11,11," not in crowded.training_line()                       # crowd: not trained on
    # Scored with the ground truth fed back (the crowd box left out of it): mAP 1, the crowd box neither TP nor FP.
    samples = samples_from_records(dataset.records, [r.image_path for r in dataset.records])
    detections = [np.column_stack([r.boxes[~r.difficult], np.full((~r.difficult).sum(), 0.9),
                                   r.classes[~r.difficult]]) for r in dataset.records]
    metrics = score_detections(samples, detections, CLASSES).metrics
    assert metrics["map50"] == 1.0 and metrics["counts"]["difficult"] == 1


def test_get_map_evaluates_a_yolo_dataset(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    lists = convert(tmp_path, "yolo", root, tmp_path / "lists")
    torch.manual_seed(0)
    torch.save(YoloBody([[6, 7, 8], [3, 4, 5], [0, 1, 2]], 2, width_mult=0.125, depth_mult=0.33).state_dict(),
               tmp_path / "weights.pth")
    argv = ["--model_path", str(tmp_path / "weights.pth"), "--classes_path", str(tmp_path / "lists" / "dataset_classes.txt"),
            "--input_shape", "[64, 64]", "--dataset_format", "yolo", "--dataset_path", str(root),
            "--lists_dir", str(tmp_path / "lists"), "--image_set", "train", "--map_out_path", str(tmp_path / "out"),
            "--device", "cpu"]
    get_map.main(get_map.settings(argv), given={"model_path", "classes_path", "input_shape", "device"})
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["counts"]["images"] == len(lists["train"])
    assert metrics["counts"]["ground_truths"] == 2 * len(lists["train"])
    assert len(os.listdir(tmp_path / "out" / "detection-results")) == len(lists["train"])
