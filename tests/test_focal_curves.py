"""tools/focal_curves.py: autograd curves against the closed forms, and the PNG."""
import math
import os
import subprocess
import sys

import pytest
from PIL import Image

from tools.focal_curves import focal_curves, plot_focal_curves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P_T = [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]


def closed_form_loss(p, gamma):
    return -(1 - p) ** gamma * math.log(p)


def closed_form_gradient(p, gamma):
    # d/dz of -(1-p)^g log p with dp/dz = p (1 - p):  (1-p)^g * (g p log p - (1 - p)).
    return (1 - p) ** gamma * (gamma * p * math.log(p) - (1 - p))


@pytest.mark.parametrize("gamma", [0, 0.5, 1, 2, 5])
def test_curves_match_closed_form(gamma):
    loss, gradient = focal_curves(P_T, gamma)
    assert loss == pytest.approx([closed_form_loss(p, gamma) for p in P_T], abs=1e-5)
    assert gradient == pytest.approx([closed_form_gradient(p, gamma) for p in P_T], abs=1e-5)


def test_gamma_zero_is_binary_cross_entropy():
    loss, gradient = focal_curves(P_T, 0)
    assert loss == pytest.approx([-math.log(p) for p in P_T], rel=1e-9)
    assert gradient == pytest.approx([p - 1 for p in P_T], rel=1e-9)      # BCE: dL/dz = p - y


def test_focusing_shrinks_easy_examples_most():
    # gamma = 2 at p_t = 0.9: the loss is scaled by (1 - 0.9)^2 = 0.01 (the paper's 100x example).
    loss_ce, _ = focal_curves([0.9], 0)
    loss_fl, _ = focal_curves([0.9], 2)
    assert loss_fl[0] / loss_ce[0] == pytest.approx(0.01, rel=1e-9)


def test_png_written(tmp_path):
    path = plot_focal_curves(tmp_path / "sub" / "curves.png", [0, 2])
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1100, 450)


def test_command_line(tmp_path):
    out = tmp_path / "focal.png"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "focal_curves.py"), "--output_path", str(out),
                             "--gammas", "[0, 1]"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file()
