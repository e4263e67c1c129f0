"""The engine of ``study.py``: variants and seeds, one train.py process per run, each run's final weights scored on
the validation and the test list by utils/metrics/evaluation.py, results tables and plots (study.py's docstring says
what a study is and writes). Its settings are study.py's globals and train.py's, read from those files."""
import dataclasses
import difflib
import io
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nets.yolo_training import resolve_obj_target
from utils.atomic import atomic_savefig, atomic_write
from utils.config import (ConfigError, check_setting, command_line_names, file_settings, parse_value, print_help,
                          resolve_config)
from utils.paths import REPO_ROOT
from utils.errors import UserError

_TRAIN_SCRIPT = os.path.join(REPO_ROOT, "train.py")      # what each run executes (tests put a stand-in here)
_TRAIN_SETTINGS = os.path.join(REPO_ROOT, "train.py")    # where train.py's settings and limits are read
_STUDY_SCRIPT = os.path.join(REPO_ROOT, "study.py")
# train.py settings each run sets itself.
_PER_RUN = ("seed", "save_dir", "resume")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=-]*")
# (key in a run's result, column title) of the figures aggregated over seeds, in table order.
_SPLIT_METRICS = (("map50", "mAP@0.5"), ("map50_95", "mAP@.5:.95"))
# Where the mAP goes: the class-agnostic AP@0.5 (every detection given the right class: the mAP's ceiling if only
# the class were wrong) and the same weights scored with NMS across classes (YOLO's nms_agnostic).
_AGNOSTIC_METRICS = (("class_agnostic_ap50", "class-agnostic AP@0.5"),
                     ("map50_nms_agnostic", "mAP@0.5, NMS across classes"),
                     ("map50_95_nms_agnostic", "mAP@.5:.95, NMS across classes"))
# COCO's AP/AR by object size (utils/metrics/mean_ap.py; -1 where a size has no ground truth), from ``by_size``.
_SIZE_METRICS = (("ap_small", "APs"), ("ap_medium", "APm"), ("ap_large", "APl"), ("ar_small", "ARs"),
                 ("ar100", "AR100"))
# Metrics whose per-seed difference to the baseline is given with its 95 % interval (split, key).
_PAIRED_METRICS = (("val", "map50"), ("test", "map50"), ("test", "map50_95"), ("test", "ap_small"))
# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96, within 2 %).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_RESULT_FORMAT = "yolov4-pytorch study run v1"
_GITIGNORE = ("# written by study.py: weights, checkpoints and run logs stay out of git (result.json and\n"
              "# objectness.npz stay: the tables and plots are rebuilt from them)\n*.pth\n*/seed*/ep*.json\n"
              "*/seed*/loss_*/\n*/seed*/train.log\n*/seed*/.run.lock\n")


def train_limits(defaults):
    """train.py's ``_LIMITS`` for the settings a study passes on (``defaults``: ``train_defaults()``)."""
    limits = file_settings(_TRAIN_SETTINGS, private=("_LIMITS",)).get("_LIMITS", {})
    return {name: limit for name, limit in limits.items() if name in defaults}


def train_defaults():
    """train.py's settings (its module globals, read from the file), less the per-run ones."""
    return {k: v for k, v in file_settings(_TRAIN_SETTINGS).items() if k not in _PER_RUN}


def study_defaults():
    """study.py's own settings (its module globals, read from the file)."""
    return file_settings(_STUDY_SCRIPT)


def split_sweep_arguments(argv):
    """``argv`` without ``--sweep A B ...``, and the sweep axes it named (``{}`` when none)."""
    rest, axes, index = [], {}, 0
    while index < len(argv):
        if argv[index] != "--sweep":
            rest.append(argv[index])
            index += 1
            continue
        index += 1
        while index < len(argv) and not argv[index].startswith("--"):
            name, _, values = argv[index].partition("=")
            parsed = parse_value(values)
            if not name or not isinstance(parsed, (list, tuple)) or not parsed:
                raise UserError(f"--sweep {argv[index]!r}: expected name=[value, ...], "
                                 f"e.g. --sweep \"focal_gamma=[1, 2]\"")
            axes[name] = list(parsed)
            index += 1
    return rest, axes


def resolve_study_config(argv, own=None):
    """The study's settings plus train.py's, with ``argv`` applied; exits with a message on bad input."""
    own = study_defaults() if own is None else own
    if any(arg in ("-h", "--help") for arg in argv):
        print_help(own, _STUDY_SCRIPT)
        print("\nEvery train.py setting is accepted as well (python train.py --help lists them) and applies to "
              f"all runs, except {', '.join(_PER_RUN)}, which each run sets itself.")
        raise SystemExit(0)
    argv, axes = split_sweep_arguments(argv)
    per_run = sorted(command_line_names(argv) & set(_PER_RUN))
    if per_run:
        raise UserError(f"--{per_run[0]} is set by each run of the study (seeds: --seeds N and "
                         f"--first_seed; folders: --study_dir)")
    defaults = train_defaults()
    config = resolve_config({**defaults, **own}, argv, script_path=_STUDY_SCRIPT, limits=train_limits(defaults))
    config["sweep"] = axes or config["sweep"]
    config["variants"] = build_variants(config, defaults, train_limits(defaults))
    # A preset's settings (``study.py config/quickstart.py ...``) reach every run like command-line ones.
    given = command_line_names(argv)
    config["train_overrides"] = {k: config[k] for k in defaults if k in given or config[k] != defaults[k]}
    if config["data"]:
        use_data_lists(config, given)
    return config


def use_data_lists(config, given):
    """``--data``: the study evaluates the lists train.py builds from it (utils/data/data_source.py, the same cache),
    and its test list unless ``test_annotation_path`` is given."""
    from utils.data.data_source import resolve_data

    lists = resolve_data(config["data"], classes_path=config["classes_path"] if "classes_path" in given else None)
    config.update(train_annotation_path=lists.train, val_annotation_path=lists.val, classes_path=lists.classes_path)
    if not config["test_annotation_path"]:
        if lists.test is None:
            raise UserError(f"{config['data']} has no test images: give --test_annotation_path (a list to score "
                            f"the runs on besides validation)")
        config["test_annotation_path"] = lists.test


def build_variants(config, train_names, limits=None):
    """The list of ``{"name": ..., **overrides}`` dicts from ``variants`` or the ``sweep`` axes, checked: each key a
    train.py setting; when ``train_names`` is the dict of train.py's defaults, each value of the type of its default
    and within ``limits`` (train.py's ``_LIMITS``), as on train.py's command line."""
    if config["sweep"] and config["variants"]:
        raise UserError("give either sweep or variants, not both")
    if config["sweep"]:
        axes = config["sweep"]
        if not isinstance(axes, dict):
            raise UserError(f"sweep must be a dict name -> list of values, got {axes!r}")
        entries = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    else:
        entries = [dict(entry) for entry in config["variants"]] if config["variants"] else [{}]
    checked = [_checked_variant(entry, train_names, limits or {}) for entry in entries]
    names = [variant["name"] for variant in checked]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"variant names must be unique (they are folders): {', '.join(repeated)} repeats")
    if config["baseline"] and config["baseline"] not in names:
        raise UserError(f"baseline {config['baseline']!r} is not a variant ({', '.join(names)})")
    return checked


def _checked_variant(entry, train_names, limits):
    if not isinstance(entry, dict):
        raise UserError(f"a variant is a dict of train.py settings, got {entry!r}")
    overrides = {k: v for k, v in entry.items() if k != "name"}
    for key in overrides:
        if key in _PER_RUN:
            raise UserError(f"variant {entry!r} sets {key}, which each run sets itself")
        if key not in train_names:
            close = difflib.get_close_matches(key, sorted(train_names), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UserError(f"variant {entry!r}: {key} is not a train.py setting{hint}")
        if isinstance(train_names, dict):
            try:
                overrides[key] = check_setting(key, train_names[key], overrides[key], limits.get(key))
            except ConfigError as err:
                raise UserError(f"variant {entry!r}: {err.message}") from None
    name = entry.get("name") or variant_name(overrides)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"variant name {name!r} must be a folder name of letters, digits, '.', '_', '=', '-'")
    return {"name": name, **overrides}


def variant_name(overrides):
    """A folder name from a variant's overrides, e.g. ``focal_loss=True_focal_gamma=2``; ``default`` for none."""
    parts = [f"{key}={_compact(value)}" for key, value in overrides.items()]
    return re.sub(r"[^A-Za-z0-9._=-]", "", "_".join(parts)) or "default"


def _compact(value):
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


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


def run_settings(config, variant, seed, run_dir):
    """The train.py settings of one run: the study's shared overrides, the variant's, its seed and folder."""
    overrides = {k: v for k, v in variant.items() if k != "name"}
    # auto False: a study compares exactly the settings it names, never ones fitted to the machine.
    return {"auto": False, **config["train_overrides"], **overrides, "seed": seed, "save_dir": run_dir}


def effective_settings(settings):
    """Every train.py setting a run trains with, JSON-ready: train.py's defaults under the run's ``settings``."""
    return json.loads(json.dumps({**train_defaults(), **settings}))


_FOCAL_ONLY = ("focal_alpha", "focal_gamma", "focal_normalize", "focal_type", "focal_loss_ratio")


def _without_location(settings):
    """``settings`` without ``save_dir``: where a run is stored does not change how it trained."""
    return {k: v for k, v in settings.items() if k != "save_dir"}


def training_settings(config):
    """``config`` without what cannot change how a run trains: where it is saved (a study folder may be copied
    or moved); the focal settings of a run without focal loss; ``obj_target`` as it resolves (``"auto"``)."""
    config = _without_location(config)
    if "obj_target" in config:
        config["obj_target"] = resolve_obj_target(config["obj_target"], config.get("focal_loss"),
                                                  config.get("focal_type", "focal"))
    if not config.get("focal_loss"):
        for name in _FOCAL_ONLY:
            config.pop(name, None)
    return config


def check_same_run(result, settings, result_path):
    """Refuse a finished run of other settings: the same overrides are not enough when a train.py default changed
    since (a run then trained otherwise). Settings train.py did not have yet when the run was made are assumed
    at their defaults (new settings default to the behaviour before them); settings the run did not use (the
    focal ones without focal loss) are not compared. Results written before ``train_config`` was recorded are
    compared by their overrides only."""
    if result.get("train_config") is None:
        recorded, current = result["settings"], json.loads(json.dumps(settings))
        recorded, current = _without_location(recorded), _without_location(current)
        names = sorted(set(recorded) ^ set(current) | {k for k in recorded if recorded[k] != current.get(k)})
    else:
        recorded = training_settings(result["train_config"])
        current = training_settings(effective_settings(settings))
        names = sorted(k for k in recorded if k in current and recorded[k] != current[k])
    if names:
        changes = "; ".join(f"{k}: {recorded.get(k)!r} then, {current.get(k)!r} now" for k in names)
        raise UserError(f"{result_path} was made with other settings ({changes}); give those values explicitly, "
                         f"use another --study_dir, or delete that folder to rerun it")


def train_command(settings, resume=False):
    """``[python, train.py, --name=value ...]`` for one run (``--resume=True`` to continue its checkpoint)."""
    extra = {"resume": True} if resume else {}
    return [sys.executable, _TRAIN_SCRIPT, *(f"--{k}={_argument_text(v)}" for k, v in {**settings, **extra}.items())]


def run_seeds(config):
    return [int(config["first_seed"]) + k for k in range(int(config["seeds"]))]


def run_training(command, log_path):
    """Run ``command`` with its output appended to ``log_path``; returns ``(exit status, seconds)``."""
    start = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    return status, time.perf_counter() - start


def last_line(path):
    """The last non-empty line of a text file (a failed run's error), '' when there is none."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f.read().replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_result(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    return result if result.get("format") == _RESULT_FORMAT else None


class EvaluationSets:
    """What evaluating any run of the study needs, read once: the validation samples (as training reads them),
    the test samples, the decoding, and the validation dataset + loss for the objectness split."""

    def __init__(self, config):
        from utils.data.annotation import read_annotation_file
        from utils.data.dataset_check import scan_annotation_lines
        from utils.metrics.evaluation import LETTERBOX_IMAGE, Decoding, samples_from_annotation_lines, samples_from_voc
        from utils.data.training_lists import build_missing_lists
        from utils.utils import get_anchors, get_classes, resolve_device

        build_missing_lists(config["train_annotation_path"], config["val_annotation_path"], config["VOCdevkit_path"],
                            config["classes_path"])
        self.class_names, num_classes = get_classes(config["classes_path"])
        anchors, _ = get_anchors(config["anchors_path"])
        val_lines, _ = scan_annotation_lines(read_annotation_file(config["val_annotation_path"]), num_classes,
                                             self.class_names)
        self.splits = {"val": samples_from_annotation_lines(val_lines, self.class_names)}
        if config["test_annotation_path"]:
            test_lines, _ = scan_annotation_lines(read_annotation_file(config["test_annotation_path"]), num_classes,
                                                  self.class_names)
            self.splits["test"] = samples_from_annotation_lines(test_lines, self.class_names)
        else:
            self.splits["test"] = samples_from_voc(config["VOCdevkit_path"], config["test_image_set"],
                                                   self.class_names)[0]
        self.decoding = Decoding(anchors, tuple(map(tuple, config["anchors_mask"])), tuple(config["input_shape"]),
                                 LETTERBOX_IMAGE)
        self.device = resolve_device(config["device"])
        self._val_lines, self._val_datasets = val_lines, {}
        self.val_dataset = self.val_dataset_for(self.decoding.input_shape)

    def level_imbalance(self, config):
        """Markdown lines: per output level, positives and negatives per training image under the study's target
        assignment at its input size (utils/data/anchor_check.py), computed once."""
        if getattr(self, "_imbalance", None) is None:
            from utils.data.anchor_check import level_imbalance_rows
            from utils.data.annotation import read_annotation_file
            from utils.data.dataset_check import scan_annotation_lines

            lines, report = scan_annotation_lines(read_annotation_file(config["train_annotation_path"]),
                                                  len(self.class_names), self.class_names)
            self._imbalance = [
                "", f"Positives per output level: the training list ({len(lines)} images) letterboxed to the study's "
                "input size, no augmentation, counted by the study's target assignment (what focal objectness "
                "weighs against; `python tools/positives_per_image.py` gives it for other sizes):", "",
                "| input | level | positives per image | anchor cells per image | negatives per positive |",
                "|---|---|---|---|---|",
                *level_imbalance_rows(self.loss_for(config), lines, report.image_sizes, self.decoding.input_shape)]
        return self._imbalance

    def val_dataset_for(self, input_shape):
        """The validation images as training validates them, at ``input_shape`` (for the objectness split)."""
        from utils.data.dataloader import YoloDataset

        key = tuple(input_shape)
        if key not in self._val_datasets:
            self._val_datasets[key] = YoloDataset(self._val_lines, key, len(self.class_names), epoch_length=1,
                                                  mosaic=False, mixup=False, mosaic_prob=0, mixup_prob=0,
                                                  train=False, seed=0)
        return self._val_datasets[key]

    def loss_for(self, settings, decoding=None):
        """The loss of a run's settings, for its target assignment (which cells are positives), on the anchors
        and input size of ``decoding`` (the study's by default)."""
        from nets.yolo_training import YOLOLoss

        decoding = decoding or self.decoding
        return YOLOLoss(decoding.anchors, len(self.class_names), decoding.input_shape,
                        anchors_mask=[list(m) for m in decoding.anchors_mask], iou_thresh=settings.get("iou_thresh"),
                        scale_x_y=settings.get("scale_x_y"), neighbour_cells=settings.get("neighbour_cells", False))

    def decoding_for(self, weights_path):
        """The decoding a weights file was trained with, as ``YOLO`` (so get_map.py) adopts it: its metadata's
        anchors, anchor mask, input size, letterbox choice and centre scales; the study's settings for what the
        metadata lacks (upstream's files: centre scales 1.0). A variant of other anchors or input size is then
        scored as it was trained, not with the study's defaults."""
        from utils.engine.run_metadata import read_metadata

        meta = read_metadata(weights_path)
        changes = {"scale_x_y": tuple(meta["scale_x_y"]) if meta.get("scale_x_y") else None}
        if meta.get("anchors"):
            changes["anchors"] = np.asarray(meta["anchors"], dtype=np.float32).reshape(-1, 2)
        if meta.get("anchors_mask"):
            changes["anchors_mask"] = tuple(map(tuple, meta["anchors_mask"]))
        if meta.get("input_shape"):
            changes["input_shape"] = tuple(meta["input_shape"])
        if meta.get("letterbox_image") is not None:
            changes["letterbox_image"] = bool(meta["letterbox_image"])
        return dataclasses.replace(self.decoding, **changes)


def load_model(weights_path, anchors_mask, num_classes, device):
    """The YoloBody a weights file describes (its scale read from the tensor shapes), in eval mode."""
    from nets.yolo import YoloBody, has_decoupled_head, resolve_scale
    from utils.engine.checkpoint import load_state_dict_file
    from utils.engine.run_metadata import read_metadata

    state_dict = load_state_dict_file(weights_path)
    meta = read_metadata(weights_path)
    width_mult, depth_mult = resolve_scale(meta.get("width_mult"), meta.get("depth_mult"), state_dict)
    model = YoloBody(anchors_mask, num_classes, width_mult=width_mult, depth_mult=depth_mult,
                     decoupled_head=has_decoupled_head(state_dict))
    model.load_state_dict(state_dict)
    return model.to(device).eval()


@torch.no_grad()
def objectness_scores(model, dataset, loss, device, batch_size=8):
    """Sigmoid objectness of every cell and anchor of every level over ``dataset``, split by the loss's
    own target assignment: ``(positives (P,), negatives (Q,))`` float32 arrays."""
    from utils.data.dataloader import yolo_dataset_collate

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


def evaluate_run(weights_path, sets, settings):
    """Validation and test metrics of one run's weights, and its objectness split (by the assignment of the run's
    ``settings``) on the validation set."""
    from utils.metrics.error_breakdown import class_agnostic_map
    from utils.metrics.evaluation import detect_views, fused_net, score_detections

    decoding = sets.decoding_for(weights_path)
    model = load_model(weights_path, [list(m) for m in decoding.anchors_mask], len(sets.class_names), sets.device)
    net = fused_net(model, sets.device)
    levels = [(False, level) for level in range(len(decoding.anchors_mask))]
    result = {}
    for split, samples in sets.splits.items():
        # One forward pass for all: the model's detections, with class-agnostic NMS, and each level's alone.
        found = detect_views(net, samples, decoding, sets.device, [(False, None), (True, None), *levels])
        evaluation = score_detections(samples, found[(False, None)], sets.class_names)
        metrics = evaluation.metrics
        merged = class_agnostic_map({i: sample.ground_truth for i, sample in enumerate(samples)},
                                    dict(enumerate(evaluation.detections)))
        agnostic = score_detections(samples, found[(True, None)], sets.class_names).metrics
        result[split] = {"map50": metrics["map50"], "map50_95": metrics["map50_95"],
                         "best_f1_threshold": metrics["best_f1"]["threshold"], "best_f1": metrics["best_f1"]["f1"],
                         "ap50": {name: row["ap50"] for name, row in metrics["classes"].items()},
                         "images": metrics["counts"]["images"],
                         "class_agnostic_ap50": merged, "map50_nms_agnostic": agnostic["map50"],
                         "map50_95_nms_agnostic": agnostic["map50_95"], "by_size": metrics["by_size"],
                         "level_map50": [score_detections(samples, found[view], sets.class_names).metrics["map50"]
                                         for view in levels]}
    positives, negatives = objectness_scores(model, sets.val_dataset_for(decoding.input_shape),
                                             sets.loss_for(settings, decoding), sets.device)
    return result, positives, negatives


def final_losses(run_dir):
    """The last epoch's row of the run's losses.csv (train/val loss terms), {} when there is none."""
    import csv

    logs = sorted(d for d in os.listdir(run_dir) if d.startswith("loss_")) if os.path.isdir(run_dir) else []
    if not logs:
        return {}
    with open(os.path.join(run_dir, logs[-1], "losses.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keys = ("epoch", "train_loss", "train_loc", "train_conf", "train_cls", "val_loss")
    return {k: float(rows[-1][k]) for k in keys if rows and rows[-1].get(k)} if rows else {}


def run_one(config, variant, seed, sets, progress):
    """Train (or resume, or keep) one run, evaluate it and write its result.json; returns the result."""
    run_dir = os.path.join(config["study_dir"], variant["name"], f"seed{seed}")
    result_path = os.path.join(run_dir, "result.json")
    settings = run_settings(config, variant, seed, run_dir)
    command = shell_command(["python", "train.py", *train_command(settings)[2:]])
    result = read_result(result_path)
    if result is not None:
        check_same_run(result, settings, result_path)
        # A run copied from another study may carry that study's variant name: it counts for the folder it lies in.
        result = {**result, "variant": variant["name"]}
    if result is not None and not config["reevaluate"]:
        print(f"{progress} done earlier ({result_path})")
        return result
    weights = os.path.join(run_dir, config["weights_name"])
    seconds = result["train_seconds"] if result else None
    if result is None and not config["train_runs"]:
        print(f"{progress} not run yet (train_runs=False)")
        return None
    if result is None:
        os.makedirs(run_dir, exist_ok=True)
        resume = os.path.isfile(os.path.join(run_dir, "last_checkpoint.pth"))
        print(f"{progress} {'resuming' if resume else 'training'}, log {run_dir}/train.log", flush=True)
        status, seconds = run_training(train_command(settings, resume), os.path.join(run_dir, "train.log"))
        if status != 0 or not os.path.isfile(weights):
            print(f"    failed: train.py exit {status}: {last_line(os.path.join(run_dir, 'train.log'))}")
            return None
    metrics, positives, negatives = evaluate_run(weights, sets, settings)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, positives=positives.astype(np.float16), negatives=negatives.astype(np.float16))
    atomic_write(os.path.join(run_dir, "objectness.npz"), buffer.getvalue())
    evaluation = {**metrics, "mean_obj_pos": float(positives.mean()) if positives.size else None,
                  "mean_obj_neg": float(negatives.mean()) if negatives.size else None}
    if result is not None:       # re-evaluated: the record of how the run was trained stays as it was
        result = {**result, **evaluation}
    else:
        result = {"format": _RESULT_FORMAT, "variant": variant["name"], "seed": seed, "settings": settings,
                  "train_config": effective_settings(settings), "command": command,
                  "weights": config["weights_name"], "train_seconds": seconds, "final_losses": final_losses(run_dir),
                  # A run repeats exactly only on the same kind of machine with the same thread count.
                  "torch_threads": torch.get_num_threads(), **evaluation}
    atomic_write(result_path, json.dumps(result, indent=2))
    print(f"    val mAP@0.5 {_cell(metrics['val']['map50'])}, test mAP@0.5 {_cell(metrics['test']['map50'])} "
          f"({seconds:.0f} s training)")
    return result


def mean_sd(values):
    """``(mean, sample sd, n)`` of the non-None values; sd None for fewer than 2."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), sd, len(values)


def compare(stats, base):
    """Difference of two ``mean_sd`` triples, its standard error (Welch: sqrt(sd1²/n1 + sd2²/n2)) and the
    verdict: "better" / "worse" when the difference exceeds twice its standard error, else "tie"."""
    (mean, sd, n), (base_mean, base_sd, base_n) = stats, base
    if mean is None or base_mean is None:
        return {"diff": None, "se": None, "verdict": "n/a"}
    diff = mean - base_mean
    if sd is None or base_sd is None:
        return {"diff": diff, "se": None, "verdict": "n/a (needs 2+ seeds)"}
    se = math.sqrt(sd ** 2 / n + base_sd ** 2 / base_n)
    verdict = "tie" if abs(diff) <= 2 * se else ("better" if diff > 0 else "worse")
    return {"diff": diff, "se": se, "verdict": verdict}


def aggregate(config, results):
    """One summary per variant: mean ± sd of each split's mAPs, thresholds and objectness, and the comparison
    with the baseline variant."""
    summaries = []
    for variant in config["variants"]:
        runs = [r for r in results if r and r["variant"] == variant["name"]]
        summary = {"name": variant["name"], "overrides": {k: v for k, v in variant.items() if k != "name"},
                   "seeds": [r["seed"] for r in runs]}
        for split in ("val", "test"):
            for key, _ in _SPLIT_METRICS + _AGNOSTIC_METRICS + (("best_f1_threshold", ""),):
                summary[f"{split}_{key}"] = mean_sd([r[split].get(key) for r in runs])
            # Paired per seed: same weights, NMS across classes minus class-aware (runs evaluated before have none).
            summary[f"{split}_map50_nms_agnostic_gain"] = mean_sd(
                [r[split]["map50_nms_agnostic"] - r[split]["map50"] for r in runs if "map50_nms_agnostic" in r[split]])
        for key in ("mean_obj_pos", "mean_obj_neg", "train_seconds"):
            summary[key] = mean_sd([r[key] for r in runs])
        for split in ("val", "test"):
            for key, _ in _SIZE_METRICS:
                summary[f"{split}_{key}"] = mean_sd([run_metric(r, split, key) for r in runs])
            levels = max((len(r[split].get("level_map50") or []) for r in runs), default=0)
            summary[f"{split}_level_map50"] = [mean_sd([(r[split].get("level_map50") or [None] * levels)[level]
                                                       for r in runs]) for level in range(levels)]
        summaries.append(summary)
    base = next(s for s in summaries if s["name"] == (config["baseline"] or summaries[0]["name"]))
    for summary in summaries:
        summary["vs_baseline"] = {f"{split}_{key}": compare(summary[f"{split}_{key}"], base[f"{split}_{key}"])
                                  for split in ("val", "test") for key, _ in _SPLIT_METRICS}
        summary["paired"] = {f"{split}_{key}": paired_difference(results, summary["name"], base["name"], split, key)
                             for split, key in _PAIRED_METRICS}
    return summaries, base["name"]


def run_metric(result, split, key):
    """A run's figure ``key`` on ``split``: a top-level one or one of ``by_size`` (None where missing or -1: a
    size without ground truth)."""
    figures = result[split]
    value = figures.get(key, (figures.get("by_size") or {}).get(key))
    return None if value is None or value == -1 else value


def paired_difference(results, name, base_name, split, key):
    """``{"diff", "low", "high", "n"}``: the mean over seeds of variant ``name`` minus ``base_name`` on the same
    seed, with its two-sided 95 % interval (Student's t on the n paired differences); None below 2 pairs."""
    by_seed = {}
    for r in results:
        if r and r["variant"] in (name, base_name):
            by_seed.setdefault(r["seed"], {})[r["variant"]] = run_metric(r, split, key)
    diffs = [v[name] - v[base_name] for v in by_seed.values()
             if v.get(name) is not None and v.get(base_name) is not None]
    if len(diffs) < 2:
        return None
    mean, sd, n = mean_sd(diffs)
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * sd / math.sqrt(n)
    return {"diff": mean, "low": mean - half, "high": mean + half, "n": n}


def _cell(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def _mean_sd_cell(stats, digits=3):
    mean, sd, _ = stats
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _diff_cell(comparison):
    if comparison["diff"] is None:
        return "–"
    se = "" if comparison["se"] is None else f" ± {comparison['se']:.3f}"
    return f"{comparison['diff']:+.3f}{se} ({comparison['verdict']})"


def results_markdown(config, summaries, baseline_name, command, sizes):
    """The study's tables (mean ± sd over seeds, differences to the baseline) and the command behind them."""
    lines = ["# Study", "", f"Command: `{command}`", "",
             f"Seeds {', '.join(map(str, run_seeds(config)))}; each run's `{config['weights_name']}` evaluated by "
             f"utils/metrics/evaluation.py on {sizes['val']} validation and {sizes['test']} test images. Mean ± sample sd "
             f"over seeds; Δ is the difference to the baseline `{baseline_name}` ± its standard error (Welch), "
             f"called better/worse only beyond twice the standard error, else a tie.", "",
             "| variant | overrides | seeds | val mAP@0.5 | val mAP@.5:.95 | test mAP@0.5 | test mAP@.5:.95 "
             "| Δ val mAP@0.5 | Δ test mAP@0.5 |", "|" + "---|" * 9]
    for s in summaries:
        overrides = ", ".join(f"{k}={v}" for k, v in s["overrides"].items()) or "(train.py's)"
        cells = [s["name"], overrides, str(len(s["seeds"])),
                 *(_mean_sd_cell(s[f"{split}_{key}"]) for split in ("val", "test") for key, _ in _SPLIT_METRICS),
                 _diff_cell(s["vs_baseline"]["val_map50"]), _diff_cell(s["vs_baseline"]["test_map50"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| variant | best-F1 threshold (val) | mean objectness, positives | mean objectness, negatives "
              "| training time per run (mean; not a speed figure when runs share the CPU) |", "|---|---|---|---|---|"]
    for s in summaries:
        seconds = s["train_seconds"][0]
        lines.append(f"| {s['name']} | {_mean_sd_cell(s['val_best_f1_threshold'])} | "
                     f"{_mean_sd_cell(s['mean_obj_pos'], 4)} | {_mean_sd_cell(s['mean_obj_neg'], 4)} | "
                     f"{'–' if seconds is None else f'{seconds:.0f} s'} |")
    return "\n".join(lines + paired_markdown(summaries, baseline_name) + by_size_markdown(summaries)
                     + where_map_goes_markdown(summaries)) + "\n"


def paired_markdown(summaries, baseline_name):
    """The per-seed paired differences to the baseline with their 95 % intervals; [] with fewer than 2 pairs."""
    rows = [s for s in summaries if s["name"] != baseline_name and any(s["paired"].values())]
    if not rows:
        return []
    titles = [f"{split} {dict(_SPLIT_METRICS + _SIZE_METRICS)[key]}" for split, key in _PAIRED_METRICS]
    lines = ["", f"Paired on seeds (variant minus `{baseline_name}` trained with the same seed): mean difference "
             f"[95 % interval, Student's t]; an interval that holds 0 is no evidence of a difference:", "",
             "| variant | pairs | " + " | ".join(f"Δ {t}" for t in titles) + " |", "|" + "---|" * (len(titles) + 2)]
    for s in rows:
        cells = [_interval_cell(s["paired"][f"{split}_{key}"]) for split, key in _PAIRED_METRICS]
        pairs = max((p["n"] for p in s["paired"].values() if p), default=0)
        lines.append(f"| {s['name']} | {pairs} | " + " | ".join(cells) + " |")
    return lines


def _interval_cell(paired):
    if paired is None:
        return "–"
    return f"{paired['diff']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]"


def by_size_markdown(summaries):
    """Test AP/AR by object size and the mAP@0.5 of each output level alone; [] for runs scored before them."""
    if not any(s["test_ap_small"][0] is not None or s["test_ap_medium"][0] is not None for s in summaries):
        return []
    levels = max(len(s["test_level_map50"]) for s in summaries)
    strides = [f"stride {32 // 2 ** level}" for level in range(levels)]
    lines = ["", "Test AP by object size (COCO: area < 32², 32²–96², > 96² image pixels; – where a size has no "
             "object) and the mAP@0.5 of each output level's detections alone (which head finds the objects):", "",
             "| variant | " + " | ".join(t for _, t in _SIZE_METRICS) + " | "
             + " | ".join(f"mAP@0.5 {s} alone" for s in strides) + " |", "|" + "---|" * (len(_SIZE_METRICS) + levels + 1)]
    for s in summaries:
        cells = [_mean_sd_cell(s[f"test_{key}"]) for key, _ in _SIZE_METRICS]
        cells += [_mean_sd_cell(stats) for stats in s["test_level_map50"]] + ["–"] * (levels - len(s["test_level_map50"]))
        lines.append(f"| {s['name']} | " + " | ".join(cells) + " |")
    return lines


def paired_gain(stats):
    """``{"diff", "se", "verdict"}`` of per-seed paired differences (``mean_sd`` triple): SE = sd / sqrt(n)."""
    mean, sd, n = stats
    if mean is None or sd is None:
        return {"diff": mean, "se": None, "verdict": "n/a (needs 2+ seeds)"}
    se = sd / math.sqrt(n)
    verdict = "tie" if abs(mean) <= 2 * se else ("better" if mean > 0 else "worse")
    return {"diff": mean, "se": se, "verdict": verdict}


def where_map_goes_markdown(summaries):
    """Table lines of where the mAP goes: class-agnostic AP and the mAP with NMS across classes with its paired
    gain; [] when no run was scored for them (runs evaluated before these metrics existed)."""
    rows = [s for s in summaries if s["val_map50_nms_agnostic"][0] is not None]
    if not rows:
        return []
    lines = ["", "Where the mAP goes: the class-agnostic AP@0.5 (all classes merged: the mAP if every detection had "
             "the right class) and the same weights with NMS across classes (`nms_agnostic True`), whose gain is "
             "paired per seed, ± sd / sqrt(n):", "",
             "| variant | val class-agnostic AP@0.5 | test class-agnostic AP@0.5 | val mAP@0.5, NMS across classes "
             "| test mAP@0.5, NMS across classes | gain val mAP@0.5 | gain test mAP@0.5 |", "|" + "---|" * 7]
    for s in rows:
        cells = [s["name"], *(_mean_sd_cell(s[f"{split}_{key}"]) for key, _ in _AGNOSTIC_METRICS[:2]
                              for split in ("val", "test")),
                 *(_diff_cell(paired_gain(s[f"{split}_map50_nms_agnostic_gain"])) for split in ("val", "test"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_class_markdown(results, class_names):
    """Per-class test AP@0.5, mean ± sd over seeds, per variant."""
    variants = list(dict.fromkeys(r["variant"] for r in results))
    lines = ["", "Per-class test AP@0.5:", "", "| variant | " + " | ".join(class_names) + " |",
             "|" + "---|" * (len(class_names) + 1)]
    for name in variants:
        runs = [r for r in results if r["variant"] == name]
        cells = [_mean_sd_cell(mean_sd([r["test"]["ap50"].get(c) for r in runs])) for c in class_names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_map_bars(summaries, path):
    """Bars of mean mAP@0.5 on validation and test per variant, with ± sd error bars."""
    figure = Figure(figsize=(max(6.0, 1.2 * len(summaries) + 2), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = np.arange(len(summaries))
    for offset, split in ((-0.2, "val"), (0.2, "test")):
        stats = [s[f"{split}_map50"] for s in summaries]
        means = [np.nan if m is None else m for m, _, _ in stats]
        errors = [0 if sd is None else sd for _, sd, _ in stats]
        bars = axes.bar(positions + offset, means, width=0.4, yerr=errors, capsize=4, label=f"{split} mAP@0.5")
        axes.bar_label(bars, labels=["" if m is None else f"{m:.3f}" for m, _, _ in stats], fontsize=7,
                       padding=2)
    axes.set_xticks(positions, [s["name"] for s in summaries], rotation=30, ha="right")
    axes.set(ylabel="mAP@0.5 (mean ± sd over seeds)", ylim=(0, 1), title="study")
    axes.legend()
    figure.tight_layout()
    return atomic_savefig(figure, path)


def plot_histograms(config, results):
    """One objectness histogram per variant, positives vs negatives pooled over this study's seeds; named after
    the study (``results_path``), so that another study of the same variant does not redraw it."""
    from utils.metrics.plots import plot_score_histograms

    paths = []
    for variant in config["variants"]:
        arrays = [np.load(os.path.join(config["study_dir"], variant["name"], f"seed{r['seed']}", "objectness.npz"))
                  for r in results if r["variant"] == variant["name"]]
        if not arrays:
            continue
        positives = np.concatenate([a["positives"] for a in arrays]).astype(np.float32)
        negatives = np.concatenate([a["negatives"] for a in arrays]).astype(np.float32)
        paths.append(plot_score_histograms(
            positives, negatives, results_path(config, f"objectness_{variant['name']}.png"),
            f"{variant['name']}: objectness on validation cells ({len(arrays)} seeds)"))
    return paths


def results_path(config, suffix):
    """``results.md`` / ``.json`` / ``map_bars.png``; another ``results_name`` gives ``<name>.md``, ...,
    ``<name>_map_bars.png``, so two studies of overlapping variants can share a folder and its runs."""
    name = config["results_name"]
    if suffix.startswith("."):
        return os.path.join(config["study_dir"], name + suffix)
    return os.path.join(config["study_dir"], suffix if name == "results" else f"{name}_{suffix}")


def write_results(config, results, command, sets):
    """results.json, results.md, map_bars.png and the histograms, from every finished run."""
    done = [r for r in results if r]
    summaries, baseline_name = aggregate(config, done)
    sizes = {split: len(samples) for split, samples in sets.splits.items()}
    report = {"command": command, "seeds": run_seeds(config), "baseline": baseline_name, "images": sizes,
              "variants": summaries, "runs": done}
    atomic_write(results_path(config, ".json"), json.dumps(report, indent=2))
    table = results_markdown(config, summaries, baseline_name, command, sizes)
    table += "\n".join(sets.level_imbalance(config)) + "\n"
    if done:
        table += per_class_markdown(done, sets.class_names)
    atomic_write(results_path(config, ".md"), table)
    plot_map_bars(summaries, results_path(config, "map_bars.png"))
    plot_histograms(config, done)
    return table


def main(argv, own=None, script="study.py", script_argv=None):
    """Run (or continue) the study ``argv`` describes; ``own``, ``script``, ``script_argv``: a preset's settings,
    name and own command line (for the recorded command)."""
    config = resolve_study_config(argv, own)
    command = shell_command(["python", script, *(argv if script_argv is None else script_argv)])
    os.makedirs(config["study_dir"], exist_ok=True)
    atomic_write(os.path.join(config["study_dir"], ".gitignore"), _GITIGNORE)
    sets = EvaluationSets(config)
    seeds_list, results = run_seeds(config), []
    total = len(config["variants"]) * len(seeds_list)
    try:
        # Seed-major: a study stopped early still holds every variant for its first seeds (paired comparisons).
        for number, (seed, variant) in enumerate(itertools.product(seeds_list, config["variants"]), 1):
            results.append(run_one(config, variant, seed, sets, f"[{number}/{total}] {variant['name']} seed {seed}:"))
            write_results(config, results, command, sets)
    except KeyboardInterrupt:
        print("\nStudy interrupted: finished runs are kept; the same command continues it.")
        return 130
    print(write_results(config, results, command, sets))
    names = [os.path.basename(results_path(config, x)) for x in (".md", ".json", "map_bars.png", "objectness_<variant>.png")]
    print(f"Results in {config['study_dir']}/ ({', '.join(names)})")
    return 0 if all(results) or not config["train_runs"] else 1
