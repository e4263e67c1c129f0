"""voc_annotation.py on a tiny generated VOC dataset (paths with spaces, PNG images, skipped objects)."""
import io
import os
import subprocess
import sys

import pytest
from PIL import Image

import voc_annotation
from utils.data.dataset_check import DatasetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H = 64, 48


def _xml(filename, objects):
    parts = [f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>",
             f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>"]
    for name, box, difficult in objects:
        coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{int(difficult)}</difficult><bndbox>{coords}</bndbox></object>")
    return "".join(parts) + "</annotation>"


# id -> (image file written or None, <filename> in the XML, objects)
SAMPLES = {
    "img 1": ("img 1.jpg", "img 1.jpg", [("circle", (1, 2, 30, 40), False), ("square", (10, 10, 50, 40), False)]),
    "img2": ("img2.png", "img2.png", [("circle", (3, 3, 9, 9), True), ("dog", (1, 1, 5, 5), False),
                                      ("square", (5, 5, 20, 20), False)]),
    "img3": ("img3.jpg", "img3.jpg", []),
    "img4": ("img4.jpg", "img4.jpeg", [("circle", (2, 2, 10, 10), False)]),  # XML names a file that is not there
    "img5": (None, "img5.jpg", [("square", (2, 2, 10, 10), False)]),
}


def _write_voc(root, samples):
    voc = root / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (image_file, filename, objects) in samples.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(filename, objects), encoding="utf-8")
        if image_file:
            Image.new("RGB", (W, H), (90, 120, 150)).save(voc / "JPEGImages" / image_file)
    return voc


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "VOC dev kit"
    voc = _write_voc(root, SAMPLES)
    (voc / "ImageSets/Main/train.txt").write_text("img 1\nimg2\nimg3\n", encoding="utf-8")
    (voc / "ImageSets/Main/val.txt").write_text("img4\r\nimg5\n\n", encoding="utf-8")
    classes = tmp_path / "classes.txt"
    classes.write_text("circle\nsquare\n", encoding="utf-8")
    return root, classes, tmp_path / "lists"


def test_training_lines_are_exact(dataset):
    root, classes, lists = dataset
    out = io.StringIO()
    written = voc_annotation.build_training_lists(str(root), str(classes), [("2007", "train"), ("2007", "val")],
                                                  str(lists), out=out)
    images = os.path.join(os.path.abspath(root), "VOC2007", "JPEGImages")
    train = (lists / "2007_train.txt").read_text(encoding="utf-8").splitlines()
    val = (lists / "2007_val.txt").read_text(encoding="utf-8").splitlines()
    assert train == [f"{images}/img 1.jpg 1,2,30,40,0 10,10,50,40,1",
                     f"{images}/img2.png 5,5,20,20,1",
                     f"{images}/img3.jpg"]
    assert val == [f"{images}/img4.jpg 2,2,10,10,0"]
    assert written == {str(lists / "2007_train.txt"): 3, str(lists / "2007_val.txt"): 1}


def test_report_table_and_warnings(dataset):
    root, classes, lists = dataset
    out = io.StringIO()
    voc_annotation.build_training_lists(str(root), str(classes), [("2007", "train"), ("2007", "val")],
                                        str(lists), out=out)
    text = out.getvalue()
    assert "| circle |       2 |" in text and "| square |       2 |" in text
    assert "Skipped difficult objects: 1 (circle: 1)" in text
    assert f"Skipped objects of classes not in {classes}: 1 (dog: 1)" in text
    assert "no image for id 'img5'" in text
    assert f"Warning: {lists / '2007_val.txt'} has 1 images" in text
    assert f"Warning: {lists / '2007_train.txt'}" in text  # 3 < 10 images is tiny too


def test_no_usable_image_is_a_clear_error(tmp_path):
    root = tmp_path / "voc"
    voc = _write_voc(root, {"a": (None, "a.jpg", [("circle", (1, 1, 5, 5), False)])})
    (voc / "ImageSets/Main/train.txt").write_text("a\n", encoding="utf-8")
    classes = tmp_path / "classes.txt"
    classes.write_text("circle\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no usable image"):
        voc_annotation.build_training_lists(str(root), str(classes), [("2007", "train")], str(tmp_path),
                                            out=io.StringIO())


def test_split_sizes_follow_the_percentages_and_the_seed(tmp_path):
    samples = {f"id {i:02d}": (None, f"id {i:02d}.jpg", []) for i in range(23)}
    _write_voc(tmp_path, samples)
    split = voc_annotation.split_image_sets(str(tmp_path), 0.8, 0.75, seed=3)
    # int(23 * 0.8) = 18 trainval, int(18 * 0.75) = 13 train
    assert {name: len(ids) for name, ids in split.items()} == {"trainval": 18, "train": 13, "val": 5, "test": 5}
    assert sorted(split["train"] + split["val"]) == split["trainval"]
    assert sorted(split["trainval"] + split["test"]) == sorted(samples)
    written = (tmp_path / "VOC2007/ImageSets/Main/val.txt").read_text(encoding="utf-8").splitlines()
    assert written == split["val"]
    assert voc_annotation.split_image_sets(str(tmp_path), 0.8, 0.75, seed=3) == split
    assert voc_annotation.split_image_sets(str(tmp_path), 0.8, 0.75, seed=4)["train"] != split["train"]


def test_command_line_run(tmp_path):
    samples = dict(SAMPLES)
    samples.update({f"extra {i}": (f"extra {i}.jpg", f"extra {i}.jpg", [("square", (4, 4, 20, 30), False)])
                    for i in range(7)})
    root = tmp_path / "dev kit"
    _write_voc(root, samples)
    classes = tmp_path / "classes.txt"
    classes.write_text("circle\nsquare\n", encoding="utf-8")
    lists = tmp_path / "lists"
    result = subprocess.run([sys.executable, "voc_annotation.py", "--VOCdevkit_path", str(root),
                             f"--lists_dir={lists}", "--classes_path", str(classes), "--seed", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    main = root / "VOC2007/ImageSets/Main"
    sizes = {name: len((main / f"{name}.txt").read_text(encoding="utf-8").splitlines())
             for name in ("trainval", "train", "val", "test")}
    assert sizes == {"trainval": 10, "train": 9, "val": 1, "test": 2}  # 12 ids: int(10.8), int(9.0)
    n_listed = sum(len((lists / f"2007_{s}.txt").read_text(encoding="utf-8").splitlines()) for s in ("train", "val"))
    trainval = (main / "trainval.txt").read_text(encoding="utf-8").splitlines()
    assert n_listed == len(trainval) - ("img5" in trainval)  # img5 has no image file
    assert "Warning:" in result.stdout and "| class  | objects |" in result.stdout


def test_command_line_rejects_unknown_settings():
    result = subprocess.run([sys.executable, "voc_annotation.py", "--no_such_setting", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown setting --no_such_setting" in result.stderr
    assert "--help lists the" in result.stderr and "Traceback" not in result.stderr
