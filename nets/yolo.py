"""YOLOv4: CSPDarknet53 backbone, SPP, PANet and three YOLO heads (upstream module names).

Wiring and concatenation orders follow darknet's ``yolov4.cfg``; registration order follows
its convolution order.
"""
from collections import OrderedDict

import torch
import torch.nn as nn

from nets.CSPdarknet import STAGE_BLOCKS, STAGE_CHANNELS, darknet53, scale_depth, scale_width


def conv2d(filter_in, filter_out, kernel_size, stride=1):
    """Conv (no bias) -> BN -> LeakyReLU(0.1), the neck's building block.

    The activation works in place: BN's backward needs its input, not its output, so this saves a
    copy per layer (a few percent of a CPU training step)."""
    pad = (kernel_size - 1) // 2 if kernel_size else 0
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(filter_in, filter_out, kernel_size, stride, pad, bias=False)),
        ("bn", nn.BatchNorm2d(filter_out)),
        ("relu", nn.LeakyReLU(0.1, inplace=True)),
    ]))


class SpatialPyramidPooling(nn.Module):
    """Stride-1 max-pools; output ``cat([pool13(x), pool9(x), pool5(x), x])`` (darknet's route)."""

    def __init__(self, pool_sizes=(5, 9, 13)):
        super().__init__()
        self.maxpools = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in pool_sizes])

    def forward(self, x):
        features = [pool(x) for pool in self.maxpools[::-1]]
        return torch.cat(features + [x], dim=1)


class Upsample(nn.Module):
    """1x1 conv then nearest 2x upsampling."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.upsample = nn.Sequential(conv2d(in_channels, out_channels, 1), nn.Upsample(scale_factor=2, mode="nearest"))

    def forward(self, x):
        return self.upsample(x)


def make_three_conv(filters_list, in_filters):
    return nn.Sequential(
        conv2d(in_filters, filters_list[0], 1),
        conv2d(filters_list[0], filters_list[1], 3),
        conv2d(filters_list[1], filters_list[0], 1),
    )


def make_five_conv(filters_list, in_filters):
    return nn.Sequential(
        conv2d(in_filters, filters_list[0], 1),
        conv2d(filters_list[0], filters_list[1], 3),
        conv2d(filters_list[1], filters_list[0], 1),
        conv2d(filters_list[0], filters_list[1], 3),
        conv2d(filters_list[1], filters_list[0], 1),
    )


def yolo_head(filters_list, in_filters):
    """3x3 conv-BN-leaky then the 1x1 prediction conv (with bias, linear)."""
    return nn.Sequential(conv2d(in_filters, filters_list[0], 3), nn.Conv2d(filters_list[0], filters_list[1], 1))


class DecoupledHead(nn.Module):
    """A YOLO head whose classes get a branch of their own (YOLOX's decoupled head, lighter).

    ``box`` is upstream's head predicting ``[tx, ty, tw, th, obj]`` per anchor; ``cls`` is two 3x3 conv-BN-leaky
    layers at the input width and a 1x1 class prediction. In the coupled head one 3x3 layer serves box, objectness
    and class, and objectness gradients dominate it. ``forward(x: (B, in, H, W))`` returns
    ``(B, A*(5+C), H, W)`` in the coupled head's channel order, so loss and decoding are unchanged.
    """

    def __init__(self, in_filters, mid_filters, num_anchors, num_classes):
        super().__init__()
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.box = yolo_head([mid_filters, num_anchors * 5], in_filters)
        self.cls = nn.Sequential(conv2d(in_filters, in_filters, 3), conv2d(in_filters, in_filters, 3),
                                 nn.Conv2d(in_filters, num_anchors * num_classes, 1))

    def forward(self, x):
        box, cls = self.box(x), self.cls(x)
        B, _, H, W = box.shape
        A = self.num_anchors
        # (B, A, 5, H, W) + (B, A, C, H, W) -> (B, A, 5+C, H, W) -> (B, A*(5+C), H, W)
        return torch.cat([box.view(B, A, 5, H, W), cls.view(B, A, self.num_classes, H, W)], 2).view(B, -1, H, W)

    def prediction_biases(self):
        """Views ``(A, 5)`` and ``(A, C)`` of the two prediction convs' biases (for prior initialisation)."""
        return self.box[-1].bias.data.view(self.num_anchors, 5), self.cls[-1].bias.data.view(self.num_anchors, -1)


def _make_head(in_filters, mid_filters, num_anchors, num_classes, decoupled):
    if decoupled:
        return DecoupledHead(in_filters, mid_filters, num_anchors, num_classes)
    return yolo_head([mid_filters, num_anchors * (5 + num_classes)], in_filters)


def head_biases(head, num_classes):
    """Views ``(A, 5)`` (box + objectness) and ``(A, C)`` (classes) of a head's prediction biases."""
    if isinstance(head, DecoupledHead):
        return head.prediction_biases()
    bias = head[-1].bias.data.view(-1, 5 + num_classes)
    return bias[:, :5], bias[:, 5:]


class YoloBody(nn.Module):
    """YOLOv4 detector.

    ``forward(x)`` with ``x: (B, 3, H, W)`` returns ``(out0, out1, out2)`` at strides 32, 16, 8,
    each ``(B, len(anchors_mask[i]) * (5 + num_classes), H / s, W / s)``; per anchor the channels
    are ``[tx, ty, tw, th, obj, cls...]``.

    ``width_mult`` / ``depth_mult`` scale channel and residual-block counts (1.0 = YOLOv4). ``decoupled_head``
    gives the classes a branch of their own in each head (``DecoupledHead``; other ``yolo_head*`` keys).
    """

    def __init__(self, anchors_mask, num_classes, pretrained=False, *, width_mult=1.0, depth_mult=1.0,
                 decoupled_head=False):
        super().__init__()
        self.width_mult, self.depth_mult = float(width_mult), float(depth_mult)
        self.decoupled_head = bool(decoupled_head)
        self.backbone = darknet53(pretrained, width_mult=width_mult, depth_mult=depth_mult)
        c3, c4, c5 = self.backbone.feature_channels[2:]   # 256, 512, 1024 at full width
        n3, n4, n5 = c3 // 2, c4 // 2, c5 // 2            # neck widths 128, 256, 512
        anchors = [len(mask) for mask in anchors_mask]

        self.conv1 = make_three_conv([n5, c5], c5)
        self.SPP = SpatialPyramidPooling()
        self.conv2 = make_three_conv([n5, c5], 4 * n5)

        self.upsample1 = Upsample(n5, n4)
        self.conv_for_P4 = conv2d(c4, n4, 1)
        self.make_five_conv1 = make_five_conv([n4, c4], 2 * n4)

        self.upsample2 = Upsample(n4, n3)
        self.conv_for_P3 = conv2d(c3, n3, 1)
        self.make_five_conv2 = make_five_conv([n3, c3], 2 * n3)
        self.yolo_head3 = _make_head(n3, c3, anchors[2], num_classes, decoupled_head)

        self.down_sample1 = conv2d(n3, n4, 3, stride=2)
        self.make_five_conv3 = make_five_conv([n4, c4], 2 * n4)
        self.yolo_head2 = _make_head(n4, c4, anchors[1], num_classes, decoupled_head)

        self.down_sample2 = conv2d(n4, n5, 3, stride=2)
        self.make_five_conv4 = make_five_conv([n5, c5], 2 * n5)
        self.yolo_head1 = _make_head(n5, c5, anchors[0], num_classes, decoupled_head)

    def forward(self, x):
        x2, x1, x0 = self.backbone(x)                      # strides 8, 16, 32

        P5 = self.conv2(self.SPP(self.conv1(x0)))
        P4 = torch.cat([self.conv_for_P4(x1), self.upsample1(P5)], dim=1)
        P4 = self.make_five_conv1(P4)
        P3 = torch.cat([self.conv_for_P3(x2), self.upsample2(P4)], dim=1)
        P3 = self.make_five_conv2(P3)

        P4 = self.make_five_conv3(torch.cat([self.down_sample1(P3), P4], dim=1))
        P5 = self.make_five_conv4(torch.cat([self.down_sample2(P4), P5], dim=1))

        out2 = self.yolo_head3(P3)   # stride 8
        out1 = self.yolo_head2(P4)   # stride 16
        out0 = self.yolo_head1(P5)   # stride 32
        return out0, out1, out2


def architecture_signature(width_mult=1.0, depth_mult=1.0):
    """The numbers that fully determine a scaled network: stem + stage widths, block counts."""
    widths = tuple(scale_width(c, width_mult) for c in (32, *STAGE_CHANNELS))
    depths = (STAGE_BLOCKS[0],) + tuple(scale_depth(n, depth_mult) for n in STAGE_BLOCKS[1:])
    return widths, depths


def signature_of_state_dict(state_dict):
    """Read ``(widths, depths)`` back from a YoloBody ``state_dict``'s tensor shapes."""
    prefix = "backbone."
    try:
        widths = [state_dict[prefix + "conv1.conv.weight"].shape[0]]
        widths += [state_dict[f"{prefix}stages.{i}.downsample_conv.conv.weight"].shape[0] for i in range(5)]
    except KeyError as missing:
        raise ValueError(f"not a YoloBody state_dict: key {missing} is missing") from None
    depths = [STAGE_BLOCKS[0]]
    for i in range(1, 5):
        stage = f"{prefix}stages.{i}.blocks_conv."
        depths.append(len({k[len(stage):].split(".")[0] for k in state_dict if k.startswith(stage)}) - 1)
    return tuple(widths), tuple(depths)


def infer_scale(state_dict):
    """Find ``(width_mult, depth_mult)`` that rebuild the network a ``state_dict`` came from.

    Candidates are the ratios the shapes imply plus a grid of common values; the first pair whose
    signature matches exactly is returned, so the rebuilt model has the same tensor shapes.
    """
    widths, depths = signature_of_state_dict(state_dict)
    base_w = (32, *STAGE_CHANNELS)
    w_candidates = sorted({1.0, *(w / b for w, b in zip(widths, base_w)), *(i / 64 for i in range(1, 257))},
                          key=lambda w: abs(w - widths[-1] / base_w[-1]))
    d_candidates = sorted({1.0, *(d / b for d, b in zip(depths[1:], STAGE_BLOCKS[1:])), *(i / 100 for i in range(1, 301))},
                          key=lambda d: abs(d - depths[3] / STAGE_BLOCKS[3]))
    width = next((w for w in w_candidates if architecture_signature(w, 1.0)[0] == widths), None)
    depth = next((d for d in d_candidates if architecture_signature(1.0, d)[1] == depths), None)
    if width is None or depth is None:
        raise ValueError(f"cannot match widths {widths} / block counts {depths} to any width_mult / depth_mult")
    return width, depth


def has_decoupled_head(state_dict):
    """Whether a YoloBody ``state_dict`` comes from a network built with ``decoupled_head=True``."""
    return "yolo_head1.cls.2.weight" in state_dict


def num_classes_of_state_dict(state_dict, num_anchors=3):
    """Class count implied by the stride-32 head's output channels."""
    if has_decoupled_head(state_dict):
        return state_dict["yolo_head1.cls.2.weight"].shape[0] // num_anchors
    return state_dict["yolo_head1.1.weight"].shape[0] // num_anchors - 5


def resolve_scale(width_mult=None, depth_mult=None, state_dict=None):
    """Multipliers to build a model with: given values win, missing ones come from the shapes of
    ``state_dict`` when there is one, else 1.0 (the full network)."""
    if (width_mult is None or depth_mult is None) and state_dict is not None:
        inferred_w, inferred_d = infer_scale(state_dict)
        width_mult = inferred_w if width_mult is None else width_mult
        depth_mult = inferred_d if depth_mult is None else depth_mult
    return (1.0 if width_mult is None else float(width_mult)), (1.0 if depth_mult is None else float(depth_mult))
