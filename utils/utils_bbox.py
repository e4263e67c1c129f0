"""Upstream's ``utils.utils_bbox``: decoding, letterbox correction and NMS, now ``utils.deploy.decode``. This name is
the same module object, so upstream-style code (``from utils.utils_bbox import ...``, ``import utils.utils_bbox``)
keeps working."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("utils.deploy.decode")
