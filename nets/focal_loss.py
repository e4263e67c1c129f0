"""Focal loss (Lin et al., 2017) on logits, as the objectness term uses it.

``FL(p_t) = -alpha_t * (1 - p_t) ** gamma * log(p_t)`` with ``p_t = p`` for positives and
``1 - p`` for negatives, ``alpha_t = alpha`` for positives and ``1 - alpha`` for negatives.
Everything is computed from logits: ``log(p_t)`` by ``binary_cross_entropy_with_logits`` and
``1 - p_t`` as ``sigmoid(-z)`` / ``sigmoid(z)``, so confidently wrong predictions (|z| > 16,
where ``sigmoid`` rounds to 0 or 1) keep their full gradient instead of a clipped zero.
"""
import torch
import torch.nn.functional as F


def focal_modulation(logits, positive, alpha=0.25, gamma=2.0):
    """The focal ratio ``alpha_t * (1 - p_t) ** gamma``, elementwise.

    Args:
        logits: ``(*)`` float tensor of raw scores ``z``.
        positive: ``(*)`` bool tensor, True where the target is 1.
    Returns:
        ``(*)`` tensor, differentiable with respect to ``logits``.
    """
    alpha_t = torch.where(positive, alpha, 1.0 - alpha)
    # 1 - p_t = sigmoid(-z) for positives, sigmoid(z) for negatives: no cancellation near p = 1.
    one_minus_pt = torch.sigmoid(torch.where(positive, -logits, logits))
    if gamma < 1:
        # d/dx x**gamma is infinite at 0 for gamma < 1; sigmoid underflows to 0 for |z| > ~88.
        one_minus_pt = one_minus_pt.clamp(min=torch.finfo(one_minus_pt.dtype).tiny)
    return alpha_t * one_minus_pt ** gamma


def soft_focal_modulation(logits, targets, positive, alpha=0.25, gamma=2.0):
    """``alpha_t * |y - p| ** gamma`` for soft targets ``y`` in [0, 1] (Quality Focal Loss's factor, GFL), elementwise;
    for binary targets it is ``focal_modulation``. ``positive``: where ``alpha`` (not ``1 - alpha``) applies."""
    alpha_t = torch.where(positive, alpha, 1.0 - alpha)
    distance = (targets - torch.sigmoid(logits)).abs()
    if gamma < 1:
        distance = distance.clamp(min=torch.finfo(distance.dtype).tiny)
    return alpha_t * distance ** gamma


def varifocal_weight(logits, targets, positive, alpha=0.75, gamma=2.0):
    """VarifocalNet's weight of the BCE: the target ``q`` (an IoU) for positives, ``alpha * p ** gamma`` for
    negatives (only negatives are down-weighted, positives keep their quality-weighted loss)."""
    p = torch.sigmoid(logits)
    if gamma < 1:
        p = p.clamp(min=torch.finfo(p.dtype).tiny)
    return torch.where(positive, targets, alpha * p ** gamma)


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """Elementwise focal loss. ``logits``, ``targets``: ``(*)``; ``targets`` in {0, 1}. Returns ``(*)``."""
    bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return bce * focal_modulation(logits, targets > 0.5, alpha, gamma)
