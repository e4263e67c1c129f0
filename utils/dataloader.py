"""Upstream's ``utils.dataloader``: the training dataset and its collate function, now ``utils.data.dataloader``. This
name is the same module object, so upstream-style code (``from utils.dataloader import ...``, ``import
utils.dataloader``) keeps working."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("utils.data.dataloader")
