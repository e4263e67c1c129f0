"""The compiled inference path: ``torch.compile`` of a fused network, with a clear error where it cannot build.

It lives in utils/ (not nets/fuse.py) because it needs the project's error policy and a look at the toolchain.
"""
import shutil

import torch

from utils.errors import UserError


def compiled_inference_model(model):
    """``torch.compile`` of an ``inference_model`` for ``torch.inference_mode()`` calls: inductor with the weights
    frozen, so it folds them into prepacked oneDNN convolutions and fuses each Mish into one loop (on this
    repository's 2-core CPU 1.1-1.16x faster per image than the eager fused model at 416 px, bench/bench_backends.py).
    Compiles lazily at the first call of each input shape; ``dynamic=False`` keeps one graph per shape.
    """
    device = next(model.parameters()).device
    if device.type == "cpu" and not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        raise UserError("compile=True needs a C++ compiler on the CPU (inductor builds its kernels with g++): "
                        "install one (e.g. apt install g++) or leave compile False")
    return torch.compile(model, dynamic=False, options={"freezing": True})
