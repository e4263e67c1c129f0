"""ONNX export of the fused network, checked against the unfused torch model through onnxruntime."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from test_predict import ANCHORS_PATH, MASK, ROOT, by_position, randomize_batchnorm, small_model
from nets.CSPdarknet import Mish
from nets.yolo import YoloBody
from utils.deploy.decode import decode_outputs
from utils.engine.run_metadata import write_metadata
from yolo import YOLO, YOLO_ONNX, onnx_path_of

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


def test_onnx_predictions_equal_torch_decode_with_a_dynamic_batch(exported):
    session = onnxruntime.InferenceSession(exported["path"], providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "images" and model_input.shape == ["batch", 3, 128, 128]
    (output,) = session.get_outputs()
    # 3 anchors x (4^2 + 8^2 + 16^2) cells at 128 px; 5 + 3 classes.
    assert output.name == "predictions" and output.shape == ["batch", 3 * (16 + 64 + 256), 8]
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(6))
    (got,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = decode_outputs(exported["model"](images), exported["yolo"].anchors, MASK, (128, 128))
    assert got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-3, rtol=1e-4)


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
        [sys.executable, os.path.join(ROOT, "predict.py"), "--mode", "predict_onnx", "--onnx_path", exported["path"],
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
                       for p in quantized["images"][:2]]).transpose(0, 3, 1, 2)
    (got,) = onnxruntime.InferenceSession(quantized["path"], providers=["CPUExecutionProvider"]).run(
        None, {"images": images})
    (expected,) = onnxruntime.InferenceSession(exported["path"], providers=["CPUExecutionProvider"]).run(
        None, {"images": images})
    assert got.shape == expected.shape
    # 8-bit activations through ~70 layers: probabilities within a few hundredths, box centres within a few
    # pixels (the decode itself stays float: input pixels are not rounded to 1/256 of their range).
    assert np.abs(got[..., 4:] - expected[..., 4:]).mean() < 0.03
    centres = lambda p: (p[..., :2] + p[..., 2:4]) / 2                                      # noqa: E731
    assert np.abs(centres(got) - centres(expected)).mean() < 2.0


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


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """Weights as train.py leaves them for the default assignment: decoupled head, 2 classes, scale_x_y 2 (the
    centre decoding neighbour cells train), run metadata with a calibrated threshold; and their export."""
    folder = tmp_path_factory.mktemp("onnx_meta")
    torch.manual_seed(3)
    model = randomize_batchnorm(YoloBody(MASK, 2, width_mult=0.25, depth_mult=0.33, decoupled_head=True))
    weights = str(folder / "best_epoch_weights.pth")
    torch.save(model.state_dict(), weights)
    write_metadata(weights, {"class_names": ["star", "ring"], "input_shape": [128, 128], "letterbox_image": True,
                             "scale_x_y": [2.0, 2.0, 2.0], "score_threshold": 0.2, "score_threshold_images": 40,
                             "score_threshold_objects": 90, "anchors": np.loadtxt(ANCHORS_PATH, delimiter=",").tolist()})
    for i, size in enumerate([(100, 140), (160, 120)]):
        rng = np.random.default_rng(10 + i)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img_{i}.png")
    yolo = YOLO(model_path=weights, device="cpu")
    yolo.convert_to_onnx(False, onnx_path_of(weights))
    return {"folder": folder, "weights": weights, "yolo": yolo, "onnx": onnx_path_of(weights)}


def test_export_carries_the_model_metadata(trained_like):
    from utils.deploy.onnx_export import FORMAT

    props = {p.key: p.value for p in onnx.load(trained_like["onnx"]).metadata_props}
    assert props["format"] == FORMAT and "predictions" in props["outputs"] and props["project_version"]
    assert json.loads(props["class_names"]) == ["star", "ring"]
    assert json.loads(props["input_shape"]) == [128, 128] and json.loads(props["letterbox_image"]) is True
    assert json.loads(props["score_threshold"]) == 0.2 and json.loads(props["score_threshold_objects"]) == 90
    assert json.loads(props["scale_x_y"]) == [2.0, 2.0, 2.0]


def test_onnx_detects_as_pytorch_from_the_file_alone(trained_like):
    runner = YOLO_ONNX(onnx_path=trained_like["onnx"])
    assert runner.class_names == ["star", "ring"] and runner.input_shape == [128, 128]
    assert runner.confidence == pytest.approx(0.2) == trained_like["yolo"].confidence
    found = 0
    for i in range(2):
        image = Image.open(trained_like["folder"] / f"img_{i}.png")
        expected, got = trained_like["yolo"].detect(image), runner.detect(image)
        assert got[0].shape == expected[0].shape
        found += len(got[0])
        if not len(got[0]):
            continue
        got, expected = by_position(*got), by_position(*expected)
        assert np.abs(got[:, :4] - expected[:, :4]).max() <= 0.5          # pixels
        assert np.abs(got[:, 4] - expected[:, 4]).max() <= 1e-4           # scores
        np.testing.assert_array_equal(got[:, 5], expected[:, 5])           # classes
    assert found > 0


def test_cli_export_then_predict_onnx_prints_the_pytorch_detections(trained_like, tmp_path):
    weights, image = trained_like["weights"], str(trained_like["folder"] / "img_0.png")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    predict = [sys.executable, os.path.join(ROOT, "predict.py")]
    onnx_path = str(tmp_path / "exported.onnx")

    def found_line(*args):
        result = subprocess.run(predict + list(args), cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        return [line for line in result.stdout.splitlines() if line.startswith("img_0.png:")]

    exported = subprocess.run(predict + ["--mode", "export_onnx", "--model_path", weights, "--onnx_save_path", onnx_path],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert exported.returncode == 0, exported.stderr[-3000:]
    torch_line = found_line("--model_path", weights, "--source", image)
    onnx_line = found_line("--mode", "predict_onnx", "--onnx_path", onnx_path, "--source", image)
    assert torch_line and [line.split(" -> ")[0] for line in onnx_line] == [line.split(" -> ")[0] for line in torch_line]


def test_export_goes_beside_the_weights_by_default(trained_like, tmp_path):
    import shutil

    weights = tmp_path / "last_epoch_weights.pth"
    shutil.copy(trained_like["weights"], weights)
    shutil.copy(trained_like["weights"].replace(".pth", ".json"), tmp_path / "last_epoch_weights.json")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--mode", "export_onnx",
                             "--model_path", str(weights), "--simplify", "False"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "last_epoch_weights.onnx").is_file()


def test_an_older_export_still_runs_with_a_warning(trained_like, tmp_path):
    """The raw-output export of before (three head outputs, batch 1, no metadata) runs on the settings given."""
    path = str(tmp_path / "old.onnx")
    yolo = trained_like["yolo"]
    torch.onnx.export(yolo.net, (torch.zeros(1, 3, 128, 128),), path, dynamo=False, opset_version=13,
                      input_names=["images"], output_names=["output0", "output1", "output2"])
    classes = tmp_path / "classes.txt"
    classes.write_text("star\nring\n")
    with pytest.warns(UserWarning, match="no metadata"):
        runner = YOLO_ONNX(onnx_path=path, classes_path=str(classes), input_shape=[128, 128],
                           scale_x_y=[2.0, 2.0, 2.0], confidence=0.2)
    image = Image.open(trained_like["folder"] / "img_1.png")
    np.testing.assert_allclose(by_position(*runner.detect(image)), by_position(*yolo.detect(image)), atol=1e-3)


def test_yolo_onnx_refuses_a_file_of_another_model(tmp_path):
    path = str(tmp_path / "other.onnx")
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.zeros(1, 3, 32, 32),), path, dynamo=False,
                      input_names=["x"], output_names=["y"])
    with pytest.raises(ValueError, match="not a YOLOv4 export"):
        YOLO_ONNX(onnx_path=path)
