"""Evaluation: the one model evaluation, VOC / COCO mAP, where the mAP goes, plots and tables. Imports
``utils/deploy`` (decoding), ``utils/data``, the shared pieces and ``nets/``."""
