"""Command-line overrides of script settings (utils/config.py)."""
import io
import os
import re

import pytest

from utils.config import ConfigError, parse_overrides, parse_value, print_help, resolve_config

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


def test_bool_setting_accepts_a_path():
    cfg = parse_overrides(DEFAULTS, ["--resume", "logs/last_checkpoint.pth"])
    assert cfg["resume"] == "logs/last_checkpoint.pth"
    assert parse_overrides(DEFAULTS, ["--resume", "True"])["resume"] is True


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
    (["--focal_loss"], "needs a value"),
    (["train.py"], "unexpected argument"),
    (["--Init_lr", "fast"], "expects a number"),
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


@pytest.mark.parametrize("preset", ["quickstart", "voc", "finetune"])
def test_shipped_presets_hold_only_train_settings(preset):
    import train
    from utils.config import read_preset, script_settings

    assert read_preset(os.path.join(ROOT, "config", f"{preset}.py"), script_settings(vars(train)))
