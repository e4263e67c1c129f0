"""Compare objectness losses: train the same model, data, seed and budget once per setting, then evaluate.

Each entry of ``settings`` is ``(name, focal_loss, alpha, gamma)``: ``name`` is the run's folder
under ``study_dir``; ``focal_loss=False`` is plain BCE (alpha and gamma are then unused). Every
train.py setting is accepted too and passed to each run unchanged, except the ones a run sets
itself (focal_loss, focal_alpha, focal_gamma, save_dir, eval_flag, resume):
    python focal_study.py --UnFreeze_Epoch 40 --Freeze_Epoch 0 --input_shape "[128, 128]" \\
        --settings "[('bce', False, 0.25, 2), ('focal_g2_a0.25', True, 0.25, 2)]"

Each run is ``python train.py ... --save_dir study_dir/<name>`` in its own process (log in
``study_dir/<name>/train.log``), so runs share nothing but the settings. A failed run becomes a row
of the table, not the end of the study. Then every run's ``best_epoch_weights.pth`` is evaluated by
the same code on the validation list, and ``study_dir`` receives ``results.md`` (table and command),
``results.json``, ``map_bars.png`` and ``objectness_<name>.png`` (objectness scores on the cells the
loss treats as positives vs all other cells).
"""
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.config import command_line_names, parse_value, print_help, resolve_config, script_settings

settings = [("bce", False, 0.25, 2),        # objectness losses, one run each: (name, focal_loss, alpha, gamma)
            ("focal_g0.5_a0.25", True, 0.25, 0.5), ("focal_g0.5_a0.5", True, 0.5, 0.5),
            ("focal_g1_a0.25", True, 0.25, 1), ("focal_g1_a0.5", True, 0.5, 1),
            ("focal_g2_a0.25", True, 0.25, 2), ("focal_g2_a0.5", True, 0.5, 2)]
study_dir = "study_out"                    # runs (one folder per setting), results.md/.json and plots
resume_study = False                       # True: keep runs whose best_epoch_weights.pth exists instead of retraining

_TRAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
# train.py settings that define a run of the study, so the command line cannot set them for all runs.
_PER_RUN = ("focal_loss", "focal_alpha", "focal_gamma", "save_dir", "eval_flag", "resume")
# Detections kept down to this score for mAP, as the trainer's own validation does.
_EVAL_CONFIDENCE = 0.001
# What loading or evaluating one run's weights raises on bad files (unreadable, wrong shapes): that row fails.
_EVAL_ERRORS = (OSError, ValueError, RuntimeError, KeyError)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# Row keys of the results table's number columns, in column order.
_METRIC_COLUMNS = ("map50", "map50_95", "f1_threshold", "f1", "mean_obj_pos", "mean_obj_neg")


def train_defaults():
    """train.py's settings (module globals), less the per-run ones."""
    import train

    return {k: v for k, v in script_settings(vars(train)).items() if k not in _PER_RUN}


def resolve_study_config(argv):
    """The study's settings plus train.py's, with ``argv`` applied; exits with a message on bad input."""
    own = script_settings(globals())
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(own, __file__)
        print(f"\nEvery train.py setting is accepted as well (python train.py --help lists them), except "
              f"{', '.join(_PER_RUN)}, which each run sets itself.")
        raise SystemExit(0)
    per_run = sorted(command_line_names(argv) & set(_PER_RUN))
    if per_run:
        raise SystemExit(f"error: --{per_run[0]} is set by each run of the study; choose the objectness losses "
                         f"with --settings \"[(name, focal_loss, alpha, gamma), ...]\"")
    config = resolve_config({**train_defaults(), **own}, argv, script_path=__file__)
    config["settings"] = check_settings(config["settings"])
    return config


def check_settings(entries):
    """``entries`` as a list of ``(name, focal_loss, alpha, gamma)`` tuples; SystemExit naming a bad one."""
    def fail(problem):
        raise SystemExit(f"error: --settings: {problem}; each entry is (name, focal_loss, alpha, gamma), "
                         f"e.g. ('focal_g2_a0.25', True, 0.25, 2)")

    if not isinstance(entries, (list, tuple)) or not entries:
        fail(f"expected a non-empty list, got {entries!r}")
    checked = []
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            fail(f"{entry!r} is not a 4-tuple")
        name, focal, alpha, gamma = entry
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            fail(f"name {name!r} must be a folder name of letters, digits, '.', '_' and '-'")
        if not isinstance(focal, bool):
            fail(f"focal_loss of {name!r} must be True or False, got {focal!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            fail(f"alpha of {name!r} must be a number in [0, 1], got {alpha!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
            fail(f"gamma of {name!r} must be a number >= 0, got {gamma!r}")
        checked.append((name, focal, alpha, gamma))
    names = [entry[0] for entry in checked]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        fail(f"names must be unique (they are folders), {', '.join(repeated)} repeats")
    return checked


def train_command(setting, train_overrides, run_dir):
    """``[python, train.py, --name=value ...]``: the shared overrides, then this setting's objectness loss."""
    _, focal, alpha, gamma = setting
    run_settings = {**train_overrides, "focal_loss": focal, "focal_alpha": alpha, "focal_gamma": gamma,
                    "save_dir": run_dir, "eval_flag": True}
    return [sys.executable, _TRAIN_SCRIPT, *(f"--{k}={_argument_text(v)}" for k, v in run_settings.items())]


def _argument_text(value):
    """``value`` as utils/config.py parses it back exactly: a string as itself when it would stay a
    string (a path), anything else as a Python literal."""
    return value if isinstance(value, str) and parse_value(value) == value else repr(value)


def _shell_quote(argument):
    """Like ``shlex.quote``, but in double quotes where that needs no escapes (readable literals)."""
    quoted = shlex.quote(argument)
    if quoted != argument and not any(c in argument for c in '"$`\\!'):
        return f'"{argument}"'
    return quoted


def shell_command(arguments):
    return " ".join(_shell_quote(argument) for argument in arguments)


def run_training(command, log_path):
    """Run ``command`` with its output in ``log_path``; returns ``(exit status, seconds)``."""
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    return status, time.perf_counter() - start


def last_line(path):
    """The last non-empty line of a text file (a failed run's error), '' when there is none."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f.read().replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def validation_data(config):
    """What evaluating any run needs: the validation set as the trainer loads it, anchors, a loss
    (for its target assignment) and the device."""
    from nets.yolo_training import YOLOLoss
    from utils.annotation import read_annotation_file
    from utils.dataloader import YoloDataset
    from utils.dataset_check import scan_annotation_lines
    from utils.utils import get_anchors, get_classes, resolve_device

    class_names, num_classes = get_classes(config["classes_path"])
    anchors, _ = get_anchors(config["anchors_path"])
    lines, _ = scan_annotation_lines(read_annotation_file(config["val_annotation_path"]), num_classes, class_names)
    dataset = YoloDataset(lines, config["input_shape"], num_classes, epoch_length=1, mosaic=False, mixup=False,
                          mosaic_prob=0, mixup_prob=0, train=False, seed=config["seed"])
    loss = YOLOLoss(anchors, num_classes, config["input_shape"], anchors_mask=config["anchors_mask"])
    return SimpleNamespace(dataset=dataset, anchors=anchors, anchors_mask=config["anchors_mask"],
                           num_classes=num_classes, input_shape=config["input_shape"], loss=loss,
                           device=resolve_device(config["device"]), width_mult=config["width_mult"],
                           depth_mult=config["depth_mult"])


def load_model(weights_path, data):
    """The YoloBody a weights file describes, loaded, in eval mode on ``data.device``."""
    from nets.yolo import YoloBody, resolve_scale
    from utils.checkpoint import load_state_dict_file

    state_dict = load_state_dict_file(weights_path)
    width_mult, depth_mult = resolve_scale(data.width_mult, data.depth_mult, state_dict)
    model = YoloBody(data.anchors_mask, data.num_classes, width_mult=width_mult, depth_mult=depth_mult)
    model.load_state_dict(state_dict)
    return model.to(data.device).eval()


@torch.no_grad()
def objectness_scores(model, dataset, loss, device, batch_size=8):
    """Sigmoid objectness of every cell and anchor of every level over ``dataset``, split by the loss's
    own target assignment: ``(positives (P,), negatives (Q,))`` float32 arrays."""
    from utils.dataloader import yolo_dataset_collate

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=yolo_dataset_collate)
    positives, negatives = [], []
    for images, targets in loader:
        outputs = model(images.to(device))
        boxes = torch.cat(targets)                                          # (N, 5) cx, cy, w, h over input, class
        image_of_box = torch.repeat_interleave(torch.arange(len(targets)), torch.tensor([len(t) for t in targets]))
        for level, output in enumerate(outputs):
            batch, _, height, width = output.shape
            anchors = len(loss.anchors_mask[level])
            logits = output.float().view(batch, anchors, -1, height, width)[:, :, 4]           # (B, A, H, W)
            scores = torch.sigmoid(logits).cpu()
            grid_boxes = boxes * torch.tensor([width, height, width, height, 1.0])           # grid units, as the loss
            positive = loss._assign(level, grid_boxes, image_of_box, batch, anchors, height, width)["obj"]
            positives.append(scores[positive])
            negatives.append(scores[~positive])
    return torch.cat(positives).numpy(), torch.cat(negatives).numpy()


def evaluate_run(weights_path, data):
    """mAP, best-F1 point and objectness scores of one run's weights on the validation set.

    mAP comes from ``utils.callbacks.evaluate_map`` rather than ``get_map.evaluate_model``: it is the
    trainer's own validation metric (the one that picked each run's best epoch and calibrated its
    score_threshold), on the letterboxed frame the loss targets live in, so the table, the runs'
    sidecars and the objectness histograms all describe the same images the same way.
    """
    from utils.callbacks import evaluate_map

    model = load_model(weights_path, data)
    result = evaluate_map(model, data.dataset, data.anchors, data.anchors_mask, data.num_classes, data.input_shape,
                          data.device, conf_thres=_EVAL_CONFIDENCE)
    positives, negatives = objectness_scores(model, data.dataset, data.loss, data.device)
    metrics = {key: _number(result[key]) for key in ("map50", "map50_95", "f1_threshold", "f1")}
    metrics.update(mean_obj_pos=_mean(positives), mean_obj_neg=_mean(negatives),
                   num_pos=int(positives.size), num_neg=int(negatives.size))
    return metrics, positives, negatives


def _number(value):
    """A float, or None for NaN (JSON has no NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _mean(values):
    return float(values.mean()) if values.size else None


def describe_loss(row):
    return f"focal α={row['alpha']} γ={row['gamma']}" if row["focal_loss"] else "BCE"


def best_row(rows):
    """The evaluated row with the highest mAP@0.5 (then mAP@.5:.95); None when no run scored above 0."""
    scored = [row for row in rows if row.get("map50")]
    return max(scored, key=lambda row: (row["map50"], row["map50_95"] or 0.0)) if scored else None


def plot_map_bars(rows, path):
    """Grouped bars of mAP@0.5 and mAP@.5:.95 per setting (failed runs show as gaps)."""
    figure = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = np.arange(len(rows))
    for offset, key, label in ((-0.2, "map50", "mAP@0.5"), (0.2, "map50_95", "mAP@[.5:.95]")):
        values = [row.get(key) for row in rows]
        bars = axes.bar(positions + offset, [np.nan if v is None else v for v in values], width=0.4, label=label)
        axes.bar_label(bars, labels=["" if v is None else f"{v:.3f}" for v in values], fontsize=7)
    axes.set_xticks(positions, [row["name"] for row in rows], rotation=30, ha="right")
    axes.set(ylabel="validation mAP", ylim=(0, 1), title="objectness loss study")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def _cell(value, digits=4):
    return "–" if value is None else f"{value:.{digits}f}"


def results_markdown(rows, command, num_val_images):
    """The results table with the best row marked, and the command that produced it."""
    best = best_row(rows)
    header = ("| setting | objectness loss | mAP@0.5 | mAP@.5:.95 | best-F1 threshold | F1 | mean obj (positives) "
              "| mean obj (negatives) | best epoch | train time | status |")
    lines = ["# Objectness loss study", "", f"Command: `{command}`", "",
             f"Same model, data, seed and training budget in every row; only the objectness loss differs. "
             f"Each run's best_epoch_weights.pth evaluated on the {num_val_images} validation images with "
             f"utils/callbacks.evaluate_map at confidence {_EVAL_CONFIDENCE}. Mean objectness is over the cells "
             f"the loss assigns as positives, and over all other cells.", "", header, "|" + "---|" * 11]
    for row in rows:
        seconds = row.get("train_seconds")
        cells = [f"**{row['name']}** (best)" if row is best else row["name"], describe_loss(row),
                 *(_cell(row.get(key)) for key in _METRIC_COLUMNS), str(row.get("best_epoch") or "–"),
                 "–" if seconds is None else f"{seconds:.0f} s", row["status"].replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def train_all(config, train_overrides):
    """Train (or keep, with resume_study) every setting; returns one row per setting."""
    rows = []
    for number, setting in enumerate(config["settings"], 1):
        name, focal, alpha, gamma = setting
        run_dir = os.path.join(config["study_dir"], name)
        command = train_command(setting, train_overrides, run_dir)
        row = {"name": name, "focal_loss": focal, "alpha": alpha, "gamma": gamma, "run_dir": run_dir,
               "train_command": shell_command(["python", *command[1:]])}
        weights = os.path.join(run_dir, "best_epoch_weights.pth")
        progress = f"[{number}/{len(config['settings'])}] {name}:"
        if config["resume_study"] and os.path.isfile(weights):
            row.update(status=kept_status(run_dir, config["UnFreeze_Epoch"]), weights=weights)
            print(f"{progress} {row['status']} (found {weights})")
        else:
            log_path = os.path.join(run_dir, "train.log")
            print(f"{progress} training ({describe_loss(row)}), log {log_path}", flush=True)
            os.makedirs(run_dir, exist_ok=True)
            status, row["train_seconds"] = run_training(command, log_path)
            if status == 0:
                row.update(status="trained", weights=weights)
            else:
                row["status"] = f"failed: train.py exit {status}: {last_line(log_path)}"
            print(f"    {row['status']} in {row['train_seconds']:.0f} s")
        rows.append(row)
    return rows


def kept_status(run_dir, epochs):
    """'kept', with a warning when the run's last saved epoch is not the budget's last (so its best
    weights had less training than the other rows')."""
    from utils.run_metadata import read_metadata

    last = read_metadata(os.path.join(run_dir, "last_epoch_weights.pth")).get("epoch")
    return "kept" if last == epochs else f"kept, unfinished: last epoch {last} of {epochs}"


def evaluate_all(config, rows):
    """Add metrics to each trained row and write its objectness histogram; a failure marks the row."""
    from utils.plots import plot_score_histograms
    from utils.run_metadata import read_metadata

    runnable = [row for row in rows if "weights" in row]
    if not runnable:
        return 0
    try:
        data = validation_data(config)
    except _EVAL_ERRORS as err:
        for row in runnable:
            row["status"] = f"failed: reading the validation set: {err}"
        return 0
    for row in runnable:
        try:
            metrics, positives, negatives = evaluate_run(row["weights"], data)
        except _EVAL_ERRORS as err:
            row["status"] = f"failed: evaluating {row['weights']}: {err}"
            continue
        row.update(metrics, best_epoch=read_metadata(row["weights"]).get("epoch"))
        row["histogram"] = plot_score_histograms(
            positives, negatives, os.path.join(config["study_dir"], f"objectness_{row['name']}.png"),
            f"{row['name']} ({describe_loss(row)}): objectness on validation cells")
    return len(data.dataset)


def write_results(config, rows, command, train_overrides, num_val_images):
    os.makedirs(config["study_dir"], exist_ok=True)
    best = best_row(rows)
    report = {"command": command, "train_overrides": train_overrides, "eval_confidence": _EVAL_CONFIDENCE,
              "num_val_images": num_val_images, "best": best["name"] if best else None, "runs": rows}
    with open(os.path.join(config["study_dir"], "results.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    table = results_markdown(rows, command, num_val_images)
    with open(os.path.join(config["study_dir"], "results.md"), "w", encoding="utf-8") as f:
        f.write(table)
    plot_map_bars(rows, os.path.join(config["study_dir"], "map_bars.png"))
    return table


def main(argv):
    config = resolve_study_config(argv)
    given = command_line_names(argv)
    train_overrides = {k: config[k] for k in train_defaults() if k in given}
    command = shell_command(["python", "focal_study.py", *argv])
    try:
        rows = train_all(config, train_overrides)
    except KeyboardInterrupt:
        print(f"\nStudy interrupted. The same command with --resume_study True keeps the runs that have best "
              f"weights; delete an interrupted run's folder under {config['study_dir']}/ to train it again.")
        return 130
    num_val_images = evaluate_all(config, rows)
    print(write_results(config, rows, command, train_overrides, num_val_images))
    print(f"Results in {config['study_dir']}/ (results.md, results.json, map_bars.png, objectness_<setting>.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
