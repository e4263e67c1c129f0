"""The README is the user's manual (it must show the commands CI runs); docs/settings.md, which it links, lists every
train.py setting with its default."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def train_settings():
    """Names and default values of the module-level settings of train.py, read from its source."""
    tree = ast.parse(read("train.py"))
    return {node.targets[0].id: ast.literal_eval(node.value)
            for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and not node.targets[0].id.startswith("_")}


def test_every_train_setting_is_in_the_settings_reference_with_its_default():
    section = read(os.path.join("docs", "settings.md")).split("\n## train.py\n")[1].split("\n## ")[0]
    table = {name: ast.literal_eval(default.replace("\\|", "|"))
             for name, default in re.findall(r"^\| `(\w+)` \| `(.*?)` \|", section, flags=re.M)}
    settings = train_settings()
    assert settings, "no settings parsed from train.py"
    missing = sorted(set(settings) - set(table))
    assert not missing, f"docs/settings.md's train.py tables lack {missing}"
    stale = {name: (table[name], default) for name, default in settings.items() if table[name] != default}
    assert not stale, f"docs/settings.md's defaults differ from train.py (docs, train.py): {stale}"


def test_ci_runs_the_readme_test_command_and_installs_cpu_torch():
    readme, ci = read("README.md"), read(".ci/run")
    assert "python -m pytest -q" in readme and "python -m pytest -q" in ci
    assert "torch==2.13.0" in ci and "requirements-dev.txt" in ci


def test_readme_images_exist():
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", read("README.md")):
        assert os.path.isfile(os.path.join(ROOT, path)), f"README shows {path}, which does not exist"
