"""Settings that fit the machine and the data, for the settings a user did not give (train.py's ``auto``).

On a CPU, training from scratch, the full 64 M-parameter network at 416 px for 300 epochs takes days. So, for the
settings not given on the command line or in a preset:
- model size not given: the quick-start recipe (config/quickstart.py: a 3.7 M-parameter YOLOv4 and the optimizer
  settings measured to learn it from scratch) fills every setting it names;
- input size not given: the smallest of ``INPUT_SIZES`` at which the median training box is ``MIN_BOX_PIXELS``
  long (boxes of a 2-cell side on the stride-8 level), scaled as the letterbox scales each image;
- small objects (median box under ``SMALL_BOX_PIXELS`` there, images larger than that input): detect at the
  smallest larger size where the median box reaches ``SMALL_BOX_PIXELS`` (at most the images' own size) and train on
  crops of the first size, without Mosaic and with focal objectness, unless ``crop_shape`` / ``mosaic`` /
  ``focal_loss`` were given. A step costs the same; the objects keep the scale they are detected at
  (docs/small_objects.md: DeepPCB, median box 38 px of 640, measured over seeds);
- epochs not given: the recipe's, cut so that the run fits ``time_budget_min``, from a timed training step of the
  chosen model on this machine.
On a GPU the settings stay as given (the full model). One line says what was chosen and why.
"""
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from utils.data.anchor_check import box_sizes_at_input
from utils.data.dataloader import YoloDataset, yolo_dataset_collate
from utils.engine.epoch import total_loss
from utils.paths import resource_path

QUICKSTART_PRESET = "config/quickstart.py"
INPUT_SIZES = (160, 224, 320, 416, 512, 640)
MIN_BOX_PIXELS = 16
SMALL_BOX_PIXELS = 32       # COCO's bound of small objects
MIN_EPOCHS = 5
MODEL_SIZE = ("width_mult", "depth_mult")
# An epoch = EPOCH_OVERHEAD x the timed steps of its images + EPOCH_FIXED_SECONDS (checkpoints written every epoch,
# loader start-up, the periodic mAP). Fitted to two runs of bench/bench_auto.py on 2 cores (2026-12-05), quick-start
# model: the sample set at 160 px (12.5 s an epoch; the former 1.6 x alone announced 11 min for 14.8) and DeepPCB at
# 320 px (85 s an epoch). Runs on these shared machines vary by about 20 %; the first epoch's projection refines it.
EPOCH_OVERHEAD = 1.3
EPOCH_FIXED_SECONDS = 4.5
# A validation image costs about this share of a training image (forward only, no augmentation).
VALIDATION_SHARE = 0.35


@dataclass
class AutoPlan:
    """What ``auto`` will choose once the training lists are read: which settings are still open."""
    recipe: dict            # settings taken from the quick-start preset
    choose_input: bool
    choose_epochs: bool
    budget_minutes: float
    choose_crop: bool = False       # crop_shape not given: crops are chosen for small objects
    choose_mosaic: bool = False     # mosaic not given: off when crops are chosen
    choose_focal: bool = False      # focal_loss not given: on when crops are chosen
    median_box: float = None        # median training box (px) at the input size chosen, for the report


def plan_auto(cfg, given, device, resuming):
    """The ``AutoPlan`` for this run (the recipe already applied to ``cfg``), or None when ``auto`` does not apply:
    it is off, the run resumes (its settings are the checkpoint's), starts from weights or runs on a GPU."""
    if not cfg.auto or resuming or cfg.model_path or device.type != "cpu":
        return None
    recipe = {}
    if not given & set(MODEL_SIZE):
        from utils.config import read_preset

        preset = read_preset(resource_path(QUICKSTART_PRESET), vars(cfg))
        recipe = {k: v for k, v in preset.items() if k not in given}
        for name, value in recipe.items():
            setattr(cfg, name, value)
    return AutoPlan(recipe, "input_shape" not in given, "UnFreeze_Epoch" not in given, float(cfg.time_budget_min),
                    "crop_shape" not in given, "mosaic" not in given, "focal_loss" not in given)


def choose_input_size(lines, image_sizes, sizes=INPUT_SIZES, min_box=MIN_BOX_PIXELS):
    """``(size, median box long side at it)``: the smallest square input of ``sizes`` whose median training box
    (longer side) is at least ``min_box`` pixels; the largest when none is."""
    for size in sizes:
        median = median_box_at(lines, image_sizes, size)
        if median >= min_box or size == sizes[-1]:
            return size, median
    raise AssertionError("unreachable: the last size is always returned")


def median_box_at(lines, image_sizes, size):
    """Median longer side (pixels) of the training boxes letterboxed into a ``size`` square; inf without boxes."""
    wh = box_sizes_at_input(lines, image_sizes, (size, size))
    return float(np.median(wh.max(axis=1))) if len(wh) else float("inf")


def choose_crop_training(lines, image_sizes, size, sizes=INPUT_SIZES, small_box=SMALL_BOX_PIXELS):
    """``(detection size, median box at it)`` for training on ``size`` crops, or ``(size, median)`` when the
    objects are not small at ``size``: the smallest of ``sizes`` above ``size`` and not above the images' median
    longer side (no upscaling past the pixels there are) where the median box reaches ``small_box``, else the
    largest such size."""
    median = median_box_at(lines, image_sizes, size)
    native = float(np.median([max(image_sizes[p]) for p in image_sizes])) if image_sizes else 0.0
    larger = [s for s in sizes if size < s <= native]
    if median >= small_box or not larger:
        return size, median
    for candidate in larger:
        at = median_box_at(lines, image_sizes, candidate)
        if at >= small_box or candidate == larger[-1]:
            return candidate, at
    raise AssertionError("unreachable: the last size is always returned")


def seconds_per_image(model, input_shape, batch_size, steps=2, batch=None, loss_fn=None):
    """Seconds of one training image through forward + loss + backward of ``model`` (channels_last, as training
    runs it), the mean of ``steps`` timed steps after a warm-up. With ``batch`` (``(images, targets)`` as the loader
    gives them) and ``loss_fn`` (the run's ``YOLOLoss``) the step is the real one: its target assignment costs as
    much as the network at small inputs; else random images and a stand-in loss. Runs under a forked RNG so the
    run's random streams are unchanged."""
    with torch.random.fork_rng(devices=[]):
        if batch is None:
            images, targets = torch.rand(batch_size, 3, *input_shape), None
        else:
            images, targets = batch
        images = images.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last).train()
        timings = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            outputs = model(images)
            loss = total_loss(loss_fn, outputs, targets)[0] if loss_fn is not None \
                else sum(output.float().square().mean() for output in outputs)
            loss.backward()
            timings.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return sum(timings[1:]) / len(timings[1:]) / len(images)


def timing_batch(lines, cfg, num_classes, batch_size):
    """A training batch ``(images, targets)`` as the loader makes it (augmentation included), drawn by a dataset
    of its own, so the run's datasets and their random streams are untouched."""
    dataset = YoloDataset(lines, cfg.input_shape, num_classes, cfg.UnFreeze_Epoch, cfg.mosaic, cfg.mixup,
                          cfg.mosaic_prob, cfg.mixup_prob, True, cfg.special_aug_ratio, seed=cfg.seed + 7919,
                          scale_range=cfg.scale_range, crop_shape=cfg.crop_shape)
    picks = np.linspace(0, len(lines) - 1, min(batch_size, len(lines))).astype(int)
    return yolo_dataset_collate([dataset[int(i)] for i in picks])


def epoch_seconds(per_image, num_train, num_val):
    """Expected seconds of one epoch from ``seconds_per_image`` and the list sizes."""
    return EPOCH_OVERHEAD * per_image * (num_train + VALIDATION_SHARE * num_val) + EPOCH_FIXED_SECONDS


def fit_epochs(epochs, per_epoch, budget_minutes, minimum=MIN_EPOCHS):
    """The number of epochs of at most ``epochs`` that fits ``budget_minutes`` (at least ``minimum``)."""
    return max(min(minimum, epochs), min(epochs, math.floor(budget_minutes * 60 / per_epoch)))


def describe_plan(cfg, plan, median_box, per_epoch):
    """The one line that says what ``auto`` chose and why."""
    parts = []
    if plan.recipe:
        parts.append(f"the quick-start model ({QUICKSTART_PRESET}: width_mult {cfg.width_mult}, depth_mult "
                     f"{cfg.depth_mult}, {cfg.optimizer_type} lr {cfg.Init_lr:g})")
    if plan.choose_input and plan.choose_crop and cfg.crop_shape:
        parts.append(f"{cfg.input_shape[0]} px, trained on {cfg.crop_shape[0]} px crops (small objects: median "
                     f"training box {median_box:.0f} px at {cfg.input_shape[0]}, under {SMALL_BOX_PIXELS} at "
                     f"{cfg.crop_shape[0]}" + ("; no Mosaic" if plan.choose_mosaic else "")
                     + ("; focal objectness" if plan.choose_focal else "") + ")")
    elif plan.choose_input:
        parts.append(f"{cfg.input_shape[0]} px (median training box {median_box:.0f} px there, >= {MIN_BOX_PIXELS})")
    minutes = cfg.UnFreeze_Epoch * per_epoch / 60
    duration = f"{minutes:.0f} min" if minutes >= 1 else f"{minutes * 60:.0f} s"
    epochs = f"{cfg.UnFreeze_Epoch} epoch" + ("s" if cfg.UnFreeze_Epoch != 1 else "")
    if plan.choose_epochs:
        parts.append(f"{epochs}, about {duration} on this CPU (budget time_budget_min "
                     f"{plan.budget_minutes:g})")
    else:
        parts.append(f"{epochs} as given, about {duration} on this CPU")
    return ("Auto settings (CPU, from scratch): " + ", ".join(parts)
            + ". Give them on the command line, or --auto False, to choose yourself.")
