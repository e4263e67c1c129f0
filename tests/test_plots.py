"""Every plot writes a non-empty PNG without opening a window (pyplot is never used)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from utils.metrics.plots import (plot_ap_bars, plot_confusion_matrix, plot_loss_curves, plot_map_curve, plot_pr_curves,
                                 plot_score_histograms)
from utils.metrics.mean_ap import confusion_matrix, evaluate_detections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["cat", "dog", "potted plant"]


def assert_png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    gts, dets = {}, {}
    for image in range(20):
        xy = rng.uniform(0, 100, (3, 2))
        boxes = np.c_[xy, xy + 20, rng.integers(0, 2, 3)]         # no gt of class 2
        gts[image] = boxes
        dets[image] = np.c_[boxes[:, :4] + rng.normal(0, 3, (3, 4)).clip(-4, 4), rng.random(3), rng.integers(0, 3, 3)]
    return gts, dets


def test_pr_curves_one_file_per_class_with_gt(tmp_path, data):
    result = evaluate_detections(*data, 3)
    paths = plot_pr_curves(result, NAMES, tmp_path / "pr")
    assert sorted(p.rsplit("/", 1)[-1] for p in map(str, paths)) == ["pr_cat.png", "pr_dog.png"]
    for path in paths:
        assert_png(path)
    with pytest.raises(ValueError, match="2 class names"):
        plot_pr_curves(result, NAMES[:2], tmp_path)


def test_ap_bars_and_confusion_matrix(tmp_path, data):
    plot_ap_bars(evaluate_detections(*data, 3), NAMES, tmp_path / "ap.png")
    assert_png(tmp_path / "ap.png")
    matrix = confusion_matrix(*data, 3)
    for normalize in (True, False):
        path = tmp_path / f"cm_{normalize}.png"
        plot_confusion_matrix(matrix, NAMES, path, normalize=normalize)
        assert_png(path)
    with pytest.raises(ValueError, match="does not fit"):
        plot_confusion_matrix(matrix, NAMES[:2], tmp_path / "bad.png")


@pytest.mark.parametrize("epochs", [1, 3, 40])
def test_loss_and_map_curves(tmp_path, epochs):
    rng = np.random.default_rng(epochs)
    rows = [{"epoch": e + 1, "train_loss": 5 / (e + 1) + rng.random(), "val_loss": 6 / (e + 1),
             "train_loc": 1.0, "train_conf": 2.0, "train_cls": 0.5, "val_loc": 1.1, "val_conf": 2.2, "val_cls": 0.6,
             "map50": e / 50, "map50_95": e / 100} for e in range(epochs)]
    plot_loss_curves(rows, tmp_path / "loss.png")
    plot_map_curve(rows, tmp_path / "map.png")
    plot_loss_curves([{"epoch": 1, "train_loss": 3.0, "val_loss": None}], tmp_path / "bare.png")
    for name in ("loss.png", "map.png", "bare.png"):
        assert_png(tmp_path / name)
    with pytest.raises(ValueError, match="at least one"):
        plot_loss_curves([], tmp_path / "empty.png")


def test_score_histograms_including_empty_side(tmp_path):
    rng = np.random.default_rng(1)
    plot_score_histograms(rng.beta(5, 2, 300), rng.beta(1, 20, 20000), tmp_path / "h.png", "objectness")
    plot_score_histograms([], rng.random(10), tmp_path / "h2.png", "no positives")
    assert_png(tmp_path / "h.png")
    assert_png(tmp_path / "h2.png")


def test_plotting_never_loads_pyplot(tmp_path):
    """pyplot is what opens windows and keeps figures alive; the module must not need it."""
    code = ("import sys, numpy as np; from utils.metrics.plots import plot_score_histograms; "
            f"plot_score_histograms(np.random.rand(50), np.random.rand(50), {str(tmp_path / 'h.png')!r}, 't'); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    assert_png(tmp_path / "h.png")
