"""YOLOv4 loss (loc / conf / cls) with an optional focal objectness term, plus upstream's
training helpers ``weights_init``, ``get_lr_scheduler`` and ``set_optimizer_lr``.

The loss is vectorized: target assignment is a scatter over all boxes of the batch, with no
Python loop over boxes and no host synchronisation, so it runs on the input's device.
"""
import math
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nets.focal_loss import focal_modulation, soft_focal_modulation, varifocal_weight
from nets.boxes import aligned_ciou, aligned_siou, box_iou, cxcywh_to_xyxy, wh_iou

IOU_FUNCTIONS = {"ciou": aligned_ciou, "siou": aligned_siou}


FOCAL_NORMALIZATIONS = ("mean", "positives", "weights")
OBJ_TARGETS = ("binary", "iou")
FOCAL_TYPES = ("focal", "varifocal")


def resolve_obj_target(obj_target, focal_loss, focal_type):
    """train.py's ``obj_target`` as YOLOLoss takes it: ``"auto"`` is ``"iou"`` for the varifocal loss (VarifocalNet
    defines its positives' target as the IoU) and ``"binary"`` otherwise; other values stay."""
    if obj_target != "auto":
        return obj_target
    return "iou" if focal_loss and focal_type == "varifocal" else "binary"

# yolov5's centre decoding 2 * sigmoid - 0.5 reaches (-0.5, 1.5) of a cell: what a neighbouring-cell positive needs.
NEIGHBOUR_SCALE = 2.0


def centre_scales(scale_x_y, neighbour_cells, levels):
    """The centre scale of each level (darknet's ``scale_x_y``): ``scale_x_y`` as given, else 2.0 each with
    ``neighbour_cells`` (a neighbour's centre lies up to half a cell outside it), else 1.0 (plain YOLOv3/v4)."""
    if scale_x_y is None:
        return [NEIGHBOUR_SCALE if neighbour_cells else 1.0] * levels
    scales = [float(s) for s in scale_x_y]
    if len(scales) != levels or any(s < 1 for s in scales):
        raise ValueError(f"scale_x_y needs one value >= 1 per level ({levels}), got {scale_x_y}")
    if neighbour_cells and min(scales) < NEIGHBOUR_SCALE:
        raise ValueError(f"neighbour_cells needs scale_x_y >= {NEIGHBOUR_SCALE} on every level (a neighbour's "
                         f"centre is up to half a cell outside it), got {scale_x_y}")
    return scales


def decode_centre(logits, scale):
    """Cell offset of a predicted centre: ``sigmoid * s - (s - 1) / 2`` (exactly ``sigmoid`` for s = 1)."""
    centre = torch.sigmoid(logits)
    return centre if scale == 1 else centre * scale - (scale - 1) / 2


class YOLOLoss(nn.Module):
    """Loss of one output level.

    Args:
        anchors: ``(9, 2)`` anchor sizes ``(w, h)`` in input pixels.
        input_shape: ``(h, w)`` of the network input.
        cuda: accepted for upstream compatibility; tensors always follow the input's device.
        anchors_mask: anchor indices per level, level 0 = stride 32.
        label_smoothing: class target becomes ``y * (1 - ls) + ls / num_classes``.
        focal_loss, alpha, gamma: multiply each objectness BCE by ``alpha_t * (1 - p_t) ** gamma``.
        iou_type: ``'ciou'`` or ``'siou'`` for the box term.
        iou_thresh: also make positive every anchor whose shape IoU with the box exceeds this (darknet's
            ``iou_thresh``, 0.213 in yolov4.cfg), on whichever level it lives; None = the best anchor only.
        scale_x_y: centre scale per level (darknet: 1.2, 1.1, 1.05 for strides 32, 16, 8); None = 1.0, or 2.0
            with ``neighbour_cells``. Inference must decode with the same values (the weights' metadata has them).
        neighbour_cells: also make positive the two neighbouring cells nearest the box centre (yolov5).
    The defaults are upstream's loss.
    """

    def __init__(self, anchors, num_classes, input_shape, cuda=None, anchors_mask=[[6, 7, 8], [3, 4, 5], [0, 1, 2]],
                 label_smoothing=0, focal_loss=False, alpha=0.25, gamma=2, iou_type="ciou", *, iou_thresh=None,
                 scale_x_y=None, neighbour_cells=False, focal_normalize="mean", obj_target="binary",
                 focal_type="focal", positive_share=None, level_balance=(0.4, 1.0, 4.0), box_loss_weight=0.05,
                 obj_loss_weight=5.0, cls_loss_weight=1.0, focal_loss_ratio=10.0):
        super().__init__()
        if iou_type not in IOU_FUNCTIONS:
            raise ValueError(f"iou_type must be one of {sorted(IOU_FUNCTIONS)}, got {iou_type!r}")
        for name, value, choices in (("focal_normalize", focal_normalize, FOCAL_NORMALIZATIONS),
                                     ("obj_target", obj_target, OBJ_TARGETS), ("focal_type", focal_type, FOCAL_TYPES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if focal_loss and focal_normalize == "positives" and positive_share is None:
            raise ValueError("focal_normalize='positives' needs positive_share (the expected positives per counted "
                             "cell of each level; train.py estimates it from the training boxes)")
        self.focal_normalize, self.obj_target, self.focal_type = focal_normalize, obj_target, focal_type
        self.positive_share = None if positive_share is None else [float(s) for s in positive_share]
        self.iou_thresh = iou_thresh
        self.neighbour_cells = bool(neighbour_cells)
        self.scale_x_y = centre_scales(scale_x_y, neighbour_cells, len(anchors_mask))
        anchors = torch.as_tensor(np.asarray(anchors, dtype=np.float32).reshape(-1, 2))
        self.register_buffer("anchors", anchors, persistent=False)
        self.num_classes = num_classes
        self.bbox_attrs = 5 + num_classes
        self.input_shape = tuple(input_shape)
        self.anchors_mask = [list(m) for m in anchors_mask]
        self.label_smoothing = float(label_smoothing)
        self.iou_fn = IOU_FUNCTIONS[iou_type]

        # Upstream's term weights: objectness per level (stride 32, 16, 8), box, objectness scaled by the input
        # area (relative to 416 px), class scaled by the class count (relative to 80).
        self.balance = list(level_balance)
        self.box_ratio = box_loss_weight
        self.obj_ratio = obj_loss_weight * (self.input_shape[0] * self.input_shape[1]) / (416 ** 2)
        self.cls_ratio = cls_loss_weight * num_classes / 80
        self.focal_loss = focal_loss
        self.focal_loss_ratio = focal_loss_ratio
        self.alpha = alpha
        self.gamma = gamma
        self.ignore_threshold = 0.5

    def forward(self, l, input, targets=None):
        """Scalar loss of level ``l`` for raw head output ``input: (B, A*(5+C), H, W)``."""
        return self.forward_with_terms(l, input, targets)[0]

    def forward_with_terms(self, l, input, targets=None):
        """Returns ``(loss, terms)``; ``terms`` maps loc / conf / cls to their detached weighted parts."""
        B, _, H, W = input.shape
        A = len(self.anchors_mask[l])
        # (B, A*(5+C), H, W) -> (B, A, 5+C, H, W): channels are sliced in place, never permuted.
        pred = input.float().view(B, A, self.bbox_attrs, H, W)
        anchors = self.anchors.to(input.device)[self.anchors_mask[l]] * torch.tensor(
            [W / self.input_shape[1], H / self.input_shape[0]], device=input.device)      # (A, 2) grid units
        targets = list(targets) if targets is not None else []
        targets += [input.new_zeros((0, 5))] * (B - len(targets))
        counts = [len(t) for t in targets]
        boxes_gt = torch.cat([t.to(input.device, torch.float32) for t in targets])      # (N, 5)
        img = torch.repeat_interleave(torch.arange(B), torch.tensor(counts)).to(input.device)
        boxes_norm = boxes_gt
        grid_scale = torch.tensor([W, H, W, H], device=input.device, dtype=torch.float32)
        boxes_gt = torch.cat([boxes_gt[:, :4] * grid_scale, boxes_gt[:, 4:]], 1)        # box in grid units

        pos = self._assign(l, boxes_gt, img, B, A, H, W)
        scale = self.scale_x_y[l]

        # Box and class terms over the positives, gathered per (box, anchor, cell) pair (`winner` masks).
        b, k, gj, gi = pos["index"]
        target = boxes_gt[pos["box"]]                                                    # (P, 5)
        w = pos["winner"].float()
        n_pos = w.sum()
        p = pred[b, k, :, gj, gi]                                                       # (P, 5+C)
        box_pred = torch.stack([decode_centre(p[:, 0], scale) + gi, decode_centre(p[:, 1], scale) + gj,
                                torch.exp(p[:, 2]) * anchors[k, 0], torch.exp(p[:, 3]) * anchors[k, 1]], 1)
        iou = self.iou_fn(box_pred, target[:, :4])
        loss_loc = ((1 - iou) * w).sum() / n_pos.clamp(min=1)

        with torch.no_grad():
            ignored = self._ignored(self._decode_xyxy(pred, anchors, scale), boxes_gt, img, counts) & ~pos["obj"]
            obj_values = self._obj_values(pos, iou, B, A, H, W)                          # (B, A, H, W) or None
            n_total = self._positives_all_levels(boxes_norm, img, B) if self._normalized_by_positives() else None
        loss_conf = self._conf_loss(l, pred[:, :, 4], pos["obj"], ~ignored, obj_values, n_total)
        # A box of class -1 (the loader's UNKNOWN_CLASS: a fragment left by a crop) is found, not classified.
        labelled = w * (target[:, 4] >= 0)
        cls_target = F.one_hot(target[:, 4].long().clamp(min=0), self.num_classes).float()
        cls_target = cls_target * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        cls_bce = F.binary_cross_entropy_with_logits(p[:, 5:], cls_target, reduction="none")
        loss_cls = (cls_bce * labelled[:, None]).sum() / (labelled.sum() * self.num_classes).clamp(min=1)

        loc = loss_loc * self.box_ratio
        cls = loss_cls * self.cls_ratio
        conf = loss_conf * self.balance[l] * self.obj_ratio
        return loc + cls + conf, {"loc": loc.detach(), "conf": conf.detach(), "cls": cls.detach()}

    def _obj_values(self, pos, iou, B, A, H, W):
        """With ``obj_target='iou'``: the ``(B, A, H, W)`` objectness targets, each positive's detached box IoU
        clamped at 0 (yolov5's), 0 elsewhere; None for binary targets."""
        if self.obj_target == "binary":
            return None
        b, k, gj, gi = pos["index"]
        M = B * A * H * W
        cell = torch.where(pos["winner"], ((b * A + k) * H + gj) * W + gi, M)
        values = torch.zeros(M + 1, device=iou.device, dtype=iou.dtype)
        values[cell] = iou.detach().clamp(min=0)                      # winners own distinct cells
        return values[:M].view(B, A, H, W)

    def _normalized_by_positives(self):
        return self.focal_loss and self.focal_normalize == "positives"

    def _positives_all_levels(self, boxes_norm, img, B):
        """The batch's positives over all levels (RetinaNet divides the whole focal sum by this count)."""
        total = 0
        for level, mask in enumerate(self.anchors_mask):
            stride = 2 ** (5 - level)
            H, W = self.input_shape[0] // stride, self.input_shape[1] // stride
            grid = torch.cat([boxes_norm[:, :4] * boxes_norm.new_tensor([W, H, W, H]), boxes_norm[:, 4:]], 1)
            total = total + self._assign(level, grid, img, B, len(mask), H, W)["winner"].sum()
        return total

    def _conf_loss(self, l, obj_logits, positive, counted, obj_values=None, n_total=None):
        """The objectness term of level ``l`` over the counted cells (positives and non-ignored).

        Targets are 1 / 0, or the IoU targets ``obj_values``. BCE, or with ``focal_loss`` the BCE times the focal
        ratio (``alpha_t * |y - p| ** gamma``, for binary y ``alpha_t * (1 - p_t) ** gamma``) or, with
        ``focal_type='varifocal'``, VarifocalNet's weight. ``focal_normalize='mean'`` (upstream) averages over the
        counted cells and multiplies a focal term by ``focal_loss_ratio``; ``'positives'`` (RetinaNet) sums over
        them and divides by the batch's positives of all levels ``n_total`` (at least 1), times
        ``2 * positive_share[l]`` (the expected positives of all levels per cell of this level): gamma 0, alpha 0.5
        then equals plain BCE when a batch has the expected positives, and the term follows each batch's count of
        positives as RetinaNet's does. ``'weights'`` divides the focal sum by the sum of the (detached) focal
        weights of the counted cells: a weighted mean, whose weights sum to the number of counted cells as BCE's
        do, so the factor moves weight from easy to hard cells instead of shrinking it (the background keeps about
        BCE's push once most cells are easy); gamma 0 is ``sum(alpha_t * bce) / sum(alpha_t)``, plain BCE exactly at
        alpha 0.5.
        """
        target = positive.float() if obj_values is None else obj_values
        bce = F.binary_cross_entropy_with_logits(obj_logits, target, reduction="none")
        if self.focal_loss:
            if self.focal_type == "varifocal":
                weight = varifocal_weight(obj_logits, target, positive, self.alpha, self.gamma)
            elif obj_values is None:
                weight = focal_modulation(obj_logits, positive, self.alpha, self.gamma)
            else:
                weight = soft_focal_modulation(obj_logits, target, positive, self.alpha, self.gamma)
            bce = bce * weight
            if self.focal_normalize == "positives":
                counted = counted.float()
                n_pos = (positive.sum() if n_total is None else n_total).float().clamp(min=1)
                return (bce * counted).sum() / n_pos * (2 * self.positive_share[l])
            if self.focal_normalize == "weights":
                counted = counted.float()
                total_weight = (weight.detach() * counted).sum().clamp(min=torch.finfo(weight.dtype).tiny)
                return (bce * counted).sum() / total_weight
            bce = bce * self.focal_loss_ratio
        counted = counted.float()
        return (bce * counted).sum() / counted.sum().clamp(min=1)

    @staticmethod
    def _decode_xyxy(pred, anchors, scale=1.0):
        """Predicted boxes of every cell in grid units as ``x1, y1, x2, y2, area``: ``(B, A, H, W, 5)``."""
        _, _, _, H, W = pred.shape
        gx = torch.arange(W, device=pred.device, dtype=pred.dtype)
        gy = torch.arange(H, device=pred.device, dtype=pred.dtype)[:, None]
        cx = decode_centre(pred[:, :, 0], scale) + gx
        cy = decode_centre(pred[:, :, 1], scale) + gy
        half_w = torch.exp(pred[:, :, 2]) * (anchors[:, 0, None, None] / 2)
        half_h = torch.exp(pred[:, :, 3]) * (anchors[:, 1, None, None] / 2)
        return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, 4 * half_w * half_h], dim=-1)

    def _assign(self, l, boxes_gt, img, B, A, H, W):
        """Positives of level ``l``.

        ``boxes_gt``: ``(N, 5)`` all boxes of the batch in grid units (cx, cy, w, h, class), ``img``:
        ``(N,)`` their image. Each box takes the best of all anchors by shape IoU (with ``iou_thresh``, also every
        anchor above it); for each of those anchors on this level, the cell holding the box centre (with
        ``neighbour_cells``, also the nearest horizontal and vertical neighbour inside the grid) becomes positive.
        Of pairs claiming the same image/anchor/cell, the later box in its image's list wins. Returns per
        candidate pair (P of them) its ``box`` index into ``boxes_gt``, its cell ``index = (b, k, gj, gi)`` and
        ``winner`` (it is a positive), and the ``(B, A, H, W)`` positive map ``obj``.
        """
        device = boxes_gt.device
        box, k, dx, dy, valid = self._candidates(l, boxes_gt, W, H)                    # each (P,)
        gi = boxes_gt[box, 0].floor().long().clamp(0, W - 1) + dx
        gj = boxes_gt[box, 1].floor().long().clamp(0, H - 1) + dy
        valid = valid & (gi >= 0) & (gi < W) & (gj >= 0) & (gj < H)
        gi, gj, b = gi.clamp(0, W - 1), gj.clamp(0, H - 1), img[box]

        # Linear cell index; pairs that are not candidates go to a discarded slot M.
        M = B * A * H * W
        cell = torch.where(valid, ((b * A + k) * H + gj) * W + gi, M)
        order = torch.arange(len(box), device=device)         # box-major: a later box has a larger order
        last = torch.full((M + 1,), -1, device=device, dtype=torch.long).scatter_reduce(0, cell, order, "amax")
        winner = valid & (last[cell] == order)
        obj = torch.zeros(M + 1, dtype=torch.bool, device=device)
        obj[torch.where(winner, cell, M)] = True
        return {"obj": obj[:M].view(B, A, H, W), "winner": winner, "index": (b, k, gj, gi), "box": box}

    def _candidates(self, l, boxes_gt, W, H):
        """The (box, anchor of level ``l``, cell offset) pairs that may become positive, flattened box-major:
        ``box, k, dx, dy`` long ``(P,)`` and ``valid`` bool ``(P,)``. One pair per box by default (upstream)."""
        device, N = boxes_gt.device, len(boxes_gt)
        input_wh = torch.tensor(self.input_shape[::-1], device=device, dtype=torch.float32)
        box_wh = boxes_gt[:, 2:4] / torch.tensor([W, H], device=device) * input_wh        # pixels
        shape_iou = wh_iou(box_wh, self.anchors.to(device))                               # (N, 9)
        level = torch.tensor(self.anchors_mask[l], device=device)
        is_best = shape_iou.argmax(1, keepdim=True) == level                              # (N, A)
        if self.iou_thresh is None:
            k, valid = is_best.int().argmax(1, keepdim=True), is_best.any(1, keepdim=True)   # (N, 1)
        else:
            valid = is_best | (shape_iou[:, level] > self.iou_thresh)
            k = torch.arange(len(level), device=device).expand(N, -1)                        # (N, A)
        dx, dy = torch.zeros_like(k), torch.zeros_like(k)
        if self.neighbour_cells:
            # Centre cell, then the horizontal and the vertical neighbour nearest the centre: (N, 3 * K).
            fraction = boxes_gt[:, :2] - boxes_gt[:, :2].floor()
            step = torch.where(fraction < 0.5, -1, 1)                                         # (N, 2)
            zero = torch.zeros_like(k)
            dx = torch.cat([zero, step[:, :1].expand_as(k), zero], 1)
            dy = torch.cat([zero, zero, step[:, 1:].expand_as(k)], 1)
            k, valid = k.repeat(1, 3), valid.repeat(1, 3)
        box = torch.arange(N, device=device)[:, None].expand_as(k)
        return box.reshape(-1), k.reshape(-1), dx.reshape(-1), dy.reshape(-1), valid.reshape(-1)

    def _ignored(self, pred, boxes_gt, img, counts):
        """``(B, A, H, W)`` bool: the prediction overlaps a box of its image with IoU > threshold.

        ``pred``: corners and area ``(B, A, H, W, 5)``; ``boxes_gt``: ``(N, 5)`` in grid units;
        ``img``: ``(N,)`` image of each box; ``counts``: boxes per image (Python ints).
        """
        B, A, H, W, _ = pred.shape
        gt = cxcywh_to_xyxy(boxes_gt[:, :4])                                             # (N, 4)
        if len(gt) == 0:
            return torch.zeros(pred.shape[:4], dtype=torch.bool, device=pred.device)
        if pred.is_cuda or self.ignore_threshold < 0.5:   # the sparse search is exact only from 0.5 up
            return self._ignored_dense(pred, gt, counts)
        return self._ignored_sparse(pred.view(-1, 5), gt, img, A, H, W).view(B, A, H, W)

    def _ignored_dense(self, pred, gt, counts):
        """``_ignored`` testing all prediction/box pairs of each image at once (for CUDA)."""
        B, A, H, W, _ = pred.shape
        # Zero-size padding boxes have IoU 0 with everything, so they need no mask.
        per_image = torch.nn.utils.rnn.pad_sequence(torch.split(gt, counts), batch_first=True)  # (B, n, 4)
        iou = box_iou(per_image, pred[..., :4].reshape(B, -1, 4))                        # (B, n, A*H*W)
        return (iou > self.ignore_threshold).any(1).view(B, A, H, W)

    def _ignored_sparse(self, pred, gt, img, A, H, W):
        """``_ignored`` for the CPU, testing only the pairs that can exceed IoU 0.5.

        ``pred``: ``(B*A*H*W, 5)`` corners and area, ``gt``: ``(G, 4)`` corners, ``img``: ``(G,)``.
        IoU > 0.5 implies the predicted centre lies inside the box (otherwise at most half of the
        prediction overlaps it, which caps IoU at 0.5), and a predicted centre lies in its own
        cell, so only the cells a box touches are candidates. Data-dependent shapes cost nothing
        on the CPU, where testing all pairs is memory-bound; CUDA tests all pairs, which needs
        no host synchronisation. Returns ``(B*A*H*W,)`` bool.
        """
        # Cells i with i <= x2 and i + 1 >= x1 (closed: a centre may round onto a cell edge).
        c0 = (gt[:, 0].ceil().long() - 1).clamp(0, W - 1)
        c1 = gt[:, 2].floor().long().clamp(0, W - 1)
        r0 = (gt[:, 1].ceil().long() - 1).clamp(0, H - 1)
        r1 = gt[:, 3].floor().long().clamp(0, H - 1)
        ncols = (c1 - c0 + 1).clamp(min=0)
        sizes = ncols * (r1 - r0 + 1).clamp(min=0)                                      # cells per box
        box = torch.repeat_interleave(torch.arange(len(gt), device=gt.device), sizes)   # (K,) box of each cell
        first_cell = (img * A * H + r0) * W + c0                                         # (G,) flat, anchor 0
        offset = torch.arange(len(box), device=gt.device) - (sizes.cumsum(0) - sizes)[box]
        ncols = ncols[box]
        cell = first_cell[box] + (offset // ncols) * W + offset % ncols
        cells = (cell[:, None] + torch.arange(A, device=gt.device) * (H * W)).view(-1)    # (K*A,)
        px1, py1, px2, py2, parea = pred.index_select(0, cells).view(-1, A, 5).unbind(-1)  # each (K, A)
        gx1, gy1, gx2, gy2 = gt[box].t()[:, :, None]                                    # each (K, 1)
        inter = torch.minimum(px2, gx2).sub_(torch.maximum(px1, gx1)).clamp_(min=0)
        inter *= torch.minimum(py2, gy2).sub_(torch.maximum(py1, gy1))  # negative height -> no overlap
        # IoU > t  <=>  inter * (1 + t) / t > area_p + area_g   (no division by a zero union)
        t = self.ignore_threshold
        hit = inter.mul_((1 + t) / t) > parea + (gx2 - gx1) * (gy2 - gy1)
        ignored = torch.zeros(len(pred), dtype=torch.bool, device=gt.device)
        ignored[cells[hit.view(-1)]] = True
        return ignored


def weights_init(net, init_type="normal", init_gain=0.02):
    """Initialise conv weights (normal / xavier / kaiming / orthogonal) and BN, as upstream."""
    def init_func(m):
        classname = m.__class__.__name__
        if hasattr(m, "weight") and classname.find("Conv") != -1:
            if init_type == "normal":
                torch.nn.init.normal_(m.weight.data, 0.0, init_gain)
            elif init_type == "xavier":
                torch.nn.init.xavier_normal_(m.weight.data, gain=init_gain)
            elif init_type == "kaiming":
                torch.nn.init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                torch.nn.init.orthogonal_(m.weight.data, gain=init_gain)
            else:
                raise NotImplementedError(f"initialization method [{init_type}] is not implemented")
        elif classname.find("BatchNorm2d") != -1:
            torch.nn.init.normal_(m.weight.data, 1.0, 0.02)
            torch.nn.init.constant_(m.bias.data, 0.0)
    print(f"initialize network with {init_type} type")
    net.apply(init_func)


def _warm_cos_lr(lr, min_lr, total_iters, warmup_total_iters, warmup_lr_start, no_aug_iter, iters):
    if iters <= warmup_total_iters:
        return (lr - warmup_lr_start) * pow(iters / float(warmup_total_iters), 2) + warmup_lr_start
    if iters >= total_iters - no_aug_iter:
        return min_lr
    progress = (iters - warmup_total_iters) / (total_iters - warmup_total_iters - no_aug_iter)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _step_lr(lr, decay_rate, step_size, iters):
    if step_size < 1:
        raise ValueError("step_size must be at least 1")
    return lr * decay_rate ** (iters // step_size)


def get_lr_scheduler(lr_decay_type, lr, min_lr, total_iters, warmup_iters_ratio=0.05, warmup_lr_ratio=0.1,
                     no_aug_iter_ratio=0.05, step_num=10):
    """Epoch -> learning rate. ``'cos'``: quadratic warm-up, cosine decay, flat ``min_lr`` tail
    (warm-up 1-3 epochs, tail 1-15); otherwise ``step_num`` geometric steps from lr to min_lr."""
    if lr_decay_type == "cos":
        warmup_total_iters = min(max(warmup_iters_ratio * total_iters, 1), 3)
        warmup_lr_start = max(warmup_lr_ratio * lr, 1e-6)
        no_aug_iter = min(max(no_aug_iter_ratio * total_iters, 1), 15)
        return partial(_warm_cos_lr, lr, min_lr, total_iters, warmup_total_iters, warmup_lr_start, no_aug_iter)
    decay_rate = (min_lr / lr) ** (1 / (step_num - 1))
    step_size = total_iters / step_num
    return partial(_step_lr, lr, decay_rate, step_size)


def set_optimizer_lr(optimizer, lr_scheduler_func, epoch):
    lr = lr_scheduler_func(epoch)
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
