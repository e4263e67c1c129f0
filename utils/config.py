"""Command-line overrides for a script's hyperparameter globals, in nanoGPT's style.

A script defines its settings as plain module-level globals with a comment each, then calls
``resolve_config(globals(), sys.argv[1:])``. Every setting can be overridden as
``--name=value`` or ``--name value``; values are parsed as Python literals
(``--input_shape "[320, 320]"``, ``--focal_loss True``), anything else stays a string (paths).
"""
import ast
import difflib
import re
import sys

from utils.errors import UserError

_SETTING_TYPES = (bool, int, float, str, list, tuple, dict, type(None))


class ConfigError(UserError):
    """A bad command line; ``resolve_config`` prints it and exits with status 2, like argparse."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def script_settings(namespace):
    """The hyperparameter globals of a script: public names bound to plain values."""
    return {k: v for k, v in namespace.items() if not k.startswith("_") and isinstance(v, _SETTING_TYPES)}


def parse_value(text):
    """A Python literal when ``text`` is one; ``true``/``false``/``none`` in any case; else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return text


def _coerce(name, default, value, text):
    """Fit a parsed value to the type of its default where that is unambiguous."""
    if isinstance(default, bool) and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, str) and value is not None and not isinstance(value, (str, bool)):
        return text                     # e.g. --save_dir 2024 or --device 0 stay strings
    if isinstance(default, list) and isinstance(value, tuple):
        return list(value)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
        raise ConfigError(f"--{name} expects a number, got {text!r}")
    return value


def parse_overrides(defaults, argv):
    """Apply ``--name=value`` / ``--name value`` pairs from ``argv`` to a copy of ``defaults``.

    Unknown names, missing values and stray arguments raise ``ConfigError`` naming the valid settings.
    """
    config = dict(defaults)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {arg!r}; settings are given as --name=value or --name value")
        name, sep, text = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{name} needs a value")
            text = argv[i + 1]
            i += 1
        i += 1
        if name not in defaults:
            raise ConfigError(unknown_setting_message(name, defaults))
        config[name] = _coerce(name, defaults[name], parse_value(text), text)
    return config


def unknown_setting_message(name, names):
    """``unknown setting --x`` with the near misses among ``names`` ("did you mean --focal_gamma?")."""
    close = difflib.get_close_matches(name, list(names), n=2, cutoff=0.8)
    if close:
        hint = "did you mean " + " or ".join(f"--{c}" for c in close) + "?"
    else:
        hint = f"--help lists the {len(names)} settings"
    return f"unknown setting --{name}; {hint}"


def setting_comments(path):
    """``{name: comment}`` for lines ``name = value  # comment`` of a script (for --help)."""
    comments = {}
    pattern = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=.*?#\s*(.+)$")
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = pattern.match(line.rstrip())
            if match and match.group(1) not in comments:
                comments[match.group(1)] = match.group(2).strip()
    return comments


def print_help(defaults, script_path, out=None):
    out = out or sys.stdout
    comments = setting_comments(script_path)
    print(f"usage: python {script_path} [--name=value ...]\n\nsettings (default, meaning):", file=out)
    for name, value in defaults.items():
        print(f"  --{name:<24} {value!r:<34} {comments.get(name, '')}", file=out)


def read_preset(path, defaults):
    """The settings of a preset file (nanoGPT's ``config/<name>.py``): plain ``name = literal`` lines, read as
    literals (never executed). Unknown names and anything else are errors naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except FileNotFoundError:
        raise ConfigError(f"preset file not found: {path} (presets: config/*.py)") from None
    except SyntaxError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid Python: {err.msg}") from None
    settings = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue                                                    # the docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ConfigError(f"{path}:{node.lineno}: a preset holds only 'name = value' lines")
        name = node.targets[0].id
        if name not in defaults:
            raise ConfigError(f"{path}:{node.lineno}: {unknown_setting_message(name, defaults)}")
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise ConfigError(f"{path}:{node.lineno}: the value of {name} is not a Python literal") from None
        settings[name] = _coerce(name, defaults[name], value, ast.unparse(node.value))
    return settings


def resolve_config(namespace, argv, script_path=None):
    """Defaults from a script's globals updated by ``argv``; ``-h``/``--help`` prints them and exits.

    ``argv`` may start with a preset file (``config/quickstart.py``): its settings replace the defaults, and the
    ``--name value`` overrides after it apply on top."""
    defaults = script_settings(namespace)
    if any(a in ("-h", "--help") for a in argv):
        print_help(defaults, script_path or namespace.get("__file__", "script.py"))
        raise SystemExit(0)
    try:
        if argv and argv[0].endswith(".py") and not argv[0].startswith("--"):
            defaults = {**defaults, **read_preset(argv[0], defaults)}
            argv = argv[1:]
        return parse_overrides(defaults, argv)
    except ConfigError as err:
        print(f"error: {err.message}", file=sys.stderr)
        raise SystemExit(2) from None


def command_line_names(argv):
    """Names of the settings an argument list gives explicitly (``--name=value`` or ``--name value``)."""
    return {arg[2:].partition("=")[0] for arg in argv if arg.startswith("--") and len(arg) > 2}
