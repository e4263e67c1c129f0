"""data.yaml (ultralytics / Roboflow) read with yaml.safe_load: names in every YAML layout, errors naming the file
and the key, the Roboflow layout, .txt list splits and the /images/ -> /labels/ rule."""
import io
import os

import pytest
from PIL import Image

import voc_annotation
from utils.data.data_yaml import DataYamlError, label_path, read_data_yaml, read_names
from utils.data.datasets import read_dataset, write_dataset_lists
from utils.data.yolo_txt import read_data_yaml as yolo_read_data_yaml

DEEPPCB = "/work/shared/datasets/deeppcb/data.yaml"
CLASSES = ["circle", "square"]
# image name -> (width, height, [(class, x1, y1, x2, y2)] in pixels); labels written normalized from these, so the
# expected training-list boxes are these integers, independent of the reader.
IMAGES = {"a": (40, 20, [(0, 10, 5, 30, 15)]), "b": (50, 40, [(1, 0, 0, 25, 20), (0, 5, 10, 45, 30)]),
          "c": (20, 20, []), "d": (60, 30, [(1, 30, 6, 54, 24)]), "e": (32, 48, [(0, 8, 12, 24, 36)]),
          "f": (40, 40, [(1, 4, 4, 36, 20)])}


def write_jpeg(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path, quality=90)


def label_text(name):
    width, height, boxes = IMAGES[name]
    return "".join(f"{c} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height}\n"
                   for c, x1, y1, x2, y2 in boxes)


def write_image(images_dir, labels_dir, name):
    """One JPEG and (when it has boxes, or always for a box-less image) its label file; returns the image path."""
    width, height, _ = IMAGES[name]
    write_jpeg(images_dir / f"{name}.jpg", width, height)
    labels_dir.mkdir(parents=True, exist_ok=True)
    (labels_dir / f"{name}.txt").write_text(label_text(name))
    return images_dir / f"{name}.jpg"


def expected_line(image_path, name):
    """The training-list line of an image, from the pixel boxes above."""
    return " ".join([str(image_path)] + [f"{x1},{y1},{x2},{y2},{c}" for c, x1, y1, x2, y2 in IMAGES[name][2]])


SPLIT_OF = {"train": ["a", "b", "c"], "valid": ["d"], "test": ["e", "f"]}


def write_roboflow(root, yaml_text=None):
    """A Roboflow export: train/ valid/ test/ with images/ + labels/, data.yaml with ``../`` paths."""
    for split, names in SPLIT_OF.items():
        for name in names:
            write_image(root / split / "images", root / split / "labels", name)
    root.joinpath("data.yaml").write_text(yaml_text or (
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['circle', 'square']\n\n"
        "roboflow:\n  workspace: shop\n  project: shapes\n  version: 3\n  license: CC BY 4.0\n"
        "  url: https://universe.roboflow.com/shop/shapes/dataset/3\n"))
    return root / "data.yaml"


@pytest.mark.parametrize("text, names", [
    ("names: {0: circle, 1: square}", ["circle", "square"]),                       # was read as 22 classes
    ("names: [circle,\n        square,\n        triangle]", ["circle", "square", "triangle"]),  # was cut to 1 line
    ("names: ['traffic light, red', car]", ["traffic light, red", "car"]),          # was split at the comma
    ("names:\n  - circle\n  - square", ["circle", "square"]),
    ("names:\n  1: square\n  0: circle", ["circle", "square"]),                      # mapping in any order
])
def test_names_in_every_yaml_layout_read_right_by_both_readers(tmp_path, text, names):
    path = tmp_path / "data.yaml"
    path.write_text(f"train: images  # a comment\n{text}\n")
    assert read_names(path) == names
    assert yolo_read_data_yaml(path) == names                     # utils/data/yolo_txt.py reads names the same way


def test_a_yolo_folder_with_a_mapping_of_names(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / "images", tmp_path / "labels", name)
    (tmp_path / "data.yaml").write_text("names: {0: circle, 1: square}\n")
    dataset = read_dataset("yolo", str(tmp_path))
    assert dataset.class_names == CLASSES
    assert sorted(r.training_line() for r in dataset.records) == [
        expected_line(tmp_path / "images" / "a.jpg", "a"), expected_line(tmp_path / "images" / "b.jpg", "b")]


@pytest.mark.parametrize("text, key", [
    ("names: {0: circle, 2: square}", "names"),                 # a gap in the class ids
    ("names: {zero: circle}", "names"),                         # not an id
    ("names: [circle, 3]", "names"),                            # not a string
    ("names: [yes, no]", "names"),                              # YAML booleans: quote them
    ("names: circle", "names"),                                 # a scalar, not a list
    ("names: [circle, circle]", "names"),
    ("names: [circle, square]\nnc: 3", "nc"),
    ("names: [circle, square]\nnc: two", "nc"),
    ("names: [circle, square]\ncolour: red", "colour"),         # a key this reader does not know
    ("names: [circle, square]\nval: missing/images", "val"),     # a split folder that does not exist
    ("names: [circle, square]\ntest: ../nowhere", "test"),
    ("names: [circle, square]\nval: images/data.json", "val"),   # a file, not a folder or .txt list
    ("names: [circle, square]\nval: [images, 3]", "val"),
    ("names: [circle, square]\npath: elsewhere", "path"),
    ("names: [circle, square]\nval: images\ntrain:", "train"),  # no train
    ("names: [circle, square]", "val"),                          # no val (ultralytics requires it too)
    ("nc: 2", "names"),
])
def test_what_the_reader_does_not_understand_is_an_error_naming_file_and_key(tmp_path, text, key):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "data.json").write_text("{}")
    if "train" not in text:
        text = "train: images\n" + text
    path = tmp_path / "data.yaml"
    path.write_text(text + "\n")
    with pytest.raises(DataYamlError) as err:
        read_data_yaml(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)


def test_invalid_yaml_and_a_non_mapping_name_the_file(tmp_path):
    path = tmp_path / "data.yaml"
    for text in ("names: [circle, square\n", "- circle\n- square\n"):
        path.write_text(text)
        with pytest.raises(DataYamlError, match=str(path)):
            read_data_yaml(path)


def check_roboflow(dataset, root):
    assert dataset.class_names == CLASSES
    ids = {name: [f"{split}_{n}" for n in SPLIT_OF[folder]]
           for name, split, folder in (("train", "train", "train"), ("val", "val", "valid"), ("test", "test", "test"))}
    assert dataset.split == ids
    by_id = {r.image_id: r for r in dataset.records}
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        for name in SPLIT_OF[folder]:
            line = by_id[f"{split}_{name}"].training_line()
            assert line == expected_line(root / folder / "images" / f"{name}.jpg", name)


def test_the_roboflow_layout_with_parent_paths(tmp_path):
    path = write_roboflow(tmp_path / "shapes")
    dataset = read_dataset("yaml", str(path))
    check_roboflow(dataset, tmp_path / "shapes")
    notes = [p for p in dataset.report.problems if p.kind == "data.yaml key not used"]
    assert len(notes) == 1 and notes[0].file.endswith("data.yaml: roboflow")
    written = write_dataset_lists(dataset, dataset.split, str(tmp_path / "lists"), out=io.StringIO())
    assert list(written.values()) == [3, 1, 2]


def test_the_ultralytics_layout_with_path_dot(tmp_path):
    text = ("path: .\ntrain: train/images\nval: valid/images\ntest: test/images\nnc: 2\n"
            "names:\n  0: circle\n  1: square\n")
    path = write_roboflow(tmp_path / "shapes", text)
    check_roboflow(read_dataset("yaml", str(path)), tmp_path / "shapes")


def test_path_is_relative_to_the_yamls_folder(tmp_path):
    write_roboflow(tmp_path / "shapes")
    config = tmp_path / "configs" / "shapes.yaml"
    config.parent.mkdir()
    config.write_text("path: ../shapes\ntrain: train/images\nval: [valid/images]\nnames: [circle, square]\n")
    info = read_data_yaml(config)
    assert info.root == str(tmp_path / "shapes") and info.sources["test"] == []
    assert info.sources["val"] == [str(tmp_path / "shapes" / "valid" / "images")]


def test_a_txt_list_split_is_relative_to_the_lists_folder(tmp_path):
    write_roboflow(tmp_path / "shapes")
    lists = tmp_path / "shapes" / "splits"
    lists.mkdir()
    # Relative lines (with or without ./) are relative to the list's folder, absolute ones are kept.
    (lists / "train.txt").write_text(f"../train/images/a.jpg\n./../train/images/b.jpg\n\n"
                                     f"{tmp_path / 'shapes' / 'test' / 'images' / 'e.jpg'}\n../train/images/gone.jpg\n")
    (tmp_path / "shapes" / "data.yaml").write_text("train: splits/train.txt\nval: valid/images\nnames: [circle, square]\n")
    dataset = read_dataset("yaml", str(tmp_path / "shapes" / "data.yaml"))
    assert dataset.split == {"train": ["train_a", "train_b", "train_e"], "val": ["val_d"], "test": []}
    lines = {r.image_id: r.training_line() for r in dataset.records}
    assert lines["train_e"] == expected_line(tmp_path / "shapes" / "test" / "images" / "e.jpg", "e")
    missing = [p for p in dataset.report.problems if p.kind == "missing image"]
    assert [os.path.basename(p.file) for p in missing] == ["gone.jpg"]


def test_labels_replace_the_last_images_component(tmp_path):
    assert label_path(os.path.join("/d", "images", "train", "x.jpg")) == os.path.join("/d", "labels", "train", "x.txt")
    assert label_path(os.path.join("/d", "images", "a", "images", "x.png")) == \
        os.path.join("/d", "images", "a", "labels", "x.txt")
    assert label_path(os.path.join("/d", "pics", "x.jpeg")) == os.path.join("/d", "pics", "x.txt")   # beside it
    # A folder searched recursively: each image's labels follow the rule, an image's own images/ folder included.
    root = tmp_path / "set"
    write_image(root / "images" / "part1", root / "labels" / "part1", "a")
    write_image(root / "images" / "part2" / "images", root / "images" / "part2" / "labels", "b")
    (root / "data.yaml").write_text("train: images\nval: images/part1\nnames: [circle, square]\n")
    dataset = read_dataset("yaml", str(root / "data.yaml"))
    lines = sorted(r.training_line() for r in dataset.records if r.image_id.startswith("train_"))
    assert lines == [expected_line(root / "images" / "part1" / "a.jpg", "a"),
                     expected_line(root / "images" / "part2" / "images" / "b.jpg", "b")]
    assert dataset.split["val"] == ["val_a"] and not dataset.report.problems


def test_ids_are_unique_over_splits_and_folders(tmp_path):
    root = tmp_path / "set"
    write_image(root / "one" / "images", root / "one" / "labels", "a")
    write_image(root / "two" / "images", root / "two" / "labels", "a")
    (root / "data.yaml").write_text("train: [one/images, two/images]\nval: one/images\nnames: [circle, square]\n")
    dataset = read_dataset("yaml", str(root / "data.yaml"))
    assert dataset.split == {"train": ["train_a", "train_a_2"], "val": ["val_a"], "test": []}


def test_voc_annotation_reads_a_data_yaml(tmp_path):
    path = write_roboflow(tmp_path / "shapes")
    config = {**{k: getattr(voc_annotation, k) for k in ("trainval_percent", "train_percent", "seed",
                                                         "VOCdevkit_path", "VOCdevkit_sets", "image_dir",
                                                         "classes_path")},
              "annotation_mode": 2, "dataset_format": "yaml", "dataset_path": str(path), "lists_dir": str(tmp_path)}
    voc_annotation.main(config)
    assert (tmp_path / "2007_val.txt").read_text() == \
        expected_line(tmp_path / "shapes" / "valid" / "images" / "d.jpg", "d") + "\n"
    assert (tmp_path / "dataset_classes.txt").read_text() == "circle\nsquare\n"


@pytest.mark.skipif(not os.path.isfile(DEEPPCB), reason="the shared DeepPCB set is not here")
def test_the_shared_deeppcb_export():
    info = read_data_yaml(DEEPPCB)
    assert info.names == ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    dataset = read_dataset("yaml", DEEPPCB)
    assert {k: len(v) for k, v in dataset.split.items()} == {"train": 500, "val": 100, "test": 250}
    assert len(dataset.records) == 850 and not dataset.report.problems
