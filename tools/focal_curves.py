"""Plot the focal loss of a positive and its gradient with respect to the logit, for several gammas.

Left: ``FL(p_t) = -(1 - p_t) ** gamma * log(p_t)`` against ``p_t`` (Lin et al. 2017, figure 1), the
"well-classified" region ``p_t > 0.5`` shaded. Right: ``dFL/dz`` for a positive (``p_t = sigmoid(z)``),
which shows how little an easy example still pushes its logit once ``gamma > 0``.

Both are computed by torch autograd through ``nets.focal_loss.sigmoid_focal_loss`` (the function
the objectness loss uses), not from the closed form. That function weights a positive by ``alpha``;
the curves use ``alpha = 0.5`` and divide by it, which gives the unweighted loss exactly.
    python tools/focal_curves.py --output_path focal.png --gammas "[0, 1, 2]"
"""
import os
import sys

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from nets.focal_loss import sigmoid_focal_loss  # noqa: E402
from utils.atomic import atomic_savefig  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.errors import run_entry  # noqa: E402

output_path = "docs/focal_curves.png"         # PNG to write (the README embeds this one)
gammas = [0, 0.5, 1, 2, 5]                    # focusing parameters to draw, one curve each

# alpha_t of a positive is alpha: with alpha = 0.5, dividing by 0.5 leaves the unweighted loss.
_ALPHA = 0.5
# p_t grid: sigmoid's logit is infinite at 0 and 1, so the ends are left out by a small margin.
_P_T = np.linspace(1e-3, 1 - 1e-3, 999)
_LIMITS = {"gammas": "any length, >=0"}  # lists of any length; the rest typed by their defaults


def focal_curves(p_t, gamma):
    """Unweighted focal loss of a positive and its derivative w.r.t. the logit, both ``(n,)`` float64,
    at probabilities ``p_t (n,)`` in (0, 1), via autograd through ``sigmoid_focal_loss``."""
    p_t = torch.as_tensor(np.asarray(p_t, dtype=np.float64))
    logits = torch.logit(p_t).requires_grad_(True)                       # z with sigmoid(z) = p_t
    loss = sigmoid_focal_loss(logits, torch.ones_like(logits), alpha=_ALPHA, gamma=gamma) / _ALPHA
    # Each loss element depends only on its own logit, so the gradient of the sum is elementwise dFL/dz.
    (gradient,) = torch.autograd.grad(loss.sum(), logits)
    return loss.detach().numpy(), gradient.numpy()


def plot_focal_curves(path, gamma_values, p_t=_P_T):
    """Write the two-panel figure to ``path``; returns ``path``."""
    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, gradient_axes = figure.subplots(1, 2)
    for gamma in gamma_values:
        loss, gradient = focal_curves(p_t, gamma)
        label = f"γ = {gamma}" + (" (cross entropy)" if gamma == 0 else "")
        loss_axes.plot(p_t, loss, label=label)
        gradient_axes.plot(p_t, gradient, label=label)
    for axes in (loss_axes, gradient_axes):
        axes.axvspan(0.5, 1.0, color="tab:gray", alpha=0.15)
        axes.set_xlim(0, 1)
        axes.set_xlabel("probability of ground truth class $p_t$")
        axes.legend()
    loss_axes.text(0.75, 4.2, "well-classified\nexamples", ha="center")
    loss_axes.set(ylim=(0, 5), ylabel="loss", title=r"$FL(p_t) = -(1 - p_t)^\gamma \log p_t$")
    # Focusing makes the gradient of a hard positive (small p_t) exceed cross entropy's -1: no fixed bottom.
    gradient_axes.set_ylim(top=0.05)
    gradient_axes.set(ylabel=r"$\partial FL / \partial z$  (z: logit, positive)",
                      title="gradient on the logit of a positive")
    figure.tight_layout()
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    atomic_savefig(figure, path)
    return path


if __name__ == "__main__":
    config = resolve_config(globals(), sys.argv[1:], __file__)
    run_entry(lambda: print(f"Saved {plot_focal_curves(config['output_path'], config['gammas'])}"))
