"""Optimizer construction and learning-rate scaling with upstream's rules."""
import torch
import torch.nn as nn

from utils.errors import UserError

NOMINAL_BATCH = 64


UPSTREAM_LR_LIMITS = {"adam": (1e-3, 3e-4), "sgd": (5e-2, 5e-4)}   # (max, min) of the scaled peak lr


def scaled_learning_rates(batch_size, init_lr, min_lr, optimizer_type, lr_limits=None):
    """Scale lr linearly with batch size (nominal 64) and clamp it to ``lr_limits = (max, min)``, the final lr to
    a hundredth of them. ``lr_limits`` None: upstream's per optimizer (Adam/AdamW 1e-3..3e-4, SGD 5e-2..5e-4)."""
    adam = optimizer_type in ("adam", "adamw")
    lr_max, lr_min = lr_limits or UPSTREAM_LR_LIMITS["adam" if adam else "sgd"]
    init = min(max(batch_size / NOMINAL_BATCH * init_lr, lr_min), lr_max)
    final = min(max(batch_size / NOMINAL_BATCH * min_lr, lr_min * 1e-2), lr_max * 1e-2)
    return init, final


def parameter_groups(model):
    """(BN weights, conv/linear weights, biases): only the middle group gets weight decay."""
    bn_weights, weights, biases = [], [], []
    for module in model.modules():
        if hasattr(module, "bias") and isinstance(module.bias, nn.Parameter):
            biases.append(module.bias)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            bn_weights.append(module.weight)
        elif hasattr(module, "weight") and isinstance(module.weight, nn.Parameter):
            weights.append(module.weight)
    return bn_weights, weights, biases


def build_optimizer(model, optimizer_type, lr, momentum, weight_decay, fused=None):
    """SGD (nesterov) / Adam / AdamW with BN and bias parameters kept out of weight decay.

    ``fused`` (None: on CUDA) selects torch's fused kernels: one kernel per step instead of one per tensor,
    and a step that takes its skip flag as a device tensor (utils_fit.guarded_step), so a skipped step needs
    no read-back. The CPU keeps the per-tensor kernels by default: a CPU has no queue for a read-back to
    stall, and the fused Adam differs from them in the last bit, which training amplifies, so CPU runs keep
    repeating earlier ones exactly.
    """
    if fused is None:
        fused = all(p.device.type == "cuda" for p in model.parameters())
    fused = fused or None
    bn_weights, weights, biases = parameter_groups(model)
    if optimizer_type == "sgd":
        optimizer = torch.optim.SGD(bn_weights, lr=lr, momentum=momentum, nesterov=True, fused=fused)
    elif optimizer_type == "adam":
        optimizer = torch.optim.Adam(bn_weights, lr=lr, betas=(momentum, 0.999), fused=fused)
    elif optimizer_type == "adamw":
        optimizer = torch.optim.AdamW(bn_weights, lr=lr, betas=(momentum, 0.999), weight_decay=0.0, fused=fused)
    else:
        raise UserError(f"optimizer_type must be 'sgd', 'adam' or 'adamw', got {optimizer_type!r}")
    optimizer.add_param_group({"params": weights, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": biases, "weight_decay": 0.0})
    return optimizer
