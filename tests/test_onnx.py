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
from nets.CSPdarknet import Mish
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


@pytest.fixture(scope="module")
def quantized(exported):
    """The int8 model of the exported one, calibrated on 4 random images."""
    folder, rng = exported["folder"], np.random.default_rng(8)
    paths = []
    for i in range(4):
        path = folder / f"calibration_{i}.png"
        Image.fromarray(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    exported["yolo"].convert_to_onnx(False, str(folder / "quant.onnx"), int8_images=paths)
    return {"path": str(folder / "quant_int8.onnx"), "images": paths}


def test_int8_model_is_quantized_and_calibrated_on_the_given_images(exported, quantized):
    from yolo import int8_path

    assert int8_path(str(exported["folder"] / "quant.onnx")) == quantized["path"]
    model = onnx.load(quantized["path"])
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= sum(1 for m in exported["model"].modules() if isinstance(m, torch.nn.Conv2d))
    # The input's range comes from the calibration images, preprocessed as inference does: [0, 1] pixel values
    # whose maximum is that of the letterboxed images (uint8 with zero in range: scale = max / 255).
    from utils.data.preprocess import network_input, open_image

    top = max(network_input(open_image(p), [128, 128], True)[0].max() for p in quantized["images"])
    quantize_input = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images")
    scale = next(t for t in model.graph.initializer if t.name == quantize_input.input[1])
    assert onnx.numpy_helper.to_array(scale) == pytest.approx(top / 255, rel=1e-5)


def test_exported_mish_avoids_softplus_and_stays_float_in_int8(exported, quantized):
    from utils.deploy.onnx_int8 import mish_node_names

    mish_count = sum(isinstance(m, Mish) for m in exported["model"].modules())
    fp32 = onnx.load(exported["path"]).graph
    assert "Softplus" not in {node.op_type for node in fp32.node}
    assert len(mish_node_names(fp32)) == 6 * mish_count
    # In the int8 graph each Mish reads one dequantized tensor, and only its result is quantized again.
    graph = onnx.load(quantized["path"]).graph
    producer = {out: node for node in graph.node for out in node.output}
    chain = [node for node in graph.node if node.name in set(mish_node_names(graph))]
    assert len(chain) == 6 * mish_count
    assert {node.op_type for node in chain} == {"Exp", "Mul", "Add", "Div"}
    assert all(producer[node.input[0]].op_type == "DequantizeLinear" for node in chain if node.op_type == "Exp")
    quantized_inputs = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    assert len(quantized_inputs & {out for node in chain for out in node.output}) == mish_count


def test_int8_model_stays_close_to_fp32(exported, quantized):
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128)), dtype=np.float32) / 255
                       for p in quantized["images"][:1]]).transpose(0, 3, 1, 2)
    session = onnxruntime.InferenceSession(quantized["path"], providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images})
    with torch.no_grad():
        expected = exported["model"](torch.from_numpy(images))
    for g, e in zip(got, expected):
        e = e.numpy()
        assert g.shape == e.shape
        # 8-bit activations through ~70 layers: errors of a few percent of the output range, not more.
        assert np.abs(g - e).max() < 0.1 * np.abs(e).max()
        assert np.corrcoef(g.ravel(), e.ravel())[0, 1] > 0.99


def test_int8_export_without_onnxruntime_says_what_to_install(monkeypatch):
    import utils.deploy.onnx_int8 as onnx_int8

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ValueError, match="pip install onnx onnxruntime"):
        onnx_int8.require_onnxruntime_quantization()


def test_calibration_paths_spread_over_the_list(tmp_path):
    from predict import calibration_paths

    lines = [f"/data/img_{i}.jpg 1,2,30,40,0" for i in range(10)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    assert calibration_paths(str(tmp_path / "train.txt"), 3) == ["/data/img_0.jpg", "/data/img_4.jpg",
                                                                 "/data/img_9.jpg"]
    assert len(calibration_paths(str(tmp_path / "train.txt"), 64)) == 10
    with pytest.raises(ValueError, match="not found"):
        calibration_paths(str(tmp_path / "missing.txt"), 3)
