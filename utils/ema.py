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
    def update(self, model):
        self.updates += 1
        d = self.decay_fn(self.updates)
        model_state = unwrap(model).state_dict()
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(model_state[name].detach(), alpha=1 - d)
            else:
                value.copy_(model_state[name])  # e.g. num_batches_tracked

    def state_dict(self):
        return {"ema": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.ema.load_state_dict(state["ema"])
        self.updates = state["updates"]
