"""PNG plots of metrics and training curves.

Figures are built with ``matplotlib.figure.Figure`` directly (Agg canvas), never through pyplot:
no window opens, no global figure registry fills up, and the backend of the caller is untouched.
Each function writes one PNG (``plot_pr_curves`` one per class) and returns the path(s) written;
the figure is dropped when the function returns (nothing to close without pyplot).
"""
import os
import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic import atomic_savefig


def _new_figure(width, height, panels=1):
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels)
    return figure, axes


def _save(figure, path):
    figure.tight_layout()
    return atomic_savefig(figure, os.fspath(path))


def _check_class_count(result, class_names):
    if len(class_names) != len(result["ap50"]):
        raise ValueError(f"{len(class_names)} class names given for a result with {len(result['ap50'])} classes")


def _file_safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


def plot_pr_curves(result, class_names, out_dir):
    """One ``pr_<class>.png`` per class that has ground truth: the raw precision/recall curve at
    IoU 0.5, its monotone envelope (whose area is the AP) and the AP in the title."""
    _check_class_count(result, class_names)
    paths = []
    for c, name in enumerate(class_names):
        if not result["num_gt"][c]:
            continue
        recall, precision = result["recall"][c], result["precision"][c]
        figure, ax = _new_figure(5, 5)
        if len(recall):
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            ax.plot(recall, precision, color="tab:blue", alpha=0.6, label="precision")
            # Step "pre" from recall 0: the shaded area is exactly the all-point AP.
            ax.fill_between(np.r_[0.0, recall], np.r_[envelope[0], envelope], step="pre", color="tab:red",
                            alpha=0.2, label="envelope (area = AP)")
            ax.legend(loc="lower left")
        ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="recall", ylabel="precision",
               title=f"{name}: AP@0.5 = {result['ap50'][c]:.2%}")
        paths.append(_save(figure, os.path.join(out_dir, f"pr_{_file_safe(name)}.png")))
    return paths


def plot_ap_bars(result, class_names, path):
    """Horizontal bars of AP@0.5 per class (best at the top), mAP@0.5 in the title."""
    _check_class_count(result, class_names)
    ap = np.asarray(result["ap50"], dtype=float)
    valid = np.flatnonzero(~np.isnan(ap))
    order = valid[np.argsort(ap[valid])]
    figure, ax = _new_figure(7, max(3.0, 0.3 * len(order) + 1.5))
    ax.barh(np.arange(len(order)), ap[order], color="royalblue")
    ax.set_yticks(np.arange(len(order)), [class_names[i] for i in order])
    for y, value in enumerate(ap[order]):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set(xlim=(0, 1.1), xlabel="AP@0.5", title=f"mAP@0.5 = {result['map50']:.2%}")
    return _save(figure, path)


def plot_confusion_matrix(matrix, class_names, path, normalize=True):
    """Heat map of a ``confusion_matrix`` result (rows predicted, columns true, background last).
    ``normalize`` divides each column by its total, so a column shows where a true class went."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(class_names) + 1,) * 2:
        raise ValueError(f"confusion matrix shape {matrix.shape} does not fit {len(class_names)} classes + background")
    shown = matrix / np.maximum(matrix.sum(0, keepdims=True), 1) if normalize else matrix
    labels = list(class_names) + ["background"]
    size = max(5.0, 0.45 * len(labels) + 2)
    figure, ax = _new_figure(size, size)
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90)
    ax.set_yticks(ticks, labels)
    if len(labels) <= 30:                  # cell labels stay readable up to about 30 classes
        for (row, col), value in np.ndenumerate(shown):
            if value:
                ax.text(col, row, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                        fontsize=7, color="white" if value > shown.max() / 2 else "black")
    ax.set(xlabel="true", ylabel="predicted", title="confusion matrix" + (" (column-normalised)" if normalize else ""))
    return _save(figure, path)


def _column(rows, key):
    """``rows[i][key]`` as floats, NaN where a row lacks it; None when no row has it."""
    values = np.array([np.nan if row.get(key) is None else row[key] for row in rows], dtype=float)
    return None if np.isnan(values).all() else values


def _smooth(values):
    """Centred moving average (window 5, or 15 from 25 points on); None when too short."""
    window = 5 if len(values) < 25 else 15
    if np.isnan(values).any() or len(values) < window:
        return None
    return np.convolve(values, np.ones(window) / window, mode="valid"), window // 2


def plot_loss_curves(rows, path):
    """Left: total train / val loss per epoch (plus a smoothed train curve when there are enough
    points). Right: the loc / conf / cls terms, train solid and val dashed, when rows have them."""
    if not rows:
        raise ValueError("plot_loss_curves needs at least one epoch row")
    epochs = np.array([row["epoch"] for row in rows], dtype=float)
    figure, (total_ax, terms_ax) = _new_figure(11, 4.5, panels=2)
    for key, color in (("train_loss", "tab:red"), ("val_loss", "tab:orange")):
        values = _column(rows, key)
        if values is not None:
            total_ax.plot(epochs, values, color=color, marker="." if len(rows) < 30 else None, label=key)
    train = _column(rows, "train_loss")
    smoothed = _smooth(train) if train is not None else None
    if smoothed is not None:
        values, half = smoothed
        total_ax.plot(epochs[half:len(epochs) - half], values, color="green", linestyle="--", label="train (smoothed)")
    total_ax.set(xlabel="epoch", ylabel="loss", title="total loss")
    total_ax.legend()
    for term, color in (("loc", "tab:blue"), ("conf", "tab:purple"), ("cls", "tab:brown")):
        for split, style in (("train", "-"), ("val", "--")):
            values = _column(rows, f"{split}_{term}")
            if values is not None:
                terms_ax.plot(epochs, values, color=color, linestyle=style, label=f"{split} {term}")
    terms_ax.set(xlabel="epoch", ylabel="loss", title="loss terms")
    if terms_ax.lines:
        terms_ax.legend()
    else:
        terms_ax.text(0.5, 0.5, "no per-term losses recorded", ha="center", va="center", transform=terms_ax.transAxes)
    return _save(figure, path)


def plot_map_curve(rows, path):
    """mAP@0.5 (and mAP@[.5:.95] when present) against epoch."""
    if not rows:
        raise ValueError("plot_map_curve needs at least one row")
    epochs = np.array([row["epoch"] for row in rows], dtype=float)
    figure, ax = _new_figure(6, 4.5)
    for key, label in (("map50", "mAP@0.5"), ("map50_95", "mAP@[.5:.95]")):
        values = _column(rows, key)
        if values is not None:
            ax.plot(epochs, values, marker="." if len(rows) < 30 else None, label=label)
    ax.set(xlabel="epoch", ylabel="mAP", ylim=(0, 1), title="validation mAP")
    ax.legend()
    return _save(figure, path)


def plot_score_histograms(pos_scores, neg_scores, path, title):
    """Step histograms of objectness scores in [0, 1] on positive and negative cells, log counts."""
    bins = np.linspace(0, 1, 51)
    figure, ax = _new_figure(6, 4.5)
    for scores, label, color in ((pos_scores, "positives", "tab:green"), (neg_scores, "negatives", "tab:red")):
        scores = np.asarray(scores, dtype=float).ravel()
        ax.hist(scores, bins=bins, histtype="step", linewidth=1.5, color=color, label=f"{label} (n={len(scores)})")
    ax.set_yscale("log")
    ax.set(xlabel="objectness score", ylabel="count", xlim=(0, 1), title=title)
    ax.legend()
    return _save(figure, path)
