"""MAC / parameter counting against hand formulas and an independent count from darknet's yolov4.cfg."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from nets.yolo import YoloBody
from utils.deploy.model_stats import count_macs, count_parameters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


def test_single_layers_match_hand_formulas():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
    total, rows = count_macs(conv, (64, 48))
    assert total == 32 * 24 * 8 * (3 * 3 * 3) + 32 * 24 * 8            # products + bias adds
    assert rows[0]["output_shape"] == (8, 32, 24) and rows[0]["params"] == 8 * 27 + 8

    grouped = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                            nn.Flatten(), nn.Linear(16 * 10 * 10, 5))
    total, rows = count_macs(grouped, (10, 10), in_channels=8)
    conv_macs = 10 * 10 * 16 * (8 // 4 * 9)
    assert [row["macs"] for row in rows] == [conv_macs, 16 * 100, 0, 0, 1600 * 5 + 5]
    assert [row["counted"] for row in rows] == [True, True, True, False, True]    # Flatten has no rule
    assert total == conv_macs + 1600 + 8005


def darknet_cfg_counts(path, size):
    """Conv MACs (+ bias adds on BN-less convs) and BN elements of a darknet cfg at a square input,
    by propagating (channels, side) through its layers."""
    sections = []
    for line in open(path):
        line = line.split("#")[0].strip()
        if line.startswith("["):
            sections.append((line.strip("[]"), {}))
        elif "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            sections[-1][1][key] = value
    shapes, channels, side = [], 3, size
    conv_macs = bn_elements = 0
    for kind, options in sections[1:]:
        if kind == "convolutional":
            k, stride = int(options["size"]), int(options.get("stride", 1))
            pad = k // 2 if int(options.get("pad", 0)) else 0
            out_side = (side + 2 * pad - k) // stride + 1
            out = int(options["filters"]) * out_side * out_side
            conv_macs += out * channels * k * k
            if int(options.get("batch_normalize", 0)):
                bn_elements += out
            else:
                conv_macs += out
            channels, side = int(options["filters"]), out_side
        elif kind == "route":
            refs = [int(v) for v in options["layers"].split(",")]
            picked = [shapes[r if r >= 0 else len(shapes) + r] for r in refs]
            channels, side = sum(c for c, _ in picked), picked[0][1]
        elif kind == "upsample":
            side *= int(options["stride"])
        shapes.append((channels, side))         # maxpool (stride 1), shortcut, yolo keep the shape
    return conv_macs, bn_elements


@pytest.fixture(scope="module")
def yolov4_counts():
    with torch.device("meta"):            # shapes only: no weights, no arithmetic
        model = YoloBody(MASK, 80)
    return count_parameters(model), count_macs(model, (416, 416))


def test_yolov4_params_equal_upstream_listing(yolov4_counts):
    (total_params, trainable), _ = yolov4_counts
    listed = 0
    for line in open(os.path.join(DATA, "yolov4_state_dict_80classes.txt")):
        key, shape = line.strip().split(" ", 1)
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            numel = 1
            for dim in shape.strip("()").split(","):
                numel *= int(dim) if dim.strip() else 1
            listed += numel
    assert total_params == trainable == listed == 64_363_101


def test_yolov4_macs_equal_darknet_cfg_count(yolov4_counts):
    _, (total, rows) = yolov4_counts
    conv_macs, bn_elements = darknet_cfg_counts(os.path.join(DATA, "yolov4.cfg"), 416)
    assert sum(r["macs"] for r in rows if r["type"] == "Conv2d") == conv_macs
    assert sum(r["macs"] for r in rows if r["type"] == "BatchNorm2d") == bn_elements
    assert total == conv_macs + bn_elements
    assert all(r["counted"] for r in rows)
    assert total / 1e9 == pytest.approx(30.1, abs=0.05)       # 60.2 GFLOPs as 2 x MACs


def test_summary_script_prints_totals_and_rejects_unknown_settings():
    args = [sys.executable, "summary.py", "--input_shape", "[64, 96]", "--num_classes", "20",
            "--width_mult", "0.25", "--depth_mult", "0.33", "--show_layers", "False"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with torch.device("meta"):
        params, _ = count_parameters(YoloBody(MASK, 20, width_mult=0.25, depth_mult=0.33))
    assert f"Total params: {params:,}" in done.stdout and "Total GFLOPs:" in done.stdout
    assert "Conv2d" not in done.stdout                         # table switched off
    bad = subprocess.run([sys.executable, "summary.py", "--num_class", "3"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2          # utils/config.py's ConfigError: status 2 like argparse
