"""Darknet ``.weights`` import (utils/deploy/darknet.py), checked against a writer written here from the format
spec: darknet's conv order, batch_normalize flags and filters come from tests/data/yolov4.cfg, the
field order from darknet's parser (BN: bias, scale, rolling mean, rolling variance, weights)."""
import json
import os
import shutil
import struct
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nets.yolo import YoloBody
from tools.convert_darknet_weights import convert
from utils.engine.checkpoint import describe_load, load_matching, load_state_dict_file
from utils.deploy.darknet import DARKNET_SCALE_X_Y, read_darknet_file, read_darknet_weights
from utils.engine.trainer import _build_model
from yolo import YOLO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "tests", "data", "yolov4.cfg")
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
NUM_CLASSES = 3
DARKNET_SCALE = [1.05, 1.1, 1.2]
YOLOV4_CONV137_BYTES = 170_038_676


def cfg_layers(path=CFG):
    """``[(section, {key: value})]`` of the cfg's layers in order (the [net] section left out)."""
    layers = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#")[0].strip()
            if line.startswith("["):
                layers.append((line, {}))
            elif "=" in line and layers:
                key, value = (x.strip() for x in line.split("=", 1))
                layers[-1][1][key] = value
    return layers[1:]


def cfg_convs():
    """``[(layer index, batch_normalize, filters, size)]`` of each [convolutional] layer, in file order."""
    return [(i, int(block.get("batch_normalize", 0)), int(block["filters"]), int(block["size"]))
            for i, (section, block) in enumerate(cfg_layers()) if section == "[convolutional]"]


def darknet_convs(model):
    """``[(conv module, its BN module or None, cfg layer index)]``: the model's Conv2d modules in order,
    paired with the cfg blocks (in-channels come from the modules, the rest is checked against the cfg);
    the BN of ``x.conv`` is the sibling ``x.bn`` (this repo's naming)."""
    modules = dict(model.named_modules())
    convs = [(name, m) for name, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
    blocks = cfg_convs()
    assert len(convs) == len(blocks) == 110
    paired = []
    for (name, conv), (layer, has_bn, filters, size) in zip(convs, blocks):
        # The cfg's prediction convs have 255 = 3 * (5 + 80) filters; ours 3 * (5 + the model's classes).
        assert (conv.out_channels if has_bn else 255, conv.kernel_size[0]) == (filters, size)
        paired.append((conv, modules[name.rsplit(".", 1)[0] + ".bn"] if has_bn else None, layer))
    return paired


def conv_floats(conv, bn):
    return conv.weight.numel() + (4 if bn is not None else 1) * conv.out_channels


def write_darknet(path, model, num_convs=None, major=0, minor=2, revision=5, seen=0):
    """A darknet weights file of the model's first ``num_convs`` convolutions (all by default)."""
    seen_format = "<Q" if major * 10 + minor >= 2 else "<I"
    with open(path, "wb") as f:
        f.write(struct.pack("<iii", major, minor, revision) + struct.pack(seen_format, seen))
        for conv, bn, _ in darknet_convs(model)[:num_convs]:
            fields = [bn.bias, bn.weight, bn.running_mean, bn.running_var] if bn is not None else [conv.bias]
            for tensor in fields + [conv.weight]:
                f.write(tensor.detach().numpy().astype("<f4").tobytes())


def write_sparse(path, num_floats):
    """A v0.2.5 header followed by ``num_floats`` zero floats without writing them (size checks read no data)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<iiiQ", 0, 2, 5, 0))
        f.truncate(20 + 4 * num_floats)


def random_model(seed):
    """Full-size 3-class YoloBody with random BN affine parameters, running statistics from one
    training-mode pass, and prediction convs scaled down so boxes stay finite."""
    torch.manual_seed(seed)
    model = YoloBody(MASK, NUM_CLASSES)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.momentum = None                       # running stats = this batch's statistics
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        model.train()(torch.rand(2, 3, 64, 64))
        for head in (model.yolo_head1, model.yolo_head2, model.yolo_head3):
            head[1].weight.mul_(0.01)
            head[1].bias.uniform_(-1, 1)
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The full network at 64 px is many tiny convolutions: one thread skips OpenMP's hand-offs, which
    cost seconds per forward when the other core is busy (shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source():
    return random_model(seed=0)


@pytest.fixture(scope="module")
def files(source, tmp_path_factory):
    """The source model as a full darknet file (256 MB), a classes file; removed afterwards (pytest keeps
    the temporary folders of recent runs)."""
    folder = tmp_path_factory.mktemp("darknet")
    weights = folder / "yolov4-3cls.weights"
    write_darknet(weights, source, seen=32_032_000)
    classes = folder / "classes.txt"
    classes.write_text("cat\ndog\nbird\n")
    yield SimpleNamespace(folder=folder, weights=str(weights), classes=str(classes))
    shutil.rmtree(folder)


def test_full_file_gives_identical_outputs(source, files):
    state_dict = read_darknet_weights(files.weights, NUM_CLASSES)
    expected = source.state_dict()
    assert list(state_dict) == list(expected)
    for key, value in expected.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(state_dict[key], value), key
    fresh = YoloBody(MASK, NUM_CLASSES).eval()
    fresh.load_state_dict(state_dict)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for ours, theirs in zip(fresh(x), source(x)):
            assert torch.equal(ours, theirs)


@pytest.mark.parametrize("minor, seen", [(1, 123_456), (2, 2**40 + 7)])
def test_header_with_32_and_64_bit_seen(source, tmp_path, minor, seen):
    path = tmp_path / "prefix.weights"
    write_darknet(path, source, num_convs=4, major=0, minor=minor, revision=3, seen=seen)
    weights = read_darknet_file(str(path), NUM_CLASSES)
    assert (weights.header.version, weights.header.seen, weights.num_convs) == (f"0.{minor}.3", seen, 4)
    assert weights.header.num_bytes == (16 if minor == 1 else 20)
    stage0 = source.backbone.stages[0]
    assert torch.equal(weights.state_dict["backbone.stages.0.split_conv0.bn.running_var"],
                       stage0.split_conv0.bn.running_var)
    assert torch.equal(weights.state_dict["backbone.stages.0.split_conv1.conv.weight"],
                       stage0.split_conv1.conv.weight)
    assert "backbone.stages.0.blocks_conv.0.block.0.conv.weight" not in weights.state_dict


def test_conv137_prefix_size_matches_darknet_file():
    with torch.device("meta"):
        model80 = YoloBody(MASK, 80)
    floats = sum(conv_floats(conv, bn) for conv, bn, layer in darknet_convs(model80) if layer < 137)
    assert 20 + 4 * floats == YOLOV4_CONV137_BYTES


@pytest.fixture(scope="module")
def conv137(source, files):
    """The 3-class file truncated to yolov4.conv.137's layers (0..136)."""
    convs = darknet_convs(source)
    kept = [c for c in convs if c[2] < 137]
    path = os.path.join(files.folder, "yolov4-3cls.conv.137")
    shutil.copyfile(files.weights, path)
    os.truncate(path, 20 + 4 * sum(conv_floats(conv, bn) for conv, bn, _ in kept))
    names = {id(m): name for name, m in source.named_modules()}
    missing = {f"{names[id(module)]}.{key}" for conv, bn, _ in convs[len(kept):]
               for module in (conv, bn) if module is not None for key in module.state_dict()}
    return SimpleNamespace(path=path, num_convs=len(kept), missing=missing)


def test_prefix_loads_and_reports_the_rest(source, conv137, capsys):
    state_dict = load_state_dict_file(conv137.path, num_classes=NUM_CLASSES)
    printed = capsys.readouterr().out
    assert conv137.num_convs == 92
    assert "92 of 110 convolutions" in printed and "18 convolutions, yolo_head3.0.conv ... yolo_head1.1" in printed
    expected = source.state_dict()
    assert set(state_dict) == set(expected) - conv137.missing
    assert all(torch.equal(v, expected[k]) for k, v in state_dict.items() if not k.endswith("num_batches_tracked"))

    target = YoloBody(MASK, NUM_CLASSES)
    report = load_matching(target, state_dict)
    assert set(report["missing"]) == conv137.missing and not report["mismatched"]
    assert f"{len(conv137.missing)} model tensors not in the file" in describe_load(report, conv137.path)


def test_train_builds_model_from_prefix(source, conv137):
    cfg = SimpleNamespace(model_path=conv137.path, width_mult=None, depth_mult=None, seed=0, anchors_mask=MASK,
                          pretrained=False, input_shape=[64, 64], crop_shape=None, obj_prior=None, focal_loss=False,
                          focal_normalize="mean", decoupled_head=False)
    model, note = _build_model(cfg, NUM_CLASSES, SimpleNamespace(resuming=False))
    assert (cfg.width_mult, cfg.depth_mult) == (1.0, 1.0)
    assert torch.equal(model.make_five_conv2[4].bn.running_mean, source.make_five_conv2[4].bn.running_mean)
    assert not torch.equal(model.yolo_head3[0].conv.weight, source.yolo_head3[0].conv.weight)
    assert f"{len(conv137.missing)} model tensors not in the file" in note


def test_yolo_refuses_prefix_as_detector(conv137, files):
    with pytest.raises(ValueError, match="no prediction heads"):
        YOLO(model_path=conv137.path, classes_path=files.classes, input_shape=[64, 64], device="cpu")


def full_floats(num_classes):
    with torch.device("meta"):
        model = YoloBody(MASK, num_classes)
    return sum(conv_floats(conv, bn) for conv, bn, _ in darknet_convs(model))


@pytest.mark.parametrize("extra", [-2, 3])
def test_wrong_size_is_refused_with_the_numbers(source, tmp_path, extra):
    total = full_floats(NUM_CLASSES)
    last = darknet_convs(source)[-1]
    path = tmp_path / "odd.weights"
    write_sparse(path, total + extra)
    with pytest.raises(ValueError) as err:
        read_darknet_weights(str(path), NUM_CLASSES)
    message = str(err.value)
    assert f"has {total + extra} floats" in message and f"with {NUM_CLASSES} classes has {total}" in message
    assert f"{total} (first 110 convs, through yolo_head1.1)" in message
    if extra < 0:
        assert f"{total - conv_floats(*last[:2])} (first 109 convs, through yolo_head1.0.conv)" in message


def test_other_class_count_is_named(tmp_path):
    path = tmp_path / "yolov4.weights"
    write_sparse(path, 64_429_405)
    with pytest.raises(ValueError, match="fits the full network with 80 classes"):
        read_darknet_weights(str(path), NUM_CLASSES)


def test_bad_headers_and_truncation(tmp_path):
    path = tmp_path / "bad.weights"
    path.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ValueError, match=r"not a darknet weights file.*67324752\.0\.0.*zip"):
        read_darknet_weights(str(path), NUM_CLASSES)
    path.write_bytes(struct.pack("<ii", 0, 2))
    with pytest.raises(ValueError, match="truncated"):
        read_darknet_weights(str(path), NUM_CLASSES)
    write_sparse(path, 100)
    with open(path, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ValueError, match="truncated.*inside a float"):
        read_darknet_weights(str(path), NUM_CLASSES)
    with pytest.raises(ValueError, match="needs the class count"):
        load_state_dict_file(str(path))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_darknet_weights(str(tmp_path / "absent.weights"), NUM_CLASSES)


def test_darknet_scale_x_y_is_the_cfgs_in_output_order():
    by_mask = {tuple(int(i) for i in block["mask"].split(",")): float(block["scale_x_y"])
               for section, block in cfg_layers() if section == "[yolo]"}
    assert [by_mask[tuple(level)] for level in MASK] == DARKNET_SCALE == list(DARKNET_SCALE_X_Y)


def noise_image(seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def weights_yolo(files):
    return YOLO(model_path=files.weights, classes_path=files.classes, input_shape=[64, 64], confidence=0.05,
                device="cpu")


def test_yolo_detects_from_weights_with_darknet_scale(weights_yolo, files, capsys):
    assert weights_yolo.scale_x_y == DARKNET_SCALE
    boxes, scores, classes = weights_yolo.detect(noise_image())
    assert len(boxes) > 0 and np.isfinite(boxes).all() and (scores >= 0.05).all()
    assert set(classes.tolist()) <= {0, 1, 2}


def test_explicit_scale_x_y_wins(files):
    yolo = YOLO.__new__(YOLO)          # only the settings logic, no model
    yolo.__dict__.update(YOLO._defaults, model_path=files.weights, metadata={}, scale_x_y=None)
    yolo._adopt_metadata(given={"scale_x_y"})
    assert yolo.scale_x_y is None
    yolo._adopt_metadata(given=set())
    assert yolo.scale_x_y == DARKNET_SCALE


def test_converter_writes_pth_that_detects_the_same(weights_yolo, files):
    out = files.folder / "converted" / "yolov4.pth"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_darknet_weights.py"),
                             "--weights_path", files.weights, "--classes_path", files.classes,
                             f"--out_path={out}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "110 of 110 convolutions" in result.stdout
    meta = json.loads((out.parent / "yolov4.json").read_text())
    assert meta["scale_x_y"] == DARKNET_SCALE and meta["input_shape"] == [608, 608]
    assert meta["class_names"] == ["cat", "dog", "bird"] and meta["anchors_mask"] == MASK
    assert meta["anchors"][-1] == [459.0, 401.0] and meta["darknet_seen"] == 32_032_000

    converted = YOLO(model_path=str(out), input_shape=[64, 64], confidence=0.05, device="cpu")
    assert converted.scale_x_y == DARKNET_SCALE and converted.class_names == ["cat", "dog", "bird"]
    for ours, theirs in zip(converted.detect(noise_image()), weights_yolo.detect(noise_image())):
        np.testing.assert_array_equal(ours, theirs)


def test_converter_refuses_wrong_class_count(files, tmp_path):
    classes = tmp_path / "four.txt"
    classes.write_text("a\nb\nc\nd\n")
    out = tmp_path / "x.pth"
    with pytest.raises(ValueError, match="fits the full network with 3 classes"):
        convert(files.weights, str(classes), os.path.join(ROOT, "model_data", "yolo_anchors.txt"), MASK, [64, 64],
                str(out))
    assert not out.exists() and not (tmp_path / "x.json").exists()
