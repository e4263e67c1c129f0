"""The decoupled head (``decoupled_head=True``): channel layout, weight files, prior biases, a training run."""
import math
import subprocess
import sys

import pytest
import torch

from nets.fuse import fuse_conv_bn
from nets.yolo import DecoupledHead, YoloBody, has_decoupled_head, num_classes_of_state_dict
from utils.engine.trainer import init_head_biases

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def test_channels_follow_the_coupled_layout():
    # Per anchor the coupled head's channels are [tx, ty, tw, th, obj, cls...]: the decoupled head must put the
    # box branch's 5 channels of anchor a, then the class branch's C channels of anchor a, at a * (5 + C).
    torch.manual_seed(0)
    head = DecoupledHead(in_filters=8, mid_filters=16, num_anchors=3, num_classes=4).eval()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        out, box, cls = head(x), head.box(x), head.cls(x)
    assert out.shape == (2, 3 * 9, 5, 7)
    for a in range(3):
        assert torch.equal(out[:, a * 9:a * 9 + 5], box[:, a * 5:(a + 1) * 5])
        assert torch.equal(out[:, a * 9 + 5:(a + 1) * 9], cls[:, a * 4:(a + 1) * 4])


def test_channels_last_input_gives_the_same_output():
    torch.manual_seed(0)
    head = DecoupledHead(8, 16, 3, 4).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(head(x), head(x.to(memory_format=torch.channels_last)), atol=1e-6)


def test_state_dict_is_recognised_and_round_trips(tmp_path):
    torch.manual_seed(1)
    model = YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33, decoupled_head=True).eval()
    _randomize_bn(model)
    state = model.state_dict()
    assert has_decoupled_head(state) and num_classes_of_state_dict(state) == 3
    assert not has_decoupled_head(YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33).state_dict())
    assert {k.split(".")[1] for k in state if k.startswith("yolo_head")} == {"box", "cls"}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    clone = YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33, decoupled_head=True).eval()
    clone.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(model(x), clone(x)):
            assert torch.equal(a, b)


def test_batchnorm_folding_keeps_the_output():
    torch.manual_seed(2)
    model = YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33, decoupled_head=True).eval()
    _randomize_bn(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), fuse_conv_bn(model)(x)):
            assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("decoupled", [False, True])
def test_prior_biases_reach_objectness_and_class_channels(decoupled):
    # The priors, read from the output on a zero-weight prediction conv: the logit of every channel is its bias.
    num_classes = 4
    model = YoloBody(MASK, num_classes, width_mult=0.125, depth_mult=0.33, decoupled_head=decoupled).eval()
    init_head_biases(model, [64, 64], num_classes, obj_prior=0.01)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.out_channels in (3 * 5, 3 * 4, 3 * 9):
            module.weight.data.zero_()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    for out in outs:
        logits = out.view(3, 9, -1)
        assert torch.allclose(logits[:, 4], torch.full_like(logits[:, 4], math.log(0.01 / 0.99)), atol=1e-6)
        assert torch.allclose(logits[:, 5:], torch.full_like(logits[:, 5:], math.log(0.6 / 3.01)), atol=1e-6)


def test_trained_weights_load_in_yolo_and_study(tmp_path, lists):
    # train.py writes a decoupled network; the inference paths rebuild it from the keys alone.
    from test_train import TINY, run_train
    from utils.engine.study import load_model
    from yolo import YOLO

    save = tmp_path / "logs"
    result = run_train([*TINY, *lists, "--UnFreeze_Epoch", "1", "--mosaic", "False", "--eval_flag", "False",
                        "--decoupled_head", "True", "--save_dir", str(save)])
    assert result.returncode == 0, result.stderr[-3000:]
    weights = str(save / "last_epoch_weights.pth")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert has_decoupled_head(state)
    model = YoloBody(MASK, 4, width_mult=0.125, depth_mult=0.33, decoupled_head=True).eval()
    model.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        detector = YOLO(model_path=weights, classes_path="model_data/sample_classes.txt", device="cpu")
        studied = load_model(weights, MASK, 4, "cpu")
        for a, b, c in zip(expected, detector.net(x), studied(x)):
            assert torch.allclose(a, b, atol=1e-4) and torch.equal(a, c)
