"""The compiled inference path: ``torch.compile`` of a fused network, with a clear error where it cannot build, and
the automatic choice between it and the eager network (``YOLO(compile="auto")``, the default).

It lives in utils/ (not nets/fuse.py) because it needs the project's error policy and a look at the toolchain.
"""
import shutil
import warnings

import torch

from utils.errors import UserError

# compile="auto" compiles for runs of at least this many images: compiling takes 10-110 s on a 2-core CPU at 416 px
# (10 s with inductor's cache warm) and then saves about 0.08 s an image (1.15x of the eager 0.6 s;
# bench/bench_backends.py), so a few hundred images pay back a warm compile.
AUTO_COMPILE_MIN_IMAGES = 300


def has_cpp_compiler():
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def compiled_inference_model(model):
    """``torch.compile`` of an ``inference_model`` for ``torch.inference_mode()`` calls: inductor with the weights
    frozen, so it folds them into prepacked oneDNN convolutions and fuses each Mish into one loop (on this
    repository's 2-core CPU 1.1-1.16x faster per image than the eager fused model at 416 px, bench/bench_backends.py).
    Compiles lazily at the first call of each input shape; ``dynamic=False`` keeps one graph per shape.
    """
    device = next(model.parameters()).device
    if device.type == "cpu" and not has_cpp_compiler():
        raise UserError("compile=True needs a C++ compiler on the CPU (inductor builds its kernels with g++): "
                        "install one (e.g. apt install g++) or leave compile False")
    return torch.compile(model, dynamic=False, options={"freezing": True})


class CompiledOrEager:
    """The compiled network, or the eager one when compiling fails: what compile="auto" runs. A failed compile
    (inductor's errors have many types, and eager is always right) is warned about once, then eager runs."""

    def __init__(self, model):
        self.model, self.compiled = model, compiled_inference_model(model)

    def __call__(self, images):
        if self.compiled is not None:
            try:
                return self.compiled(images)
            except Exception as err:      # noqa: BLE001 (any compile failure: fall back to the eager network)
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                              f"running the eager network instead (compile False skips the attempt)")
                self.compiled = None
        return self.model(images)


def auto_compile_choice(images, device, why):
    """``(compile?, the one line that says so)`` for compile="auto" before a run of ``images`` images (None: a
    stream or a speed measurement, i.e. a long run) on ``device``; ``why`` names the run."""
    if images is not None and images < AUTO_COMPILE_MIN_IMAGES:
        return False, (f"Inference: eager PyTorch ({why}: fewer than {AUTO_COMPILE_MIN_IMAGES} images pay back the "
                       f"10-110 s of compiling; --compile True to compile anyway)")
    if torch.device(device).type == "cpu" and not has_cpp_compiler():
        return False, f"Inference: eager PyTorch ({why}; torch.compile needs a C++ compiler, none found)"
    if images is not None:
        why = f"{why}, enough to pay back compiling"
    return True, (f"Inference: torch.compile ({why}; about 1.15x faster an image once the first image has "
                  f"compiled it, which takes 10-110 s; --compile False for eager)")
