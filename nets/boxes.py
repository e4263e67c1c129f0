"""Box conversions and IoU variants on tensors (pure functions, any leading shape).

Boxes are ``(..., 4)``: ``cxcywh`` = centre x, centre y, width, height; ``xyxy`` = corners.
"""
import math

import torch

_EPS = 1e-7


def cxcywh_to_xyxy(boxes):
    xy, wh = boxes[..., :2], boxes[..., 2:4]
    return torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)


def xyxy_to_cxcywh(boxes):
    lo, hi = boxes[..., :2], boxes[..., 2:4]
    return torch.cat([(lo + hi) / 2, hi - lo], dim=-1)


def box_area(boxes_xyxy):
    return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]).clamp(min=0) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1]).clamp(min=0)


def box_iou(boxes1, boxes2):
    """Pairwise IoU of ``xyxy`` boxes: ``(..., N, 4) x (..., M, 4) -> (..., N, M)``."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.minimum(boxes1[..., :, None, 2:4], boxes2[..., None, :, 2:4])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area1[..., :, None] + area2[..., None, :] - inter).clamp(min=_EPS)


def wh_iou(wh1, wh2):
    """Pairwise IoU of boxes given by size only, all centred at the origin: ``(N, 2) x (M, 2) -> (N, M)``."""
    inter = torch.minimum(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter).clamp(min=_EPS)


def _aligned_geometry(pred, target):
    """Shared terms of the aligned (element-wise) IoU variants for ``cxcywh`` boxes."""
    p_lo, p_hi = pred[..., :2] - pred[..., 2:4] / 2, pred[..., :2] + pred[..., 2:4] / 2
    t_lo, t_hi = target[..., :2] - target[..., 2:4] / 2, target[..., :2] + target[..., 2:4] / 2
    inter = (torch.minimum(p_hi, t_hi) - torch.maximum(p_lo, t_lo)).clamp(min=0).prod(-1)
    union = pred[..., 2] * pred[..., 3] + target[..., 2] * target[..., 3] - inter
    iou = inter / union.clamp(min=1e-6)
    enclose_wh = (torch.maximum(p_hi, t_hi) - torch.minimum(p_lo, t_lo)).clamp(min=0)
    return iou, enclose_wh


def aligned_ciou(pred, target):
    """Complete IoU (Zheng et al. 2020) of ``cxcywh`` box pairs, ``(..., 4) x (..., 4) -> (...)``.

    ``CIoU = IoU - rho^2 / c^2 - alpha * v`` with ``v = 4/pi^2 (atan(w_t/h_t) - atan(w_p/h_p))^2`` and
    ``alpha = v / (1 - IoU + v)``; alpha is a constant in the gradient, as in the paper's code.
    """
    iou, enclose_wh = _aligned_geometry(pred, target)
    center_dist = (pred[..., :2] - target[..., :2]).pow(2).sum(-1)
    diagonal = enclose_wh.pow(2).sum(-1).clamp(min=1e-6)
    v = (4 / math.pi ** 2) * (
        torch.atan(pred[..., 2] / pred[..., 3].clamp(min=1e-6)) - torch.atan(target[..., 2] / target[..., 3].clamp(min=1e-6))
    ).pow(2)
    with torch.no_grad():
        alpha = v / (1.0 - iou + v).clamp(min=1e-6)
    return iou - center_dist / diagonal - alpha * v


def aligned_siou(pred, target):
    """SCYLLA-IoU (Gevorgyan 2022) of ``cxcywh`` box pairs: IoU minus angle-aware distance and shape costs."""
    iou, enclose_wh = _aligned_geometry(pred, target)
    delta = target[..., :2] - pred[..., :2]
    sigma = (delta.pow(2).sum(-1) + _EPS).sqrt()  # +eps keeps the gradient finite at zero distance
    sin_alpha_x, sin_alpha_y = delta[..., 0].abs() / sigma, delta[..., 1].abs() / sigma
    # Measure the angle to the nearer axis, so it never exceeds 45 degrees.
    sin_alpha = torch.where(sin_alpha_x > math.sqrt(2) / 2, sin_alpha_y, sin_alpha_x)
    angle_cost = torch.cos(2 * torch.arcsin(sin_alpha.clamp(max=1.0)) - math.pi / 2)
    rho = (delta / enclose_wh.clamp(min=_EPS)).pow(2)
    gamma = 2 - angle_cost
    distance_cost = 2 - torch.exp(-gamma * rho[..., 0]) - torch.exp(-gamma * rho[..., 1])
    omega = (pred[..., 2:4] - target[..., 2:4]).abs() / torch.maximum(pred[..., 2:4], target[..., 2:4]).clamp(min=_EPS)
    shape_cost = (1 - torch.exp(-omega)).pow(4).sum(-1)
    return iou - 0.5 * (distance_cost + shape_cost)
