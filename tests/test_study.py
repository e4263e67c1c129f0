"""study.py and its focal preset: a real two-variant study with a tiny budget, continuing it, a failed run, the
statistics by hand, the objectness split against a hand-computed assignment, and command-line errors."""
import json
import re
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nets.yolo import YoloBody
from utils.data.annotation import format_annotation_line
from utils.engine import study
from utils.errors import UserError, run_entry

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
ANCHORS = np.array([[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146], [142, 110], [192, 243], [459, 401]],
                   dtype=float)                                   # model_data/yolo_anchors.txt
SIDE = 64                                                         # val images are SIDE x SIDE: letterbox is identity
TINY = ["--UnFreeze_Epoch", "1", "--Freeze_Train", "False", "--input_shape", "[64, 64]", "--width_mult", "0.125",
        "--depth_mult", "0.33", "--Unfreeze_batch_size", "2", "--num_workers", "0", "--device", "cpu"]
VARIANTS = "[{'name': 'bce', 'focal_loss': False}, {'name': 'focal_g2_a0.25', 'focal_loss': True, 'focal_alpha': 0.25, 'focal_gamma': 2}]"


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
    lists = {"train": write_images(tmp_path / "images", "train", 4, 96, rng),
             "val": write_images(tmp_path / "images", "val", 3, SIDE, rng),
             "test": write_images(tmp_path / "images", "test", 2, 80, rng)}
    for name, lines in lists.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "classes.txt").write_text("block\nslab\n")
    return {"args": ["--train_annotation_path", str(tmp_path / "train.txt"), "--val_annotation_path",
                     str(tmp_path / "val.txt"), "--test_annotation_path", str(tmp_path / "test.txt"),
                     "--classes_path", str(tmp_path / "classes.txt"), "--study_dir", str(tmp_path / "study")],
            "study": tmp_path / "study", "val_lines": lists["val"]}


def test_focal_study_runs_each_variant_and_seed_then_continues(data, capsys):
    argv = ["config/focal_study.py", *data["args"], *TINY, "--variants", VARIANTS, "--seeds", "2"]
    assert study.main(argv) == 0
    root = data["study"]
    report = json.loads((root / "results.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["bce", "focal_g2_a0.25"] and report["seeds"] == [11, 12]
    assert report["images"] == {"val": 3, "test": 2} and len(report["runs"]) == 4
    assert "python study.py config/focal_study.py" in report["command"] and "--variants" in report["command"]
    for run in report["runs"]:
        stored = json.loads((root / run["variant"] / f"seed{run['seed']}" / "result.json").read_text())
        assert stored == run
        assert run["settings"]["focal_loss"] == (run["variant"] != "bce") and run["settings"]["seed"] == run["seed"]
        assert ("--focal_gamma=2" in run["command"]) == (run["variant"] != "bce") and f"--seed={run['seed']}" in run["command"]
        for split in ("val", "test"):
            assert 0 <= run[split]["map50"] <= 1 and set(run[split]["ap50"]) == {"block", "slab"}
            assert 0 <= run[split]["map50_nms_agnostic"] <= 1 and 0 <= run[split]["class_agnostic_ap50"] <= 1
        assert 0 < run["mean_obj_pos"] < 1 and run["final_losses"]["epoch"] == 1
    bce = report["variants"][0]
    maps = [r["val"]["map50"] for r in report["runs"] if r["variant"] == "bce"]
    assert bce["val_map50"][0] == pytest.approx(np.mean(maps)) and bce["val_map50"][2] == 2
    assert bce["vs_baseline"]["val_map50"]["diff"] == 0 and bce["vs_baseline"]["val_map50"]["verdict"] == "tie"
    markdown = (root / "results.md").read_text()
    assert "| bce | focal_loss=False | 2 |" in markdown
    assert "class-agnostic AP@0.5 | test class-agnostic" in markdown and "Per-class test AP@0.5" in markdown
    # The imbalance per level at the study's input (by-hand figures in tests/test_positives_per_image.py).
    assert "| input | level | positives per image | anchor cells per image | negatives per positive |" in markdown
    for stride, cells in ((32, 3 * 2 * 2), (16, 3 * 4 * 4), (8, 3 * 8 * 8)):
        assert re.search(rf"\| 64 \| stride {stride} \| [0-9.]+ \| {cells} \| ", markdown), stride
    assert (root / ".gitignore").read_text().count("*.pth") == 1
    assert "*/seed*/.run.lock" in (root / ".gitignore").read_text().splitlines()   # a running study's lock
    for name in ("map_bars.png", "objectness_bce.png", "objectness_focal_g2_a0.25.png"):
        with Image.open(root / name) as image:
            assert image.format == "PNG"

    # The same command again trains nothing; a run whose result is gone but whose checkpoint is there resumes.
    capsys.readouterr()
    os.remove(root / "bce" / "seed12" / "result.json")
    assert study.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 3 and out.count("resuming") == 1 and "training," not in out
    again = json.loads((root / "results.json").read_text())
    assert [r["val"] for r in again["runs"]] == [r["val"] for r in report["runs"]]

    # A second study of one of the variants, under another results_name, shares the runs and leaves results.md
    # and the first study's histograms as they were.
    before = (root / "results.md").read_text()
    histogram = (root / "objectness_bce.png").read_bytes()
    assert study.main([*argv[:-4], "--variants", "[{'name': 'bce'}]", "--seeds", "2",
                             "--results_name", "bce_only", "--train_runs", "False"]) == 0
    only = json.loads((root / "bce_only.json").read_text())
    assert [v["name"] for v in only["variants"]] == ["bce"] and len(only["runs"]) == 2
    assert (root / "bce_only.md").is_file() and (root / "bce_only_map_bars.png").is_file()
    assert (root / "bce_only_objectness_bce.png").is_file()
    assert (root / "results.md").read_text() == before and (root / "objectness_bce.png").read_bytes() == histogram


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
    """Stands in for train.py: 'trains' by copying ``weights``, fails focal runs with a message."""
    script = tmp_path / "fake_train.py"
    script.write_text(
        "import os, shutil, sys\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "if args.get('focal_loss') == 'True':\n"
        "    print('step 1 ...')\n"
        "    sys.exit('Training stopped: loss is NaN')\n"
        f"shutil.copy({str(weights)!r}, os.path.join(args['save_dir'], 'last_epoch_weights.pth'))\n")
    return str(script)


def test_failed_run_is_reported_and_scores_follow_the_loss_assignment(data, tmp_path, monkeypatch, capsys):
    torch.manual_seed(3)
    model = YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    monkeypatch.setattr(study, "_TRAIN_SCRIPT", fake_train_script(tmp_path, tmp_path / "weights.pth"))
    assert study.main(["config/focal_study.py", *data["args"], "--input_shape", "[64, 64]", "--variants", VARIANTS,
                       "--seeds", "1"]) == 1
    assert "failed: train.py exit 1: Training stopped: loss is NaN" in capsys.readouterr().out
    report = json.loads((data["study"] / "results.json").read_text())
    assert [r["variant"] for r in report["runs"]] == ["bce"]
    assert report["variants"][1]["seeds"] == [] and report["variants"][1]["val_map50"] == [None, None, 0]
    assert not (data["study"] / "objectness_focal_g2_a0.25.png").exists()

    positives, negatives = reference_scores(model, data["val_lines"])
    stored = np.load(data["study"] / "bce" / "seed11" / "objectness.npz")
    assert len(stored["positives"]) == len(positives) and len(stored["negatives"]) == len(negatives)
    assert report["runs"][0]["mean_obj_pos"] == pytest.approx(positives.mean(), rel=1e-5)
    assert report["runs"][0]["mean_obj_neg"] == pytest.approx(negatives.mean(), rel=1e-5)
    sets = study.EvaluationSets(study.resolve_study_config([*data["args"], "--input_shape", "[64, 64]"]))
    got_pos, got_neg = study.objectness_scores(model, sets.val_dataset, sets.loss_for({}), torch.device("cpu"))
    assert np.sort(got_pos) == pytest.approx(positives, abs=1e-6)
    assert np.sort(got_neg) == pytest.approx(np.sort(negatives), abs=1e-6)


def test_a_study_folder_of_other_settings_is_refused(data, tmp_path, monkeypatch):
    torch.save(YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33).state_dict(), tmp_path / "weights.pth")
    monkeypatch.setattr(study, "_TRAIN_SCRIPT", fake_train_script(tmp_path, tmp_path / "weights.pth"))
    base = [*data["args"], "--input_shape", "[64, 64]", "--seeds", "1"]
    assert study.main([*base, "--sweep", "mosaic=[False]"]) == 0
    with pytest.raises(UserError, match="was made with other settings"):
        study.main([*base, "--sweep", "mosaic=[False]", "--UnFreeze_Epoch", "7"])

    # Same overrides, but a train.py default changed since the run: refused, naming the setting and both values.
    result = json.loads((data["study"] / "mosaic=False" / "seed11" / "result.json").read_text())
    assert result["train_config"]["mosaic"] is False and result["train_config"]["UnFreeze_Epoch"] == 300
    defaults = study.train_defaults()
    monkeypatch.setattr(study, "train_defaults", lambda: {**defaults, "iou_thresh": 0.5})
    with pytest.raises(UserError, match=r"iou_thresh: 0\.213 then, 0\.5 now\); give those values explicitly"):
        study.main([*base, "--sweep", "mosaic=[False]"])
    assert study.main([*base, "--sweep", "mosaic=[False]", "--iou_thresh", "0.213"]) == 0   # pinned: accepted


def test_settings_a_run_did_not_use_are_not_compared(monkeypatch):
    defaults = study.train_defaults()
    bce = {"train_config": {**defaults, "focal_loss": False, "focal_type": "focal", "focal_gamma": 2,
                            "obj_target": "binary"}, "settings": {}}
    now = {**defaults, "focal_type": "varifocal", "focal_gamma": 1.5, "obj_target": "auto"}
    monkeypatch.setattr(study, "train_defaults", lambda: now)
    study.check_same_run(bce, {"focal_loss": False}, "bce/result.json")       # focal settings unused: accepted
    focal = {**bce, "train_config": {**bce["train_config"], "focal_loss": True}}
    with pytest.raises(UserError, match=r"focal_gamma: 2 then, 1\.5 now; focal_type: 'focal' then, 'varifocal' now; "
                                        r"obj_target: 'binary' then, 'iou' now"):
        study.check_same_run(focal, {"focal_loss": True}, "focal/result.json")
    study.check_same_run(focal, {"focal_loss": True, "focal_type": "focal", "focal_gamma": 2}, "focal/result.json")


def test_a_copied_study_folder_is_the_same_run():
    # save_dir is where the run lies, not how it trained: a run copied into another study is reused, and a real
    # difference beside it is still refused.
    defaults = study.train_defaults()
    run = {"train_config": {**defaults, "save_dir": "old_study/recipe/seed11", "seed": 11},
           "settings": {"save_dir": "old_study/recipe/seed11", "seed": 11}}
    study.check_same_run(run, {"save_dir": "new_study/recipe/seed11", "seed": 11}, "r.json")
    with pytest.raises(UserError, match=r"seed: 11 then, 12 now"):
        study.check_same_run(run, {"save_dir": "new_study/recipe/seed11", "seed": 12}, "r.json")
    old_format = {"settings": run["settings"]}                     # a result without train_config
    study.check_same_run(old_format, {"save_dir": "elsewhere", "seed": 11}, "r.json")
    with pytest.raises(UserError, match="seed"):
        study.check_same_run(old_format, {"save_dir": "elsewhere", "seed": 12}, "r.json")


def test_auto_objectness_target_is_iou_for_varifocal_only():
    from nets.yolo_training import resolve_obj_target

    assert resolve_obj_target("auto", True, "varifocal") == "iou"
    assert resolve_obj_target("auto", True, "focal") == "binary"
    assert resolve_obj_target("auto", False, "varifocal") == "binary"
    assert resolve_obj_target("binary", True, "varifocal") == "binary"


def test_mean_sd_and_the_two_standard_error_rule_by_hand():
    assert study.mean_sd([0.5, 0.6, None, 0.7]) == pytest.approx((0.6, 0.1, 3))
    assert study.mean_sd([0.4]) == (0.4, None, 1) and study.mean_sd([]) == (None, None, 0)
    # Δ 0.1, SE sqrt(0.1²/3 + 0.1²/3) = 0.0816: 2 SE = 0.163 > 0.1, a tie.
    tie = study.compare((0.6, 0.1, 3), (0.5, 0.1, 3))
    assert tie["diff"] == pytest.approx(0.1) and tie["se"] == pytest.approx(0.08165, abs=1e-5)
    assert tie["verdict"] == "tie"
    assert study.compare((0.91, 0.01, 3), (0.51, 0.01, 3))["verdict"] == "better"
    assert study.compare((0.51, 0.01, 3), (0.91, 0.02, 4))["verdict"] == "worse"
    assert study.compare((0.5, None, 1), (0.4, None, 1))["verdict"] == "n/a (needs 2+ seeds)"


def test_nms_across_classes_is_compared_per_seed_by_hand():
    def run(seed, aware, agnostic, with_agnostic=True):
        split = {"map50": aware, "map50_95": aware / 2, "best_f1_threshold": 0.5}
        if with_agnostic:
            split.update(map50_nms_agnostic=agnostic, map50_95_nms_agnostic=agnostic / 2, class_agnostic_ap50=0.9)
        return {"variant": "recipe", "seed": seed, "val": split, "test": split, "mean_obj_pos": 0.5,
                "mean_obj_neg": 0.01, "train_seconds": 1.0}
    config = {"variants": [{"name": "recipe"}], "baseline": ""}
    # Gains 0.10, 0.12, 0.14: mean 0.12, sd 0.02, SE 0.02 / sqrt(3) = 0.0115, beyond 2 SE.
    summaries, _ = study.aggregate(config, [run(11, 0.60, 0.70), run(12, 0.50, 0.62), run(13, 0.70, 0.84)])
    gain = study.paired_gain(summaries[0]["val_map50_nms_agnostic_gain"])
    assert gain["diff"] == pytest.approx(0.12) and gain["se"] == pytest.approx(0.02 / 3 ** 0.5)
    assert gain["verdict"] == "better" and summaries[0]["val_map50_nms_agnostic"][0] == pytest.approx(0.72)
    # Scores 0.70, 0.62, 0.84: sd sqrt((0.02² + 0.10² + 0.12²) / 2) = 0.111.
    table = study.where_map_goes_markdown(summaries)
    assert "| recipe | 0.900 ± 0.000 | 0.900 ± 0.000 | 0.720 ± 0.111 | 0.720 ± 0.111 | +0.120 ± 0.012 (better) |" \
        in "\n".join(table)
    # Gains 0.10, -0.10, 0.03: mean 0.01, a tie; runs scored before the metric existed give no table.
    summaries, _ = study.aggregate(config, [run(11, 0.6, 0.7), run(12, 0.6, 0.5), run(13, 0.6, 0.63)])
    assert study.paired_gain(summaries[0]["val_map50_nms_agnostic_gain"])["verdict"] == "tie"
    summaries, _ = study.aggregate(config, [run(11, 0.6, 0.7, False), run(12, 0.5, 0.6, False)])
    assert summaries[0]["val_map50_nms_agnostic"] == (None, None, 0)
    assert study.where_map_goes_markdown(summaries) == []


def test_paired_interval_sizes_and_levels_by_hand():
    def run(variant, seed, map50, ap_small):
        split = {"map50": map50, "map50_95": map50 / 2, "best_f1_threshold": 0.5, "level_map50": [0.1, 0.2, map50],
                 "by_size": {"ap_small": ap_small, "ap_medium": 0.5, "ap_large": -1, "ar_small": 0.6, "ar100": 0.7}}
        return {"variant": variant, "seed": seed, "val": split, "test": split, "mean_obj_pos": 0.5,
                "mean_obj_neg": 0.01, "train_seconds": 1.0}
    config = {"variants": [{"name": "bce"}, {"name": "focal", "focal_loss": True}], "baseline": ""}
    # Paired differences 0.04, 0.02, 0.06 (seed 14 has no bce run: not paired): mean 0.04, sd 0.02, n 3,
    # half-width t(0.975, 2) * 0.02 / sqrt(3) = 4.303 * 0.011547 = 0.04969.
    results = [run("bce", 11, 0.50, 0.30), run("focal", 11, 0.54, 0.40), run("bce", 12, 0.60, 0.30),
               run("focal", 12, 0.62, 0.40), run("bce", 13, 0.40, 0.30), run("focal", 13, 0.46, 0.40),
               run("focal", 14, 0.99, 0.99)]
    summaries, base = study.aggregate(config, results)
    paired = summaries[1]["paired"]["test_map50"]
    assert paired["n"] == 3 and paired["diff"] == pytest.approx(0.04)
    assert paired["low"] == pytest.approx(0.04 - 0.04969, abs=1e-4) and paired["high"] == pytest.approx(0.08969, abs=1e-4)
    assert summaries[1]["paired"]["test_ap_small"]["diff"] == pytest.approx(0.10)
    assert summaries[0]["paired"]["test_map50"]["diff"] == 0                # the baseline against itself
    assert summaries[0]["test_ap_large"] == (None, None, 0)                # -1: no large object in the set
    table = "\n".join(study.paired_markdown(summaries, base) + study.by_size_markdown(summaries))
    assert "| focal | 3 | +0.040 [-0.010, +0.090] |" in table
    assert "| bce | 0.300 ± 0.000 | 0.500 ± 0.000 | – | 0.600 ± 0.000 | 0.700 ± 0.000 | 0.100 ± 0.000 | 0.200 ± 0.000 " \
           "| 0.500 ± 0.100 |" in table and "mAP@0.5 stride 8 alone" in table


def test_sweep_is_a_cartesian_product_with_readable_names():
    rest, axes = study.split_sweep_arguments(["--seeds", "2", "--sweep", "focal_loss=[False, True]",
                                              "focal_gamma=[1, 2]", "--study_dir", "x"])
    assert rest == ["--seeds", "2", "--study_dir", "x"] and axes == {"focal_loss": [False, True], "focal_gamma": [1, 2]}
    variants = study.build_variants({"sweep": axes, "variants": [], "baseline": ""}, {"focal_loss", "focal_gamma"})
    assert [v["name"] for v in variants] == ["focal_loss=False_focal_gamma=1", "focal_loss=False_focal_gamma=2",
                                             "focal_loss=True_focal_gamma=1", "focal_loss=True_focal_gamma=2"]
    assert variants[3] == {"name": "focal_loss=True_focal_gamma=2", "focal_loss": True, "focal_gamma": 2}
    shaped = study.build_variants({"sweep": {"input_shape": [[128, 128]]}, "variants": [], "baseline": ""},
                                  {"input_shape"})
    assert shaped[0]["name"] == "input_shape=128x128"


@pytest.mark.parametrize("argv, message", [
    (["--bogus", "1"], "unknown setting --bogus"),
    (["--seed", "1"], "--seed is set by each run of the study"),
    (["--sweep", "focal_gamma"], "expected name=[value, ...]"),
    (["--sweep", "focal_gama=[1]"], "focal_gama is not a train.py setting"),
    (["--variants", "[{'save_dir': 'x'}]"], "sets save_dir, which each run sets itself"),
    (["--variants", "[{'name': 'a'}, {'name': 'a', 'mosaic': False}]"], "a repeats"),
    (["--variants", "[{'name': 'a/b'}]"], "must be a folder name"),
    (["--variants", "[{'name': 'a'}]", "--baseline", "b"], "baseline 'b' is not a variant"),
])
def test_bad_study_command_line_is_an_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_entry(study.main, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_focal_preset_lists_bce_then_six_focal_forms():
    config = study.resolve_study_config(["config/focal_study.py"])
    names = [v["name"] for v in config["variants"]]
    assert names[0] == "bce" and len(names) == 7 and all(n.startswith("focal_g") for n in names[1:])
    assert all(v["focal_loss"] is True and 0 <= v["focal_alpha"] <= 1 for v in config["variants"][1:])


def test_the_deeppcb_preset_goes_on_top_of_the_quick_start():
    # --data "": the shared DeepPCB copy lies outside the repository (its lists are not built here).
    config = study.resolve_study_config(["config/quickstart.py", "config/focal_deeppcb.py", "--data", ""])
    assert [v["name"] for v in config["variants"]] == ["bce", "focal"]
    overrides = config["train_overrides"]
    assert (overrides["width_mult"], overrides["input_shape"], overrides["UnFreeze_Epoch"]) == (0.25, [320, 320], 10)
    assert overrides["eval_flag"] is False and config["study_dir"] == "study_out/focal_deeppcb"


@pytest.mark.parametrize("variants, message", [
    ("[{'name': 'a', 'focal_alpha': 1.5}]", "--focal_alpha takes a number from 0 to 1, got 1.5"),
    ("[{'name': 'a', 'focal_loss': 'yes'}]", "--focal_loss takes True or False, got 'yes'"),
    ("[{'name': 'a', 'input_shape': 96}]", "--input_shape takes a list like [416, 416]"),
])
def test_a_variant_value_is_typed_like_train_py_command_line(variants, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_entry(study.main, ["--variants", variants])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: variant ")


def test_a_preset_reaches_every_run():
    config = study.resolve_study_config(["config/quickstart.py", "--UnFreeze_Epoch", "3", "--seeds", "1"])
    settings = study.run_settings(config, {"name": "bce"}, 11, "out/bce/seed11")
    assert settings["width_mult"] == 0.25 and settings["input_shape"] == [160, 160]
    assert settings["optimizer_type"] == "adam" and settings["UnFreeze_Epoch"] == 3
    assert "seeds" not in settings


def test_train_settings_pass_through_unchanged():
    overrides = {"input_shape": [64, 64], "save_period": 5, "train_annotation_path": "my data/2007 train.txt",
                 "device": "cpu", "Min_lr": None, "model_path": "True"}
    variant = {"name": "g", "focal_loss": True, "focal_alpha": 0.5, "focal_gamma": 1}
    settings = study.run_settings({"train_overrides": overrides}, variant, 12, "out dir/g/seed12")
    command = study.train_command(settings, resume=True)
    assert command[:2] == [sys.executable, study._TRAIN_SCRIPT]
    import train
    from utils.config import resolve_config

    config = resolve_config(vars(train), command[2:])
    assert {k: config[k] for k in overrides} == overrides
    assert (config["focal_loss"], config["focal_alpha"], config["focal_gamma"]) == (True, 0.5, 1)
    assert (config["save_dir"], config["seed"], config["resume"]) == ("out dir/g/seed12", 12, True)


def test_reevaluate_without_training_rescores_only_the_finished_runs(data, tmp_path, monkeypatch, capsys):
    torch.save(YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33).state_dict(), tmp_path / "weights.pth")
    monkeypatch.setattr(study, "_TRAIN_SCRIPT", fake_train_script(tmp_path, tmp_path / "weights.pth"))
    base = [*data["args"], "--input_shape", "[64, 64]", "--seeds", "1", "--sweep", "mosaic=[False, True]"]
    assert study.main([*base, "--train_runs", "False"]) == 0
    assert "not run yet" in capsys.readouterr().out and not (data["study"] / "mosaic=False" / "seed11").exists()
    assert study.main(base) == 0
    path = data["study"] / "mosaic=True" / "seed11" / "result.json"
    first = json.loads(path.read_text())
    assert first["torch_threads"] == torch.get_num_threads()
    # A record of how the run was trained (e.g. one rebuilt for an older run) must survive the re-evaluation.
    first["train_config"]["focal_alpha"], first["train_config_source"] = 0.25, "rebuilt by hand"
    path.write_text(json.dumps(first))
    capsys.readouterr()
    assert study.main([*base, "--train_runs", "False", "--reevaluate", "True"]) == 0
    out = capsys.readouterr().out
    assert "training," not in out and "done earlier" not in out
    again = json.loads(path.read_text())
    assert again["val"] == first["val"] and again["train_seconds"] == first["train_seconds"]
    assert again["train_config"] == first["train_config"] and again["train_config_source"] == "rebuilt by hand"


def test_a_run_copied_under_another_variant_name_counts_for_its_new_variant(data, tmp_path, monkeypatch):
    torch.save(YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33).state_dict(), tmp_path / "weights.pth")
    monkeypatch.setattr(study, "_TRAIN_SCRIPT", fake_train_script(tmp_path, tmp_path / "weights.pth"))
    base = [*data["args"], "--input_shape", "[64, 64]", "--seeds", "1"]
    assert study.main([*base, "--variants", "[{'name': 'old_name', 'mosaic': False}]"]) == 0
    shutil.copytree(data["study"] / "old_name", data["study"] / "new_name")
    assert study.main([*base, "--train_runs", "False", "--variants",
                       "[{'name': 'base', 'mosaic': True}, {'name': 'new_name', 'mosaic': False}]"]) == 0
    report = json.loads((data["study"] / "results.json").read_text())
    copied = [v for v in report["variants"] if v["name"] == "new_name"][0]
    assert copied["val_map50"][2] == 1 and [r["variant"] for r in report["runs"] if r] == ["new_name"]


def test_a_run_is_scored_with_the_anchors_and_input_size_it_was_trained_with(data, tmp_path):
    """A variant of other anchors and input size (metadata written by train.py) is decoded as YOLO, and so
    get_map.py, decodes it, not with the study's defaults."""
    from utils.metrics.evaluation import evaluate_model
    from utils.engine.run_metadata import write_metadata
    from yolo import YOLO

    torch.manual_seed(4)
    weights = tmp_path / "other_anchors.pth"
    torch.save(YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33).state_dict(), weights)
    anchors = ANCHORS * 0.25
    write_metadata(str(weights), {"anchors": anchors.tolist(), "anchors_mask": MASK, "input_shape": [96, 96],
                                  "letterbox_image": True, "scale_x_y": [2.0, 2.0, 2.0]})
    sets = study.EvaluationSets(study.resolve_study_config([*data["args"], "--input_shape", "[64, 64]"]))
    decoding = sets.decoding_for(str(weights))
    assert decoding.input_shape == (96, 96) and decoding.scale_x_y == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(decoding.anchors, anchors)
    yolo = YOLO(model_path=str(weights), classes_path=data["args"][data["args"].index("--classes_path") + 1],
                device="cpu")
    assert (yolo.decoding.input_shape, yolo.decoding.anchors_mask, yolo.decoding.letterbox_image,
            yolo.decoding.scale_x_y) == (decoding.input_shape, decoding.anchors_mask, decoding.letterbox_image,
                                         decoding.scale_x_y)
    np.testing.assert_allclose(yolo.decoding.anchors, decoding.anchors)

    result, positives, _ = study.evaluate_run(str(weights), sets, {"iou_thresh": 0.213, "neighbour_cells": True})
    for split, samples in sets.splits.items():
        expected = evaluate_model(yolo.net, samples, yolo.decoding, sets.class_names, yolo.torch_device).metrics
        assert result[split]["map50"] == pytest.approx(expected["map50"], abs=1e-9)
        assert result[split]["best_f1"] == pytest.approx(expected["best_f1"]["f1"], abs=1e-9)
    assert len(positives) > 0                        # the objectness split ran at 96 px with those anchors
