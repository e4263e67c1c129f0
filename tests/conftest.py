import os
import pickle
import sys

import pytest

# Tests import the project's top-level packages (nets, utils) and scripts from the repo root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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
