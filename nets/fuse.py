"""Fold each BatchNorm2d into the Conv2d before it, for inference.

In eval mode ``bn(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` is itself one
convolution with weight ``W * gamma / sqrt(var + eps)`` and a bias, so the BN pass disappears.
"""
import copy

import torch
import torch.nn as nn


@torch.no_grad()
def fold_batchnorm(conv, bn):
    """A new ``Conv2d`` (with bias) computing ``bn(conv(x))`` with ``bn``'s running statistics."""
    # float64 so the folded weights round once, not twice.
    inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)                              # (C_out,)
    factor = bn.weight.double() * inv_std if bn.affine else inv_std
    shift = bn.bias.double() if bn.affine else torch.zeros_like(factor)
    conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(factor)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight.double() * factor.view(-1, 1, 1, 1))
    fused.bias.copy_(shift + (conv_bias - bn.running_mean.double()) * factor)
    return fused


def fuse_conv_bn(model):
    """An eval-mode copy of ``model`` where every module holding a ``conv`` (Conv2d) and ``bn``
    (BatchNorm2d) child, as ``BasicConv`` and the neck's ``conv2d`` blocks do, has the BN folded
    into the conv and replaced by ``nn.Identity``. The original model is left untouched.
    """
    fused_model = copy.deepcopy(model).eval()
    for module in fused_model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            module.conv = fold_batchnorm(conv, bn)
            module.bn = nn.Identity()
    return fused_model
