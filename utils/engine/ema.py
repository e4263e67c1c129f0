"""Exponential moving average of model weights (as yolov5 / upstream's newer repositories)."""
import copy
import math

import torch


def unwrap(model):
    """The bare module inside DataParallel / DistributedDataParallel wrappers."""
    return model.module if hasattr(model, "module") else model


class ModelEMA:
    """EMA of a model's parameters and buffers.

    ``decay`` ramps up as ``decay * (1 - exp(-updates / tau))`` so early updates, when the weights
    move fast, are followed closely. Used for validation and for the saved weights.
    """

    def __init__(self, model, decay=0.9999, tau=2000, updates=0):
        self.ema = copy.deepcopy(unwrap(model)).eval()
        self.updates = updates
        self.decay_fn = lambda x: decay * (1 - math.exp(-x / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model, skip=None):
        """Move the average toward ``model``'s weights; where ``skip`` (a 0-dim device tensor, nonzero for an
        optimizer step that was skipped) is set, the average stays as it is, without reading ``skip`` back.
        The decay ramp counts skipped steps too."""
        self.updates += 1
        d = self.decay_fn(self.updates)
        model_state = unwrap(model).state_dict()
        keep = None if skip is None else skip.to(torch.bool)
        for name, value in self.ema.state_dict().items():
            source = model_state[name].detach()
            if value.dtype.is_floating_point:
                updated = value.mul(d).add_(source, alpha=1 - d)
            else:
                updated = source               # e.g. num_batches_tracked
            # where, not a 0/1 weight: the skipped step's model state may hold NaN (its BN statistics).
            value.copy_(updated if keep is None else torch.where(keep, value, updated))

    def state_dict(self):
        return {"ema": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.ema.load_state_dict(state["ema"])
        self.updates = state["updates"]
