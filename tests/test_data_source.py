"""utils/data/data_source.py: what a ``--data PATH`` is (``detect_data``) and its training lists built once into the cache
and reused while the dataset is unchanged (``resolve_data``); the dataset itself is only ever read.

Every dataset is generated here: tiny JPEGs with boxes in pixels, written as YOLO labels (normalized), COCO bboxes
or VOC XMLs; the expected list lines are those pixel boxes, independent of the readers."""
import hashlib
import io
import json
import os
import re
import stat

import pytest
from PIL import Image

from utils.data import data_source
from utils.data.data_source import detect_data, resolve_data
from utils.data.data_yaml import DataYamlError
from utils.errors import UserError
from utils.data.training_lists import seeded_split

# image name -> (width, height, [(class, x1, y1, x2, y2)] in pixels). 12 images, every one with a box.
IMAGES = {f"im{i:02d}": (32 + 4 * (i % 3), 24 + 8 * (i % 2), [(i % 2, 4, 2, 20 + i % 3, 14 + 2 * (i % 2))])
          for i in range(12)}
IMAGES["im05"] = (40, 32, [(0, 10, 5, 30, 15), (1, 0, 0, 20, 32)])          # two boxes, one the image's height
CLASSES = ["circle", "square"]


def write_jpeg(path, width, height):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path, quality=90)


def label_text(width, height, boxes):
    return "".join(f"{c} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height}\n"
                   for c, x1, y1, x2, y2 in boxes)


def expected_line(image_path, boxes):
    """The training-list line of an image: its path and the pixel boxes as ``x1,y1,x2,y2,class`` integers."""
    return " ".join([str(image_path)] + [f"{x1},{y1},{x2},{y2},{c}" for c, x1, y1, x2, y2 in boxes])


def write_yolo_image(root, name, images=IMAGES, sub=""):
    width, height, boxes = images[name]
    write_jpeg(os.path.join(root, "images", sub, f"{name}.jpg"), width, height)
    os.makedirs(os.path.join(root, "labels", sub), exist_ok=True)
    with open(os.path.join(root, "labels", sub, f"{name}.txt"), "w") as f:
        f.write(label_text(width, height, boxes))
    return os.path.join(root, "images", sub, f"{name}.jpg")


def write_yolo(root, names=tuple(IMAGES)):
    """A YOLO folder without a split: images/ + labels/ + classes.txt."""
    for name in names:
        write_yolo_image(root, name)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    return root


ROBOFLOW_SPLIT = {"train": ["im00", "im01", "im02"], "valid": ["im03"], "test": ["im04", "im05"]}


def write_roboflow(root, with_test=True):
    """A Roboflow export: train/ valid/ (test/) each with images/ + labels/, data.yaml with ``../`` paths."""
    for split, names in ROBOFLOW_SPLIT.items():
        if split == "test" and not with_test:
            continue
        for name in names:
            write_yolo_image(os.path.join(root, split), name)
    text = "train: ../train/images\nval: ../valid/images\n" + ("test: ../test/images\n" if with_test else "")
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write(text + "nc: 2\nnames: ['circle', 'square']\n")
    return os.path.join(root, "data.yaml")


VOC_OBJECTS = {  # image name -> (width, height, [(name, x1, y1, x2, y2)]) as the XML writes them
    "v0": (40, 30, [("zebra", 2, 3, 20, 25)]), "v1": (36, 28, [("apple", 5, 5, 30, 20), ("mango", 1, 1, 9, 9)]),
    "v2": (40, 30, [("mango", 10, 4, 38, 28)]), "v3": (32, 32, [("apple", 3, 3, 29, 29)]),
    "v4": (44, 30, [("zebra", 6, 2, 40, 12)]), "v5": (40, 40, [("apple", 1, 2, 3, 4), ("zebra", 8, 8, 24, 30)]),
}


def write_voc(voc_dir):
    """A VOC<year>-style folder: Annotations/ + JPEGImages/, no ImageSets (so no split of its own)."""
    for name, (width, height, objects) in VOC_OBJECTS.items():
        write_jpeg(os.path.join(voc_dir, "JPEGImages", f"{name}.jpg"), width, height)
        objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                       f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for n, x1, y1, x2, y2 in objects)
        os.makedirs(os.path.join(voc_dir, "Annotations"), exist_ok=True)
        with open(os.path.join(voc_dir, "Annotations", f"{name}.xml"), "w") as f:
            f.write(f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width><height>{height}"
                    f"</height><depth>3</depth></size>{objs}</annotation>")
    return voc_dir


def write_coco(folder):
    """``instances.json`` beside its images; category ids 3 (cat) and 7 (dog); bboxes [x, y, w, h]."""
    images, annotations = [], []
    for number, (name, (width, height, boxes)) in enumerate(sorted(IMAGES.items())[:10], 1):
        write_jpeg(os.path.join(folder, f"{name}.jpg"), width, height)
        images.append({"id": number, "file_name": f"{name}.jpg", "width": width, "height": height})
        for c, x1, y1, x2, y2 in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": (3, 7)[c],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, "area": (x2 - x1) * (y2 - y1)})
    path = os.path.join(folder, "instances.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}, f)
    return path


def snapshot(root):
    """Every file and folder under ``root``: (size, mtime_ns, sha1 of the content) / folder mtime and entries."""
    found = {}
    for parent, dirs, files in os.walk(root):
        found[parent] = ("dir", os.stat(parent).st_mtime_ns, tuple(sorted(dirs + files)))
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[path] = (os.path.getsize(path), os.stat(path).st_mtime_ns, hashlib.sha1(f.read()).hexdigest())
    return found


def set_read_only(root, read_only=True):
    """chmod the tree read-only (or back): a write into the dataset then fails, except for root, where the
    snapshot comparison catches it."""
    for parent, dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(parent, name), 0o444 if read_only else 0o644)
        os.chmod(parent, 0o555 if read_only else 0o755)


@pytest.fixture()
def yolo_set(tmp_path):
    """``(dataset folder, cache root)``: the 12-image YOLO folder, read-only; made writable again at the end."""
    root = write_yolo(str(tmp_path / "shapes"))
    set_read_only(root)
    yield root, str(tmp_path / "cache")
    set_read_only(root, False)


def resolve(data, cache, **kwargs):
    out = io.StringIO()
    lists = resolve_data(data, cache_root=cache, out=out, **kwargs)
    return lists, out.getvalue()


def read_lines(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def list_lines(lists):
    return {split: read_lines(lists.list_path(split)) if lists.list_path(split) else []
            for split in ("train", "val", "test")}


def mtimes(lists):
    return {name: os.stat(os.path.join(lists.cache_dir, name)).st_mtime_ns
            for name in ("2007_train.txt", "2007_val.txt", "2007_test.txt", "classes.txt", "manifest.json")}


def image_of(line):
    return line.split(" ")[0]


def test_detect_yaml_files_and_folders_holding_one(tmp_path):
    yaml_path = write_roboflow(str(tmp_path / "shapes"))
    assert detect_data(yaml_path) == ("yaml", yaml_path)
    assert detect_data(str(tmp_path / "shapes")) == ("yaml", yaml_path)            # the folder holding data.yaml
    other = tmp_path / "sets" / "My.YML"
    other.parent.mkdir()
    other.write_text("names: [a]\n")
    assert detect_data(str(other)) == ("yaml", str(other))
    yml_folder = tmp_path / "ymlset"
    yml_folder.mkdir()
    (yml_folder / "data.yml").write_text("names: [a]\n")
    assert detect_data(str(yml_folder)) == ("yaml", str(yml_folder / "data.yml"))


def test_detect_coco_voc_and_yolo(tmp_path, monkeypatch):
    coco = write_coco(str(tmp_path / "coco"))
    assert detect_data(coco) == ("coco", coco)
    voc = write_voc(str(tmp_path / "myvoc"))
    assert detect_data(voc) == ("voc", voc)
    yolo = write_yolo(str(tmp_path / "yolo"), names=("im00",))
    assert detect_data(yolo) == ("yolo", yolo)
    monkeypatch.chdir(tmp_path)                                                     # a relative path: made absolute
    assert detect_data("yolo") == ("yolo", yolo)


def test_detect_a_vocdevkit_with_one_year_and_the_error_with_two(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    write_voc(str(devkit / "VOC2007"))
    (devkit / "VOC2012").mkdir()                                                   # not a VOC folder: ignored
    assert detect_data(str(devkit)) == ("voc", str(devkit / "VOC2007"))
    write_voc(str(devkit / "VOC2012"))
    with pytest.raises(UserError) as err:
        detect_data(str(devkit))
    assert str(devkit) in str(err.value) and "VOC2007" in str(err.value) and "VOC2012" in str(err.value)


def test_detect_a_missing_path_and_what_is_no_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        detect_data(str(tmp_path / "nowhere"))
    half_yolo = tmp_path / "half"
    (half_yolo / "images").mkdir(parents=True)                                      # images/ without labels/
    half_voc = tmp_path / "halfvoc"
    (half_voc / "Annotations").mkdir(parents=True)                                  # Annotations/ without JPEGImages/
    text = tmp_path / "list.txt"
    text.write_text("a.jpg 1,1,2,2,0\n")
    for path in (half_yolo, half_voc, text, tmp_path):
        with pytest.raises(UserError) as err:
            detect_data(str(path))
        assert str(path) in str(err.value)


def test_a_yolo_folder_gets_the_seeded_split_and_exact_lines(yolo_set):
    root, cache = yolo_set
    before = snapshot(root)
    lists, printed = resolve(root, cache)
    assert lists.format == "yolo" and lists.root == root and not lists.reused
    assert lists.class_names == CLASSES
    assert read_lines(lists.classes_path) == CLASSES
    # The cache folder: <cache_root>/<dataset folder name>-<8 hex>/ with the lists and classes.txt in it.
    assert os.path.dirname(lists.cache_dir) == os.path.abspath(cache)
    assert re.fullmatch(r"shapes-[0-9a-f]{8}", os.path.basename(lists.cache_dir))
    assert {lists.train, lists.val, lists.test, lists.classes_path} == {
        os.path.join(lists.cache_dir, n) for n in ("2007_train.txt", "2007_val.txt", "2007_test.txt", "classes.txt")}
    # seeded_split(12 ids, 0.9, 0.9): trainval = int(12 * 0.9) = 10, train = int(10 * 0.9) = 9, val = 1, test = 2.
    lines = list_lines(lists)
    assert {k: len(v) for k, v in lines.items()} == {"train": 9, "val": 1, "test": 2}
    assert lists.counts == {"train": 9, "val": 1, "test": 2}
    # The three lists partition the images; the test images are those voc_annotation.py's split leaves out.
    paths = [image_of(line) for split in lines.values() for line in split]
    assert sorted(paths) == sorted(os.path.join(root, "images", f"{n}.jpg") for n in IMAGES)
    assert sorted(map(image_of, lines["test"])) == [os.path.join(root, "images", f"{n}.jpg")
                                                   for n in seeded_split(list(IMAGES))["test"]]
    # Every line is the image path with its pixel boxes.
    every = {image_of(line): line for split in lines.values() for line in split}
    for name, (_, _, boxes) in IMAGES.items():
        path = os.path.join(root, "images", f"{name}.jpg")
        assert every[path] == expected_line(path, boxes)
    assert "seed 0" in printed
    assert snapshot(root) == before                                                 # the dataset was only read


def test_a_second_call_reuses_the_lists_without_reading_the_dataset(yolo_set, monkeypatch):
    root, cache = yolo_set
    first, _ = resolve(root, cache)
    contents, stamps = list_lines(first), mtimes(first)

    def no_reading(*args, **kwargs):
        raise AssertionError("the dataset was read again")

    monkeypatch.setattr(data_source, "read_dataset", no_reading)
    second, printed = resolve(root, cache)
    assert second.reused and "Reusing" in printed
    assert mtimes(second) == stamps and list_lines(second) == contents
    assert (second.cache_dir, second.class_names, second.counts) == (first.cache_dir, CLASSES, first.counts)
    assert (second.train, second.val, second.test, second.classes_path) == \
        (first.train, first.val, first.test, first.classes_path)


def test_a_changed_label_file_rebuilds_with_the_new_box(yolo_set):
    root, cache = yolo_set
    resolve(root, cache)
    set_read_only(root, False)
    width, height, _ = IMAGES["im07"]
    new_boxes = [(0, 1, 1, 9, 9), (1, 12, 6, 30, 28)]                               # a longer file than before
    with open(os.path.join(root, "labels", "im07.txt"), "w") as f:
        f.write(label_text(width, height, new_boxes))
    set_read_only(root)
    lists, _ = resolve(root, cache)
    assert not lists.reused
    path = os.path.join(root, "images", "im07.jpg")
    every = {image_of(line): line for split in list_lines(lists).values() for line in split}
    assert every[path] == expected_line(path, new_boxes)
    assert resolve(root, cache)[0].reused                                           # and that is reused in turn


def test_an_added_image_rebuilds_with_the_new_split(yolo_set):
    root, cache = yolo_set
    resolve(root, cache)
    set_read_only(root, False)
    images = {**IMAGES, "im12": (30, 30, [(1, 3, 4, 25, 26)])}
    new = write_yolo_image(root, "im12", images)
    set_read_only(root)
    lists, _ = resolve(root, cache)
    assert not lists.reused
    # 13 images: trainval = int(13 * 0.9) = 11, train = int(11 * 0.9) = 9, val = 2, test = 2.
    lines = list_lines(lists)
    assert {k: len(v) for k, v in lines.items()} == {"train": 9, "val": 2, "test": 2} == lists.counts
    every = {image_of(line): line for split in lines.values() for line in split}
    assert len(every) == 13 and every[new] == expected_line(new, images["im12"][2])


@pytest.mark.parametrize("change", ["delete", "edit"])
def test_a_deleted_or_edited_list_file_is_rebuilt(yolo_set, change):
    root, cache = yolo_set
    first, _ = resolve(root, cache)
    contents = list_lines(first)
    target = first.train if change == "edit" else first.val
    if change == "delete":
        os.remove(target)
    else:
        with open(target, "a") as f:
            f.write(f"{root}/images/im00.jpg 1,1,2,2,0\n")
    lists, _ = resolve(root, cache)
    assert not lists.reused and os.path.isfile(target)
    assert list_lines(lists) == contents
    assert resolve(root, cache)[0].reused


def test_a_torn_or_garbage_manifest_rebuilds(yolo_set):
    root, cache = yolo_set
    first, _ = resolve(root, cache)
    contents = list_lines(first)
    manifest = os.path.join(first.cache_dir, "manifest.json")
    with open(manifest, "rb") as f:
        text = f.read()
    for garbage in (text[: len(text) // 2], b"\xff\xfe\x00garbage", b"", b"{}", b"null"):
        with open(manifest, "wb") as f:
            f.write(garbage)
        lists, _ = resolve(root, cache)
        assert not lists.reused, garbage
        assert list_lines(lists) == contents and lists.counts == first.counts
        with open(manifest) as f:
            assert json.load(f)["counts"] == first.counts                           # a whole manifest again
    assert resolve(root, cache)[0].reused



@pytest.mark.parametrize("garbage", ["[1]", '"text"', "7", "params only"])
def test_a_valid_json_manifest_of_the_wrong_shape_rebuilds(yolo_set, garbage):
    root, cache = yolo_set
    first, _ = resolve(root, cache)
    manifest = os.path.join(first.cache_dir, "manifest.json")
    if garbage == "params only":
        with open(manifest) as f:
            garbage = json.dumps({"params": json.load(f)["params"]})
    with open(manifest, "w") as f:
        f.write(garbage)
    lists, _ = resolve(root, cache)
    assert not lists.reused and list_lines(lists) == list_lines(first)


def test_a_roboflow_export_keeps_its_own_split(tmp_path):
    yaml_path = write_roboflow(str(tmp_path / "shapes"))
    set_read_only(str(tmp_path / "shapes"))
    before = snapshot(str(tmp_path / "shapes"))
    cache = str(tmp_path / "cache")
    lists, printed = resolve(yaml_path, cache)
    assert lists.format == "yaml" and lists.root == yaml_path and lists.class_names == CLASSES
    assert re.fullmatch(r"shapes-[0-9a-f]{8}", os.path.basename(lists.cache_dir))   # data.yaml: named by its folder
    expected = {split: [expected_line(os.path.join(tmp_path, "shapes", folder, "images", f"{n}.jpg"), IMAGES[n][2])
                        for n in ROBOFLOW_SPLIT[folder]]
                for split, folder in (("train", "train"), ("val", "valid"), ("test", "test"))}
    assert {k: sorted(v) for k, v in list_lines(lists).items()} == {k: sorted(v) for k, v in expected.items()}
    assert lists.counts == {"train": 3, "val": 1, "test": 2}
    assert "own split" in printed
    again, _ = resolve(str(tmp_path / "shapes"), cache)                             # the folder: the same dataset
    assert again.reused and again.cache_dir == lists.cache_dir
    assert snapshot(str(tmp_path / "shapes")) == before
    set_read_only(str(tmp_path / "shapes"), False)


def test_a_data_yaml_without_test_has_no_test_list(tmp_path):
    yaml_path = write_roboflow(str(tmp_path / "shapes"), with_test=False)
    lists, _ = resolve(yaml_path, str(tmp_path / "cache"))
    assert lists.test is None and lists.list_path("test") is None
    assert lists.counts == {"train": 3, "val": 1, "test": 0}
    assert len(read_lines(lists.train)) == 3 and len(read_lines(lists.val)) == 1


def test_datasets_of_the_same_name_get_their_own_caches(tmp_path):
    cache = str(tmp_path / "cache")
    one, _ = resolve(write_roboflow(str(tmp_path / "a" / "shapes")), cache)
    two, _ = resolve(write_roboflow(str(tmp_path / "b" / "shapes"), with_test=False), cache)
    assert one.cache_dir != two.cache_dir and not two.reused
    assert all(os.path.basename(lists.cache_dir).startswith("shapes-") for lists in (one, two))
    assert one.counts["test"] == 2 and two.counts["test"] == 0
    assert all(image_of(line).startswith(str(tmp_path / "b")) for line in read_lines(two.train))


def test_a_classes_file_that_differs_from_the_data_yaml_is_an_error_naming_both(tmp_path):
    yaml_path = write_roboflow(str(tmp_path / "shapes"))
    classes = tmp_path / "my_classes.txt"
    classes.write_text("square\ncircle\n")                                          # the other order
    with pytest.raises(UserError) as err:
        resolve(yaml_path, str(tmp_path / "cache"), classes_path=str(classes))
    message = str(err.value)
    assert str(classes) in message and yaml_path in message
    assert "square, circle" in message and "circle, square" in message
    classes.write_text("circle\nsquare\n")                                          # the same names: accepted
    lists, _ = resolve(yaml_path, str(tmp_path / "cache"), classes_path=str(classes))
    assert lists.class_names == CLASSES and not lists.reused and lists.counts["train"] == 3


def test_a_voc_folder_without_classes_txt_takes_the_sorted_xml_names(tmp_path):
    voc = write_voc(str(tmp_path / "fruit"))
    set_read_only(voc)
    before = snapshot(voc)
    lists, printed = resolve(voc, str(tmp_path / "cache"))
    names = ["apple", "mango", "zebra"]
    assert lists.format == "voc" and lists.class_names == names and read_lines(lists.classes_path) == names
    assert "sorted" in printed and "apple, mango, zebra" in printed
    # seeded_split(6 ids): trainval = int(6 * 0.9) = 5, train = int(5 * 0.9) = 4, val = 1, test = 1.
    lines = list_lines(lists)
    assert {k: len(v) for k, v in lines.items()} == {"train": 4, "val": 1, "test": 1} == lists.counts
    every = {image_of(line): line for split in lines.values() for line in split}
    for name, (_, _, objects) in VOC_OBJECTS.items():
        path = os.path.join(voc, "JPEGImages", f"{name}.jpg")
        assert every[path] == expected_line(path, [(names.index(n), *box) for n, *box in objects])
    assert snapshot(voc) == before
    set_read_only(voc, False)


def test_a_voc_folder_with_classes_txt_takes_its_order(tmp_path):
    voc = write_voc(str(tmp_path / "fruit"))
    cache = str(tmp_path / "cache")
    assert resolve(voc, cache)[0].class_names == ["apple", "mango", "zebra"]
    names = ["zebra", "apple", "mango"]
    with open(os.path.join(voc, "classes.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    lists, printed = resolve(voc, cache)                                            # a classes.txt appeared: rebuilt
    assert not lists.reused and lists.class_names == names and read_lines(lists.classes_path) == names
    assert "sorted" not in printed
    every = {image_of(line): line for split in list_lines(lists).values() for line in split}
    path = os.path.join(voc, "JPEGImages", "v1.jpg")
    assert every[path] == f"{path} 5,5,30,20,1 1,1,9,9,2"                          # apple = 1, mango = 2


def test_a_vocdevkit_with_one_year_resolves_to_it(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    write_voc(str(devkit / "VOC2007"))
    lists, _ = resolve(str(devkit), str(tmp_path / "cache"))
    assert lists.format == "voc" and lists.root == str(devkit / "VOC2007")
    assert sum(lists.counts.values()) == len(VOC_OBJECTS)
    write_voc(str(devkit / "VOC2012"))
    with pytest.raises(UserError, match="VOC2012"):
        resolve(str(devkit), str(tmp_path / "cache"))


def test_a_coco_json_gets_the_seeded_split_and_its_boxes(tmp_path):
    path = write_coco(str(tmp_path / "pets"))
    lists, _ = resolve(path, str(tmp_path / "cache"))
    assert lists.format == "coco" and lists.class_names == ["cat", "dog"]             # categories sorted by id
    assert re.fullmatch(r"instances-[0-9a-f]{8}", os.path.basename(lists.cache_dir))
    # seeded_split(10 ids): trainval = int(10 * 0.9) = 9, train = int(9 * 0.9) = 8, val = 1, test = 1.
    lines = list_lines(lists)
    assert {k: len(v) for k, v in lines.items()} == {"train": 8, "val": 1, "test": 1} == lists.counts
    every = {image_of(line): line for split in lines.values() for line in split}
    for name, (_, _, boxes) in sorted(IMAGES.items())[:10]:
        image = os.path.join(tmp_path, "pets", f"{name}.jpg")
        assert every[image] == expected_line(image, boxes)
    assert resolve(path, str(tmp_path / "cache"))[0].reused



def test_a_yolo_folder_whose_data_yaml_only_names_the_classes(tmp_path):
    root = str(tmp_path / "shapes")
    for name in ("im00", "im01", "im02"):
        write_yolo_image(root, name)
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write("names: [circle, square]\n")
    lists, _ = resolve(root, str(tmp_path / "cache"))
    assert lists.class_names == CLASSES and sum(lists.counts.values()) == 3


def test_an_unchanged_dataset_is_never_written_even_when_rebuilt(yolo_set):
    root, cache = yolo_set
    before = snapshot(root)
    first, _ = resolve(root, cache)
    os.remove(os.path.join(first.cache_dir, "manifest.json"))                      # rebuilt without a manifest
    assert not resolve(root, cache)[0].reused
    os.remove(first.val)                                                             # and over an existing one
    assert not resolve(root, cache)[0].reused
    assert resolve(root, cache)[0].reused
    assert snapshot(root) == before
    assert all(not (os.stat(os.path.join(p, n)).st_mode & stat.S_IWUSR)
               for p, _, files in os.walk(root) for n in files)                     # still read-only
