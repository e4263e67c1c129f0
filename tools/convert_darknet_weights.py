"""Convert AlexeyAB darknet YOLOv4 weights (``yolov4.weights``, or the ``yolov4.conv.137`` prefix) to PyTorch.

Writes ``out_path``, a plain YoloBody state_dict (``model_path`` of yolo.py / predict.py, or of
train.py to fine-tune), and next to it the run metadata yolo.py adopts for settings not given:
class names, anchors, anchors_mask, input_shape and darknet's ``scale_x_y`` decoding.

input_shape defaults to 608x608, the network size of darknet's ``yolov4.cfg`` (the resolution it
was trained at and its headline COCO AP is measured at); predict at 416 with ``--input_shape``
for speed. A prefix file holds no prediction heads, so its metadata records only where it came
from: it is a starting point for train.py, not a detector.

    python tools/convert_darknet_weights.py --weights_path yolov4.weights
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

from utils.engine.checkpoint import atomic_save  # noqa: E402
from utils.errors import run_entry  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.deploy import darknet  # noqa: E402  (module import: its constants must not become settings)
from utils.engine.run_metadata import write_metadata  # noqa: E402
from utils.utils import get_anchors, get_classes  # noqa: E402

weights_path = 'model_data/yolov4.weights'      # darknet file: yolov4.weights (full) or yolov4.conv.137 (prefix)
classes_path = 'model_data/coco_classes.txt'    # class names the darknet weights predict, in darknet's order
anchors_path = 'model_data/yolo_anchors.txt'    # the 9 anchors of the cfg's [yolo] layers (w, h pixels)
anchors_mask = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]  # anchor indices per output level (strides 32, 16, 8)
input_shape = [608, 608]                        # inference size recorded in the metadata: yolov4.cfg's width/height
out_path = 'model_data/yolov4_weights.pth'      # PyTorch state_dict to write (+ .json run metadata beside it)


def conversion_metadata(weights, source, class_names, anchors, anchors_mask, input_shape):
    """Sidecar contents: the source file always; what detection needs only when the heads are in it."""
    meta = {"source": os.path.abspath(source), "darknet_version": weights.header.version,
            "darknet_seen": weights.header.seen, "width_mult": 1.0, "depth_mult": 1.0}
    if weights.complete:
        meta.update({"class_names": list(class_names), "anchors": anchors.tolist(), "anchors_mask": anchors_mask,
                     "input_shape": list(input_shape), "scale_x_y": list(darknet.DARKNET_SCALE_X_Y)})
    return meta


def convert(weights_path, classes_path, anchors_path, anchors_mask, input_shape, out_path):
    """Read ``weights_path``, write ``out_path`` and its metadata; returns the ``DarknetWeights`` read."""
    class_names, num_classes = get_classes(classes_path)
    anchors, _ = get_anchors(anchors_path)
    weights = darknet.read_darknet_file(weights_path, num_classes, anchors_mask)
    print(darknet.describe_darknet(weights, weights_path))
    atomic_save(weights.state_dict, out_path)
    meta_path = write_metadata(out_path, conversion_metadata(weights, weights_path, class_names, anchors,
                                                             anchors_mask, input_shape))
    print(f"Saved {len(weights.state_dict)} tensors to {out_path} and run metadata to {meta_path}.")
    return weights


if __name__ == "__main__":
    config = resolve_config(globals(), sys.argv[1:], __file__)
    run_entry(lambda: convert(**config) and 0)
