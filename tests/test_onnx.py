"""ONNX export of the fused network, checked against the unfused torch model through onnxruntime."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from test_predict import ANCHORS_PATH, ROOT, by_position, randomize_batchnorm, small_model
from yolo import YOLO, YOLO_ONNX

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = randomize_batchnorm(small_model(seed=4))
    torch.save(model.state_dict(), folder / "weights.pth")
    (folder / "classes.txt").write_text("cat\ndog\nbird\n")
    settings = dict(classes_path=str(folder / "classes.txt"), anchors_path=ANCHORS_PATH, input_shape=[128, 128],
                    confidence=0.3)
    yolo = YOLO(model_path=str(folder / "weights.pth"), device="cpu", **settings)
    path = str(folder / "model.onnx")
    yolo.convert_to_onnx(False, path)
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (100, 140, 3), dtype=np.uint8)).save(folder / "in.png")
    return {"folder": folder, "model": model, "yolo": yolo, "path": path, "settings": settings}


def test_onnx_outputs_equal_torch(exported):
    session = onnxruntime.InferenceSession(exported["path"], providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "images" and model_input.shape == [1, 3, 128, 128]
    assert [o.name for o in session.get_outputs()] == ["output0", "output1", "output2"]
    images = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(6))
    got = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = exported["model"](images)
    for g, e in zip(got, expected):
        assert g.shape == tuple(e.shape)
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=1e-4)


def test_yolo_onnx_detects_like_yolo(exported):
    image = Image.open(exported["folder"] / "in.png")
    runner = YOLO_ONNX(onnx_path=exported["path"], **exported["settings"])
    expected = exported["yolo"].detect(image)
    got = runner.detect(image)
    assert len(expected[0]) > 0 and got[0].shape == expected[0].shape
    np.testing.assert_allclose(by_position(*got), by_position(*expected), atol=1e-3)


def test_yolo_onnx_refuses_another_input_size(exported):
    with pytest.raises(ValueError, match="input_shape"):
        YOLO_ONNX(onnx_path=exported["path"], **{**exported["settings"], "input_shape": [160, 160]})


@pytest.mark.skipif(importlib.util.find_spec("onnxsim") is not None, reason="onnxsim installed: nothing to warn about")
def test_simplify_without_onnxsim_warns_and_still_saves(exported):
    path = str(exported["folder"] / "simplified.onnx")
    with pytest.warns(UserWarning, match="onnxsim"):
        exported["yolo"].convert_to_onnx(True, path)
    onnx.checker.check_model(onnx.load(path))


def test_predict_onnx_mode_headless(exported, tmp_path):
    out = tmp_path / "onnx_result.png"
    settings = exported["settings"]
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "predict.py"), "--mode", "predict_onnx", "--onnx_save_path", exported["path"],
         "--classes_path", settings["classes_path"], "--anchors_path", ANCHORS_PATH, "--input_shape", "[128, 128]",
         "--image", str(exported["folder"] / "in.png"), "--save_path", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with Image.open(out) as saved:
        assert saved.size == (140, 100)
