"""Datasets: the formats (VOC, YOLO txt, COCO JSON, data.yaml), the training lists, their checks, loading and
augmentation. Imports only the shared pieces of ``utils/`` and ``nets/``."""
