"""CSPDarknet53 backbone (Mish activations), upstream-compatible module names.

Module registration order equals darknet's convolution order in ``yolov4.cfg`` so that
darknet ``.weights`` files can be read sequentially into ``named_modules()``.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# Base (width_mult = 1) channel counts and residual-block counts of the five CSP stages.
STAGE_CHANNELS = (64, 128, 256, 512, 1024)
STAGE_BLOCKS = (1, 2, 8, 8, 4)
STEM_CHANNELS = 32


def scale_width(channels, width_mult):
    """Scaled channel count, rounded up to a multiple of 8 (as yolov5's make_divisible)."""
    return max(8, int(math.ceil(channels * width_mult / 8) * 8))


def scale_depth(blocks, depth_mult):
    """Scaled residual-block count, at least one."""
    return max(1, round(blocks * depth_mult))


class Mish(nn.Module):
    def forward(self, x):
        return F.mish(x)


class BasicConv(nn.Module):
    """Conv (no bias) -> BN -> Mish; 'same' padding."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activation = Mish()

    def forward(self, x):
        return self.activation(self.bn(self.conv(x)))


class Resblock(nn.Module):
    """1x1 bottleneck then 3x3, added to the input."""

    def __init__(self, channels, hidden_channels=None):
        super().__init__()
        hidden_channels = hidden_channels or channels
        self.block = nn.Sequential(
            BasicConv(channels, hidden_channels, 1),
            BasicConv(hidden_channels, channels, 3),
        )

    def forward(self, x):
        return x + self.block(x)


class Resblock_body(nn.Module):
    """One CSP stage: stride-2 downsample, then a residual branch and a cross-stage branch.

    The first stage keeps full width in both branches (as darknet does); later stages halve them.
    Output is ``concat_conv(cat([main_branch, cross_stage_part]))`` (darknet ``route -1,-k``).
    """

    def __init__(self, in_channels, out_channels, num_blocks, first):
        super().__init__()
        self.downsample_conv = BasicConv(in_channels, out_channels, 3, stride=2)
        branch = out_channels if first else out_channels // 2
        self.split_conv0 = BasicConv(out_channels, branch, 1)  # cross-stage part
        self.split_conv1 = BasicConv(out_channels, branch, 1)  # main branch input
        if first:
            blocks = [Resblock(out_channels, hidden_channels=out_channels // 2)]
        else:
            blocks = [Resblock(branch) for _ in range(num_blocks)]
        self.blocks_conv = nn.Sequential(*blocks, BasicConv(branch, branch, 1))
        self.concat_conv = BasicConv(2 * branch, out_channels, 1)

    def forward(self, x):
        x = self.downsample_conv(x)
        part = self.split_conv0(x)
        main = self.blocks_conv(self.split_conv1(x))
        return self.concat_conv(torch.cat([main, part], dim=1))


class CSPDarkNet(nn.Module):
    """CSPDarknet53. ``forward`` returns feature maps at strides 8, 16, 32.

    ``layers`` are the residual-block counts per stage, ``channels`` the stem width followed
    by the five stage widths (defaults: the full network).
    """

    def __init__(self, layers=STAGE_BLOCKS, channels=(STEM_CHANNELS, *STAGE_CHANNELS)):
        super().__init__()
        self.inplanes = channels[0]
        self.feature_channels = list(channels[1:])
        self.conv1 = BasicConv(3, self.inplanes, kernel_size=3, stride=1)
        ins = [self.inplanes] + self.feature_channels[:-1]
        self.stages = nn.ModuleList([
            Resblock_body(c_in, c_out, n, first=(i == 0))
            for i, (c_in, c_out, n) in enumerate(zip(ins, self.feature_channels, layers))
        ])
        self.num_features = 1
        self._init_weights()

    def _init_weights(self):
        # He-normal convs and unit BN, as upstream initialises the backbone.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x):
        x = self.conv1(x)
        x = self.stages[1](self.stages[0](x))
        out3 = self.stages[2](x)      # stride 8
        out4 = self.stages[3](out3)   # stride 16
        out5 = self.stages[4](out4)   # stride 32
        return out3, out4, out5


def darknet53(pretrained, *, width_mult=1.0, depth_mult=1.0):
    """Build the backbone; ``pretrained`` is False or the path of a backbone ``state_dict``.

    Upstream passed ``True`` to read ``model_data/CSPdarknet53_backbone_weights.pth``; that file
    cannot be downloaded here, so ``True`` looks for it there and says so when it is missing.
    """
    layers = [STAGE_BLOCKS[0]] + [scale_depth(n, depth_mult) for n in STAGE_BLOCKS[1:]]
    channels = [scale_width(c, width_mult) for c in (STEM_CHANNELS, *STAGE_CHANNELS)]
    model = CSPDarkNet(layers, channels)
    if pretrained:
        path = pretrained if isinstance(pretrained, str) else "model_data/CSPdarknet53_backbone_weights.pth"
        if not os.path.isfile(path):
            raise FileNotFoundError(f"backbone weights not found: {path} (set pretrained = False to train "
                                    f"from scratch, or give model_path)")
        # weights_only: a backbone file is tensors only, so a crafted pickle cannot run code here.
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
