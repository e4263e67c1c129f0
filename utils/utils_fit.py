"""Upstream's ``utils.utils_fit``: one training epoch and the validation loss, now ``utils.engine.epoch``. This name is
the same module object, so upstream-style code (``from utils.utils_fit import ...``, ``import utils.utils_fit``)
keeps working."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("utils.engine.epoch")
