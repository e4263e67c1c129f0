"""Command-line overrides of script settings (utils/config.py)."""
import io

import pytest

from utils.config import ConfigError, parse_overrides, parse_value, print_help, resolve_config

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


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        parse_overrides(DEFAULTS, ["--focal_los", "True"])
    assert "unknown setting --focal_los" in err.value.message
    assert "focal_loss" in err.value.message and "input_shape" in err.value.message


def test_resolve_config_prints_the_error_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        resolve_config({"focal_loss": False}, ["--focal", "1"])
    assert exit_info.value.code == 2
    assert "unknown setting --focal. Valid settings: focal_loss" in capsys.readouterr().err


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
