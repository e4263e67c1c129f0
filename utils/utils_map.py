"""Upstream's ``utils.utils_map``: VOC and COCO mAP, now ``utils.metrics.mean_ap``. This name is the same module
object, so upstream-style code (``from utils.utils_map import ...``, ``import utils.utils_map``) keeps working."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("utils.metrics.mean_ap")
