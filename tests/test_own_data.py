"""A user's own data, start to finish, from a folder outside the repository: a Roboflow export trains with
``--data data.yaml`` into its own run folder, a second run does not touch the first, and the printed next commands
(predict, evaluate) work with no other flag."""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOC = os.path.join(ROOT, "VOCdevkit", "VOC2007")
NAMES = ["circle", "square", "triangle", "star"]
SPLITS = {"train": 12, "valid": 4, "test": 4}
# Only what keeps the test short: the model, input size and recipe are auto's (one epoch instead of its budget).
SHORT = ["--UnFreeze_Epoch", "1", "--num_workers", "0"]


def yolo_label(xml_path):
    """The YOLO label text (``class cx cy w h``, normalized) of one sample VOC XML."""
    root = ET.parse(xml_path).getroot()
    width, height = int(root.find("size/width").text), int(root.find("size/height").text)
    lines = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        x1, y1, x2, y2 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        lines.append(f"{NAMES.index(obj.find('name').text)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A Roboflow export of 20 shipped sample images: train/ valid/ test/, ``../`` paths, names as a mapping."""
    root = tmp_path_factory.mktemp("shapes")
    ids = sorted(n[:-4] for n in os.listdir(os.path.join(VOC, "JPEGImages")))
    start = 0
    for split, count in SPLITS.items():
        for sub in ("images", "labels"):
            (root / split / sub).mkdir(parents=True)
        for image_id in ids[start:start + count]:
            with open(os.path.join(VOC, "JPEGImages", f"{image_id}.jpg"), "rb") as f:
                (root / split / "images" / f"{image_id}.jpg").write_bytes(f.read())
            (root / split / "labels" / f"{image_id}.txt").write_text(
                yolo_label(os.path.join(VOC, "Annotations", f"{image_id}.xml")))
        start += count
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 4\n"
        "names: {0: circle, 1: square, 2: triangle, 3: star}\n\nroboflow:\n  workspace: me\n  version: 1\n")
    return root


def run(script, args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def two_runs(export, tmp_path_factory):
    """Two trainings on the export from a working folder of the user's: ``(workdir, first, second)``."""
    work = tmp_path_factory.mktemp("work")
    first = run("train.py", ["--data", str(export / "data.yaml"), *SHORT], work)
    assert first.returncode == 0, first.stderr[-3000:]
    weights = work / "logs" / "exp" / "best_epoch_weights.pth"
    before = digest(weights)
    second = run("train.py", ["--data", str(export / "data.yaml"), *SHORT, "--seed", "5"], work)
    assert second.returncode == 0, second.stderr[-3000:]
    assert digest(weights) == before, "the second run changed the first run's weights"
    return work, first, second


def test_runs_land_in_numbered_folders_and_say_what_auto_chose(two_runs):
    work, first, second = two_runs
    assert (work / "logs" / "exp" / "best_epoch_weights.pth").is_file()
    assert (work / "logs" / "exp2" / "best_epoch_weights.pth").is_file()
    assert "Done. Run folder logs/exp/" in first.stdout and "Done. Run folder logs/exp2/" in second.stdout
    # The dataset's own split (Roboflow's folders), read once and reused by the second run.
    assert "Using the dataset's own split: train: 12, val: 4, test: 4" in first.stdout
    assert "Reusing the training lists" in second.stdout
    auto = [line for line in first.stdout.splitlines() if line.startswith("Auto settings")]
    assert len(auto) == 1 and "quick-start model" in auto[0] and "1 epoch as given" in auto[0]
    meta = json.loads((work / "logs" / "exp" / "best_epoch_weights.json").read_text())
    assert meta["class_names"] == NAMES and meta["width_mult"] == 0.25


def test_the_end_of_training_prints_a_class_table_and_the_next_commands(two_runs):
    _, first, _ = two_runs
    out = first.stdout
    assert "Best weights on the 4 validation images:" in out
    for name in NAMES:
        assert re.search(rf"^\s+{name}\s", out, flags=re.M), name
    assert "mAP@0.5 =" in out


def next_commands(stdout):
    """The argument lists of the commands printed after ``Next:``."""
    tail = stdout.split("\nNext:\n", 1)[1]
    return [shlex.split(line.strip())[1:] for line in tail.splitlines() if line.strip().startswith("python ")]


def test_the_printed_next_commands_work_as_printed(two_runs, export):
    work, first, _ = two_runs
    predict, evaluate = next_commands(first.stdout)
    assert os.path.samefile(predict[0], os.path.join(ROOT, "predict.py"))
    assert predict[1:] == ["--model_path", "logs/exp/best_epoch_weights.pth", "--source", predict[-1]]
    assert evaluate[1:] == ["--model_path", "logs/exp/best_epoch_weights.pth", "--data", str(export / "data.yaml")]
    metadata = work / "logs" / "exp" / "best_epoch_weights.json"
    before = digest(metadata)

    shown = subprocess.run([sys.executable, *predict], cwd=work, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    image = os.path.basename(predict[-1])
    line = [row for row in shown.stdout.splitlines() if row.startswith(f"{image}: ")]
    assert len(line) == 1 and line[0].endswith(f"-> img_out/exp/{image}")
    assert (work / "img_out" / "exp" / image).is_file()

    scored = subprocess.run([sys.executable, *evaluate], cwd=work, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "(test of" in scored.stdout                 # the export's test list, found from the yaml alone
    metrics = json.loads((work / "map_out" / "exp" / "metrics.json").read_text())
    assert metrics["counts"]["images"] == SPLITS["test"] and list(metrics["classes"]) == NAMES
    assert set(metrics["by_size"]) == {"ap_small", "ap_medium", "ap_large", "ar100", "ar_small", "ar_medium",
                                       "ar_large"} and "APs" in scored.stdout
    assert digest(metadata) == before, "evaluation changed the weights' metadata"


def test_predict_detects_on_the_test_list_of_data(two_runs, export):
    work, _, _ = two_runs
    shown = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--model_path",
                            "logs/exp/best_epoch_weights.pth", "--data", str(export / "data.yaml"), "--name", "tested"],
                           cwd=work, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    tested = sorted(os.listdir(export / "test" / "images"))
    assert sorted(os.listdir(work / "img_out" / "tested")) == [n[:-4] + ".png" for n in tested]
    assert sum(row.split(":")[0] in tested for row in shown.stdout.splitlines()) == len(tested)


def test_study_scores_the_lists_of_data(export, tmp_path, monkeypatch):
    from utils.engine import study

    monkeypatch.chdir(tmp_path)
    config = study.resolve_study_config(["--data", str(export / "data.yaml"), "--seeds", "1"])
    with open(config["test_annotation_path"]) as f:
        tested = [line.split()[0] for line in f]
    assert sorted(os.path.basename(p) for p in tested) == sorted(os.listdir(export / "test" / "images"))
    assert open(config["classes_path"]).read().split() == NAMES
    assert config["train_overrides"]["data"] == str(export / "data.yaml")     # each run reads the same lists
