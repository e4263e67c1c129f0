"""Inference and export: decoding and NMS, torch.compile, ONNX int8, darknet weights, model size. Imports
``utils/data`` (preprocessing), the shared pieces and ``nets/``."""
