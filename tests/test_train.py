"""train.py end to end on tiny data: outputs, exact resume, bad inputs, unsafe weights, NaN stop, DDP."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from sample_lists import SAMPLE_LIST_IDS, sample_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--width_mult", "0.125", "--depth_mult", "0.33", "--input_shape", "[64, 64]", "--Freeze_Train", "False",
        "--Unfreeze_batch_size", "4", "--num_workers", "0", "--optimizer_type", "adam", "--Init_lr", "0.016",
        "--weight_decay", "0", "--eval_period", "1", "--seed", "3"]


def run_train(args, cwd=ROOT, timeout=300, env=None):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def read_csv(save_dir):
    run_dirs = [d for d in os.listdir(save_dir) if d.startswith("loss_")]
    assert len(run_dirs) == 1, run_dirs
    with open(os.path.join(save_dir, run_dirs[0], "losses.csv")) as f:
        return list(csv.DictReader(f)), os.path.join(save_dir, run_dirs[0])


def test_smoke_run_writes_weights_logs_and_plots_and_learns(tmp_path, lists):
    save = tmp_path / "logs"
    result = run_train([*TINY, *lists, "--UnFreeze_Epoch", "8", "--mosaic", "False", "--mixup", "False",
                        "--scale_range", "[1.0, 1.0]", "--Unfreeze_batch_size", "2", "--Init_lr", "0.032",
                        "--save_period", "4", "--eval_period", "4", "--save_dir", str(save)])
    assert result.returncode == 0, result.stderr[-3000:]
    rows, run_dir = read_csv(save)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert float(rows[-1]["train_loss"]) < 0.98 * float(rows[0]["train_loss"])
    assert [r["map50"] != "" for r in rows] == [False, False, False, True] * 2      # eval_period 4
    for name in ("last_epoch_weights.pth", "best_epoch_weights.pth", "best_epoch_weights.json", "last_checkpoint.pth"):
        assert (save / name).is_file(), name
    assert sorted(p.name[:5] for p in save.glob("ep*.pth")) == ["ep004", "ep008"]
    for name in ("config.json", "losses.csv", "loss_curve.png", "map_curve.png"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["input_shape"] == [64, 64] and config["width_mult"] == 0.125
    # Weight files stay plain state_dicts that upstream-style code loads with weights_only=True.
    state = torch.load(save / "best_epoch_weights.pth", weights_only=True)
    assert "yolo_head1.1.weight" in state and all(torch.is_tensor(v) for v in state.values())
    meta = json.load(open(save / "best_epoch_weights.json"))
    assert meta["input_shape"] == [64, 64] and meta["class_names"][0] == "circle"
    assert "Configurations:" in result.stdout and "Epoch 8: train loss" in result.stdout


def test_unknown_setting_is_an_error_listing_valid_names(tmp_path):
    result = run_train(["--focal_los", "True"])
    assert result.returncode == 2
    assert "unknown setting --focal_los" in result.stderr and "focal_loss" in result.stderr


def _wait_for(predicate, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_killed_then_resumed_run_equals_uninterrupted_run(tmp_path, lists):
    common = [*TINY, *lists, "--UnFreeze_Epoch", "3", "--mosaic_prob", "1.0", "--mixup_prob", "0.5"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_train([*common, "--save_dir", str(full)]).returncode == 0

    process = subprocess.Popen([sys.executable, "train.py", *common, "--save_dir", str(killed)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "last_checkpoint.pth"
    try:
        assert _wait_for(lambda: checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 1,
                         process, 240)
    finally:
        process.send_signal(signal.SIGKILL)       # no chance to save anything more
        process.wait()
    resumed = run_train([*lists, "--resume", "True", "--save_dir", str(killed)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    full_rows, _ = read_csv(full)
    resumed_rows, _ = read_csv(killed)
    assert [r["epoch"] for r in resumed_rows] == ["1", "2", "3"]
    for a, b in zip(full_rows, resumed_rows):
        for key in ("train_loss", "train_loc", "train_conf", "train_cls", "val_loss", "map50"):
            assert a[key] == b[key], (a["epoch"], key, a[key], b[key])


def write_bad_dataset(tmp_path):
    """A training list with one good image per bad entry kind, plus the bad entries themselves."""
    good = sample_lines(SAMPLE_LIST_IDS[:4])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    from utils.data.annotation import parse_annotation_line

    image_path = parse_annotation_line(good[0])[0]
    bad = [
        f"{tmp_path / 'missing.jpg'} 10,10,50,50,0",
        f"{corrupt} 10,10,50,50,0",
        f"{empty} 10,10,50,50,0",
        f"{image_path} -20,5,60,40,1",               # partly outside: clipped
        f"{image_path} 5000,5000,5100,5100,1",       # fully outside: dropped
    ]
    train = tmp_path / "bad_train.txt"
    train.write_text("\n".join(good + bad) + "\n")
    return train


def test_bad_inputs_are_reported_and_training_finishes(tmp_path, lists):
    train = write_bad_dataset(tmp_path)
    args = [*TINY, "--train_annotation_path", str(train), "--val_annotation_path", lists[3],
            "--UnFreeze_Epoch", "1", "--save_dir", str(tmp_path / "logs")]
    result = run_train(args)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "missing.jpg" in out and "corrupt.jpg" in out and "empty.jpg" in out
    assert "images skipped       3" in out
    assert "boxes clipped" in out or "clipped to the image: 1" in out
    assert "boxes dropped        1" in out
    assert (tmp_path / "logs" / "last_epoch_weights.pth").exists()


def test_a_class_file_that_misses_label_ids_stops_before_training(tmp_path, lists):
    good = sample_lines(SAMPLE_LIST_IDS[:2])
    from utils.data.annotation import parse_annotation_line

    image_path = parse_annotation_line(good[0])[0]
    train = tmp_path / "train.txt"
    train.write_text("\n".join(good + [f"{image_path} 10,10,50,50,9", f"{image_path} 10,10,50,50,4"]) + "\n")
    result = run_train([*TINY, "--train_annotation_path", str(train), "--val_annotation_path", lists[3],
                        "--UnFreeze_Epoch", "1", "--save_dir", str(tmp_path / "logs")])
    assert result.returncode == 2
    assert "uses class ids 4, 9" in result.stderr and "names 4 classes" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "logs" / "last_epoch_weights.pth").exists()


def test_nothing_usable_stops_with_a_clear_message(tmp_path, lists):
    bad = tmp_path / "all_bad.txt"
    bad.write_text(f"{tmp_path / 'missing.jpg'} 1,1,5,5,0\n")
    result = run_train([*TINY, "--train_annotation_path", str(bad), "--val_annotation_path", lists[3],
                        "--UnFreeze_Epoch", "1", "--save_dir", str(tmp_path / "logs")])
    assert result.returncode != 0
    assert "no usable" in (result.stderr + result.stdout).lower()
    assert "Traceback" not in result.stderr


def test_malicious_weights_are_refused_by_train_and_predict(tmp_path, lists, malicious_weights):
    evil, marker = malicious_weights
    result = run_train([*TINY, *lists, "--model_path", str(evil), "--UnFreeze_Epoch", "1",
                        "--save_dir", str(tmp_path / "logs")])
    assert result.returncode != 0
    assert "refusing to load" in result.stderr and "arbitrary code" in result.stderr
    assert "Traceback" not in result.stderr
    image = os.path.join(ROOT, "VOCdevkit", "VOC2007", "JPEGImages", "000002.jpg")
    predicted = subprocess.run([sys.executable, "predict.py", "--model_path", str(evil), "--image", image,
                                "--save_path", str(tmp_path / "out.png")], cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
    assert predicted.returncode != 0 and "refusing to load" in predicted.stderr
    assert not marker.exists()


def test_repeated_nan_losses_stop_cleanly_and_keep_the_last_checkpoint(tmp_path, lists, monkeypatch, capsys):
    import train
    from nets.yolo_training import YOLOLoss
    import utils.engine.trainer as trainer

    save = tmp_path / "logs"
    assert train.main([*TINY, *lists, "--UnFreeze_Epoch", "1", "--save_dir", str(save)]) == 0
    before = (save / "last_checkpoint.pth").read_bytes()

    class NaNLoss(YOLOLoss):
        def forward_with_terms(self, l, input, targets=None):
            loss, terms = super().forward_with_terms(l, input, targets)
            return loss * float("nan"), terms

    monkeypatch.setattr(trainer, "YOLOLoss", NaNLoss)
    monkeypatch.setattr(trainer, "train_one_epoch", _small_limit(trainer.train_one_epoch))
    status = train.main([*TINY, *lists, "--UnFreeze_Epoch", "3", "--resume", "True", "--save_dir", str(save)])
    assert status == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "learning rate" in err and "last good checkpoint" in err
    assert (save / "last_checkpoint.pth").read_bytes() == before


def _small_limit(train_one_epoch):
    """The real epoch loop with NONFINITE_LIMIT lowered so two NaN steps (of a 2-step epoch) stop the run."""
    import utils.engine.epoch as utils_fit

    def wrapped(*args, **kwargs):
        original = utils_fit.NONFINITE_LIMIT
        utils_fit.NONFINITE_LIMIT = 2
        try:
            return train_one_epoch(*args, **kwargs)
        finally:
            utils_fit.NONFINITE_LIMIT = original
    return wrapped


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrun_on_cpu(tmp_path, lists):
    save = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
         "train.py", *TINY, *lists, "--distributed", "True", "--UnFreeze_Epoch", "1", "--save_dir", str(save)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Weights identical on all 2 ranks." in result.stdout
    assert result.stdout.count("Configurations:") == 1          # only rank 0 prints
    rows, _ = read_csv(save)
    assert len(rows) == 1
    assert len([d for d in os.listdir(save) if d.startswith("loss_")]) == 1


@pytest.mark.parametrize("name, value, words", [
    ("lr_limits", [1e-4, 1e-3], "lr_limits must be None (upstream's) or [max, min]"),
    ("lr_limits", 1e-3, "lr_limits must be None"),
    ("iou_thresh", 1.5, "iou_thresh must be None or within (0, 1)"),
    ("nominal_batch_size", -1, "nominal_batch_size must be 0 (off)"),
    ("ema_tau", 0, "ema_tau must be a positive number"),
    ("crop_shape", [48, 64], "crop_shape must be None or [h, w], multiples of 32 within input_shape"),
    ("crop_shape", [512, 512], "crop_shape must be None or [h, w], multiples of 32 within input_shape"),
    ("crop_shape", 320, "crop_shape must be None or [h, w]"),
])
def test_bad_training_setting_is_named(name, value, words):
    from types import SimpleNamespace

    import train
    from utils.config import script_settings
    from utils.errors import UserError
    from utils.engine.trainer import _check_settings

    cfg = SimpleNamespace(**{**script_settings(vars(train)), name: value})
    with pytest.raises(UserError) as err:
        _check_settings(cfg)
    assert words in str(err.value)


def test_crop_training_detects_on_the_whole_input(tmp_path, lists):
    save = tmp_path / "crops"
    result = run_train([*TINY, *lists, "--input_shape", "[128, 128]", "--crop_shape", "[64, 64]", "--UnFreeze_Epoch",
                        "1", "--mosaic", "False", "--save_dir", str(save)])
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads((save / "last_epoch_weights.json").read_text())
    assert metadata["input_shape"] == [128, 128]                     # validation and inference: the whole image
    config = json.loads(next(save.glob("loss_*/config.json")).read_text())
    assert config["crop_shape"] == [64, 64]


def test_ema_tau_reaches_the_average(tmp_path, lists):
    # A tau of 1e-9 decays 0.9999 from the first step: the average barely leaves the initial weights. A tau of
    # 1e9 averages nothing: the average is the model. So the setting must reach ModelEMA for both to hold.
    gaps = {}
    for tau in ("1e-9", "1e9"):
        save = tmp_path / f"tau{tau}"
        result = run_train([*TINY, *lists, "--UnFreeze_Epoch", "1", "--mosaic", "False", "--eval_flag", "False",
                            "--ema_tau", tau, "--save_dir", str(save)])
        assert result.returncode == 0, result.stderr[-3000:]
        state = torch.load(save / "last_checkpoint.pth", map_location="cpu", weights_only=True)
        model, ema = state["model"], state["ema"]["ema"]
        gaps[tau] = max((model[k] - ema[k]).abs().max().item() for k in model if model[k].is_floating_point())
    assert gaps["1e9"] < 1e-6 < 1e-4 < gaps["1e-9"], gaps
