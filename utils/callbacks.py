"""Upstream's ``utils.callbacks``: the per-epoch run log and its curves, now ``utils.engine.run_log``. This name is the
same module object, so upstream-style code (``from utils.callbacks import ...``, ``import utils.callbacks``) keeps
working."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("utils.engine.run_log")
