"""Print the YOLOv4 model summary: per-module output shapes, parameters and MACs, and the totals
(upstream prints these with thop; here forward hooks count them, see utils/deploy/model_stats.py).

The network is built on PyTorch's ``meta`` device: only shapes are propagated, so the summary is
instant and needs no weights, GPU or memory for activations.
Usage: python summary.py [--input_shape "[608, 608]"] [--num_classes 20] [--show_layers False]
"""
import sys

import torch

from nets.yolo import YoloBody
from utils.config import resolve_config
from utils.errors import UserError, run_entry
from utils.deploy.model_stats import count_macs, count_parameters

input_shape = [416, 416]  # network input (height, width), multiples of 32
anchors_mask = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]  # anchor indices per output level (strides 32, 16, 8)
num_classes = 80  # number of classes (80 = COCO, upstream's default)
width_mult = 1.0  # channel multiplier (1.0 = YOLOv4)
depth_mult = 1.0  # residual-block multiplier (1.0 = YOLOv4)
show_layers = True  # print the per-module table before the totals


def format_table(rows):
    """Fixed-width text table of ``count_macs`` rows."""
    name_width = max([len(row["name"]) for row in rows] + [6])
    header = f"{'module':<{name_width}}  {'type':<12} {'output shape':<18} {'params':>12} {'MACs':>16}"
    lines = [header, "-" * len(header)]
    for row in rows:
        shape = "x".join(map(str, row["output_shape"])) if row["output_shape"] is not None else "-"
        macs = f"{row['macs']:,}" if row["counted"] else "not counted"
        lines.append(f"{row['name']:<{name_width}}  {row['type']:<12} {shape:<18} {row['params']:>12,} {macs:>16}")
    return "\n".join(lines)


def main(config):
    if any(size % 32 for size in config["input_shape"]):
        raise UserError(f"input_shape {config['input_shape']} must be multiples of 32")
    with torch.device("meta"):
        model = YoloBody(config["anchors_mask"], config["num_classes"],
                         width_mult=config["width_mult"], depth_mult=config["depth_mult"])
    total_macs, rows = count_macs(model, config["input_shape"])
    total_params, trainable_params = count_parameters(model)
    if config["show_layers"]:
        print(format_table(rows))
    uncounted = sorted({row["type"] for row in rows if not row["counted"]})
    if uncounted:
        print(f"warning: no MAC rule for {', '.join(uncounted)}; those modules count as 0")
    height, width = config["input_shape"]
    print(f"Input: 3x{height}x{width}, {config['num_classes']} classes, "
          f"width_mult {config['width_mult']}, depth_mult {config['depth_mult']}")
    print(f"Total params: {total_params:,} (trainable {trainable_params:,})")
    print(f"Total MACs: {total_macs / 1e9:.3f} G")
    print(f"Total GFLOPs: {2 * total_macs / 1e9:.3f} G (2 x MACs, as upstream reports)")


if __name__ == "__main__":
    run_entry(lambda: main(resolve_config(globals(), sys.argv[1:])))
