"""The training run behind train.py: set-up, the epoch loop, saving, resuming.

``train(config)`` takes the resolved settings of train.py as a dict.
"""
import contextlib
import copy
import functools
import math
import os
import shlex
import signal
import sys
import time
import warnings
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, DistributedSampler

from nets.yolo import YoloBody, head_biases, resolve_scale
from nets.yolo_training import (FOCAL_NORMALIZATIONS, FOCAL_TYPES, OBJ_TARGETS, YOLOLoss, centre_scales,
                                get_lr_scheduler, resolve_obj_target, set_optimizer_lr, weights_init)
from utils.engine import distributed as dist_utils
from utils.engine.run_log import RunLog
from utils.data.anchor_check import anchor_report, positive_shares
from utils.engine.auto_settings import (choose_crop_training, choose_input_size, describe_plan, epoch_seconds,
                                        fit_epochs, plan_auto, seconds_per_image, timing_batch)
from utils.data.annotation import parse_annotation_line, read_annotation_file
from utils.engine.checkpoint import atomic_save, describe_load, is_darknet_path, load_matching, load_state_dict_file
from utils.engine.cpu_memory import keep_freed_memory
from utils.data.dataset_check import scan_annotation_lines
from utils.data.dataloader import YoloDataset, worker_init_fn, yolo_dataset_collate
from utils.engine.ema import ModelEMA, unwrap
from utils.errors import DiskFullError, UserError, is_user_error, user_message
from utils.metrics.evaluation import (LETTERBOX_IMAGE, Decoding, evaluate_model, fused_net,
                                      samples_from_annotation_lines, score_detections)
from utils.metrics.metrics_table import print_metrics_table
from utils.engine.optim import NOMINAL_BATCH, build_optimizer, scaled_learning_rates
from utils.engine.run_metadata import calibration_fields, read_metadata, write_metadata
from utils.engine.resume import (CHECKPOINT_NAME, TrainingState, checkpoint_epoch, find_resume_checkpoint,
                                 load_training_state, save_training_state)
from utils.engine.run_dirs import TRAIN_ROOT as RUNS_ROOT, latest_run_with, new_run_dir
from utils.engine.run_lock import RunLock
from utils.data.training_lists import build_missing_lists
from utils.config import command_line_names, preset_paths, read_preset
from utils.data.data_source import resolve_data
from utils.paths import REPO_ROOT, resource_path
from utils.utils import get_anchors, get_classes, resolve_device, seed_everything, show_config
from utils.engine.epoch import NonFiniteLossError, train_one_epoch, validate

RETINANET_PRIOR = 0.01   # RetinaNet's initial foreground probability pi


def train(config, argv=()):
    """Run a training job; returns a process exit status (0 = finished, 2 = a user-facing error, 3 = stopped on
    non-finite losses). Bugs keep their traceback (utils/errors.py)."""
    cfg = SimpleNamespace(**config)
    rank, local_rank, world_size, device = _setup_device(cfg)
    main_process = rank == 0
    numbered = not (cfg.save_dir or cfg.resume)        # a new logs/<name><n> folder is made for this run
    try:
        cfg.save_dir = dist_utils.broadcast_object(_run_folder(cfg) if main_process else None)
        lock = RunLock(cfg.save_dir) if main_process else contextlib.nullcontext()
        with lock:
            return _train(cfg, rank, world_size, device, main_process, argv)
    except NonFiniteLossError as err:
        if main_process:
            print(f"\nTraining stopped: {err}\nThe last good checkpoint in {cfg.save_dir} was kept.", file=sys.stderr)
        return 3
    except Exception as err:    # noqa: BLE001 - user errors get one message, bugs propagate
        if not is_user_error(err):
            raise
        print(f"error: {user_message(err)}", file=sys.stderr)
        if numbered and main_process and cfg.save_dir and os.path.isdir(cfg.save_dir) and not os.listdir(cfg.save_dir):
            os.rmdir(cfg.save_dir)         # stopped before writing anything: leave no empty run folder behind
        return 2
    finally:
        dist_utils.cleanup()


def _run_folder(cfg):
    """Where this run writes: ``save_dir`` as given; to resume, the folder of the checkpoint (``resume=True``
    without ``save_dir``: the newest run under RUNS_ROOT that has one); else a new numbered ``RUNS_ROOT/<name>``."""
    if cfg.save_dir:
        return cfg.save_dir
    if cfg.resume is True:
        latest = latest_run_with(RUNS_ROOT, CHECKPOINT_NAME)
        if latest is None:
            raise UserError(f"resume=True but no run under {RUNS_ROOT}/ has a {CHECKPOINT_NAME} "
                            f"(pass --save_dir FOLDER or --resume PATH)")
        return os.path.dirname(latest)
    if cfg.resume:
        return os.path.dirname(cfg.resume) or "."
    return new_run_dir(RUNS_ROOT, cfg.name, cfg.exist_ok)


def _setup_device(cfg):
    if cfg.distributed:
        return dist_utils.setup(cfg.device)
    return 0, 0, 1, resolve_device(cfg.device)


def _train(cfg, rank, world_size, device, main_process, argv):
    state = _resume_state(cfg, argv, device)
    if not state.resuming:
        check_starting_weights(cfg)
    if cfg.data and not state.resuming:
        _use_data(cfg, given_settings(argv, vars(cfg)), main_process)
    auto = plan_auto(cfg, given_settings(argv, vars(cfg)), device, state.resuming)
    _check_settings(cfg)
    _never_freeze_untrained(cfg, state)
    if cfg.fp16 and device.type != "cuda":
        warnings.warn("fp16=True needs CUDA; training in float32 on the CPU.")
    if device.type == "cpu":
        keep_freed_memory()      # each step reuses the last one's activation memory instead of page-faulting it
    seed_everything(cfg.seed + rank)
    run = _build_run(cfg, state, rank, world_size, device, main_process, auto)
    _install_sigterm_handler()
    epoch = first = state.epoch
    try:
        for epoch in range(state.epoch, cfg.UnFreeze_Epoch):
            started = time.perf_counter()
            _run_epoch(cfg, run, epoch)
            if epoch == first and main_process and epoch + 1 < cfg.UnFreeze_Epoch:
                print(_time_estimate(time.perf_counter() - started, cfg.UnFreeze_Epoch - epoch - 1))
    except DiskFullError as err:
        raise DiskFullError(err.path, err.needed, err.free, note=_intact_note(cfg)) from err
    except KeyboardInterrupt:
        if main_process:
            path = save_training_state(cfg.save_dir, state, vars(cfg), run.model, run.ema, run.optimizer,
                                       run.scaler, interrupted=True)
            print(f"\nInterrupted during epoch {epoch + 1}. Saved {path}; continue with: python {script('train.py')} "
                  f"--resume True --save_dir {_quoted(cfg.save_dir)}")
        return 130
    _finish(cfg, run)
    # Ranks tear the process group down together: a Gloo rank whose peer has already closed its sockets
    # can abort in a background thread (seen once in CI as SIGABRT, "terminate called without an active exception").
    dist_utils.barrier()
    return 0


def _time_estimate(epoch_seconds, epochs_left):
    """The expected rest of the run from its first epoch (which includes start-up costs, so it errs high)."""
    minutes, seconds = divmod(round(epoch_seconds * epochs_left), 60)
    return (f"Estimated time for the remaining {epochs_left} epochs: {minutes} min {seconds:02d} s "
            f"({epoch_seconds:.1f} s per epoch, from the first)")


def _intact_note(cfg):
    """What a full disk left intact, and how to continue (for ``DiskFullError``)."""
    checkpoint = os.path.join(cfg.save_dir, CHECKPOINT_NAME)
    if not os.path.isfile(checkpoint):
        return "; no checkpoint had been written yet: free some space and start again"
    epoch = checkpoint_epoch(checkpoint)
    return (f"; {checkpoint} (end of epoch {epoch}) is intact: free some space and continue with "
            f"python train.py --resume True --save_dir {cfg.save_dir}")


def _build_run(cfg, state, rank, world_size, device, main_process, auto=None):
    """Everything a run trains with, in one namespace: data, model, loss, optimizer, EMA, logs."""
    run = SimpleNamespace(state=state, device=device, main_process=main_process, world_size=world_size)
    run.class_names, run.num_classes = get_classes(cfg.classes_path)
    run.anchors, _ = get_anchors(cfg.anchors_path)
    train_lines, val_lines, train_sizes = _training_lists(cfg, run.class_names, main_process)
    if auto and auto.choose_input:
        _choose_input(cfg, auto, train_lines, train_sizes)
    if main_process:
        print(anchor_report(train_lines, train_sizes, run.anchors, cfg.input_shape, cfg.anchors_path)[0])
    run.positive_share = _positive_shares(cfg, run, train_lines, train_sizes) \
        if cfg.focal_loss and cfg.focal_normalize == "positives" else None
    run.eval_samples = samples_from_annotation_lines(val_lines, run.class_names)
    model, load_note = _build_model(cfg, run.num_classes, state)
    run.loss_fn = YOLOLoss(run.anchors, run.num_classes, train_shape(cfg), device.type == "cuda", cfg.anchors_mask,
                           cfg.label_smoothing, cfg.focal_loss, cfg.focal_alpha, cfg.focal_gamma, cfg.iou_type,
                           iou_thresh=cfg.iou_thresh, scale_x_y=cfg.scale_x_y, neighbour_cells=cfg.neighbour_cells,
                           focal_normalize=cfg.focal_normalize, obj_target=cfg.obj_target, focal_type=cfg.focal_type,
                           positive_share=run.positive_share, level_balance=cfg.level_balance,
                           box_loss_weight=cfg.box_loss_weight, obj_loss_weight=cfg.obj_loss_weight,
                           cls_loss_weight=cfg.cls_loss_weight, focal_loss_ratio=cfg.focal_loss_ratio)
    if auto:
        batch = timing_batch(train_lines, cfg, run.num_classes, cfg.Unfreeze_batch_size)
        per_image = seconds_per_image(copy.deepcopy(model), train_shape(cfg), cfg.Unfreeze_batch_size, batch=batch,
                                      loss_fn=run.loss_fn)
        per_epoch = epoch_seconds(per_image, len(train_lines), len(val_lines))
        if auto.choose_epochs:
            cfg.UnFreeze_Epoch = fit_epochs(cfg.UnFreeze_Epoch, per_epoch, auto.budget_minutes)
        if main_process:
            print(describe_plan(cfg, auto, auto.median_box if auto.choose_input else None, per_epoch))
    if main_process:
        show_config(**vars(cfg), num_classes=run.num_classes, resolved_device=str(device), world_size=world_size,
                    num_train=len(train_lines), num_val=len(val_lines))
        if load_note:
            print(load_note)
    # channels_last: oneDNN's CPU convolutions then skip a layout conversion per layer (bench_train_step.py).
    run.model = model.to(device, memory_format=torch.channels_last if device.type == "cpu" else torch.contiguous_format)
    # Inference decodes the centre as training does: the scales go to the evaluation and the weights' metadata.
    run.decoding = Decoding(run.anchors, tuple(map(tuple, cfg.anchors_mask)), tuple(cfg.input_shape),
                            LETTERBOX_IMAGE, tuple(run.loss_fn.scale_x_y))
    run.model_train = _wrap_for_training(run.model, cfg, device)
    run.ema = ModelEMA(run.model, tau=cfg.ema_tau) if cfg.ema else None
    run.scaler = torch.amp.GradScaler("cuda", enabled=cfg.fp16 and device.type == "cuda")
    run.phase = _Phase(cfg, run.model, train_lines, val_lines, run.num_classes, world_size, rank, main_process)
    first_lr = run.phase.configure(cfg.Freeze_Train and state.epoch < cfg.Freeze_Epoch)
    run.optimizer = build_optimizer(run.model, cfg.optimizer_type, first_lr, cfg.momentum,
                                    cfg.weight_decay * run.phase.weight_decay_scale)
    state.restore(run.model, run.ema, run.optimizer, run.scaler)
    run.log = RunLog(cfg.save_dir, vars(cfg), resume_run_dir=state.run_dir, resume_epoch=state.epoch) \
        if main_process else None
    state.run_dir = run.log.run_dir if run.log else None
    return run


def _choose_input(cfg, auto, lines, image_sizes):
    """``auto``'s input size (and, for small objects, the detection size above it with crops of it)."""
    size, auto.median_box = choose_input_size(lines, image_sizes)
    cfg.input_shape = [size, size]
    if not auto.choose_crop:
        return
    detect, median = choose_crop_training(lines, image_sizes, size)
    if detect != size:
        cfg.input_shape, cfg.crop_shape, auto.median_box = [detect, detect], [size, size], median
        if auto.choose_mosaic:
            cfg.mosaic = False      # Mosaic halves every object: what crops keep, it would take away
        if auto.choose_focal:
            cfg.focal_loss = True   # many easy negatives per small object: focal led on DeepPCB (small_objects.md)


def _run_epoch(cfg, run, epoch):
    """Train, validate, maybe evaluate mAP, then log and save (main process) one epoch."""
    frozen = cfg.Freeze_Train and epoch < cfg.Freeze_Epoch
    if frozen != run.phase.frozen:
        run.phase.configure(frozen)
    set_optimizer_lr(run.optimizer, run.phase.lr_fn, epoch)
    run.phase.start_epoch(epoch)
    stats = train_one_epoch(run.model_train, run.loss_fn, run.phase.train_loader, run.optimizer, run.device,
                            ema=run.ema, scaler=run.scaler, fp16=cfg.fp16, epoch=epoch, epochs=cfg.UnFreeze_Epoch,
                            show_progress=run.main_process, accumulate=run.phase.accumulate)
    eval_model = run.ema.ema if run.ema else unwrap(run.model_train)
    val = validate(eval_model, run.loss_fn, run.phase.val_loader, run.device, fp16=cfg.fp16,
                   show_progress=run.main_process)
    last = epoch + 1 == cfg.UnFreeze_Epoch
    metrics = None
    if cfg.eval_flag and run.main_process and ((epoch + 1) % cfg.eval_period == 0 or last):
        metrics = _evaluate(cfg, run, eval_model)
    run.state.epoch = epoch + 1
    if run.main_process:
        _end_of_epoch(cfg, run, epoch, stats, val, metrics, eval_model)
    dist_utils.barrier()


def _evaluate(cfg, run, model):
    """``evaluate_detections``' result of ``model`` on the validation images, by the one evaluation path
    (get_map.py --image_set val gives the same numbers for the saved weights)."""
    return evaluate_model(fused_net(model, run.device), run.eval_samples, run.decoding, run.class_names,
                          run.device).result


def _end_of_epoch(cfg, run, epoch, stats, val, metrics, eval_model):
    """Log the epoch, save weight files (+ metadata) and the resumable checkpoint (main process only)."""
    row = run.log.add_epoch(epoch + 1, run.optimizer.param_groups[0]["lr"], stats, val, metrics,
                            skipped_files=run.phase.train_dataset.skipped)
    weights = eval_model.state_dict()
    paths = [os.path.join(cfg.save_dir, "last_epoch_weights.pth")]
    if (epoch + 1) % cfg.save_period == 0 or epoch + 1 == cfg.UnFreeze_Epoch:
        paths.append(os.path.join(cfg.save_dir, f"ep{epoch + 1:03d}-loss{stats['loss']:.3f}-val_loss{val['loss']:.3f}.pth"))
    if run.state.is_best(row, cfg.eval_flag):
        paths.append(os.path.join(cfg.save_dir, "best_epoch_weights.pth"))
        print(f"Saved best weights ({run.state.best_description()}).")
    for path in paths:
        atomic_save(weights, path)
        write_metadata(path, _weights_metadata(cfg, run, epoch + 1, metrics))
    save_training_state(cfg.save_dir, run.state, vars(cfg), run.model, run.ema, run.optimizer, run.scaler)
    print(run.log.summary_line(row))


def _weights_metadata(cfg, run, epoch, metrics):
    """What inference needs to use a weights file, how it was trained, and its validation results."""
    meta = {"class_names": run.class_names, "anchors": run.anchors.tolist(), "anchors_mask": cfg.anchors_mask,
            "input_shape": cfg.input_shape, "width_mult": cfg.width_mult, "depth_mult": cfg.depth_mult,
            "decoupled_head": cfg.decoupled_head,
            "focal_loss": cfg.focal_loss, "focal_alpha": cfg.focal_alpha, "focal_gamma": cfg.focal_gamma,
            "focal_normalize": cfg.focal_normalize, "focal_type": cfg.focal_type, "obj_target": cfg.obj_target,
            "scale_x_y": list(run.decoding.scale_x_y), "epoch": epoch, **run.decoding.preprocessing()}
    if metrics is not None:
        meta.update(calibration_fields(metrics, run.decoding.preprocessing(), len(run.eval_samples)))
    return meta


def _finish(cfg, run):
    """Evaluate the best weights on validation (calibrating their score threshold if no evaluation did), print
    the per-class table, where everything is and the commands to run next; check DDP ranks agree."""
    if cfg.distributed and not dist_utils.weights_checksum_agree(unwrap(run.model_train)):
        raise RuntimeError("model weights differ between ranks at the end of training")
    if not run.main_process:
        return
    best = os.path.join(cfg.save_dir, "best_epoch_weights.pth")
    meta = read_metadata(best)
    if run.eval_samples and meta:
        model = copy.deepcopy(unwrap(run.model))
        model.load_state_dict(load_state_dict_file(best))
        evaluation = evaluate_model(fused_net(model, run.device), run.eval_samples, run.decoding, run.class_names,
                                    run.device)
        if meta.get("score_threshold") is None:
            meta.update(calibration_fields(evaluation.result, run.decoding.preprocessing(), len(run.eval_samples)))
            write_metadata(best, {k: v for k, v in meta.items() if k != "format"})
        _print_validation_table(run, evaluation, meta.get("score_threshold"))
    if meta.get("score_threshold") is not None:
        print(f"Calibrated score threshold (best F1 on validation, {meta.get('score_threshold_objects')} objects): "
              f"{meta['score_threshold']:.4f} -> stored in {os.path.basename(best)[:-4]}.json; predict.py uses it "
              f"unless --confidence is given.")
    if cfg.distributed:
        print(f"Weights identical on all {run.world_size} ranks.")
    print(f"Done. Run folder {cfg.save_dir}/ (weights, checkpoint; logs and curves in {run.state.run_dir}/)")
    for line in next_commands(cfg, best, run.eval_samples):
        print(line)


def _print_validation_table(run, evaluation, threshold):
    """The best weights' per-class AP50 and precision / recall at the calibrated threshold, on validation."""
    at = threshold if threshold is not None else 0.5
    metrics = score_detections(run.eval_samples, evaluation.detections, run.class_names, score_threshold=at).metrics
    print(f"Best weights on the {len(run.eval_samples)} validation images:")
    print_metrics_table(metrics)


def next_commands(cfg, weights, eval_samples):
    """The two commands to run next, with this run's real paths: predict on a validation image, evaluate."""
    image = eval_samples[0].image_path if eval_samples else "<image or folder>"
    if cfg.data:
        target = f"--data {_quoted(cfg.data)}"
    else:
        test = getattr(cfg, "test_annotation_path", "")
        target = f"--annotation_path {_quoted(test if test and os.path.isfile(test) else cfg.val_annotation_path)}"
    return ["Next:",
            f"  python {script('predict.py')} --model_path {_quoted(weights)} --source {_quoted(image)}",
            f"  python {script('get_map.py')} --model_path {_quoted(weights)} {target}"]


def script(name):
    """How to call the repository's script ``name`` from the working directory: a path relative to it when the
    repository lies below it (``name`` itself from the repository root), else the absolute path."""
    path = os.path.join(REPO_ROOT, name)
    relative = os.path.relpath(path)
    return _quoted(path if relative.split(os.sep)[0] == os.pardir else relative)


def _quoted(text):
    """``text`` as one shell word."""
    return shlex.quote(str(text))


# Where published starting weights come from, for the message of a missing model_path.
WEIGHTS_SOURCES = ("upstream's yolo4_weights.pth (COCO) and yolo4_voc_weights.pth are linked from the README of "
                   "github.com/bubbliiiing/yolov4-pytorch; darknet's yolov4.weights (COCO) and yolov4.conv.137 "
                   "(backbone) are on github.com/AlexeyAB/darknet/releases and load directly (model_path FILE.weights "
                   "or .conv.137); or train from scratch with model_path \"\"")


def check_starting_weights(cfg):
    """A model_path that does not exist stops the run before anything is built, saying where weights come from."""
    if cfg.model_path and not os.path.isfile(resource_path(cfg.model_path)):
        raise UserError(f"model_path {cfg.model_path} does not exist: {WEIGHTS_SOURCES}")
    cfg.model_path = resource_path(cfg.model_path)


def _check_settings(cfg):
    if cfg.Min_lr is None:
        cfg.Min_lr = cfg.Init_lr * 0.01
    if len(cfg.input_shape) != 2 or any(int(s) % 32 for s in cfg.input_shape):
        raise UserError(f"input_shape must be [h, w] with multiples of 32, got {cfg.input_shape}")
    cfg.input_shape = [int(s) for s in cfg.input_shape]
    if cfg.crop_shape is not None and not (
            isinstance(cfg.crop_shape, (list, tuple)) and len(cfg.crop_shape) == 2
            and all(isinstance(s, int) and 32 <= s <= full and s % 32 == 0
                    for s, full in zip(cfg.crop_shape, cfg.input_shape))):
        raise UserError(f"crop_shape must be None or [h, w], multiples of 32 within input_shape {cfg.input_shape}, "
                        f"got {cfg.crop_shape!r}")
    if cfg.lr_decay_type not in ("cos", "step"):
        raise UserError(f"lr_decay_type must be 'cos' or 'step', got {cfg.lr_decay_type!r}")
    if cfg.UnFreeze_Epoch <= cfg.Init_Epoch:
        raise UserError(f"UnFreeze_Epoch ({cfg.UnFreeze_Epoch}) must exceed Init_Epoch ({cfg.Init_Epoch})")
    try:
        centre_scales(cfg.scale_x_y, cfg.neighbour_cells, len(cfg.anchors_mask))
    except ValueError as err:
        raise UserError(f"{err} (settings scale_x_y, neighbour_cells)") from None
    if cfg.iou_thresh is not None and not 0 < cfg.iou_thresh < 1:
        raise UserError(f"iou_thresh must be None or within (0, 1) (darknet: 0.213), got {cfg.iou_thresh!r}")
    for name, choices in (("focal_normalize", FOCAL_NORMALIZATIONS), ("focal_type", FOCAL_TYPES),
                          ("obj_target", OBJ_TARGETS + ("auto",))):
        if getattr(cfg, name) not in choices:
            raise UserError(f"{name} must be one of {', '.join(map(repr, choices))}, got {getattr(cfg, name)!r}")
    cfg.obj_target = resolve_obj_target(cfg.obj_target, cfg.focal_loss, cfg.focal_type)
    if cfg.obj_prior is not None and not 0 < cfg.obj_prior < 1:
        raise UserError(f"obj_prior must be None or a probability in (0, 1) (RetinaNet: 0.01), got {cfg.obj_prior!r}")
    if len(cfg.level_balance) != len(cfg.anchors_mask):
        raise UserError(f"level_balance needs one weight per level ({len(cfg.anchors_mask)}), got {cfg.level_balance}")
    if cfg.lr_limits is not None and not (isinstance(cfg.lr_limits, (list, tuple)) and len(cfg.lr_limits) == 2
                                          and 0 < cfg.lr_limits[1] <= cfg.lr_limits[0]):
        raise UserError(f"lr_limits must be None (upstream's) or [max, min] with 0 < min <= max, got {cfg.lr_limits!r}")
    if not isinstance(cfg.nominal_batch_size, int) or cfg.nominal_batch_size < 0:
        raise UserError(f"nominal_batch_size must be 0 (off) or a number of images, got {cfg.nominal_batch_size!r}")
    if not isinstance(cfg.ema_tau, (int, float)) or cfg.ema_tau <= 0:
        raise UserError(f"ema_tau must be a positive number of optimizer steps, got {cfg.ema_tau!r}")


def train_shape(cfg):
    """The network input of a training step: ``crop_shape`` when training on crops, else ``input_shape`` (which
    validation, the mAP and the saved weights' inference always use)."""
    return list(cfg.crop_shape) if cfg.crop_shape else cfg.input_shape


def given_settings(argv, defaults):
    """The settings a user chose: named on the command line or set by the preset files ``argv`` starts with."""
    given = command_line_names(argv)
    for path in preset_paths(argv):
        given |= set(read_preset(resource_path(path), defaults))
    return given


def _never_freeze_untrained(cfg, state):
    """A frozen backbone keeps its weights: without any loaded (no model_path, no pretrained) it would keep its
    random initialisation, so it is trained from the start instead."""
    if cfg.Freeze_Train and not (cfg.model_path or cfg.pretrained or state.resuming):
        warnings.warn(f"Freeze_Train=True but no weights are loaded (model_path is empty, pretrained False): a frozen "
                      f"backbone would stay random, so it is trained from the first epoch (Freeze_Train False).")
        cfg.Freeze_Train = False


def _use_data(cfg, given, main_process):
    """Point the lists and class file at ``cfg.data``'s (built and cached by utils/data/data_source.py); the lists
    and classes given explicitly still win."""
    lists = resolve_data(cfg.data, classes_path=cfg.classes_path if "classes_path" in given else None) \
        if main_process else None
    lists = dist_utils.broadcast_object(lists)
    for name, value in (("train_annotation_path", lists.train), ("val_annotation_path", lists.val),
                        ("classes_path", lists.classes_path)):
        if name not in given:
            setattr(cfg, name, value)
    cfg.test_annotation_path = lists.test


def _resume_state(cfg, argv, device):
    """A fresh TrainingState, or the one in the checkpoint ``cfg.resume`` points at.

    When resuming, the checkpoint's settings replace the script's, except those given on the
    command line now (e.g. a larger UnFreeze_Epoch).
    """
    if not cfg.resume:
        return TrainingState(epoch=cfg.Init_Epoch)
    path = find_resume_checkpoint(cfg.save_dir) if cfg.resume is True else cfg.resume
    state, saved_config = load_training_state(path, device)
    given = command_line_names(argv) | {"save_dir"}     # the run continues where its checkpoint was found
    for key, value in saved_config.items():
        if key not in given and hasattr(cfg, key):
            setattr(cfg, key, value)
    cfg.resume = path
    print(f"Resuming from {path} at epoch {state.epoch + 1}")
    return state


def _training_lists(cfg, class_names, main_process):
    """Read (building from VOCdevkit when missing) and check the training and validation lists."""
    if main_process:
        build_missing_lists(cfg.train_annotation_path, cfg.val_annotation_path, cfg.VOCdevkit_path, cfg.classes_path)
    dist_utils.barrier()
    lists, reports = [], []
    for path in (cfg.train_annotation_path, cfg.val_annotation_path):
        lines = read_annotation_file(path)
        check_class_coverage(lines, path, class_names, cfg.classes_path)
        usable, report = scan_annotation_lines(lines, len(class_names), class_names)
        if main_process:
            report.print(title=path)
        lists.append(usable)
        reports.append(report)
    return lists[0], lists[1], reports[0].image_sizes


def check_class_coverage(lines, list_path, class_names, classes_path):
    """A class file must name every class id a list uses: with too few names their boxes would be dropped and the
    run would train on part of the data (and report a NaN mAP) without saying why."""
    used = set()
    for line in lines:
        try:
            _, boxes = parse_annotation_line(line)
        except UserError:
            continue                    # a malformed line: scan_annotation_lines reports it
        used.update(int(c) for c in boxes[:, 4])
    missing = sorted(c for c in used if c >= len(class_names))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise UserError(f"{classes_path} names {len(class_names)} classes (ids 0-{len(class_names) - 1}) but "
                        f"{list_path} uses class ids {shown}: give the class file the lists were written with")


def _build_model(cfg, num_classes, state):
    """YoloBody with the configured scale; weights from model_path unless resuming. Returns (model, note)."""
    weights = None
    if cfg.model_path and not state.resuming:
        weights = load_state_dict_file(cfg.model_path, num_classes=num_classes, anchors_mask=cfg.anchors_mask)
    # A darknet file is always the full-size network, and a prefix of it may lack the keys the scale is read from.
    shape_source = None if is_darknet_path(cfg.model_path) else weights
    cfg.width_mult, cfg.depth_mult = resolve_scale(cfg.width_mult, cfg.depth_mult, shape_source)
    torch.manual_seed(cfg.seed)
    model = YoloBody(cfg.anchors_mask, num_classes, pretrained=cfg.pretrained and not weights,
                     width_mult=cfg.width_mult, depth_mult=cfg.depth_mult, decoupled_head=cfg.decoupled_head)
    if not cfg.pretrained:
        weights_init(model)
        init_head_biases(model, train_shape(cfg), num_classes, objectness_prior(cfg))
    if weights is None:
        return model, ""
    return model, describe_load(load_matching(model, weights), cfg.model_path)


def objectness_prior(cfg):
    """The initial objectness probability: ``obj_prior``, else RetinaNet's 0.01 for a focal term normalized by
    the positives (its loss then starts near 1 per positive), else None (yolov5's per-level prior)."""
    if cfg.obj_prior is not None:
        return float(cfg.obj_prior)
    return RETINANET_PRIOR if cfg.focal_loss and cfg.focal_normalize == "positives" else None


def init_head_biases(model, input_shape, num_classes, obj_prior=None):
    """Start objectness and class biases at their expected priors.

    Objectness: ``obj_prior`` when given (RetinaNet's pi), else yolov5's: about 8 objects per 640x640 image over
    each level's cells. Classes near uniform. A from-scratch run then does not spend its first epochs unlearning
    p(obj) = 0.5 everywhere.
    """
    for head, stride in ((model.yolo_head1, 32), (model.yolo_head2, 16), (model.yolo_head3, 8)):
        box_bias, cls_bias = head_biases(head, num_classes)      # (anchors, 5), (anchors, C)
        box_bias[:, 4] = (math.log(8 / (640 / stride) ** 2) if obj_prior is None
                          else math.log(obj_prior / (1 - obj_prior)))
        cls_bias[:] = math.log(0.6 / (num_classes - 0.99))


def _positive_shares(cfg, run, lines, image_sizes):
    """Per level, positives per cell of the training boxes (letterboxed, no augmentation) under the loss's
    assignment: the share ``focal_normalize='positives'`` scales by (see YOLOLoss._conf_loss)."""
    probe = YOLOLoss(run.anchors, run.num_classes, cfg.input_shape, anchors_mask=cfg.anchors_mask,
                     iou_thresh=cfg.iou_thresh, scale_x_y=cfg.scale_x_y, neighbour_cells=cfg.neighbour_cells)
    shares = positive_shares(probe, lines, image_sizes, cfg.input_shape)
    print("Positives per cell of each level (stride 32, 16, 8) on the training boxes: "
          + ", ".join(f"{s:.5f}" for s in shares))
    return shares


def _wrap_for_training(model, cfg, device):
    if not cfg.distributed:
        return model
    if cfg.sync_bn:
        if device.type != "cuda":
            warnings.warn("sync_bn needs CUDA; using per-process BatchNorm on the CPU.")
        else:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    # A frozen backbone leaves parameters without gradients, which DDP must be told to expect.
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=cfg.Freeze_Train)


class _Phase:
    """Batch size, learning-rate schedule and data loaders of the frozen or unfrozen phase."""

    def __init__(self, cfg, model, train_lines, val_lines, num_classes, world_size, rank, main_process):
        self.cfg, self.model, self.world_size, self.rank = cfg, model, world_size, rank
        self.main_process = main_process
        common = dict(num_classes=num_classes, epoch_length=cfg.UnFreeze_Epoch,
                      mosaic=cfg.mosaic, mixup=cfg.mixup, mosaic_prob=cfg.mosaic_prob, mixup_prob=cfg.mixup_prob,
                      special_aug_ratio=cfg.special_aug_ratio, seed=cfg.seed, rank=rank, scale_range=cfg.scale_range,
                      min_visible=cfg.min_box_visible, min_class_visible=cfg.min_class_visible)
        self.train_dataset = YoloDataset(train_lines, cfg.input_shape, train=True, crop_shape=cfg.crop_shape, **common)
        # The validation loss is the training loss's, so its images have the training input's size (letterboxed).
        self.val_dataset = YoloDataset(val_lines, train_shape(cfg), train=False, **common)
        self.frozen = None

    def configure(self, frozen):
        """Freeze or unfreeze the backbone and rebuild loaders and lr schedule for that phase's batch size.

        Returns the phase's initial learning rate.
        """
        cfg = self.cfg
        self.frozen = frozen
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)
        batch_size = cfg.Freeze_batch_size if frozen else cfg.Unfreeze_batch_size
        # The nominal batch: gradients of `accumulate` batches per optimizer step, the learning rate scaled to
        # that many images and the weight decay (applied once per step) by their share of 64, as yolov5 does.
        self.accumulate = max(1, round(cfg.nominal_batch_size / batch_size)) if cfg.nominal_batch_size else 1
        self.weight_decay_scale = batch_size * self.accumulate / NOMINAL_BATCH if cfg.nominal_batch_size else 1.0
        init_lr, min_lr = scaled_learning_rates(batch_size * self.accumulate, cfg.Init_lr, cfg.Min_lr,
                                                cfg.optimizer_type, cfg.lr_limits)
        self.lr_fn = get_lr_scheduler(cfg.lr_decay_type, init_lr, min_lr, cfg.UnFreeze_Epoch)
        self.train_loader, self.train_sampler = self._loader(self.train_dataset, batch_size, shuffle=True)
        self.val_loader, self.val_sampler = self._loader(self.val_dataset, batch_size, shuffle=False)
        if self.main_process:
            nominal = f" x {self.accumulate} accumulated" if self.accumulate > 1 else ""
            print(f"{'Frozen' if frozen else 'Unfrozen'} backbone: batch size {batch_size}{nominal}, "
                  f"lr {init_lr:.2e} -> {min_lr:.2e}")
        return init_lr

    def _loader(self, dataset, batch_size, shuffle):
        per_rank = max(1, batch_size // self.world_size)
        per_rank_size = math.ceil(len(dataset) / self.world_size)
        if per_rank_size == 0:
            raise UserError(f"the {'training' if shuffle else 'validation'} list has no usable images")
        if per_rank_size < per_rank:
            if self.main_process:
                warnings.warn(f"only {per_rank_size} {'training' if shuffle else 'validation'} images per process "
                              f"for a batch of {per_rank}: using batches of {per_rank_size}.")
            per_rank = per_rank_size
        # A seeded sampler even on one process: the order of epoch k depends only on (seed, k), so resume is exact.
        sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle,
                                     seed=self.cfg.seed, drop_last=False)
        loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=self.cfg.num_workers,
                            pin_memory=torch.cuda.is_available(), drop_last=shuffle, collate_fn=yolo_dataset_collate,
                            worker_init_fn=functools.partial(worker_init_fn, rank=self.rank, seed=self.cfg.seed))
        return loader, sampler

    def start_epoch(self, epoch):
        self.train_dataset.set_epoch(epoch)
        self.train_sampler.set_epoch(epoch)


def _install_sigterm_handler():
    """Treat SIGTERM (e.g. a scheduler stopping the job) like Ctrl-C, so a checkpoint is written."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:   # not in the main thread (e.g. called from a test thread)
        pass

