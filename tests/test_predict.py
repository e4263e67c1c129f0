"""Inference: Conv+BN folding, the YOLO class against a from-scratch reference, and predict.py run
headless as a user would (subprocess, no DISPLAY)."""
import math
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nets.fuse import InferenceMish, fuse_conv_bn, inference_model, onnx_mish
from nets.yolo import YoloBody
from test_utils_bbox import slow_nms
from utils.errors import UserError
from utils.deploy.compiled import compiled_inference_model
from yolo import YOLO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
ANCHORS_PATH = os.path.join(ROOT, "model_data", "yolo_anchors.txt")
NUM_CLASSES = 3


def small_model(seed=0):
    torch.manual_seed(seed)
    return YoloBody(MASK, NUM_CLASSES, width_mult=0.25, depth_mult=0.33)


def randomize_batchnorm(model, seed=1):
    """Running statistics and affine parameters far from the identity, so folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Weights of a small 3-class model whose heads lean towards objects of class 0 and spread their
    scores (no near-ties for float noise to reorder), and its classes file."""
    folder = tmp_path_factory.mktemp("yolo")
    model = randomize_batchnorm(small_model())
    with torch.no_grad():
        for head in (model.yolo_head1, model.yolo_head2, model.yolo_head3):
            head[1].weight.mul_(6)
            bias = head[1].bias.view(3, 5 + NUM_CLASSES)
            bias[:, 4] += 1.5                         # objectness
            bias[:, 5] += 1.5                         # class 0
    weights = folder / "weights.pth"
    torch.save(model.state_dict(), weights)
    classes = folder / "classes.txt"
    classes.write_text("cat\ndog\nbird\n")
    image = folder / "street scene.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(image)
    return {"folder": folder, "model": model, "weights": str(weights), "classes": str(classes), "image": str(image)}


@pytest.fixture(scope="module")
def yolo(files):
    return YOLO(model_path=files["weights"], classes_path=files["classes"], anchors_path=ANCHORS_PATH,
                input_shape=[64, 64], confidence=0.5, nms_iou=0.3, device="cpu")


def test_fuse_conv_bn_equals_eval_model():
    model = randomize_batchnorm(small_model())
    bn_count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    fused = fuse_conv_bn(model)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = model(x), fused(x)
    for e, g in zip(expected, got):
        assert torch.allclose(e, g, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(m.bias is not None for m in fused.modules() if isinstance(m, torch.nn.Conv2d)) == bn_count + 3
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == bn_count    # original untouched


def test_onnx_mish_equals_float64_mish_including_overflow():
    x = torch.cat([torch.linspace(-200, 200, 40001), torch.tensor([-1e30, -88.7, 88.7, 89.0, 1e30, 0.0])])
    reference = x.double() * torch.tanh(torch.log1p(torch.exp(x.double())))          # exp(1e30) = inf: tanh(inf) = 1
    got = onnx_mish(x)
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), reference, rtol=1e-6, atol=1e-7)


def test_inference_mish_equals_mish_and_inference_model_equals_eval_model():
    x = torch.cat([torch.linspace(-60, 60, 20001), torch.tensor([-1e4, -200.0, 89.0, 200.0, 1e4])])
    with torch.inference_mode():
        assert torch.allclose(InferenceMish()(x.clone()), F.mish(x), rtol=1e-6, atol=1e-6)
        model = randomize_batchnorm(small_model())
        images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
        for e, g in zip(model(images), inference_model(model, "cpu")(images)):
            assert torch.allclose(e, g, rtol=1e-4, atol=1e-5)


def test_unknown_setting_and_get_defaults():
    with pytest.raises(TypeError, match="confidance"):
        YOLO(confidance=0.3)
    assert YOLO.get_defaults("nms_iou") == 0.3
    with pytest.raises(KeyError, match="nope"):
        YOLO.get_defaults("nope")


def test_input_shape_must_be_multiples_of_32(files):
    with pytest.raises(ValueError, match="multiples of 32"):
        YOLO(model_path=files["weights"], classes_path=files["classes"], anchors_path=ANCHORS_PATH, input_shape=[100, 96])


def test_class_count_mismatch_is_refused(files, tmp_path):
    four = tmp_path / "four_classes.txt"
    four.write_text("a\nb\nc\nd\n")
    with pytest.raises(ValueError) as err:
        YOLO(model_path=files["weights"], classes_path=str(four), anchors_path=ANCHORS_PATH, device="cpu")
    message = str(err.value)
    assert files["weights"] in message and str(four) in message and "3" in message and "4" in message


def reference_detections(model, image, input_shape, confidence, nms_iou):
    """The whole pipeline from scratch: unfused model, letterbox by hand (bilinear, grey 128, centred), per-cell
    decode loop, slow NMS, letterbox undone."""
    h, w = input_shape
    iw, ih = image.size
    ratio = min(w / iw, h / ih)
    nw, nh = int(iw * ratio), int(ih * ratio)
    dx, dy = (w - nw) // 2, (h - nh) // 2
    canvas = np.full((h, w, 3), 128, dtype=np.uint8)
    canvas[dy:dy + nh, dx:dx + nw] = cv2.resize(np.asarray(image.convert("RGB")), (nw, nh),
                                                interpolation=cv2.INTER_LINEAR)
    resized = canvas.astype(np.float32) / 255.0
    with torch.no_grad():
        outputs = model(torch.from_numpy(resized).permute(2, 0, 1)[None])
    anchors = np.loadtxt(ANCHORS_PATH, delimiter=",").reshape(-1, 2)
    rows = []
    for out, mask in zip(outputs, MASK):
        grid_h, grid_w = out.shape[2:]
        pred = out[0].view(3, 5 + NUM_CLASSES, grid_h, grid_w)
        for a, anchor in enumerate(mask):
            for gy in range(grid_h):
                for gx in range(grid_w):
                    p = pred[a, :, gy, gx].tolist()
                    cx = (1 / (1 + math.exp(-p[0])) + gx) * w / grid_w
                    cy = (1 / (1 + math.exp(-p[1])) + gy) * h / grid_h
                    bw, bh = math.exp(p[2]) * anchors[anchor][0], math.exp(p[3]) * anchors[anchor][1]
                    probs = [1 / (1 + math.exp(-v)) for v in p[4:]]
                    c = int(np.argmax(probs[1:]))
                    rows.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, probs[0] * probs[1 + c], c])
    rows = torch.tensor([r for r in rows if r[4] >= confidence])
    kept = rows[slow_nms(rows[:, :4], rows[:, 4], rows[:, 5].long(), nms_iou)]
    sx, sy = iw / nw, ih / nh
    boxes = ((kept[:, :4] - torch.tensor([dx, dy, dx, dy])) * torch.tensor([sx, sy, sx, sy])).clamp(min=0)
    boxes = torch.minimum(boxes, torch.tensor([iw, ih] * 2, dtype=torch.float32))
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])        # wholly in the border: dropped
    return boxes[visible].numpy(), kept[visible, 4].numpy(), kept[visible, 5].long().numpy()


def by_position(boxes, scores, classes):
    """Detections as one array sorted by position, so float noise in near-equal scores cannot reorder them."""
    rows = np.column_stack([boxes, scores, classes]).astype(np.float64)
    return rows[np.lexsort((rows[:, 5], np.round(rows[:, 1], 2), np.round(rows[:, 0], 2)))]


def test_detect_matches_from_scratch_reference(yolo, files):
    image = Image.open(files["image"])
    got = yolo.detect(image)
    expected = reference_detections(files["model"], image, (64, 64), 0.5, 0.3)
    assert len(expected[0]) > 10
    assert got[0].shape == expected[0].shape and got[1].shape == got[2].shape == expected[1].shape
    np.testing.assert_allclose(by_position(*got), by_position(*expected), atol=2e-3)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")   # inside inductor
def test_compiled_yolo_detects_like_the_reference(files):
    compiled = YOLO(model_path=files["weights"], classes_path=files["classes"], anchors_path=ANCHORS_PATH,
                    input_shape=[64, 64], confidence=0.5, nms_iou=0.3, device="cpu", compile=True)
    assert compiled.forward_net is not compiled.net                   # export keeps the eager network
    image = Image.open(files["image"])
    got = compiled.detect(image)
    expected = reference_detections(files["model"], image, (64, 64), 0.5, 0.3)
    assert got[0].shape == expected[0].shape and len(expected[0]) > 10
    np.testing.assert_allclose(by_position(*got), by_position(*expected), atol=2e-3)


def test_compile_without_a_compiler_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="needs a C.. compiler"):
        compiled_inference_model(inference_model(small_model().eval(), "cpu"))


def test_auto_compile_compiles_long_runs_only(yolo, monkeypatch, capsys):
    from utils.deploy.compiled import AUTO_COMPILE_MIN_IMAGES, CompiledOrEager, auto_compile_choice

    assert YOLO._defaults["compile"] == "auto" and yolo.forward_net is yolo.net      # eager until a run says more
    chosen, line = auto_compile_choice(AUTO_COMPILE_MIN_IMAGES - 1, "cpu", "12 images")
    assert not chosen and line.startswith("Inference: eager PyTorch (12 images")
    yolo.use_fast_path(3, "3 images")
    assert yolo.forward_net is yolo.net and "eager" in capsys.readouterr().out
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/g++")
    yolo.use_fast_path(None, "a camera stream")                        # compiles lazily: nothing runs yet
    assert isinstance(yolo.forward_net, CompiledOrEager)
    assert "Inference: torch.compile (a camera stream" in capsys.readouterr().out
    monkeypatch.setattr(shutil, "which", lambda name: None)
    chosen, line = auto_compile_choice(None, "cpu", "fps")
    assert not chosen and "needs a C++ compiler" in line


def test_a_failed_compile_falls_back_to_the_eager_network():
    from utils.deploy.compiled import CompiledOrEager

    model = inference_model(small_model().eval(), "cpu")
    runner = CompiledOrEager(model)

    def broken(images):
        raise RuntimeError("inductor: no kernel for this\nmore")
    runner.compiled = broken
    images = torch.rand(1, 3, 64, 64)
    with pytest.warns(UserWarning, match="torch.compile failed .RuntimeError: inductor: no kernel for this."):
        got = runner(images)
    with torch.no_grad():
        for g, e in zip(got, model(images)):
            torch.testing.assert_close(g, e)
    assert runner.compiled is None                                     # warned once, then eager


def test_detect_shapes_bounds_and_array_input(yolo, files):
    image = Image.open(files["image"])
    boxes, scores, classes = yolo.detect(image)
    assert boxes.dtype == np.float32 and classes.dtype == np.int64 and len(boxes) > 0
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 120).all() and (boxes[:, [1, 3]] <= 90).all()
    assert (scores >= 0.5).all() and (np.diff(scores) <= 0).all()
    assert ((classes >= 0) & (classes < NUM_CLASSES)).all()
    again = yolo.detect(np.asarray(image.convert("RGB")))
    for a, b in zip((boxes, scores, classes), again):
        np.testing.assert_array_equal(a, b)


def test_detect_image_crop_count_and_heatmap(yolo, files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = Image.open(files["image"])
    _, _, classes = yolo.detect(image)
    drawn = yolo.detect_image(image, crop=True, count=True)
    assert drawn.size == image.size and drawn.mode == "RGB"
    assert np.abs(np.asarray(drawn, dtype=int) - np.asarray(image, dtype=int)).sum() > 0
    assert sorted(os.listdir(tmp_path / "img_crop")) == sorted(f"crop_{i}.png" for i in range(len(classes)))
    assert f"cat  :  {np.sum(classes == 0)}" in capsys.readouterr().out
    yolo.detect_heatmap(image, str(tmp_path / "heat" / "map.png"))
    with Image.open(tmp_path / "heat" / "map.png") as heat:
        assert heat.size[0] > 0 and heat.format == "PNG"


def run_predict(args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def model_args(files):
    return ["--model_path", files["weights"], "--classes_path", files["classes"], "--anchors_path", ANCHORS_PATH,
            "--input_shape", "[64, 64]", "--device", "cpu"]


def test_predict_single_image_headless(files, tmp_path):
    out = tmp_path / "out" / "result.png"
    run_predict([*model_args(files), "--image", files["image"], "--save_path", str(out)], cwd=tmp_path)
    with Image.open(out) as saved:
        assert saved.size == (120, 90)


def test_predict_directory_headless(files, tmp_path):
    source = tmp_path / "images"
    source.mkdir()
    image = Image.open(files["image"])
    for name in ("a.jpg", "b.PNG", "c.webp", "d.tif"):
        image.save(source / name)
    (source / "notes.txt").write_text("not an image")
    run_predict([*model_args(files), "--mode", "dir_predict", "--dir_origin_path", str(source),
                 "--dir_save_path", str(tmp_path / "out")], cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png", "c.png", "d.png"]
    for name in os.listdir(tmp_path / "out"):
        with Image.open(tmp_path / "out" / name) as saved:
            assert saved.size == (120, 90)


def test_predict_video_headless(files, tmp_path):
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    rng = np.random.default_rng(1)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    saved = str(tmp_path / "out.avi")
    result = run_predict([*model_args(files), "--mode", "video", "--video_path", video, "--video_save_path", saved],
                         cwd=tmp_path)
    assert "3 frames" in result.stdout
    capture = cv2.VideoCapture(saved)
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 3


def test_predict_rejects_unknown_mode_and_setting(capsys):
    import predict

    with pytest.raises(UserError, match="--mode must be one of"):
        predict.settings(["--mode", "bogus"])
    with pytest.raises(SystemExit):
        predict.settings(["--colour", "red"])
    assert "unknown setting --colour" in capsys.readouterr().err
    assert predict.settings(["--confidence", "0.3", "--input_shape", "[320, 320]"])["input_shape"] == [320, 320]
