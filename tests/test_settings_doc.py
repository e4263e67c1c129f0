"""--help and docs/settings.md: every setting described and grouped, real examples, a current reference, and a
--help that answers before torch is imported."""
import importlib
import os
import shlex
import subprocess
import sys

import pytest

from tools.settings_doc import DOC_PATH, SCRIPTS, script_namespace, settings_markdown
from utils.config import (OTHER_GROUP, class_defaults, command_line_names, help_from_source, help_sections,
                          preset_paths, resolve_config, script_examples, script_settings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_settings_doc_is_current():
    with open(DOC_PATH, encoding="utf-8") as f:
        written = f.read()
    assert written == settings_markdown(), "docs/settings.md is stale: run python tools/settings_doc.py --write"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_setting_has_a_group_and_a_description(script):
    namespace = script_namespace(script)
    sections = help_sections(script_settings(namespace), os.path.join(ROOT, script), namespace.get("_LIMITS"))
    rows = [(group, row) for group, rows in sections for row in rows]
    assert len(rows) == len(script_settings(namespace))
    assert not [row.name for group, row in rows if group == OTHER_GROUP], "settings under no # --- group --- line"
    assert not [row.name for _, row in rows if not row.description], "settings without a description"


def test_imported_constants_are_not_settings():
    import get_map
    import voc_annotation
    from utils.metrics.evaluation import EVAL_CONFIDENCE, EVAL_NMS_IOU

    settings = script_settings(get_map.settings_namespace())
    assert "EVAL_CONFIDENCE" not in settings and "EVAL_NMS_IOU" not in settings
    assert (settings["confidence"], settings["nms_iou"]) == (EVAL_CONFIDENCE, EVAL_NMS_IOU)
    assert "FORMATS" not in script_settings(vars(voc_annotation))


@pytest.mark.parametrize("script", SCRIPTS)
def test_examples_are_real_commands(script):
    """2-3 examples per script, each naming only its settings (study.py: train.py's too) and existing presets;
    train.py's and study.py's show a preset, those of the scripts that read a dataset show --data."""
    examples = script_examples(os.path.join(ROOT, script))
    assert 2 <= len(examples) <= 3 and all(meaning for _, meaning in examples)
    namespace = script_namespace(script)
    settings = set(script_settings(namespace))
    if script == "study.py":
        settings |= set(script_settings(script_namespace("train.py"))) | {"sweep"}
    arguments = []
    for command, _ in examples:
        words = shlex.split(command)
        assert words[:2] == ["python", script], command
        arguments.append(words[2:])
        assert all(os.path.isfile(os.path.join(ROOT, path)) for path in preset_paths(words[2:])), command
        assert command_line_names(words[2:]) <= settings, command
        if script != "study.py":                        # values too (study's --sweep is no plain setting)
            resolve_config(namespace, words[2:])
    if script in ("train.py", "study.py"):
        assert any(preset_paths(args) for args in arguments)
    if script in ("train.py", "predict.py", "get_map.py", "study.py"):
        assert any("data" in command_line_names(args) for args in arguments)


@pytest.mark.parametrize("script", ["train.py", "study.py", "predict.py", "get_map.py", "voc_annotation.py"])
def test_help_answers_before_torch_is_imported(script):
    code = ("import runpy, sys\n"
            f"sys.argv = [{script!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({script!r}, run_name='__main__')\n"
            "except SystemExit as exit:\n"
            "    assert not exit.code, exit.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"usage: python {script} ") and "\nexamples:\n" in out and "\nsettings (" in out
    assert out.rstrip().endswith("torch not imported")


@pytest.mark.parametrize("script", ["predict.py", "get_map.py"])
def test_help_from_source_is_the_help_of_the_imported_settings(script, capsys):
    """predict.py's and get_map.py's --help, read from the sources before torch, is what their settings() prints."""
    import yolo

    assert class_defaults(os.path.join(ROOT, "yolo.py"), "YOLO") == yolo.YOLO._defaults
    path = os.path.join(ROOT, script)
    help_from_source(path, ["--data", "x"], defaults_of=[("yolo.py", "YOLO")])     # no --help: nothing
    assert capsys.readouterr().out == ""
    outputs = []
    for show_help in (lambda: help_from_source(path, ["--help"], defaults_of=[("yolo.py", "YOLO")]),
                      lambda: importlib.import_module(script[:-3]).settings(["--help"])):
        with pytest.raises(SystemExit) as exit:
            show_help()
        assert exit.value.code == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and "--letterbox_image" in outputs[0]
