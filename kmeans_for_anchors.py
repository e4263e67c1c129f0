"""IoU k-means anchors from VOC annotations (upstream behaviour, vectorized and seeded).

Each box is reduced to its (w, h), normalized by its image size and scaled to ``input_shape``;
k-means then clusters the sizes with the distance ``1 - IoU`` of boxes centred at the origin and
median updates. Clustering in input pixels (upstream clusters normalized sizes, then scales) is
the same for a square ``input_shape`` and the right metric for a non-square one.
"""
import glob
import os
import sys

import numpy as np

from utils.atomic import atomic_savefig, atomic_write_lines
from utils.config import resolve_config
from utils.errors import UserError, run_entry
from utils.data.voc import parse_voc_xml

input_shape = [416, 416]                                # network input [height, width] the anchors are for
anchors_num = 9                                         # number of anchors (9 for YOLOv4's three levels)
annotations_path = 'VOCdevkit/VOC2007/Annotations'      # folder of VOC XML files
anchors_path = 'model_data/sample_anchors.txt'          # output anchors file ("w,h, w,h, ..." sorted by area)
plot_path = 'kmeans_for_anchors.jpg'                    # scatter plot of the clusters
seed = 0                                                # seed of the initial cluster choice
max_iterations = 300                                    # stop k-means after this many updates even if not settled


def load_box_sizes(annotations_path):
    """``(n, 2)`` box widths and heights divided by their image's width and height.

    All objects count (difficult ones too, as upstream). Files without a valid <size> or that do
    not parse are skipped with a note.
    """
    xml_paths = sorted(glob.glob(os.path.join(annotations_path, "*.xml")))
    if not xml_paths:
        raise FileNotFoundError(f"no .xml annotation files in {annotations_path}")
    sizes, skipped = [], 0
    for xml_path in xml_paths:
        annotation = parse_voc_xml(xml_path)
        if not annotation.ok or annotation.size is None:
            skipped += 1
            continue
        wh = annotation.boxes[:, 2:] - annotation.boxes[:, :2]  # (n, 2)
        sizes.append(wh / np.array(annotation.size, dtype=np.float32))
    if skipped:
        print(f"Skipped {skipped} of {len(xml_paths)} annotation files without a parseable XML or a valid <size>.")
    boxes = np.concatenate(sizes + [np.zeros((0, 2), np.float32)])
    if len(boxes) == 0:
        raise UserError(f"no boxes found in the annotation files of {annotations_path}")
    return boxes


def wh_iou(boxes, clusters):
    """IoU of ``(n, 2)`` sizes against ``(k, 2)`` sizes, all centred at the origin -> ``(n, k)``."""
    inter = np.minimum(boxes[:, None, :], clusters[None, :, :]).prod(-1)
    union = boxes.prod(-1)[:, None] + clusters.prod(-1)[None, :] - inter
    return inter / union


def mean_best_iou(boxes, clusters):
    """Mean over boxes of the IoU with the nearest cluster (upstream's ``avg_iou``)."""
    return float(wh_iou(boxes, clusters).max(axis=1).mean())


def kmeans_iou(boxes, k, rng, max_iterations=300):
    """Cluster ``(n, 2)`` sizes into ``k`` with distance 1 - IoU and median updates.

    Returns ``(clusters (k, 2), assignment (n,))``. Starts from ``k`` distinct random boxes and
    stops when the assignment no longer changes. A cluster that loses all its boxes restarts at
    the box farthest from its current cluster, so every anchor keeps covering some boxes.
    """
    if len(boxes) < k:
        raise UserError(f"need at least {k} boxes for {k} anchors, got {len(boxes)}")
    clusters = boxes[rng.choice(len(boxes), k, replace=False)].astype(np.float64)
    assignment = np.full(len(boxes), -1)
    for _ in range(max_iterations):
        iou = wh_iou(boxes, clusters)  # (n, k)
        nearest = iou.argmax(axis=1)
        if (nearest == assignment).all():
            break
        assignment = nearest
        for j in range(k):
            members = boxes[assignment == j]
            if len(members):
                clusters[j] = np.median(members, axis=0)
            else:
                clusters[j] = boxes[iou.max(axis=1).argmin()]
    return clusters, assignment


def sort_by_area(clusters):
    return clusters[np.argsort(clusters.prod(axis=1))]


def format_anchors(clusters):
    """``'w,h, w,h, ...'`` of integer pixels (at least 1), the ``yolo_anchors.txt`` format."""
    rounded = np.maximum(np.round(clusters), 1).astype(int)
    return ", ".join(f"{w},{h}" for w, h in rounded)


def save_cluster_plot(boxes, clusters, assignment, path):
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    for j in range(len(clusters)):
        members = boxes[assignment == j]
        ax.scatter(members[:, 0], members[:, 1], s=6)
        ax.scatter(clusters[j, 0], clusters[j, 1], marker="x", c="black", s=60)
    ax.set_xlabel("width (input pixels)")
    ax.set_ylabel("height (input pixels)")
    ax.set_title(f"{len(clusters)} IoU k-means anchors over {len(boxes)} boxes")
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def main(config):
    height, width = config["input_shape"]
    boxes = load_box_sizes(config["annotations_path"]) * np.array([width, height], dtype=np.float32)
    rng = np.random.default_rng(config["seed"])
    clusters, assignment = kmeans_iou(boxes.astype(np.float64), config["anchors_num"], rng, config["max_iterations"])
    save_cluster_plot(boxes, clusters, assignment, config["plot_path"])
    clusters = sort_by_area(clusters)
    print(f"{len(boxes)} boxes; mean IoU of each box with its nearest anchor: {mean_best_iou(boxes, clusters):.4f}")
    text = format_anchors(clusters)
    atomic_write_lines(config["anchors_path"], [text])
    print(f"anchors ({config['input_shape'][1]}x{config['input_shape'][0]} input): {text}")
    print(f"wrote {config['anchors_path']} and {config['plot_path']}")


if __name__ == "__main__":
    run_entry(lambda: main(resolve_config(globals(), sys.argv[1:])))
