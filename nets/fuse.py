"""Inference form of a trained network: BatchNorm folded into convolutions, a cheaper Mish.

In eval mode ``bn(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` is itself one
convolution with weight ``W * gamma / sqrt(var + eps)`` and a bias, so the BN pass disappears.
"""
import copy

import torch
import torch.nn as nn

from nets.CSPdarknet import Mish


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


class InferenceMish(nn.Module):
    """Mish for inference only: ``x * tanh(softplus(x)) = x * h / (h + 1)`` with ``h = (e^2x + 2 e^x) / 2``.

    One ``exp`` and in-place arithmetic on a single buffer: about twice as fast on CPU as
    ``F.mish`` (whose log1p + tanh dominate). Overflow is benign: ``h = inf`` gives ``x``, ``h = 0``
    gives ``0``. The in-place ops break autograd, so it never replaces Mish in a training model.
    """

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return onnx_mish(x)
        exp_x = torch.exp(x)
        half_n = exp_x.addcmul_(exp_x, exp_x, value=0.5)          # (e^2x + 2e^x) / 2, same buffer
        return half_n.reciprocal_().add_(1).reciprocal_().mul_(x)  # h / (h + 1) = 1 / (1 + 1/h), times x


class _OnnxMish(torch.autograd.Function):
    """Mish as 6 ONNX operators: ``x / (1 + 2 / (e^x (e^x + 2)))``, since ``tanh(softplus(x)) = n / (n + 2)``
    with ``n = e^x (e^x + 2)``. Written as a symbolic because the exporter would turn ``2 / n`` into two operators.
    """

    @staticmethod
    def forward(ctx, x):
        exp_x = torch.exp(x)
        return x / (1 + 2 / (exp_x * (exp_x + 2)))

    @staticmethod
    def symbolic(g, x):
        one, two = (g.op("Constant", value_t=torch.tensor(v, dtype=torch.float32)) for v in (1.0, 2.0))
        exp_x = g.op("Exp", x)
        n = g.op("Mul", exp_x, g.op("Add", exp_x, two))
        return g.op("Div", x, g.op("Add", one, g.op("Div", two, n)))


def onnx_mish(x):
    """The Mish the ONNX export writes (opset 13 has none): ``x / (1 + 2 / n)``, ``n = e^x (e^x + 2)``.

    ``F.mish`` exports as Softplus, Tanh, Mul, and onnxruntime's Softplus is a scalar loop (about 4x slower than
    this form on this repository's CPUs, and 70 % of an int8 forward). ``exp`` overflowing to ``inf`` gives ``x``,
    underflowing to ``0`` gives ``0``: no ``inf / inf`` anywhere.
    """
    return _OnnxMish.apply(x)


def replace_mish(model, replacement=None):
    """Swap every ``Mish`` child of ``model`` for ``replacement()`` (default ``InferenceMish``) in place;
    returns ``model``."""
    replacement = replacement or InferenceMish
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Mish):
                setattr(module, name, replacement())
    return model


def inference_model(model, device="cpu"):
    """Fused, eval-mode copy of ``model`` on ``device`` for ``torch.inference_mode()`` use.

    On CPU the weights are also made channels_last: oneDNN's convolutions skip a layout
    conversion per layer then (about 5-7% faster forward on a 416 YOLOv4; see bench/bench_infer.py).
    Plain NCHW inputs are fine: the first convolution already returns channels_last.
    """
    fused = replace_mish(fuse_conv_bn(model)).to(device)
    if torch.device(device).type == "cpu":
        fused = fused.to(memory_format=torch.channels_last)
    return fused
