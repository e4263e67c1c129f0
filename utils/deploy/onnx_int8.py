"""int8 quantization of an exported ONNX model with onnxruntime (an optional package): static, QDQ format,
activations uint8 and weights int8 per output channel (the U8S8 form that VNNI CPUs run fastest), with the
activation ranges calibrated on training images preprocessed exactly as inference preprocesses them. The decode
at the end of the graph (utils/deploy/onnx_export.py) stays float, and the file keeps the fp32 file's metadata.
"""
import importlib.util
import os
import tempfile

import numpy as np

from utils.deploy.onnx_export import decode_node_names
from utils.errors import UserError
from utils.data.preprocess import network_input, open_image

CALIBRATION_IMAGES = 64     # training images whose activations set the int8 ranges


def require_onnxruntime_quantization():
    for package in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            raise UserError(f"int8 quantization needs the '{package}' package: pip install onnx onnxruntime "
                            "(the fp32 model and the PyTorch path need neither)")


def calibration_batches(image_paths, input_shape, letterbox_image, input_name):
    """One ``{input_name: (1, 3, H, W) float32}`` feed per image, preprocessed as ``YOLO`` does."""
    for path in image_paths:
        array, _ = network_input(open_image(path), input_shape, letterbox_image)
        yield {input_name: array[None].astype(np.float32)}


def mish_node_names(graph):
    """Names of the nodes of every Mish that ``nets.fuse.onnx_mish`` exported: an ``Exp`` of some ``x`` and the
    nodes after it up to the one that reads ``x`` again (the final ``Div``).

    They stay in float, one dequantize before and one quantize after: quantizing each of their 6 ops separately
    would add a quantize-dequantize pair per op, each costing more than the float op it rounds.
    """
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names = []
    for exp in (node for node in graph.node if node.op_type == "Exp"):
        source, chain, frontier, closed = exp.input[0], [exp], list(exp.output), False
        while frontier:
            for node in consumers.get(frontier.pop(), []):
                if node not in chain:
                    chain.append(node)
                    if source in node.input:                # the final Div ends the chain
                        closed = True
                    else:
                        frontier.extend(node.output)
        if closed:          # an Exp whose chain never reads x again is no Mish (the decode's exp of box sizes)
            names.extend(node.name for node in chain)
    return names


def quantize_onnx(fp32_path, int8_path, image_paths, input_shape, letterbox_image):
    """Write ``int8_path``: ``fp32_path`` statically quantized with ranges from ``image_paths``."""
    require_onnxruntime_quantization()
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    if not image_paths:
        raise UserError("int8 quantization needs calibration images (a training list with at least one image)")
    input_name = onnx.load(fp32_path).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = calibration_batches(image_paths, input_shape, letterbox_image, input_name)

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)   # shape inference + graph folding
        partial = os.path.join(tmp, "int8.onnx")
        graph = onnx.load(prepared).graph
        quantize_static(prepared, partial, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=mish_node_names(graph) + decode_node_names(graph))
        copy_metadata_props(fp32_path, partial)
        os.replace(partial, int8_path)         # the finished file only: an interrupted run leaves none


def copy_metadata_props(source_path, target_path):
    """Give ``target_path`` the ``metadata_props`` of ``source_path`` (the quantizer does not carry them)."""
    import onnx

    source, target = onnx.load(source_path), onnx.load(target_path)
    del target.metadata_props[:]
    target.metadata_props.extend(source.metadata_props)
    onnx.save(target, target_path)
