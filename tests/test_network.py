"""YoloBody / CSPDarknet: upstream state_dict layout, output shapes, scaling, weight round trips."""
import os

import pytest
import torch

from nets.CSPdarknet import darknet53
from nets.yolo import YoloBody, infer_scale, num_classes_of_state_dict

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
# Copies of ../shared/compat (the upstream key listing and darknet's public-domain yolov4.cfg).
DATA = os.path.join(os.path.dirname(__file__), "data")


def _listing():
    rows = []
    with open(os.path.join(DATA, "yolov4_state_dict_80classes.txt")) as f:
        for line in f:
            key, shape = line.strip().split(" ", 1)
            rows.append((key, tuple(int(x) for x in shape.strip("()").split(",") if x.strip())))
    return rows


@pytest.fixture(scope="module")
def full_model():
    torch.manual_seed(0)
    return YoloBody(MASK, 80).eval()


def test_state_dict_keys_order_and_shapes_match_upstream(full_model):
    ours = [(k, tuple(v.shape)) for k, v in full_model.state_dict().items()]
    assert ours == _listing()


def test_parameter_count_equals_darknet_yolov4_weights(full_model):
    floats = sum(v.numel() for k, v in full_model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert floats == 64_429_405


def test_registration_order_follows_darknet_conv_order(full_model):
    """Darknet stores convs in cfg order; the module order must match it for sequential loading."""
    cfg = os.path.join(DATA, "yolov4.cfg")
    filters, sizes = [], []
    block = None
    for line in open(cfg):
        line = line.split("#")[0].strip()
        if line.startswith("["):
            block = line
        elif block == "[convolutional]" and "=" in line:
            key, value = [x.strip() for x in line.split("=", 1)]
            if key == "filters":
                filters.append(int(value))
            elif key == "size":
                sizes.append(int(value))
    convs = [m for m in full_model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == list(zip(filters, sizes))


@pytest.mark.parametrize("size", [320, 416])
def test_output_shapes_and_strides(full_model, size):
    with torch.no_grad():
        outs = full_model(torch.zeros(1, 3, size, size))
    assert [tuple(o.shape) for o in outs] == [(1, 255, size // s, size // s) for s in (32, 16, 8)]


def test_other_class_count_changes_only_final_head_convs():
    a = YoloBody(MASK, 80, width_mult=0.25, depth_mult=0.33).state_dict()
    b = YoloBody(MASK, 20, width_mult=0.25, depth_mult=0.33).state_dict()
    assert list(a) == list(b)
    changed = {k for k in a if a[k].shape != b[k].shape}
    assert changed == {f"yolo_head{i}.1.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    assert b["yolo_head1.1.weight"].shape[0] == 3 * 25
    assert num_classes_of_state_dict(b) == 20


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    model = YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33).eval()
    for m in model.modules():       # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    clone = YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33).eval()
    clone.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(model(x), clone(x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("width,depth", [(0.25, 0.33), (0.5, 0.5), (0.3, 0.67), (1.0, 1.0), (0.75, 1.33)])
def test_scaled_model_is_recognised_from_shapes(width, depth):
    with torch.device("meta"):
        sd = YoloBody(MASK, 5, width_mult=width, depth_mult=depth).state_dict()
    w, d = infer_scale(sd)
    with torch.device("meta"):
        rebuilt = YoloBody(MASK, 5, width_mult=w, depth_mult=d).state_dict()
    assert [(k, v.shape) for k, v in rebuilt.items()] == [(k, v.shape) for k, v in sd.items()]


def test_scaling_shrinks_network():
    with torch.device("meta"):
        small = sum(p.numel() for p in YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33).parameters())
        full = sum(p.numel() for p in YoloBody(MASK, 3).parameters())
    assert small < full / 15


def test_backbone_feature_strides():
    backbone = darknet53(False, width_mult=0.25, depth_mult=0.33).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[2:]) for f in feats] == [(8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in feats] == [64, 128, 256]
