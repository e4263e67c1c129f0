"""Imports flow one way: entry scripts -> utils/ -> nets/, and no module imports itself back through others.

Every import statement counts, also those inside functions (a cycle hidden in a function still ties the modules
together). The graph is read from the source with ``ast``, so nothing is imported to check it.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nets", "utils")
ENTRY_FOLDERS = ("tools", "bench")        # scripts, like the top-level ones


def project_modules():
    """``{module name: file path}`` of every project module (tests excluded)."""
    modules = {}
    for name in os.listdir(ROOT):
        if name.endswith(".py"):
            modules[name[:-3]] = os.path.join(ROOT, name)
    for folder in PACKAGES + ENTRY_FOLDERS:
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith(".py") and name != "__init__.py":
                modules[f"{folder}.{name[:-3]}"] = os.path.join(ROOT, folder, name)
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


def layer(module):
    """0 for nets/, 1 for utils/, 2 for entry scripts (top level, tools/, bench/)."""
    top = module.split(".")[0]
    return {"nets": 0, "utils": 1}.get(top, 2)


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
    assert "utils.evaluation" in graph["get_map"] and "nets.fuse" in graph["utils.evaluation"]
    assert "nets.boxes" in graph["nets.yolo_training"]


def test_imports_point_from_entry_scripts_to_utils_to_nets():
    wrong_way = [f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
                 if layer(target) > layer(module)]
    assert wrong_way == []


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
