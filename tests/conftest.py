import os
import pickle
import sys

import pytest

# Tests import the project's top-level packages (nets, utils) and scripts from the repo root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


from sample_lists import SAMPLE_LIST_IDS, sample_lines  # noqa: E402 (needs the path above)


class _CodeExecutionMarker:
    """Unpickling this object creates a file: it stands for arbitrary code execution."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def malicious_weights(tmp_path):
    """``(path, marker)``: a .pth whose unpickling would create ``marker``."""
    path, marker = tmp_path / "evil.pth", tmp_path / "code_ran"
    with open(path, "wb") as f:
        pickle.dump({"backbone.conv1.conv.weight": _CodeExecutionMarker(str(marker))}, f)
    return path, marker


@pytest.fixture()
def lists(tmp_path):
    """Training and validation lists of 8 and 4 shipped sample images: the train.py arguments naming them."""
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("\n".join(sample_lines(SAMPLE_LIST_IDS)) + "\n")
    val.write_text("\n".join(sample_lines(("000010", "000011", "000012", "000013"))) + "\n")
    return ["--train_annotation_path", str(train), "--val_annotation_path", str(val)]
