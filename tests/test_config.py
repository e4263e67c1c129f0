"""Command-line overrides of script settings (utils/config.py)."""
import io
import os
import re
import subprocess
import sys
import time

import pytest

from utils.config import (ConfigError, SettingDoc, _coerce, parse_limit, parse_overrides, parse_value, print_help,
                          read_preset, resolve_config, script_docs, script_settings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULTS = {"focal_loss": False, "input_shape": [416, 416], "Init_lr": 1e-2, "model_path": "", "resume": False,
            "num_workers": 4, "save_dir": "logs", "Min_lr": None}


def test_literals_and_both_syntaxes():
    cfg = parse_overrides(DEFAULTS, ["--focal_loss", "True", "--input_shape=[320, 320]", "--num_workers", "0",
                                     "--model_path", "/data/my weights/best.pth"])
    assert cfg["focal_loss"] is True
    assert cfg["input_shape"] == [320, 320]
    assert cfg["num_workers"] == 0
    assert cfg["model_path"] == "/data/my weights/best.pth"
    assert cfg["Init_lr"] == 1e-2 and DEFAULTS["focal_loss"] is False   # defaults untouched


def test_type_coercions():
    cfg = parse_overrides(DEFAULTS, ["--Init_lr", "1", "--save_dir", "2024", "--input_shape", "(256, 320)",
                                     "--focal_loss", "1", "--Min_lr", "1e-5"])
    assert cfg["Init_lr"] == 1.0 and isinstance(cfg["Init_lr"], float)
    assert cfg["save_dir"] == "2024"
    assert cfg["input_shape"] == [256, 320]
    assert cfg["focal_loss"] is True
    assert cfg["Min_lr"] == 1e-5
    assert parse_value("false") is False and parse_value("None") is None and parse_value("a b") == "a b"


def test_bool_setting_declared_path_accepts_a_path():
    limits = {"resume": "path"}
    cfg = parse_overrides(DEFAULTS, ["--resume", "logs/last_checkpoint.pth"], limits)
    assert cfg["resume"] == "logs/last_checkpoint.pth"
    assert parse_overrides(DEFAULTS, ["--resume", "True"], limits)["resume"] is True
    with pytest.raises(ConfigError, match="--resume takes True or False, got 'logs/x.pth'"):
        parse_overrides(DEFAULTS, ["--resume", "logs/x.pth"])


def test_unknown_name_suggests_the_near_miss():
    with pytest.raises(ConfigError) as err:
        parse_overrides(DEFAULTS, ["--focal_los", "True"])
    assert err.value.message == "unknown setting --focal_los; did you mean --focal_loss?"


def test_resolve_config_prints_the_error_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        resolve_config({"focal_loss": False}, ["--focal", "1"])
    assert exit_info.value.code == 2
    assert "error: unknown setting --focal; --help lists the 1 settings" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--Init_lr"], "--Init_lr needs a value"),
    (["--num_workers", "--focal_loss"], "--num_workers needs a value"),
    (["train.py"], "unexpected argument"),
    (["--Init_lr", "fast"], "--Init_lr takes a number, got 'fast'"),
])
def test_malformed_command_lines(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides(DEFAULTS, argv)


def test_help_lists_settings_with_comments(capsys):
    namespace = {"__file__": "train.py"}
    exec(compile(open("train.py").read(), "train.py", "exec"), namespace)
    with pytest.raises(SystemExit) as exit_info:
        resolve_config(namespace, ["--help"], script_path="train.py")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--focal_gamma" in out and "down-weights easy examples" in out
    buffer = io.StringIO()
    print_help({"x": 1}, "train.py", out=buffer)
    assert "--x" in buffer.getvalue()


SCRIPT = """\"\"\"A script.\"\"\"
import os
from math import pi

_EXAMPLES = (("python script.py --size 4", "a bigger size"),)
_DESCRIBED_IN = ("described.py",)
# --- data ---
root = "a#b"        # where: a # in a string is no comment
# what is described,
# over two lines
size = 3
# --- model ---
width = 1.0         # channel multiplier
"""
DESCRIBED = """class Detector:
    _defaults = {
        # --- inference ---
        # keep boxes above this
        "confidence": 0.5,
        "device": "cpu",      # where it runs
        "width": 2.0,         # described in the script already
    }
"""


def test_help_reads_groups_descriptions_and_examples_from_the_source(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    (tmp_path / "described.py").write_text(DESCRIBED)
    path = str(tmp_path / "script.py")
    assert script_docs(path) == {"root": SettingDoc("data", "where: a # in a string is no comment"),
                                 "size": SettingDoc("data", "what is described, over two lines"),
                                 "width": SettingDoc("model", "channel multiplier"),
                                 "confidence": SettingDoc("inference", "keep boxes above this"),
                                 "device": SettingDoc("inference", "where it runs")}
    namespace = {"__file__": path, "os": os, "pi": 3.14, "root": "a#b", "size": 3, "width": 1.0, "confidence": 0.5}
    defaults = script_settings(namespace)
    assert defaults == {"root": "a#b", "size": 3, "width": 1.0, "confidence": 0.5}      # pi is imported: no setting
    buffer = io.StringIO()
    print_help({**defaults, "undescribed": 1}, path, out=buffer)
    text = buffer.getvalue()
    assert text.startswith("usage: python script.py [preset.py ...] [--name value ...]\n\nA script.\n\nexamples:\n"
                           "  python script.py --size 4\n      a bigger size\n")
    headings = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings[2:] == ["data:", "model:", "inference:", "other:"]
    assert "--size" in text.split("data:")[1].split("model:")[0]


def test_script_settings_exclude_modules_and_functions():
    namespace = {"__file__": "train.py"}
    exec(compile(open("train.py").read(), "train.py", "exec"), namespace)
    cfg = resolve_config(namespace, [])
    assert "sys" not in cfg and "main" not in cfg
    for name in ("classes_path", "focal_loss", "focal_alpha", "focal_gamma", "UnFreeze_Epoch", "Freeze_Train",
                 "device", "width_mult", "resume", "distributed", "seed", "fp16", "eval_period"):
        assert name in cfg


def test_preset_file_then_command_line_overrides(tmp_path):
    import train
    from utils.config import ConfigError, read_preset, resolve_config

    config = resolve_config(vars(train), [os.path.join(ROOT, "config", "quickstart.py"), "--UnFreeze_Epoch", "5"])
    assert (config["width_mult"], config["input_shape"], config["mixup"]) == (0.25, [160, 160], False)
    assert config["UnFreeze_Epoch"] == 5 and config["Init_lr"] == 8e-3
    defaults = {"seed": 11, "input_shape": [416, 416], "name": "x"}
    for text, message in (("sed = 3\n", "did you mean --seed?"), ("seed = 1 + 2\n", "not a Python literal"),
                          ("import os\n", "only 'name = value' lines"), ("seed = (\n", "not valid Python")):
        path = tmp_path / "preset.py"
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            read_preset(str(path), defaults)
    path.write_text('"""doc"""\nseed = 3   # a comment\ninput_shape = (320, 320)\n')
    assert read_preset(str(path), defaults) == {"seed": 3, "input_shape": [320, 320]}


def test_several_presets_apply_in_order_then_the_command_line(tmp_path):
    import train
    from utils.config import resolve_config
    from utils.engine.trainer import given_settings

    later = tmp_path / "later.py"
    later.write_text("input_shape = [320, 320]\nUnFreeze_Epoch = 10\n")
    argv = [os.path.join(ROOT, "config", "quickstart.py"), str(later), "--UnFreeze_Epoch", "3"]
    config = resolve_config(vars(train), argv)
    # quickstart's width, the later file's size over quickstart's 160, the command line over both.
    assert (config["width_mult"], config["input_shape"], config["UnFreeze_Epoch"]) == (0.25, [320, 320], 3)
    assert {"width_mult", "input_shape", "UnFreeze_Epoch"} <= given_settings(argv, vars(train))


@pytest.mark.parametrize("preset", ["quickstart", "voc", "finetune"])
def test_shipped_presets_hold_only_train_settings(preset):
    import train
    from utils.config import read_preset, script_settings

    assert read_preset(os.path.join(ROOT, "config", f"{preset}.py"), script_settings(vars(train)))



TYPED = {**DEFAULTS, "anchors_mask": [[6, 7, 8], [3, 4, 5], [0, 1, 2]], "level_balance": [0.4, 1.0, 4.0],
         "Unfreeze_batch_size": 4, "mosaic": True, "width_mult": None, "iou_thresh": 0.213, "label_smoothing": 0,
         "optimizer_type": "sgd", "sets": [("2007", "train"), ("2007", "val")], "sweep": {}}
LIMITS = {"Init_lr": ">0", "Min_lr": ">0", "width_mult": ">0", "Unfreeze_batch_size": ">=1", "input_shape": ">=32",
          "iou_thresh": ">0, <1, None", "label_smoothing": "number, >=0, <1", "resume": "path",
          "optimizer_type": ("sgd", "adam", "adamw"), "sets": "any length", "level_balance": ">=0"}


def typed(*argv):
    return parse_overrides(TYPED, list(argv), LIMITS)


def typed_error(*argv):
    with pytest.raises(ConfigError) as err:
        typed(*argv)
    return err.value.message


def test_typed_good_values():
    cfg = typed("--input_shape", "[320, 320]", "--focal_loss=false", "--Init_lr", "1", "--mosaic", "FALSE",
                "--anchors_mask", "[[3, 4, 5], [1, 2, 3], [0, 1, 2]]", "--level_balance", "(1, 1, 4)",
                "--Unfreeze_batch_size", "2", "--width_mult", "0.5", "--Min_lr", "1e-5")
    assert cfg["input_shape"] == [320, 320] and cfg["focal_loss"] is False and cfg["mosaic"] is False
    assert cfg["Init_lr"] == 1.0 and isinstance(cfg["Init_lr"], float)                 # int -> float
    assert cfg["anchors_mask"] == [[3, 4, 5], [1, 2, 3], [0, 1, 2]]
    assert cfg["level_balance"] == [1.0, 1.0, 4.0] and all(isinstance(v, float) for v in cfg["level_balance"])
    assert (cfg["Unfreeze_batch_size"], cfg["width_mult"], cfg["Min_lr"]) == (2, 0.5, 1e-5)
    assert typed("--input_shape", "(256, 320)")["input_shape"] == [256, 320]
    assert typed("--focal_loss", "1")["focal_loss"] is True and typed("--mosaic", "0")["mosaic"] is False
    assert typed("--save_dir", "2024")["save_dir"] == "2024"
    assert typed("--model_path", "a b.pth")["model_path"] == "a b.pth"
    assert typed("--width_mult", "None")["width_mult"] is None                          # a None default takes None
    assert typed("--sweep", "{'focal_gamma': [1, 2]}")["sweep"] == {"focal_gamma": [1, 2]}


def test_a_bare_flag_means_true_for_bool_settings_only():
    assert typed("--focal_loss")["focal_loss"] is True                                  # last
    cfg = typed("--focal_loss", "--Init_lr", "0.1")                                     # followed by another --name
    assert cfg["focal_loss"] is True and cfg["Init_lr"] == 0.1
    assert parse_overrides(DEFAULTS, ["--focal_loss"])["focal_loss"] is True            # without _LIMITS too
    assert typed("--resume")["resume"] is True
    assert typed_error("--num_workers").startswith("--num_workers needs a value")
    assert typed_error("--save_dir", "--focal_loss").startswith("--save_dir needs a value")


@pytest.mark.parametrize("argv, message", [
    (["--input_shape", "96"], "--input_shape takes a list like [416, 416], got 96"),
    (["--input_shape", "[320, 320, 3]"], "--input_shape takes a list like [416, 416], got [320, 320, 3]"),
    (["--input_shape", "[320.5, 320]"], "--input_shape takes a list like [416, 416], got [320.5, 320]"),
    (["--input_shape", "[0, 320]"], "--input_shape takes a list like [416, 416], each >= 32, got [0, 320]"),
    (["--anchors_mask", "3"], "--anchors_mask takes a list like [[6, 7, 8], [3, 4, 5], [0, 1, 2]], got 3"),
    (["--anchors_mask", "[[1, 2], [3, 4], [5, 6]]"], "--anchors_mask takes a list like"),
    (["--anchors_mask", "[6, 7, 8]"], "--anchors_mask takes a list like"),
    (["--level_balance", "[1, 'a', 4]"], "--level_balance takes a list like [0.4, 1.0, 4.0], got [1, 'a', 4]"),
    (["--level_balance", "[1, -1, 4]"], "--level_balance takes a list like [0.4, 1.0, 4.0], each >= 0, got"),
    (["--Unfreeze_batch_size", "2.5"], "--Unfreeze_batch_size takes an integer >= 1, got 2.5"),
    (["--Unfreeze_batch_size", "0"], "--Unfreeze_batch_size takes an integer >= 1, got 0"),
    (["--num_workers", "True"], "--num_workers takes an integer, got True"),
    (["--num_workers", "None"], "--num_workers takes an integer, got None"),
    (["--mosaic", "yes"], "--mosaic takes True or False, got 'yes'"),
    (["--mosaic", "2"], "--mosaic takes True or False, got 2"),
    (["--Init_lr", "-1"], "--Init_lr takes a number > 0, got -1"),
    (["--Init_lr", "True"], "--Init_lr takes a number > 0, got True"),
    (["--Min_lr", "0"], "--Min_lr takes a number > 0, got 0"),
    (["--width_mult", "0"], "--width_mult takes a number > 0, got 0"),
    (["--width_mult", "wide"], "--width_mult takes a number > 0, got 'wide'"),
    (["--iou_thresh", "1"], "--iou_thresh takes a number > 0 and < 1, or None, got 1"),
    (["--label_smoothing", "1.5"], "--label_smoothing takes a number >= 0 and < 1, got 1.5"),
    (["--optimizer_type", "SGD"], "--optimizer_type takes one of 'sgd', 'adam', 'adamw', got 'SGD'"),
    (["--resume", "None"], "--resume takes True, False or a path, got None"),
    (["--sets", "[('2007', 'train', 'x')]"],
     "--sets takes a list like [('2007', 'train'), ('2007', 'val')] (any length)"),
    (["--sweep", "[1]"], "--sweep takes a dict, got [1]"),
])
def test_typed_bad_values(argv, message):
    text = typed_error(*argv)
    assert text.startswith(message) and "\n" not in text


def test_limit_words_widen_the_type():
    assert typed("--iou_thresh", "None")["iou_thresh"] is None                           # "None"
    assert typed("--label_smoothing", "0.1")["label_smoothing"] == 0.1                    # "number"
    assert typed("--label_smoothing", "0")["label_smoothing"] == 0
    assert typed("--resume", "logs/last_checkpoint.pth")["resume"] == "logs/last_checkpoint.pth"   # "path"
    assert typed("--resume", "False")["resume"] is False and typed("--resume", "3")["resume"] == "3"
    sets = typed("--sets", "[('2007', 'test')]")["sets"]                                 # "any length"
    assert sets == [("2007", "test")]
    assert typed("--sets", "[['2007', 'train'], ['2012', 'train'], ['2007', 'val']]")["sets"][1] == ("2012", "train")
    assert typed("--optimizer_type", "adamw")["optimizer_type"] == "adamw"


def test_limit_forms():
    assert parse_limit(">0").within(1e-9) and not parse_limit(">0").within(0)
    assert parse_limit(">=1").within(1) and not parse_limit(">=1").within(0.5)
    assert parse_limit("0..1").within(0) and parse_limit("0..1").within(1) and not parse_limit("0..1").within(1.01)
    assert parse_limit(">=0, <1").within(0) and not parse_limit(">=0, <1").within(1)
    assert parse_limit("<=-1e-3").within(-1) and parse_limit("<2").within(1.9)
    assert parse_limit(("a", "b")).choices == ("a", "b")
    assert [parse_limit(s).help_text() for s in (">0", "0..1", ">0, <1, None", "any length", ("a", "b"))] == \
        [">0", "0..1", ">0 <1 or None", "any length", "a|b"]
    for bad in ("> zero", "positive", "0...1", 3, ()):
        with pytest.raises(ValueError):
            parse_limit(bad)
    with pytest.raises(ValueError, match="_LIMITS names nonsense"):
        parse_overrides(TYPED, [], {"nonsense": ">0"})


def test_scripts_without_limits_are_typed_and_any_length_lists_are_declared():
    with pytest.raises(ConfigError, match=r"--gammas takes a list like \[0, 0.5, 1, 2, 5\], got \[0, 1\]"):
        parse_overrides({"gammas": [0, 0.5, 1, 2, 5]}, ["--gammas", "[0, 1]"])
    with pytest.raises(ConfigError, match="--label_smoothing takes an integer, got 0.1"):
        parse_overrides({"label_smoothing": 0}, ["--label_smoothing", "0.1"])
    # The tools declare their lists of any length; study.py passes train.py's limits on.
    from utils.engine import study
    from tools import focal_curves

    assert resolve_config(vars(focal_curves), ["--gammas", "[0, 1]"])["gammas"] == [0, 1]
    config = study.resolve_study_config(["--label_smoothing", "0.1", "--iou_thresh", "None"])
    assert config["label_smoothing"] == 0.1 and config["iou_thresh"] is None


def test_typed_preset_values(tmp_path, capsys):
    path = tmp_path / "preset.py"
    path.write_text('"""doc"""\nInit_lr = 1\ninput_shape = (320, 320)\nfocal_loss = 1\niou_thresh = None\n')
    assert read_preset(str(path), TYPED, LIMITS) == {"Init_lr": 1.0, "input_shape": [320, 320], "focal_loss": True,
                                                   "iou_thresh": None}
    for text, message in (("input_shape = 96\n", "--input_shape takes a list like [416, 416], got 96"),
                          ("\nmosaic = 'yes'\n", "--mosaic takes True or False, got 'yes'"),
                          ("Init_lr = -1\n", "--Init_lr takes a number > 0, got -1")):
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            read_preset(str(path), TYPED, LIMITS)
        assert err.value.message.endswith(message) and f"{path}:" in err.value.message
    # through resolve_config: one "error: ..." line, exit 2
    namespace = {**TYPED, "_LIMITS": LIMITS}
    with pytest.raises(SystemExit) as exit_info:
        resolve_config(namespace, [str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--Init_lr takes a number > 0, got -1" in err
    # read again without limits (utils/engine/trainer.py, against settings already resolved): no checks
    path.write_text("iou_thresh = None\nInit_lr = -1\n")
    assert read_preset(str(path), {**TYPED, "iou_thresh": 0.3}) == {"iou_thresh": None, "Init_lr": -1.0}


def test_preset_then_typed_command_line():
    import train

    # voc.py sets iou_thresh None; a number given after it is checked against train.py's own default
    voc = os.path.join(ROOT, "config", "voc.py")
    config = resolve_config(vars(train), [voc, "--iou_thresh", "0.3", "--focal_loss"])
    assert config["iou_thresh"] == 0.3 and config["focal_loss"] is True and config["obj_target"] == "binary"
    config = resolve_config(vars(train), [voc])
    assert config["iou_thresh"] is None


def _script_namespaces():
    import get_map
    import predict
    import train
    import voc_annotation

    return {"train.py": vars(train), "get_map.py": get_map.settings_namespace(),
            "predict.py": predict.settings_namespace(), "voc_annotation.py": vars(voc_annotation)}


@pytest.mark.parametrize("script", ["train.py", "get_map.py", "predict.py", "voc_annotation.py"])
def test_each_script_defaults_pass_its_own_limits(script):
    namespace = _script_namespaces()[script]
    defaults = script_settings(namespace)
    limits = namespace["_LIMITS"]
    assert set(limits) <= set(defaults)
    for name, spec in limits.items():
        default = defaults[name]
        assert _coerce(name, default, default, repr(default), parse_limit(spec)) == default, name
    assert resolve_config(namespace, []) == defaults                 # with nothing given: the defaults, unchecked


def test_train_limits():
    import train
    from nets.yolo_training import FOCAL_NORMALIZATIONS, FOCAL_TYPES, IOU_FUNCTIONS, OBJ_TARGETS

    limits = train._LIMITS
    assert set(limits["focal_normalize"]) == set(FOCAL_NORMALIZATIONS)
    assert set(limits["focal_type"]) == set(FOCAL_TYPES)
    assert set(limits["obj_target"]) == set(OBJ_TARGETS) | {"auto"}
    assert set(limits["iou_type"]) == set(IOU_FUNCTIONS)
    for name, spec in (("Init_lr", ">0"), ("Min_lr", ">0"), ("width_mult", ">0"), ("depth_mult", ">0"),
                       ("Freeze_batch_size", ">=1"), ("Unfreeze_batch_size", ">=1"), ("Init_Epoch", ">=0"),
                       ("Freeze_Epoch", ">=0"), ("UnFreeze_Epoch", ">=1"), ("mosaic_prob", "0..1"),
                       ("mixup_prob", "0..1"), ("special_aug_ratio", "0..1"), ("focal_alpha", "0..1"),
                       ("focal_gamma", ">=0"), ("num_workers", ">=0"), ("save_period", ">=1"),
                       ("eval_period", ">=1"), ("weight_decay", ">=0")):
        assert limits[name] == spec, name
    assert "number" in limits["time_budget_min"] and ">0" in limits["time_budget_min"]


def test_help_shows_the_limits():
    buffer = io.StringIO()
    print_help({"Init_lr": 0.01, "mosaic_prob": 0.5, "seed": 1}, "train.py", out=buffer,
               limits={"Init_lr": ">0", "mosaic_prob": "0..1"})
    lines = buffer.getvalue().splitlines()
    assert any(line.strip().startswith("--Init_lr") and "[>0] peak learning rate" in line for line in lines)
    assert any(line.strip().startswith("--mosaic_prob") and "[0..1]" in line for line in lines)
    assert not any("[" in line for line in lines if line.strip().startswith("--seed"))


def _run_train(*args):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--input_shape", "96"], "error: --input_shape takes a list like [416, 416], got 96"),
    (["--anchors_mask", "3"], "error: --anchors_mask takes a list like [[6, 7, 8], [3, 4, 5], [0, 1, 2]], got 3"),
    (["--Unfreeze_batch_size", "2.5"], "error: --Unfreeze_batch_size takes an integer >= 1, got 2.5"),
    (["--mosaic", "yes"], "error: --mosaic takes True or False, got 'yes'"),
    (["--Init_lr", "-1"], "error: --Init_lr takes a number > 0, got -1"),
    (["--width_mult", "0"], "error: --width_mult takes a number > 0, got 0"),
])
def test_train_py_rejects_bad_values_in_one_line(args, message):
    runs = os.path.join(ROOT, "logs")
    before = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
    started = time.perf_counter()
    result = _run_train("--UnFreeze_Epoch", "1", *args)          # a bad value anywhere stops it before training
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]                # exactly one line, no traceback, no warning
    assert result.stdout == ""                                     # nothing started: no settings table, no epoch
    assert time.perf_counter() - started < 60
    assert (sorted(os.listdir(runs)) if os.path.isdir(runs) else []) == before    # no run folder made


def test_train_py_help_shows_limits():
    result = _run_train("--help")
    assert result.returncode == 0 and result.stderr == ""
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("--Init_lr "))
    assert "[>0]" in line and "peak learning rate" in line
    assert "[sgd|adam|adamw]" in result.stdout
