"""utils/paths.py: the shipped files (model_data/, the sample VOCdevkit/) are found from any working directory."""
import os
import subprocess
import sys

import pytest

from utils.paths import REPO_ROOT, resource_path
from utils.utils import get_anchors, get_classes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_the_repository_root_holds_train_py():
    assert os.path.samefile(REPO_ROOT, ROOT) and os.path.isfile(os.path.join(REPO_ROOT, "train.py"))


def test_shipped_files_are_read_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    anchors, count = get_anchors("model_data/yolo_anchors.txt")
    assert count == 9 and anchors.shape == (9, 2)
    assert get_classes("model_data/sample_classes.txt")[1] == 4
    assert resource_path("model_data/yolo_anchors.txt") == os.path.join(REPO_ROOT, "model_data", "yolo_anchors.txt")


def test_the_working_directory_wins_and_unknown_paths_are_left_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model_data").mkdir()
    (tmp_path / "model_data" / "yolo_anchors.txt").write_text("1,2, 3,4")
    assert get_anchors("model_data/yolo_anchors.txt")[1] == 2                 # the user's own file, not the shipped one
    assert resource_path("model_data/nothing.txt") == "model_data/nothing.txt"
    assert resource_path(str(tmp_path / "x.txt")) == str(tmp_path / "x.txt")
    assert resource_path("") == ""
    with pytest.raises(FileNotFoundError, match="anchors file not found: model_data/nothing.txt$"):
        get_anchors("model_data/nothing.txt")


def test_train_py_run_from_another_directory_reads_the_shipped_class_and_anchor_files(tmp_path):
    # Lists and VOCdevkit that do not exist: the run stops there (exit 2), after reading classes and anchors.
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--train_annotation_path", "none.txt",
                             "--val_annotation_path", "none.txt", "--VOCdevkit_path", "nowhere", "--save_dir", "logs"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "not found" in result.stderr and "nowhere" in result.stderr
    assert "model_data" not in result.stderr


def test_voc_annotation_run_from_another_directory_builds_lists_from_the_shipped_sample(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "voc_annotation.py"), "--annotation_mode", "2",
                             "--lists_dir", "."], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    train_lines = (tmp_path / "2007_train.txt").read_text().splitlines()
    assert len(train_lines) == 162 and (tmp_path / "2007_val.txt").exists()
    assert train_lines[0].startswith(os.path.join(REPO_ROOT, "VOCdevkit", "VOC2007", "JPEGImages"))
