"""utils/engine/auto_settings.py (train.py ``auto`` on a CPU): the input size from the median training box as the letterbox
scales it, the epochs that fit the time budget, the epoch-time formula, when ``auto`` applies and what the
quick-start recipe fills, the one line that reports it, and the timed step leaving the RNG alone."""
import math
from types import SimpleNamespace

import pytest
import torch

from utils.engine import auto_settings
from utils.engine.auto_settings import (AutoPlan, choose_crop_training, choose_input_size, describe_plan,
                                        epoch_seconds, fit_epochs, plan_auto, seconds_per_image)

# Training-list lines and image sizes. The letterbox scale of an image at an s x s input is min(s / w, s / h):
# a.jpg 640x480 -> s/640; b.jpg 320x640 (portrait) -> min(s/320, s/640) = s/640 too (the larger side decides).
# Box long sides: a: 32 (32x16) and 56 (56x40); b: 60 (20x60) and 96 (96x30); as shares of s: 32/640 = 0.05,
# 56/640 = 0.0875, 60/640 = 0.09375, 96/640 = 0.15 -> median (even count) = (0.0875 + 0.09375) / 2 = 0.090625 s.
# c.jpg has no known size (left out; its huge box would move the median), d.jpg has no box.
LINES = ["/data/a.jpg 0,0,32,16,0 100,100,156,140,1",
         "/data/b.jpg 10,10,30,70,0 0,300,96,330,1",
         "/data/c.jpg 0,0,600,600,0 0,0,500,500,0 0,0,400,400,0",
         "/data/d.jpg"]
SIZES = {"/data/a.jpg": (640, 480), "/data/b.jpg": (320, 640), "/data/d.jpg": (64, 64)}
MEDIAN_SHARE = 0.090625


def test_the_smallest_size_whose_median_box_reaches_min_box():
    # 160: 0.090625 * 160 = 14.5 < 16; 224: 0.090625 * 224 = 20.3 >= 16.
    size, median = choose_input_size(LINES, SIZES)
    assert size == 224 and median == pytest.approx(20.3, rel=1e-6)


@pytest.mark.parametrize("sizes, min_box, expected", [
    ((100, 200, 300), 10, (200, 18.125)),        # 100: 9.0625 < 10; 200: 18.125
    ((100, 200, 300), 9, (100, 9.0625)),         # the first already reaches it
    ((100, 200, 300), 18.125, (200, 18.125)),    # exactly min_box is enough
    ((100, 200, 300), 1000, (300, 27.1875)),     # none reaches it: the largest, with its median
    ((320,), 1000, (320, 29.0)),
])
def test_choose_input_size_with_other_sizes_and_thresholds(sizes, min_box, expected):
    size, median = choose_input_size(LINES, SIZES, sizes=sizes, min_box=min_box)
    assert size == expected[0] and median == pytest.approx(expected[1], rel=1e-6)


def test_choose_input_size_without_any_box_takes_the_smallest():
    size, median = choose_input_size(["/data/d.jpg", "/data/c.jpg 0,0,600,600,0"], SIZES, sizes=(160, 320))
    assert size == 160 and median == math.inf


# The images' median longer side: a 640, b 640, d 64 -> 640 (c has no known size). Median box = 0.090625 x size.
@pytest.mark.parametrize("size, small_box, expected", [
    (224, 32, (416, 37.7)),      # 20.3 at 224 < 32; 320: 29.0 < 32; 416: 37.7 -> detect at 416, crops of 224
    (224, 29, (320, 29.0)),      # 320 already reaches 29
    (224, 20, (224, 20.3)),      # not small at 224: no crops
    (224, 1000, (640, 58.0)),    # none reaches it: the largest size not above the images' 640
    (640, 1000, (640, 58.0)),    # nothing larger than the images: no crops
])
def test_choose_crop_training(size, small_box, expected):
    detect, median = choose_crop_training(LINES, SIZES, size, small_box=small_box)
    assert detect == expected[0] and median == pytest.approx(expected[1], rel=2e-3)


def test_choose_crop_training_never_upscales_past_the_images():
    small = {path: (w // 2, h // 2) for path, (w, h) in SIZES.items()}      # 320, 320, 32: median 320
    lines = ["/data/a.jpg 0,0,16,8,0 50,50,78,70,1", "/data/b.jpg 5,5,15,35,0 0,150,48,165,1"]  # same boxes, halved
    detect, _ = choose_crop_training(lines, small, 224, small_box=1000)
    assert detect == 320


def test_fit_epochs():
    assert fit_epochs(300, 72, 30) == 25                 # 30 min = 1800 s = exactly 25 epochs of 72 s
    assert fit_epochs(300, 70, 30) == 25                 # 1800 / 70 = 25.7: floor
    assert fit_epochs(300, 1801 / 25, 30) == 24          # a hair over 25 epochs: 24
    assert fit_epochs(300, 1000, 30) == 5                # 1.8 fit: the minimum, 5
    assert fit_epochs(300, 1000, 30, minimum=2) == 2
    assert fit_epochs(3, 1000, 30) == 3                  # the minimum is never more than asked
    assert fit_epochs(300, 0.5, 30) == 300               # 3600 fit: never more than asked
    assert fit_epochs(40, 60, 30) == 30
    assert fit_epochs(10, 60, 0.5) == 5                  # budget below one epoch: the minimum


def test_epoch_seconds_formula():
    overhead, share = auto_settings.EPOCH_OVERHEAD, auto_settings.VALIDATION_SHARE
    fixed = auto_settings.EPOCH_FIXED_SECONDS
    assert epoch_seconds(0.02, 100, 0) == pytest.approx(overhead * 2.0 + fixed)
    assert epoch_seconds(0.02, 100, 20) == pytest.approx(overhead * 0.02 * (100 + 20 * share) + fixed)
    assert epoch_seconds(0.5, 0, 10) == pytest.approx(overhead * 5 * share + fixed)
    assert epoch_seconds(0.04, 100, 20) - fixed == pytest.approx(2 * (epoch_seconds(0.02, 100, 20) - fixed))
    # The two calibration runs (bench/bench_auto.py): per-image steps 0.035 s and 0.116 s measured that day.
    assert epoch_seconds(0.035, 162, 18) == pytest.approx(12.5, rel=0.1)
    assert epoch_seconds(0.116, 500, 100) == pytest.approx(85, rel=0.1)


def train_cfg(**changes):
    """train.py's settings as a namespace (``resolve_config`` gives the same for a run without arguments)."""
    import train
    from utils.config import script_settings

    return SimpleNamespace(**{**script_settings(vars(train)), **changes})


CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# config/quickstart.py, the settings checked here (read by hand from the preset).
QUICKSTART = {"width_mult": 0.25, "depth_mult": 0.33, "decoupled_head": True, "input_shape": [160, 160],
              "UnFreeze_Epoch": 70, "optimizer_type": "adam", "Freeze_Train": False}


@pytest.mark.parametrize("changes, device, resuming", [
    ({"auto": False}, CPU, False),
    ({}, CPU, True),                                  # resuming: the checkpoint's settings
    ({"model_path": "model_data/yolo4_weights.pth"}, CPU, False),
    ({}, CUDA, False),
])
def test_plan_auto_does_not_apply(changes, device, resuming):
    cfg = train_cfg(**changes)
    before = dict(vars(cfg))
    assert plan_auto(cfg, set(), device, resuming) is None
    assert vars(cfg) == before                        # nothing applied


def test_plan_auto_applies_the_quickstart_recipe_when_nothing_is_given():
    cfg = train_cfg(time_budget_min=12)
    assert cfg.auto and cfg.input_shape == [416, 416]                       # train.py's own defaults
    plan = plan_auto(cfg, set(), CPU, False)
    assert isinstance(plan, AutoPlan) and plan.choose_input and plan.choose_epochs
    assert plan.budget_minutes == 12.0 and isinstance(plan.budget_minutes, float)
    for name, value in QUICKSTART.items():
        assert getattr(cfg, name) == value, name
        assert plan.recipe[name] == value, name


def test_plan_auto_keeps_the_settings_given():
    given = {"input_shape", "UnFreeze_Epoch", "optimizer_type", "data"}
    cfg = train_cfg(input_shape=[320, 320], UnFreeze_Epoch=12, optimizer_type="sgd")
    plan = plan_auto(cfg, given, CPU, False)
    assert not plan.choose_input and not plan.choose_epochs
    assert (cfg.input_shape, cfg.UnFreeze_Epoch, cfg.optimizer_type) == ([320, 320], 12, "sgd")
    assert not given & set(plan.recipe)
    assert (cfg.width_mult, cfg.depth_mult, cfg.decoupled_head) == (0.25, 0.33, True)   # the rest still applied


@pytest.mark.parametrize("given", [{"width_mult"}, {"depth_mult"}, {"width_mult", "depth_mult", "input_shape"}])
def test_a_model_size_given_means_no_recipe(given):
    cfg = train_cfg(width_mult=0.5, depth_mult=0.5)
    before = dict(vars(cfg))
    plan = plan_auto(cfg, given, CPU, False)
    assert plan.recipe == {} and vars(cfg) == before
    assert plan.choose_input == ("input_shape" not in given) and plan.choose_epochs


def test_describe_plan_names_size_epochs_and_minutes():
    cfg = train_cfg()
    plan = plan_auto(cfg, set(), CPU, False)
    cfg.input_shape, cfg.UnFreeze_Epoch = [224, 224], 25
    text = describe_plan(cfg, plan, 20.3, 72.0)                             # 25 epochs x 72 s = 30 min
    assert "224 px" in text and "25 epochs" in text and "30 min" in text
    assert "median training box 20 px" in text and "time_budget_min 30" in text
    assert "width_mult 0.25" in text and "\n" not in text
    given = train_cfg(input_shape=[320, 320], UnFreeze_Epoch=40, width_mult=0.5, depth_mult=0.5)
    plan = plan_auto(given, {"input_shape", "UnFreeze_Epoch", "width_mult", "depth_mult"}, CPU, False)
    text = describe_plan(given, plan, None, 90.0)                           # 40 x 90 s = 60 min, as given
    assert "40 epochs as given" in text and "60 min" in text
    assert "quick-start" not in text and "median training box" not in text


def test_describe_plan_names_the_crops_chosen_for_small_objects():
    cfg = train_cfg()
    plan = plan_auto(cfg, set(), CPU, False)
    cfg.input_shape, cfg.crop_shape, cfg.UnFreeze_Epoch = [640, 640], [320, 320], 20
    text = describe_plan(cfg, plan, 38.0, 90.0)
    assert "640 px, trained on 320 px crops" in text and "median training box 38 px at 640" in text
    assert "under 32 at 320" in text and "no Mosaic" in text and "focal objectness" in text and "30 min" in text
    given = train_cfg()
    plan = plan_auto(given, {"mosaic", "focal_loss"}, CPU, False)    # given: not said to be chosen
    given.input_shape, given.crop_shape = [640, 640], [320, 320]
    text = describe_plan(given, plan, 38.0, 90.0)
    assert "no Mosaic" not in text and "focal" not in text


def test_seconds_per_image_is_positive_and_leaves_the_rng_alone():
    from nets.yolo import YoloBody

    torch.manual_seed(0)
    model = YoloBody([[6, 7, 8], [3, 4, 5], [0, 1, 2]], 2, width_mult=0.125, depth_mult=0.33)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    seconds = seconds_per_image(model, (64, 64), 2, steps=1)
    assert isinstance(seconds, float) and 0 < seconds < 60
    assert torch.equal(torch.get_rng_state(), state)
    expected_next = torch.rand(3, generator=torch.Generator().set_state(state))
    assert torch.equal(torch.rand(3), expected_next)                         # the stream goes on where it was
    assert all(p.grad is None for p in model.parameters())                  # no gradient left behind
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items() if v.dtype.is_floating_point
               and "running" not in k)                                       # weights untouched (no optimizer step)


@pytest.mark.parametrize("given, crop, mosaic, focal", [
    (set(), [224, 224], False, True),           # small objects: detect at 416, 224 crops, Mosaic off, focal on
    ({"mosaic"}, [224, 224], True, True),       # Mosaic given: kept
    ({"focal_loss"}, [224, 224], False, False),  # focal_loss given (False): kept
    ({"crop_shape"}, None, True, False),        # crop_shape given (None): no crops, the 224 input stays
])
def test_auto_input_chooses_crops_for_small_objects(given, crop, mosaic, focal):
    from utils.engine import trainer

    cfg = train_cfg(mosaic=True, crop_shape=None, focal_loss=False)
    plan = plan_auto(cfg, given, CPU, False)
    trainer._choose_input(cfg, plan, LINES, SIZES)       # 224 px by the 16 px rule; 20.3 px there < 32
    assert cfg.crop_shape == crop and cfg.mosaic == mosaic and cfg.focal_loss == focal
    assert cfg.input_shape == ([416, 416] if crop else [224, 224])
    assert plan.median_box == pytest.approx(37.7 if crop else 20.3, rel=2e-3)
