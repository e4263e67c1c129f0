"""focal_study.py: a two-setting study end to end with a tiny budget, resuming it, failed runs as rows,
the objectness split against a hand-computed assignment, and its command-line errors."""
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import focal_study
from nets.yolo import YoloBody
from utils.annotation import format_annotation_line

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
ANCHORS = np.array([[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146], [142, 110], [192, 243], [459, 401]],
                   dtype=float)                                   # model_data/yolo_anchors.txt
SIDE = 64                                                         # val images are SIDE x SIDE: letterbox is identity
TINY = ["--UnFreeze_Epoch", "1", "--Freeze_Epoch", "0", "--input_shape", "[64, 64]", "--width_mult", "0.125",
        "--depth_mult", "0.33", "--Unfreeze_batch_size", "2", "--num_workers", "0", "--device", "cpu"]
SETTINGS = "[('bce', False, 0.25, 2), ('focal_g2_a0.25', True, 0.25, 2)]"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One intra-op thread here and in the train.py subprocesses: these models are tiny, and on a
    shared machine two spinning OpenMP threads per process run them ~50x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def write_images(folder, prefix, count, side, rng):
    """PNG images (lossless: every reader sees the same pixels) with 1-2 bright boxes; their list lines."""
    lines = []
    for i in range(count):
        image = rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
        boxes = []
        for _ in range(rng.integers(1, 3)):
            w, h = rng.integers(10, side // 2, 2)
            x1, y1 = rng.integers(0, side - w), rng.integers(0, side - h)
            image[y1:y1 + h, x1:x1 + w] = 220
            boxes.append((x1, y1, x1 + w, y1 + h, int(rng.integers(2))))
        path = folder / f"{prefix} {i}.png"                          # a space in the path, as users have
        Image.fromarray(image).save(path)
        lines.append(format_annotation_line(path, boxes))
    return lines


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    train_lines = write_images(tmp_path / "images", "train", 4, 96, rng)
    val_lines = write_images(tmp_path / "images", "val", 3, SIDE, rng)
    (tmp_path / "train.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(val_lines) + "\n")
    (tmp_path / "classes.txt").write_text("block\nslab\n")
    return {"args": ["--train_annotation_path", str(tmp_path / "train.txt"), "--val_annotation_path",
                     str(tmp_path / "val.txt"), "--classes_path", str(tmp_path / "classes.txt"),
                     "--study_dir", str(tmp_path / "study")],
            "study": tmp_path / "study", "val_lines": val_lines}


def table_rows(markdown):
    return [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| setting")]


def test_study_trains_each_setting_then_resume_keeps_them(data, capsys):
    assert focal_study.main([*data["args"], *TINY, "--settings", SETTINGS]) == 0
    study = data["study"]
    markdown = (study / "results.md").read_text()
    rows = table_rows(markdown)
    assert [row.split("|")[1].strip().split()[0].strip("*") for row in rows] == ["bce", "focal_g2_a0.25"]
    assert "--settings \"[('bce', False, 0.25, 2)" in markdown                # the exact command is recorded
    report = json.loads((study / "results.json").read_text())
    runs = {run["name"]: run for run in report["runs"]}
    assert [run["status"] for run in report["runs"]] == ["trained", "trained"]
    assert "--focal_loss=True --focal_alpha=0.25 --focal_gamma=2" in runs["focal_g2_a0.25"]["train_command"]
    assert "--focal_loss=False" in runs["bce"]["train_command"]
    for run in runs.values():
        assert 0 <= run["map50"] <= 1 and 0 <= run["map50_95"] <= 1
        # Every cell of every level and anchor is either positive or negative: 3 * (2^2 + 4^2 + 8^2) per image.
        assert run["num_pos"] + run["num_neg"] == 3 * 3 * (4 + 16 + 64)
        assert 0 < run["mean_obj_pos"] < 1 and 0 < run["mean_obj_neg"] < 1
        assert run["best_epoch"] == 1
        with Image.open(run["histogram"]) as image:
            assert image.format == "PNG"
    with Image.open(study / "map_bars.png") as image:
        assert image.format == "PNG"

    weights = study / "bce" / "best_epoch_weights.pth"
    mtime, log_dirs = weights.stat().st_mtime_ns, sorted(os.listdir(study / "bce"))
    capsys.readouterr()
    assert focal_study.main([*data["args"], *TINY, "--settings", SETTINGS, "--resume_study", "True"]) == 0
    out = capsys.readouterr().out
    assert out.count(": kept (found ") == 2 and "training (" not in out         # both ran their 1 epoch
    assert weights.stat().st_mtime_ns == mtime and sorted(os.listdir(study / "bce")) == log_dirs
    rerun = {run["name"]: run for run in json.loads((study / "results.json").read_text())["runs"]}
    assert rerun["bce"]["status"] == "kept" and rerun["bce"]["map50"] == runs["bce"]["map50"]
    # A kept run trained for fewer epochs than the budget asks for is flagged in the table.
    longer = [*TINY[:1], "2", *TINY[2:]]
    assert focal_study.main([*data["args"], *longer, "--settings", SETTINGS, "--resume_study", "True"]) == 0
    assert (study / "results.md").read_text().count("| kept, unfinished: last epoch 1 of 2 |") == 2


def reference_scores(model, val_lines):
    """Objectness of positive / negative cells by hand: for each box the best of the 9 anchors by
    width/height IoU; if that anchor is on a level, the cell holding the box centre is positive."""
    positives, negatives = [], []
    for line in val_lines:
        path, *boxes = line.rsplit(" ", line.count(",") // 4)
        image = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            outputs = model(image)
        positive_cells = set()
        for box in boxes:
            x1, y1, x2, y2, _ = (int(v) for v in box.split(","))
            w, h = x2 - x1, y2 - y1
            ious = [min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah)) for aw, ah in ANCHORS]
            best = int(np.argmax(ious))
            level = next(l for l, mask in enumerate(MASK) if best in mask)
            stride = 32 // 2 ** level
            positive_cells.add((level, MASK[level].index(best), int((y1 + y2) / 2 // stride),
                                int((x1 + x2) / 2 // stride)))
        for level, output in enumerate(outputs):
            size = output.shape[-1]
            for k in range(3):
                for gy in range(size):
                    for gx in range(size):
                        score = torch.sigmoid(output[0, k * 7 + 4, gy, gx]).item()       # 7 = 5 + 2 classes
                        (positives if (level, k, gy, gx) in positive_cells else negatives).append(score)
    return np.sort(positives), np.array(negatives)


def fake_train_script(tmp_path, weights):
    """Stands in for train.py: 'trains' BCE by copying ``weights``, fails focal runs with a message."""
    script = tmp_path / "fake_train.py"
    script.write_text(
        "import os, shutil, sys\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "if args['focal_loss'] == 'True':\n"
        "    print('step 1 ...')\n"
        "    sys.exit('Training stopped: loss is NaN')\n"
        f"shutil.copy({str(weights)!r}, os.path.join(args['save_dir'], 'best_epoch_weights.pth'))\n")
    return str(script)


def test_failed_run_is_a_row_and_scores_follow_the_loss_assignment(data, tmp_path, monkeypatch):
    torch.manual_seed(3)
    model = YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    monkeypatch.setattr(focal_study, "_TRAIN_SCRIPT", fake_train_script(tmp_path, tmp_path / "weights.pth"))
    assert focal_study.main([*data["args"], "--input_shape", "[64, 64]", "--settings", SETTINGS]) == 0

    report = json.loads((data["study"] / "results.json").read_text())
    bce, focal = report["runs"]
    assert focal["status"] == "failed: train.py exit 1: Training stopped: loss is NaN" and "map50" not in focal
    assert bce["status"] == "trained"
    rows = table_rows((data["study"] / "results.md").read_text())
    assert len(rows) == 2 and "failed: train.py exit 1" in rows[1]
    assert not (data["study"] / "objectness_focal_g2_a0.25.png").exists()

    positives, negatives = reference_scores(model, data["val_lines"])
    assert bce["num_pos"] == len(positives) and bce["num_neg"] == len(negatives)
    assert bce["mean_obj_pos"] == pytest.approx(positives.mean(), rel=1e-5)
    assert bce["mean_obj_neg"] == pytest.approx(negatives.mean(), rel=1e-5)
    data_for_eval = focal_study.validation_data(focal_study.resolve_study_config(
        [*data["args"], "--input_shape", "[64, 64]"]))
    got_pos, got_neg = focal_study.objectness_scores(model, data_for_eval.dataset, data_for_eval.loss,
                                                     torch.device("cpu"))
    assert np.sort(got_pos) == pytest.approx(positives, abs=1e-6)
    assert np.sort(got_neg) == pytest.approx(np.sort(negatives), abs=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--bogus", "1"], "unknown setting --bogus"),
    (["--focal_gamma", "1"], "--focal_gamma is set by each run of the study"),
    (["--settings", "[('a', True, 0.25)]"], "is not a 4-tuple"),
    (["--settings", "[('a', True, 1.5, 2)]"], "alpha of 'a' must be a number in [0, 1]"),
    (["--settings", "[('a/b', False, 0.25, 2)]"], "must be a folder name"),
    (["--settings", "[('a', False, 0.25, 2), ('a', True, 0.25, 2)]"], "a repeats"),
])
def test_bad_command_line_is_an_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        focal_study.main(argv)
    assert exit_info.value.code != 0
    text = str(exit_info.value.code) + capsys.readouterr().err
    assert message in text


def test_train_settings_pass_through_unchanged():
    overrides = {"input_shape": [64, 64], "save_period": 5, "train_annotation_path": "my data/2007 train.txt",
                 "device": "cpu", "Min_lr": None, "model_path": "True"}
    command = focal_study.train_command(("g", True, 0.5, 1), overrides, "out dir/g")
    assert command[:2] == [sys.executable, focal_study._TRAIN_SCRIPT]
    import train
    from utils.config import resolve_config

    config = resolve_config(vars(train), command[2:])
    assert {k: config[k] for k in overrides} == overrides
    assert (config["focal_loss"], config["focal_alpha"], config["focal_gamma"]) == (True, 0.5, 1)
    assert (config["save_dir"], config["eval_flag"]) == ("out dir/g", True)
