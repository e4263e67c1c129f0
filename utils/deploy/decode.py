"""From raw YOLO head outputs to detections: decoding, class-aware greedy NMS, undoing the letterbox.

Layouts used throughout:
- decoded predictions ``(B, N, 5 + C)``: ``x1, y1, x2, y2`` in input pixels, objectness probability,
  class probabilities; ``N`` runs over levels, then anchors, then grid rows and columns.
- detections ``(k, 6)``: ``x1, y1, x2, y2, score, class`` with ``score = objectness * class probability``.
"""
import numpy as np
import torch

from nets.boxes import box_iou


def _level_grid(height, width, device, dtype):
    """Cell offsets ``(1, 1, H, W, 2)`` as ``(grid_x, grid_y)``."""
    grid_y, grid_x = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                                    torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)[None, None]


def _decode_level(output, anchors_wh, input_shape, scale_x_y):
    """One level ``(B, A*(5+C), H, W)`` -> ``(B, A*H*W, 5+C)`` decoded as in the module docstring."""
    batch, _, height, width = output.shape
    num_anchors = anchors_wh.shape[0]
    pred = output.float().view(batch, num_anchors, -1, height, width).permute(0, 1, 3, 4, 2)  # (B, A, H, W, 5+C)
    stride = torch.tensor([input_shape[1] / width, input_shape[0] / height], device=output.device)
    grid = _level_grid(height, width, output.device, pred.dtype)
    # scale_x_y > 1 lets a centre reach its cell's border (darknet's "scale_x_y"); 1 is plain YOLOv3/v4.
    centre = (torch.sigmoid(pred[..., :2]) * scale_x_y - (scale_x_y - 1) / 2 + grid) * stride
    size = torch.exp(pred[..., 2:4]) * anchors_wh.view(1, num_anchors, 1, 1, 2)
    probabilities = torch.sigmoid(pred[..., 4:])
    decoded = torch.cat([centre - size / 2, centre + size / 2, probabilities], dim=-1)
    return decoded.reshape(batch, num_anchors * height * width, -1)


def decode_levels(outputs, anchors, anchors_mask, input_shape, scale_x_y=None):
    """Per-level decoded predictions, a list of ``(B, A*H*W, 5+C)`` tensors (see ``decode_outputs``)."""
    if len(outputs) != len(anchors_mask):
        raise ValueError(f"got {len(outputs)} output levels but anchors_mask has {len(anchors_mask)} entries")
    scale_x_y = [1.0] * len(outputs) if scale_x_y is None else list(scale_x_y)
    if len(scale_x_y) != len(outputs):
        raise ValueError(f"scale_x_y needs one value per level ({len(outputs)}), got {scale_x_y}")
    anchors = torch.as_tensor(np.asarray(anchors, dtype=np.float32).reshape(-1, 2))
    return [_decode_level(out, anchors[list(mask)].to(out.device), input_shape, float(s))
            for out, mask, s in zip(outputs, anchors_mask, scale_x_y)]


def decode_outputs(outputs, anchors, anchors_mask, input_shape, scale_x_y=None):
    """All levels decoded into one ``(B, N, 5 + C)`` tensor.

    Args:
        outputs: head outputs ``(B, len(mask) * (5 + C), H_l, W_l)``, level 0 = stride 32.
        anchors: ``(9, 2)`` anchor ``(w, h)`` in input pixels.
        anchors_mask: anchor indices per level.
        input_shape: network input ``(h, w)``.
        scale_x_y: one centre scale per level (darknet's 1.05 / 1.1 / 1.2); None means 1.0 each.
    """
    return torch.cat(decode_levels(outputs, anchors, anchors_mask, input_shape, scale_x_y), dim=1)


# Bounds the (rows, m) IoU temporaries of one NMS chunk to a few tens of MB, whatever the box count.
_NMS_CHUNK_ELEMENTS = 1 << 22


def _greedy_nms_sorted(boxes, classes, iou_threshold, limit):
    """Greedy NMS of ``(m, 4)`` boxes with labels ``(m,)``, already sorted by descending score.

    The IoU matrix is computed once, in row chunks and only for rows still alive when their chunk
    is reached; the Python loop then visits those rows, each kept one clearing the boxes it
    suppresses inside the chunk, and the chunk's kept rows clear later boxes in one vectorized op.
    Returns kept positions (numpy int64, ascending), at most ``limit`` of them.
    """
    count = len(boxes)
    alive = np.ones(count, dtype=bool)
    kept = []
    rows_per_chunk = max(1, _NMS_CHUNK_ELEMENTS // count)
    for start in range(0, count, rows_per_chunk):
        stop = min(start + rows_per_chunk, count)
        rows = start + np.flatnonzero(alive[start:stop])
        if not rows.size:
            continue
        # (r, m - start): does alive row r overlap box start + c too much?
        row_index = torch.as_tensor(rows, device=boxes.device)
        same_class = classes[row_index, None] == classes[None, start:]
        suppress = ((box_iou(boxes[row_index], boxes[start:]) > iou_threshold) & same_class).cpu().numpy()
        kept_rows = []
        for j, i in enumerate(rows.tolist()):
            if alive[i]:
                kept_rows.append(j)
                if len(kept) + len(kept_rows) == limit:
                    break
                alive[i + 1:stop] &= ~suppress[j, i + 1 - start:stop - start]
        kept.extend(rows[kept_rows].tolist())
        if len(kept) >= limit:
            break
        alive[stop:] &= ~suppress[kept_rows, stop - start:].any(axis=0)
    return np.asarray(kept, dtype=np.int64)


def batched_nms(boxes, scores, classes, iou_threshold, max_det=None, class_agnostic=False):
    """Class-aware greedy NMS. Returns the kept indices into ``boxes``, highest score first.

    Equal to classic greedy NMS: visit boxes by descending score (ties in input order), keep a box
    unless an already kept box of the same class overlaps it with IoU > ``iou_threshold``.
    Classes never interact: past a few thousand boxes each class is reduced on its own, so no
    IoU is computed across classes; ``max_det`` keeps the best that many overall.
    ``class_agnostic``: any kept box suppresses, whatever its class (yolov5's ``--agnostic-nms``): one box per
    object where the classes of an object's boxes disagree, at the cost of objects of different classes that
    overlap beyond ``iou_threshold``.

    Args:
        boxes: ``(n, 4)`` xyxy; scores: ``(n,)``; classes: ``(n,)`` integer labels.
    """
    if class_agnostic:
        classes = torch.zeros_like(classes)
    order = torch.sort(scores, descending=True, stable=True).indices
    if not len(order):
        return order
    limit = len(order) if max_det is None else int(max_det)
    boxes, classes = boxes[order].float(), classes[order]
    if len(order) ** 2 <= _NMS_CHUNK_ELEMENTS:
        groups = [torch.arange(len(order), device=order.device)]    # one chunk: a per-class loop costs more
    else:
        # Positions grouped by class; the stable sort keeps each group in score order.
        by_class = torch.sort(classes, stable=True).indices
        group_sizes = torch.unique_consecutive(classes[by_class], return_counts=True)[1].tolist()
        groups = torch.split(by_class, group_sizes)
    kept = [group[torch.as_tensor(_greedy_nms_sorted(boxes[group], classes[group], iou_threshold, limit),
                                  device=group.device)] for group in groups]
    # Ascending positions = descending score, ties in input order.
    positions = torch.sort(torch.cat(kept)).values[:limit]
    return order[positions]


def _best_class(prediction):
    """For ``(N, 5+C)`` rows: ``(class probability, class index, score = objectness * class probability)``."""
    class_conf, class_pred = prediction[:, 5:].max(dim=1)
    return class_conf, class_pred, prediction[:, 4] * class_conf


def _select(prediction, conf_thres, nms_thres, max_det, class_agnostic=False):
    """Row indices of one image's ``(N, 5+C)`` predictions that survive thresholding and NMS."""
    _, class_pred, score = _best_class(prediction)
    candidates = torch.nonzero(score >= conf_thres).squeeze(1)
    keep = batched_nms(prediction[candidates, :4], score[candidates], class_pred[candidates], nms_thres, max_det,
                       class_agnostic)
    return candidates[keep]


def postprocess(decoded, conf_thres, nms_thres, max_det=300, class_agnostic=False):
    """Detections per image from ``decoded (B, N, 5+C)``: a list of ``(k, 6)`` tensors
    ``[x1, y1, x2, y2, score, class]`` (input pixels), highest score first, ``k <= max_det``.

    A box is a candidate when ``objectness * best class probability >= conf_thres`` (as upstream);
    candidates then go through NMS at IoU ``nms_thres``, class-aware unless ``class_agnostic``.
    """
    results = []
    for prediction in decoded:
        rows = _select(prediction, conf_thres, nms_thres, max_det, class_agnostic)
        _, class_pred, score = _best_class(prediction[rows])
        results.append(torch.cat([prediction[rows, :4], score[:, None], class_pred[:, None].float()], dim=1))
    return results


def letterbox_geometry(input_shape, image_shape, letterbox_image):
    """How ``utils.data.preprocess.resize_for_input`` (and upstream's ``utils.utils.resize_image``) placed an image of
    ``image_shape (h, w)`` in ``input_shape (h, w)``.

    Returns ``(scale_xy, offset_xy)``: input pixel = original pixel * scale + offset. The integer
    rounding mirrors both exactly so that the mapping inverts them.
    """
    input_h, input_w = input_shape
    image_h, image_w = image_shape
    if not letterbox_image:
        return (input_w / image_w, input_h / image_h), (0.0, 0.0)
    ratio = min(input_w / image_w, input_h / image_h)
    new_w, new_h = int(image_w * ratio), int(image_h * ratio)
    return (new_w / image_w, new_h / image_h), (float((input_w - new_w) // 2), float((input_h - new_h) // 2))


def correct_boxes(boxes_xyxy, input_shape, image_shape, letterbox_image):
    """Map ``(k, 4)`` xyxy boxes from input pixels back to original-image pixels, clipped to the image.

    ``input_shape`` and ``image_shape`` are ``(h, w)``; ``letterbox_image`` says how the image was
    resized (see ``utils.data.preprocess.resize_for_input``).
    """
    (scale_x, scale_y), (offset_x, offset_y) = letterbox_geometry(input_shape, image_shape, letterbox_image)
    scale = boxes_xyxy.new_tensor([scale_x, scale_y, scale_x, scale_y])
    offset = boxes_xyxy.new_tensor([offset_x, offset_y, offset_x, offset_y])
    image_h, image_w = image_shape
    upper = boxes_xyxy.new_tensor([image_w, image_h, image_w, image_h])
    return torch.minimum((boxes_xyxy - offset) / scale, upper).clamp(min=0)


class DecodeBox:
    """Upstream's interface over the functions above.

    ``decode_box(inputs)`` returns one ``(B, A*H*W, 5+C)`` tensor per level in this module's layout
    (corners in input pixels, not upstream's normalised centre/size), so ``torch.cat(..., 1)`` of it
    feeds ``non_max_suppression``, which returns per image ``None`` (no detection) or a numpy
    ``(k, 7)`` array ``[top, left, bottom, right, obj_conf, class_conf, class_pred]`` in original
    image pixels, upstream's layout (``score = obj_conf * class_conf``).
    """

    def __init__(self, anchors, num_classes, input_shape, anchors_mask=[[6, 7, 8], [3, 4, 5], [0, 1, 2]],
                 scale_x_y=None):
        self.anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.anchors_mask = anchors_mask
        self.scale_x_y = scale_x_y

    def decode_box(self, inputs):
        return decode_levels(inputs, self.anchors, self.anchors_mask, self.input_shape, self.scale_x_y)

    def non_max_suppression(self, prediction, num_classes, input_shape, image_shape, letterbox_image,
                            conf_thres=0.5, nms_thres=0.4):
        results = []
        for image_prediction in prediction:
            rows = image_prediction[_select(image_prediction, conf_thres, nms_thres, None)]
            if not len(rows):
                results.append(None)
                continue
            class_conf, class_pred, _ = _best_class(rows)
            boxes = correct_boxes(rows[:, :4], input_shape, tuple(image_shape), letterbox_image)
            top_left_bottom_right = boxes[:, [1, 0, 3, 2]]
            results.append(torch.cat([top_left_bottom_right, rows[:, 4:5], class_conf[:, None],
                                      class_pred[:, None].float()], dim=1).cpu().numpy())
        return results
