"""Parameter and multiply-accumulate (MAC) counts per module, via forward hooks (no thop).

MACs are per image. Rules by leaf-module type:
- ``Conv1d/2d/3d``: ``out_elements * in_channels / groups * prod(kernel)``, plus ``out_elements``
  for the bias add;
- ``Linear``: ``out_elements * in_features`` (+ ``out_elements`` with bias);
- ``BatchNorm``: one MAC per element (its inference form ``y = a * x + b``);
- activations, pooling, upsampling, dropout, identity: 0 (comparisons and copies, no multiply-accumulates).
Other leaf modules are listed with ``counted = False`` so a caller can warn about them.
GFLOPs are conventionally reported as ``2 * MACs`` (as upstream's summary.py does with thop).
"""
import math

import torch
import torch.nn as nn

_ZERO_MAC_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.GELU,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.Identity, nn.Dropout,
)


def _conv_macs(module, output):
    out_elements = output[0].numel()
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    return out_elements * per_output + (out_elements if module.bias is not None else 0)


def _linear_macs(module, output):
    out_elements = output[0].numel()
    return out_elements * module.in_features + (out_elements if module.bias is not None else 0)


def _macs_of(module, output):
    """MACs of one leaf module for one image (``output`` has a batch dimension); None if no rule."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return _conv_macs(module, output)
    if isinstance(module, nn.Linear):
        return _linear_macs(module, output)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return output[0].numel()
    # Projects often define their own activation classes (nets/CSPdarknet.py's Mish); match those by name.
    if isinstance(module, _ZERO_MAC_TYPES) or type(module).__name__ in ("Mish", "SiLU", "Swish"):
        return 0
    return None


def count_macs(model, input_shape, in_channels=3):
    """Run one ``(1, in_channels, h, w)`` zero input through ``model`` and count per leaf module.

    Works on any device, including ``meta`` (shapes only, no arithmetic). Returns
    ``(total_macs, rows)``; each row is a dict ``name, type, output_shape, params, macs, counted``
    in execution order (a module run twice gets two rows).
    """
    height, width = input_shape
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    rows = []

    def hook(module, _inputs, output):
        is_tensor = isinstance(output, torch.Tensor)
        macs = _macs_of(module, output) if is_tensor else None
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": tuple(output.shape[1:]) if is_tensor else None,
                     "params": sum(p.numel() for p in module.parameters(recurse=False)),
                     "macs": macs or 0, "counted": macs is not None})

    names = {m: n for n, m in model.named_modules() if not any(True for _ in m.children())}
    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return sum(row["macs"] for row in rows), rows


def count_parameters(model):
    """``(total, trainable)`` parameter counts (BN running statistics are buffers, not counted)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
