"""ONNX export that carries its model: the decode in the graph, a dynamic batch axis and the model's metadata.

The exported graph takes ``images`` ``(B, 3, H, W)`` float32 in [0, 1] (RGB, letterboxed or stretched as the
``letterbox_image`` metadata says) and gives ``predictions`` ``(B, N, 5 + C)``: per candidate box ``x1, y1, x2, y2`` in
input pixels, the objectness probability and the C class probabilities (``utils.deploy.decode``'s layout; a
detection's score is objectness * class probability). What is left to a runtime is the score threshold, NMS and
undoing the letterbox. The settings a runtime needs are ONNX ``metadata_props``: each value JSON text, keys in
``METADATA_KEYS`` plus ``format``, ``outputs`` and ``project_version``.
"""
import json
import os
import tempfile
import warnings

import torch
import torch.nn as nn

from utils.deploy.decode import decode_outputs
from utils.version import project_version

FORMAT = "yolov4-pytorch onnx v1"
OUTPUT_NAME = "predictions"
# Older exports (before the decode moved into the graph): raw head outputs, strides 32, 16, 8, batch 1.
RAW_OUTPUT_NAMES = ("output0", "output1", "output2")
# Run-metadata keys (utils/engine/run_metadata.py) an exported file keeps, with the exporting detector's values.
METADATA_KEYS = ("class_names", "input_shape", "letterbox_image", "resize", "anchors", "anchors_mask", "scale_x_y",
                 "width_mult", "depth_mult", "score_threshold", "score_threshold_images", "score_threshold_objects",
                 "val_map50", "focal_loss")
OUTPUTS_TEXT = ("predictions (B, N, 5 + C): x1, y1, x2, y2 in input pixels, objectness, class probabilities; "
                "score = objectness * class probability; threshold, NMS and the letterbox are left to the runtime")


class DecodedModel(nn.Module):
    """A fused network followed by the decode: ``(B, 3, H, W)`` -> ``(B, N, 5 + C)`` (see the module docstring).
    The network is the ``net`` child, so every node of the decode is outside the ``/net/`` scope of the export."""

    def __init__(self, net, decoding):
        super().__init__()
        self.net = net
        self.decoding = decoding

    def forward(self, images):
        d = self.decoding
        return decode_outputs(self.net(images), d.anchors, d.anchors_mask, d.input_shape, d.scale_x_y)


def decode_node_names(graph):
    """Names of the nodes outside the network's scope: the decode (kept in float by the int8 quantization,
    where input-pixel coordinates would otherwise be rounded to 1/256 of their range)."""
    return [node.name for node in graph.node if not node.name.startswith("/net/")]


def metadata_props(metadata):
    """``{key: JSON text}`` for ``metadata_props``: ``metadata`` restricted to ``METADATA_KEYS`` (None dropped)."""
    props = {"format": FORMAT, "outputs": OUTPUTS_TEXT, "project_version": project_version()}
    props.update({k: json.dumps(metadata[k]) for k in METADATA_KEYS if metadata.get(k) is not None})
    return props


def read_metadata_props(custom_map):
    """The run-metadata dict of an exported file's ``metadata_props`` (onnxruntime's ``custom_metadata_map``);
    ``{}`` for a file of another exporter or the older raw-output export."""
    if custom_map.get("format") != FORMAT:
        return {}
    meta = {}
    for key in METADATA_KEYS:
        if key in custom_map:
            meta[key] = json.loads(custom_map[key])
    meta["project_version"] = custom_map.get("project_version")
    return meta


def export_onnx(net, decoding, path, metadata, simplify=False, opset=13):
    """Write ``path``: ``DecodedModel(net, decoding)`` with a dynamic batch and ``metadata_props(metadata)``.
    Written to a temporary file beside ``path`` and renamed: an interrupted export leaves no torn file."""
    import onnx

    device = next(net.parameters()).device
    dummy = torch.zeros(1, 3, *decoding.input_shape, device=device)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".onnx", dir=folder)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # the TorchScript exporter needs only 'onnx'
            # The decode's grid and strides are constants of the fixed input size, as the tracer warns.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(DecodedModel(net, decoding).eval(), (dummy,), partial, dynamo=False,
                              opset_version=opset, input_names=["images"], output_names=[OUTPUT_NAME],
                              dynamic_axes={"images": {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        model = onnx.load(partial)
        fix_output_shape(model, net, dummy, decoding.anchors_mask)
        onnx.checker.check_model(model)
        if simplify:
            model = simplified(model, path)
        for key, value in metadata_props(metadata).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def fix_output_shape(model, net, dummy, anchors_mask):
    """Give the output's candidate and channel axes their sizes (the exporter leaves them symbolic): a runtime can
    allocate ``(batch, N, 5 + C)`` from the file alone."""
    with torch.no_grad():
        levels = net(dummy)                                              # (1, A * (5 + C), H_l, W_l) each
    channels = levels[0].shape[1] // len(anchors_mask[0])
    candidates = sum(len(mask) * level.shape[2] * level.shape[3] for level, mask in zip(levels, anchors_mask))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_value, dims[2].dim_value = candidates, channels


def simplified(model, path):
    """``model`` through onnxsim when it is installed (a warning, and ``model`` as it is, when not)."""
    import importlib.util

    if importlib.util.find_spec("onnxsim") is None:
        warnings.warn("simplify=True but 'onnxsim' is not installed (pip install onnxsim); "
                      "the model is saved unsimplified")
        return model
    import onnxsim

    model, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the simplified model of {path}")
    return model
