"""Statistics of the training boxes against the anchors before training: the anchor check (how many boxes the
anchors can recall at the input size) and the share of positive cells per level.

yolov5's measure: a box is recallable when some anchor has both sides within ``RATIO_LIMIT`` times the box's
(its loss can still reach the box through exp(tw)); the best possible recall (BPR) is the share of recallable
boxes. Boxes are scaled to the input as the letterbox scales their image.
"""
import numpy as np
import torch

from utils.data.annotation import parse_annotation_line

RATIO_LIMIT = 4.0       # yolov5's anchor_t
BPR_TARGET = 0.98       # below this, clustering anchors for the data is worth it


def box_sizes_at_input(lines, image_sizes, input_shape):
    """``(n, 2)`` box (w, h) in input pixels of training-list ``lines`` (``image_sizes``: path -> (w, h))."""
    height, width = input_shape
    sizes = []
    for line in lines:
        path, boxes = parse_annotation_line(line)
        if path not in image_sizes or not len(boxes):
            continue
        iw, ih = image_sizes[path]
        scale = min(width / iw, height / ih)
        sizes.append((boxes[:, 2:4] - boxes[:, 0:2]) * scale)
    return np.concatenate(sizes) if sizes else np.zeros((0, 2))


def best_possible_recall(box_wh, anchors, limit=RATIO_LIMIT):
    """Share of boxes ``(n, 2)`` with an anchor ``(k, 2)`` whose sides are both within ``limit`` x the box's."""
    if not len(box_wh):
        return float("nan")
    ratio = box_wh[:, None, :] / np.asarray(anchors, dtype=np.float64)[None]        # (n, k, 2)
    worst_side = np.minimum(ratio, 1 / ratio).min(axis=2)                            # (n, k)
    return float((worst_side.max(axis=1) > 1 / limit).mean())


def anchor_report(lines, image_sizes, anchors, input_shape, anchors_path):
    """The check's message: the BPR, and below ``BPR_TARGET`` the kmeans_for_anchors.py command to run."""
    box_wh = box_sizes_at_input(lines, image_sizes, input_shape)
    bpr = best_possible_recall(box_wh, anchors)
    text = (f"Anchor check: best possible recall {bpr:.3f} of {len(box_wh)} training boxes at "
            f"{input_shape[1]}x{input_shape[0]} with {anchors_path} (an anchor within {RATIO_LIMIT:g}x of both sides)")
    if bpr < BPR_TARGET:
        text += (f"\nWarning: below {BPR_TARGET}: some boxes fit no anchor. Cluster anchors for this data and input "
                 f"size: python kmeans_for_anchors.py --input_shape \"[{input_shape[0]}, {input_shape[1]}]\" "
                 f"--anchors_path model_data/my_anchors.txt, then train with --anchors_path model_data/my_anchors.txt")
    return text, bpr


def letterboxed_targets(lines, image_sizes, input_shape):
    """``(boxes (n, 5) float32 cx, cy, w, h over the input, class; image index (n,); images)`` of training-list
    ``lines``, each image letterboxed into ``input_shape`` as validation does."""
    height, width = input_shape
    rows, owners, count = [], [], 0
    for line in lines:
        path, boxes = parse_annotation_line(line)
        if path not in image_sizes:
            continue
        iw, ih = image_sizes[path]
        scale = min(width / iw, height / ih)
        dx, dy = (width - int(iw * scale)) // 2, (height - int(ih * scale)) // 2
        xy = boxes[:, :4] * scale + np.array([dx, dy, dx, dy], dtype=np.float32)
        rows.append(np.column_stack([(xy[:, 0] + xy[:, 2]) / 2 / width, (xy[:, 1] + xy[:, 3]) / 2 / height,
                                     (xy[:, 2] - xy[:, 0]) / width, (xy[:, 3] - xy[:, 1]) / height, boxes[:, 4]]))
        owners.append(np.full(len(boxes), count))
        count += 1
    if not rows:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.int64), 0
    return np.concatenate(rows).astype(np.float32), np.concatenate(owners).astype(np.int64), count


def positives_per_level(loss_fn, lines, image_sizes, input_shape, chunk=256):
    """``(positives, cells, images)``: per level (stride 32, 16, 8) the anchor cells that ``loss_fn``'s assignment
    makes positive for the letterboxed training boxes (see YOLOLoss._conf_loss) and all its anchor cells, summed
    over the images, counted in chunks of ``chunk`` images."""
    boxes, owners, images = letterboxed_targets(lines, image_sizes, input_shape)
    positives, cells = [], []
    for level, stride in enumerate((32, 16, 8)):
        H, W, A = input_shape[0] // stride, input_shape[1] // stride, len(loss_fn.anchors_mask[level])
        found = 0
        for start in range(0, images, chunk):
            keep = (owners >= start) & (owners < start + chunk)
            grid = torch.from_numpy(boxes[keep] * np.array([W, H, W, H, 1], dtype=np.float32))
            img = torch.from_numpy(owners[keep] - start)
            found += int(loss_fn._assign(level, grid, img, min(chunk, images - start), A, H, W)["obj"].sum())
        positives.append(found)
        cells.append(max(images, 1) * A * H * W)
    return positives, cells, images


def positive_shares(loss_fn, lines, image_sizes, input_shape, chunk=256):
    """Per level, the positives of all levels per cell (anchor x grid cell) of that level that ``loss_fn``'s
    assignment gives the letterboxed training boxes (see YOLOLoss._conf_loss), in chunks of ``chunk`` images."""
    positives, cells, _ = positives_per_level(loss_fn, lines, image_sizes, input_shape, chunk)
    return [sum(positives) / c for c in cells]


def level_imbalance_rows(loss_fn, lines, image_sizes, input_shape):
    """Markdown rows, one per level: positives and anchor cells per image under ``loss_fn``'s assignment and the
    easy negatives each positive faces there (``1 positive per N negatives``), the imbalance focal objectness is
    for, for the training ``lines`` letterboxed into ``input_shape``."""
    positives, cells, images = positives_per_level(loss_fn, lines, image_sizes, input_shape)
    size = f"{input_shape[0]}" if input_shape[0] == input_shape[1] else f"{input_shape[0]}x{input_shape[1]}"
    rows = []
    for stride, found, total in zip((32, 16, 8), positives, cells):
        ratio = f"1 positive per {(total - found) / found:.0f} negatives" if found else "no positive"
        rows.append(f"| {size} | stride {stride} | {found / max(images, 1):.1f} | "
                    f"{total // max(images, 1)} | {ratio} |")
    return rows
