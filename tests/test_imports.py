"""Imports flow one way, floor by floor, and no module imports itself back through others.

The floors (docs/architecture.md), each importing only from the floors below it or from its own package:
    6  entry scripts (top level, tools/, bench/) and upstream's alias modules (utils/utils_fit.py, ...)
    5  utils/engine   training, epoch loop, checkpoints, run folders, studies
    4  utils/metrics  evaluation, mAP, error breakdown, plots
    3  utils/deploy   decoding / NMS, compile, ONNX int8, darknet weights
    2  utils/data     dataset formats, lists, checks, loader, augmentation
    1  utils/         shared pieces: atomic writes, errors, settings, paths, upstream's utils.utils
    0  nets/          the network and its loss; imports nothing of utils/
Every import statement counts, also those inside functions (a cycle hidden in a function still ties the modules
together). The graph is read from the source with ``ast``, so nothing is imported to check it.
"""
import ast
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nets", "utils")
ENTRY_FOLDERS = ("tools", "bench")        # scripts, like the top-level ones
SUBPACKAGE_FLOORS = {"data": 2, "deploy": 3, "metrics": 4, "engine": 5}
ENTRY_FLOOR = 6
# Upstream's module names, kept as aliases of the modules that hold the code now (same module object).
UPSTREAM_ALIASES = {"utils.utils_bbox": "utils.deploy.decode", "utils.utils_fit": "utils.engine.epoch",
                    "utils.utils_map": "utils.metrics.mean_ap", "utils.dataloader": "utils.data.dataloader",
                    "utils.callbacks": "utils.engine.run_log"}


def project_modules():
    """``{module name: file path}`` of every project module (tests excluded), packages walked recursively."""
    modules = {}
    for name in os.listdir(ROOT):
        if name.endswith(".py"):
            modules[name[:-3]] = os.path.join(ROOT, name)
    for folder in PACKAGES + ENTRY_FOLDERS:
        for parent, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            package = os.path.relpath(parent, ROOT).replace(os.sep, ".")
            for name in files:
                if name.endswith(".py") and name != "__init__.py":
                    modules[f"{package}.{name[:-3]}"] = os.path.join(parent, name)
    return modules


def imported_names(path):
    """Dotted names a file imports (``from a import b`` yields ``a.b`` and ``a``: b may be a module or a name)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph():
    modules = project_modules()
    return {module: sorted(name for name in imported_names(path) if name in modules and name != module)
            for module, path in modules.items()}


def floor(module):
    """The floor of a module (see the module docstring)."""
    parts = module.split(".")
    if parts[0] == "nets":
        return 0
    if parts[0] != "utils" or module in UPSTREAM_ALIASES:
        return ENTRY_FLOOR
    if len(parts) > 2 and parts[1] in SUBPACKAGE_FLOORS:
        return SUBPACKAGE_FLOORS[parts[1]]
    return 1


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in graph[module]:
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in graph:
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "utils.metrics.evaluation" in graph["get_map"] and "nets.fuse" in graph["utils.metrics.evaluation"]
    assert "nets.boxes" in graph["nets.yolo_training"]
    assert "utils.engine.trainer" in graph and "utils.data.voc" in graph["utils.data.data_source"]


def test_imports_go_down_the_floors():
    # Each subpackage has a floor of its own, so an import on the same floor stays in its package.
    wrong_way = [f"{module} (floor {floor(module)}) -> {target} (floor {floor(target)})"
                 for module, targets in import_graph().items() for target in targets if floor(target) > floor(module)]
    assert wrong_way == []


def test_nets_imports_nothing_of_utils():
    assert [(m, t) for m, ts in import_graph().items() if m.startswith("nets.") for t in ts if t.startswith("utils")] == []


def test_utils_holds_shared_pieces_and_subpackages_only():
    top = sorted(n for n in os.listdir(os.path.join(ROOT, "utils")) if n.endswith(".py"))
    aliases = sorted(a.split(".")[1] + ".py" for a in UPSTREAM_ALIASES)
    shared = sorted(set(top) - set(aliases) - {"__init__.py"})
    assert shared == ["atomic.py", "config.py", "errors.py", "paths.py", "utils.py", "version.py"]
    for sub in SUBPACKAGE_FLOORS:
        assert os.path.isfile(os.path.join(ROOT, "utils", sub, "__init__.py"))


@pytest.mark.parametrize("alias, module", sorted(UPSTREAM_ALIASES.items()))
def test_upstream_module_names_are_the_same_modules(alias, module):
    assert importlib.import_module(alias) is importlib.import_module(module)


def test_upstream_import_lines_run():
    # The lines of upstream's train.py, yolo.py and get_map.py whose names this project keeps (see
    # docs/architecture.md for the upstream names it does not provide).
    code = """
from nets.yolo import YoloBody
from nets.yolo_training import YOLOLoss, get_lr_scheduler, set_optimizer_lr, weights_init
from utils.dataloader import YoloDataset, yolo_dataset_collate
from utils.utils import get_anchors, get_classes, seed_everything, show_config
from utils.utils import cvtColor, preprocess_input, resize_image
from utils.utils_bbox import DecodeBox
import utils.callbacks, utils.utils_fit, utils.utils_map
"""
    exec(compile(code, "upstream_imports", "exec"), {})


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
