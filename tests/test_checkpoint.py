"""Safe loading, atomic saving and key/shape-matched loading (utils/engine/checkpoint.py)."""
import os

import pytest
import torch

from nets.yolo import YoloBody
from utils.engine.checkpoint import (UnsafeWeightsError, atomic_save, describe_load, extract_state_dict, load_matching,
                                     load_state_dict_file, safe_load)

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


# torch notes the hand-made file's pickle protocol before refusing it: expected here.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(malicious_weights):
    bad, marker = malicious_weights
    with pytest.raises(UnsafeWeightsError, match="arbitrary code"):
        load_state_dict_file(str(bad))
    assert not marker.exists()


def test_plain_and_wrapped_state_dicts_load(tmp_path):
    sd = {"a.weight": torch.ones(2, 2), "a.bias": torch.zeros(2)}
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({"model": sd, "epoch": 3, "optimizer": {"state": {}}}, tmp_path / "wrapped.pth")
    for name in ("plain.pth", "wrapped.pth"):
        loaded = load_state_dict_file(str(tmp_path / name))
        assert set(loaded) == set(sd) and torch.equal(loaded["a.weight"], sd["a.weight"])
    with pytest.raises(ValueError, match="no state_dict"):
        extract_state_dict({"epoch": 3}, "x.pth")


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"\x80\x02}q\x00(X", "truncated or not a PyTorch")])
def test_broken_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        safe_load(str(path))
    with pytest.raises(FileNotFoundError, match="not found"):
        safe_load(str(tmp_path / "missing.pth"))


def test_atomic_save_interrupted_before_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    atomic_save({"epoch": torch.tensor(1)}, str(path))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between the temp file and the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": torch.tensor(2)}, str(path))
    monkeypatch.undo()
    assert safe_load(str(path))["epoch"].item() == 1
    assert os.listdir(tmp_path) == ["ckpt.pth"]          # no temp file left behind


def test_atomic_save_gives_the_mode_a_plain_open_would(tmp_path):
    atomic_save({"w": torch.zeros(1)}, str(tmp_path / "w.pth"))
    with open(tmp_path / "plain", "wb"):
        pass
    assert os.stat(tmp_path / "w.pth").st_mode & 0o777 == os.stat(tmp_path / "plain").st_mode & 0o777


def test_load_matching_reports_other_class_count():
    source = YoloBody(MASK, 80, width_mult=0.25, depth_mult=0.33).state_dict()
    target = YoloBody(MASK, 3, width_mult=0.25, depth_mult=0.33)
    report = load_matching(target, source)
    assert set(report["mismatched"]) == {f"yolo_head{i}.1.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    assert not report["missing"] or set(report["missing"]) == set(report["mismatched"])
    assert torch.equal(target.state_dict()["backbone.conv1.conv.weight"], source["backbone.conv1.conv.weight"])
    text = describe_load(report, "coco.pth")
    assert "shape mismatch" in text and "yolo_head1.1.weight" in text
