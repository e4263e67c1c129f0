"""Command-line overrides for a script's hyperparameter globals, in nanoGPT's style.

A script defines its settings as plain module-level globals with a comment each, then calls
``resolve_config(globals(), sys.argv[1:])``. Every setting can be overridden as
``--name=value`` or ``--name value``; values are parsed as Python literals
(``--input_shape "[320, 320]"``, ``--focal_loss True``), anything else stays a string (paths).

Every value given is typed by the setting's default, on the command line and in preset files alike (the script's
own defaults are not checked); a script's private module-level dict ``_LIMITS`` adds ranges and choices:

* bool: ``True`` / ``False`` (any case) or ``1`` / ``0``.
* int: an integer (not ``2.5``, not ``True``); float: an integer or a float (stored as a float).
* str: anything; numbers stay the text typed (``--device 0`` -> ``"0"``), as do lists.
* list / tuple: a list of the same length whose items fit the default's items the same way, nested lists too
  (``anchors_mask`` takes a 3 x 3 list of integers); an empty default takes any list.
* dict: a dict. ``None``: anything.

``_LIMITS`` maps a setting's name to a limit: a tuple of the values allowed (``("sgd", "adam", "adamw")``), or a
string of comma-separated terms:

* ``">0"``, ``">=1"``, ``"<1"``, ``"<=1"``: a bound; ``"0..1"``: from 0 to 1, both included. Several bounds
  all apply (``">=0, <1"``). A number setting's value must lie within them, a list setting's every number; a
  ``None`` default then takes ``None`` or a number within them.
* ``number``: an int setting also takes a float (``label_smoothing = 0`` takes 0.1).
* ``None``: the setting also takes ``None`` (``iou_thresh = 0.213``, None = off).
* ``path``: a bool setting also takes a string, e.g. a file (``resume``).
* ``any length``: a list setting takes any number of items, each like the default's (``VOCdevkit_sets``).

A bare bool flag (``--focal_loss`` last, or followed by another ``--name``) means True; any other setting given
bare "needs a value". ``read_preset`` without limits reads loosely (a value fitted to its default's type where that
is unambiguous), for code that reads again a preset already checked.

``--help`` shows each limit in brackets before the setting's comment. A bad value is one line,
``error: --NAME takes WHAT, got VALUE``, and exit status 2.

``--help`` (and tools/settings_doc.py's docs/settings.md) reads the rest from the script's source, so that the code
is the one place a setting is described: a comment line ``# --- data ---`` heads the group of the settings below it
(groups of the same name merge), a setting's trailing comment describes it, ``_EXAMPLES`` holds
``(command, what it does)`` pairs, and ``_DESCRIBED_IN`` names the files describing settings a script takes from
elsewhere (yolo.py: ``YOLO._defaults``, whose keys are described by the comment lines above them). A script whose
imports load torch (predict.py, get_map.py) answers ``--help`` before them with ``help_from_source``, which reads
its settings' values from the sources too.
"""
import ast
import difflib
import io
import os
import re
import sys
import tokenize
from dataclasses import dataclass
from typing import NamedTuple

from utils.errors import UserError
from utils.paths import resource_path

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # the folder holding the scripts
_SETTING_TYPES = (bool, int, float, str, list, tuple, dict, type(None))


class ConfigError(UserError):
    """A bad command line; ``resolve_config`` prints it and exits with status 2, like argparse."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def script_settings(namespace):
    """The hyperparameter globals of a script: public names bound to plain values, less the names its source
    imports (get_map.py's ``EVAL_CONFIDENCE`` is the default of its ``confidence``, not a setting of its own)."""
    imported = imported_names(namespace.get("__file__"))
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, _SETTING_TYPES) and k not in imported}


def imported_names(path):
    """The names a script's top-level ``import`` / ``from ... import`` lines bind (none when ``path`` is no file)."""
    if not path or not os.path.isfile(path):
        return set()
    return {(alias.asname or alias.name).partition(".")[0] for node in ast.parse(_read(path), filename=path).body
            if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


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



_NUMBER = r"([-+]?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)"
_BOUND = re.compile(rf"^(>=|<=|>|<)\s*{_NUMBER}$", re.IGNORECASE)
_SPAN = re.compile(rf"^{_NUMBER}\s*\.\.\s*{_NUMBER}$", re.IGNORECASE)
_OPERATORS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
_WORDS = {"number", "None", "path", "any length"}


@dataclass(frozen=True)
class Limit:
    """A parsed ``_LIMITS`` entry (see the module docstring)."""
    bounds: tuple = ()          # ((operator, number text), ...)
    span: tuple = None          # (low text, high text) of "low..high"
    choices: tuple = None
    number: bool = False
    none: bool = False
    path: bool = False
    any_length: bool = False

    def range_text(self):
        """``> 0``, ``from 0 to 1``, ``>= 0 and < 1``; "" without bounds."""
        parts = [f"from {self.span[0]} to {self.span[1]}"] if self.span else []
        return " and ".join(parts + [f"{op} {num}" for op, num in self.bounds])

    def help_text(self):
        """The short form ``--help`` shows: ``>0``, ``0..1``, ``sgd|adam``, ``>0 <1 or None``, ``any length``
        (``number`` only widens the type, and goes unsaid)."""
        if self.choices is not None:
            return "|".join(str(c) for c in self.choices)
        parts = [f"{self.span[0]}..{self.span[1]}"] if self.span else []
        parts += [f"{op}{num}" for op, num in self.bounds]
        text = " ".join(parts)
        for flag, word in ((self.any_length, "any length"), (self.path, "or a path"), (self.none, "or None")):
            if flag:
                text = f"{text} {word}" if text else word
        return text

    def within(self, number):
        number = float(number)
        if self.span and not float(self.span[0]) <= number <= float(self.span[1]):
            return False
        return all(_OPERATORS[op](number, float(num)) for op, num in self.bounds)


NO_LIMIT = Limit()


def parse_limit(spec):
    """A ``Limit`` from a ``_LIMITS`` value: a tuple / list of choices, or a string of terms (module docstring).
    A malformed spec is the script's bug: ``ValueError``."""
    if isinstance(spec, Limit):
        return spec
    if isinstance(spec, (tuple, list)):
        if not spec:
            raise ValueError("a choices limit needs at least one value")
        return Limit(choices=tuple(spec))
    if not isinstance(spec, str):
        raise ValueError(f"a limit is a string like '>0' or a tuple of choices, got {spec!r}")
    bounds, span, words = [], None, set()
    for term in (t.strip() for t in spec.split(",")):
        bound, between = _BOUND.match(term), _SPAN.match(term)
        if bound:
            bounds.append((bound.group(1), bound.group(2)))
        elif between and span is None:
            span = (between.group(1), between.group(2))
        elif term in _WORDS:
            words.add(term)
        else:
            raise ValueError(f"limit {spec!r}: {term!r} is not '>N', '>=N', '<N', '<=N', 'A..B' or one of "
                             f"{', '.join(sorted(_WORDS))}")
    return Limit(tuple(bounds), span, None, "number" in words, "None" in words, "path" in words,
                 "any length" in words)


def parse_limits(limits, defaults):
    """``{name: Limit}`` of a script's ``_LIMITS``; a name that is no setting is the script's bug (``ValueError``)."""
    unknown = sorted(set(limits or {}) - set(defaults))
    if unknown:
        raise ValueError(f"_LIMITS names {', '.join(unknown)}, which are not settings")
    return {name: parse_limit(spec) for name, spec in (limits or {}).items()}



_BAD = object()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fit(default, value, limit=NO_LIMIT):
    """``value`` fitted to the type of ``default`` (a float default turns an int into a float, a list default
    a tuple into a list), or ``_BAD``. Bounds are checked separately (``_within``)."""
    if value is None:
        return None if default is None or limit.none else _BAD
    if limit.choices is not None:
        return value if value in limit.choices and type(value) in {type(c) for c in limit.choices} else _BAD
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):
            return bool(value)
        return value if limit.path and isinstance(value, str) else _BAD
    if isinstance(default, int) and not limit.number:
        return value if type(value) is int else _BAD
    if isinstance(default, (int, float)) or (default is None and (limit.bounds or limit.span)):
        if not _is_number(value):
            return _BAD
        return float(value) if isinstance(default, float) else value
    if isinstance(default, str):
        return value if isinstance(value, str) else _BAD
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return _BAD
        if default and not limit.any_length and len(value) != len(default):
            return _BAD
        items = []
        for i, item in enumerate(value):
            fitted = _fit(default[min(i, len(default) - 1)], item) if default else item
            if fitted is _BAD:
                return _BAD
            items.append(fitted)
        return type(default)(items)
    if isinstance(default, dict):
        return value if isinstance(value, dict) else _BAD
    return value                                            # a None default takes anything


def _within(value, limit):
    """Whether every number in ``value`` (itself, or in a list) lies within ``limit``'s bounds."""
    if isinstance(value, (list, tuple)):
        return all(_within(item, limit) for item in value)
    return not _is_number(value) or limit.within(value)


def _kind(default, limit, list_range=True):
    """What a setting takes, for messages: ``a number > 0``, ``True or False``, ``a list like [416, 416]``
    (``, each >= 32`` with ``list_range``: what a list of the right shape missed)."""
    bounds = limit.range_text()
    if limit.choices is not None:
        text = "one of " + ", ".join(map(repr, limit.choices))
    elif isinstance(default, bool):
        text = "True, False or a path" if limit.path else "True or False"
    elif isinstance(default, int) and not limit.number:
        text = "an integer" + (f" {bounds}" if bounds else "")
    elif isinstance(default, (int, float)) or (default is None and bounds):
        text = "a number" + (f" {bounds}" if bounds else "")
    elif isinstance(default, (list, tuple)):
        text = f"a list like {default!r}" + (" (any length)" if limit.any_length else "")
        text += f", each {bounds}" if bounds and list_range else ""
    elif isinstance(default, dict):
        text = "a dict"
    elif isinstance(default, str):
        text = "a string"
    else:
        text = "a value"
    return text + ((", or None" if bounds else " or None") if limit.none else "")


def _shown(value, width=60):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _coerce(name, default, value, text, limit=None):
    """``value`` (parsed from ``text``) checked against the type of the setting's default and its limit, and
    fitted to that type; ``ConfigError`` (``--name takes WHAT, got VALUE``) when it does not fit."""
    limit = limit or NO_LIMIT
    if isinstance(default, str) and limit.choices is None:
        # as before: numbers (and lists) stay the text typed (--save_dir 2024, --device 0); None / True / False stay
        return value if value is None or isinstance(value, (str, bool)) else text
    if isinstance(default, bool) and limit.path and value is not None and not isinstance(value, (str, bool)) \
            and not (type(value) is int and value in (0, 1)):
        value = text                                        # --resume 3: a path named 3
    fitted = _fit(default, value, limit)
    if fitted is _BAD or (fitted is not None and not _within(fitted, limit)):
        raise ConfigError(f"--{name} takes {_kind(default, limit, list_range=fitted is not _BAD)}, "
                          f"got {_shown(value)}")
    return fitted


def _coerce_loosely(name, default, value, text, limit=None):
    """``read_preset``'s reading without limits: ``value`` fitted to the type of its default where that is
    unambiguous, else kept as it is; a string for a number setting is the one error."""
    if isinstance(default, bool) and type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(default, float) and _is_number(value):
        return float(value)
    if isinstance(default, str) and value is not None and not isinstance(value, (str, bool)):
        return text                     # e.g. --save_dir 2024 or --device 0 stay strings
    if isinstance(default, list) and isinstance(value, tuple):
        return list(value)
    if _is_number(default) and isinstance(value, str):
        raise ConfigError(f"--{name} takes a number, got {_shown(value)}")
    return value



def parse_overrides(defaults, argv, limits=None):
    """Apply ``--name=value`` / ``--name value`` pairs from ``argv`` to a copy of ``defaults``, each value checked
    against its default's type and ``limits`` (a script's ``_LIMITS``).

    Unknown names, missing values, bad values and stray arguments raise ``ConfigError`` naming the setting.
    ``limits=None``: no ranges, the values are still typed."""
    limits = parse_limits(limits, defaults)
    config = dict(defaults)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {arg!r}; settings are given as --name=value or --name value")
        name, sep, text = arg[2:].partition("=")
        i += 1
        if name not in defaults:
            raise ConfigError(unknown_setting_message(name, defaults))
        if not sep:
            if i >= len(argv) or argv[i].startswith("--"):
                if isinstance(defaults[name], bool):
                    config[name] = True                     # a bare --focal_loss
                    continue
                raise ConfigError(f"--{name} needs a value (--{name}=VALUE or --{name} VALUE)")
            text = argv[i]
            i += 1
        config[name] = _coerce(name, defaults[name], parse_value(text), text, limits.get(name))
    return config


def unknown_setting_message(name, names):
    """``unknown setting --x`` with the near misses among ``names`` ("did you mean --focal_gamma?")."""
    close = difflib.get_close_matches(name, list(names), n=2, cutoff=0.8)
    if close:
        hint = "did you mean " + " or ".join(f"--{c}" for c in close) + "?"
    else:
        hint = f"--help lists the {len(names)} settings"
    return f"unknown setting --{name}; {hint}"


_GROUP_HEADER = re.compile(r"^---\s*(.+?)\s*---$")        # a comment line "# --- data ---" (see the docstring)
OTHER_GROUP = "other"                                       # the heading of settings no group header precedes


class SettingDoc(NamedTuple):
    group: str              # the heading it is listed under
    description: str


class HelpRow(NamedTuple):
    name: str
    default: object
    limit: str              # Limit.help_text(), "" without a limit
    description: str


def _comments(source):
    """``{line number: (text, whole line)}`` of the comments in ``source``: the text after ``#``, and whether the
    comment is all the line holds (tokenize, so that a ``#`` inside a string is no comment)."""
    lines, comments = source.splitlines(), {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            comments[row] = (token.string.lstrip("#").strip(), not lines[row - 1][:col].strip())
    return comments


def _setting_lines(tree):
    """``(name, line)`` of the settings a source defines, in source order: its public module-level
    ``name = value`` lines and the string keys of dict literals assigned to ``_defaults`` (yolo.py's)."""
    found = [(node.targets[0].id, node.lineno) for node in tree.body if isinstance(node, ast.Assign)
             and isinstance(node.targets[0], ast.Name) and not node.targets[0].id.startswith("_")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == "_defaults" and isinstance(node.value, ast.Dict):
            found += [(key.value, key.lineno) for key in node.value.keys
                      if isinstance(key, ast.Constant) and isinstance(key.value, str)]
    return sorted(found, key=lambda item: item[1])


def _description(comments, row):
    """The comment ending line ``row``, else the comment lines right above it (a group header ends them)."""
    if row in comments:
        return comments[row][0]
    block = []
    while row - 1 in comments and comments[row - 1][1] and not _GROUP_HEADER.match(comments[row - 1][0]):
        row -= 1
        block.insert(0, comments[row][0])
    return " ".join(block)


def setting_docs(path):
    """``{name: SettingDoc}`` of the settings the file ``path`` defines (``_setting_lines``), in source order: each
    under the last ``# --- group ---`` line above it, described by its comment (``_description``)."""
    source = _read(path)
    comments = _comments(source)
    headers = {row: match.group(1) for row, (text, whole) in comments.items()
               if whole and (match := _GROUP_HEADER.match(text))}
    docs = {}
    for name, row in _setting_lines(ast.parse(source, filename=path)):
        above = [header for header in headers if header < row]
        docs.setdefault(name, SettingDoc(headers[max(above)] if above else OTHER_GROUP, _description(comments, row)))
    return docs


def _script_literal(script_path, name, default):
    """A private literal of a script (``_EXAMPLES``), read without importing it; ``default`` without one."""
    if not os.path.isfile(script_path):
        return default
    return file_settings(script_path, private=(name,)).get(name, default)


def script_docs(script_path):
    """``setting_docs`` of a script and of the files its ``_DESCRIBED_IN`` names (relative to the script), the
    script's own first; ``{}`` when there is no such file."""
    if not os.path.isfile(script_path):
        return {}
    described_in = _script_literal(script_path, "_DESCRIBED_IN", ())
    docs = {}
    for path in [script_path] + [os.path.join(os.path.dirname(script_path), p) for p in described_in]:
        for name, doc in setting_docs(path).items():
            docs.setdefault(name, doc)
    return docs


def help_sections(defaults, script_path, limits=None):
    """``[(group, [HelpRow, ...]), ...]``: the settings of ``defaults`` under their groups (``script_docs``), in
    source order (settings no source describes last, under "other"), each group where its first setting is."""
    docs, limits = script_docs(script_path), parse_limits(limits, defaults)
    groups = {}
    for name in [n for n in docs if n in defaults] + [n for n in defaults if n not in docs]:
        doc = docs.get(name, SettingDoc(OTHER_GROUP, ""))
        limit = limits[name].help_text() if name in limits else ""
        groups.setdefault(doc.group, []).append(HelpRow(name, defaults[name], limit, doc.description))
    return list(groups.items())


def script_summary(script_path):
    """The first paragraph of a script's docstring, on one line ("" without one)."""
    if not os.path.isfile(script_path):
        return ""
    docstring = ast.get_docstring(ast.parse(_read(script_path))) or ""
    return " ".join(docstring.split("\n\n")[0].split())


def script_examples(script_path):
    """A script's ``_EXAMPLES``: ``(command, what it does)`` pairs."""
    return _script_literal(script_path, "_EXAMPLES", ())


def script_usage(script_path):
    """The usage line of ``--help``, without ``usage:``."""
    return f"python {os.path.basename(script_path)} [preset.py ...] [--name value ...]"


def wants_help(argv):
    """Whether ``argv`` asks for ``--help`` (anywhere in it, like argparse)."""
    return any(arg in ("-h", "--help") for arg in argv)


def print_help(defaults, script_path, out=None, limits=None):
    """The usage line, what the script does, its examples, then every setting under its group with its default,
    its limit in brackets (``[>0]``, ``[0..1]``) and its description."""
    out = out or sys.stdout
    print(f"usage: {script_usage(script_path)}", file=out)
    summary = script_summary(script_path)
    if summary:
        print(f"\n{summary}", file=out)
    examples = script_examples(script_path)
    if examples:
        print("\nexamples:", file=out)
        for command, meaning in examples:
            print(f"  {command}\n      {meaning}", file=out)
    print("\nsettings (default, [limit], meaning):", file=out)
    for group, rows in help_sections(defaults, script_path, limits):
        print(f"\n{group}:", file=out)
        for row in rows:
            limit = f"[{row.limit}] " if row.limit else ""
            print(f"  --{row.name:<24} {row.default!r:<34} {limit}{row.description}".rstrip(), file=out)


def read_preset(path, defaults, limits=None):
    """The settings of a preset file (nanoGPT's ``config/<name>.py``): plain ``name = literal`` lines, read as
    literals (never executed). Unknown names and anything else are errors naming the file and line.

    With ``limits`` (a script's ``_LIMITS``, ``{}`` for none; ``resolve_config`` passes them) each value is checked
    like a command-line one, and a bad one names the file and line; without, values are read loosely (module
    docstring), as callers need that read again a preset ``resolve_config`` has checked, against settings already
    resolved (``iou_thresh = None`` against an ``iou_thresh`` of 0.3 given on the command line)."""
    checked = limits is not None
    limits = parse_limits(limits, defaults)
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
        text = ast.unparse(node.value)
        if not checked:
            settings[name] = _coerce_loosely(name, defaults[name], value, text)
            continue
        try:
            settings[name] = _coerce(name, defaults[name], value, text, limits.get(name))
        except ConfigError as err:
            raise ConfigError(f"{path}:{node.lineno}: {err.message}") from None
    return settings


def preset_paths(argv):
    """The preset files ``argv`` starts with; they apply in order, a later one over an earlier
    (``config/quickstart.py config/focal_deeppcb.py``)."""
    count = 0
    while count < len(argv) and argv[count].endswith(".py") and not argv[count].startswith("--"):
        count += 1
    return argv[:count]


def resolve_config(namespace, argv, script_path=None, limits=None):
    """Defaults from a script's globals updated by ``argv``; ``-h``/``--help`` prints them and exits.

    ``limits`` (default: the namespace's ``_LIMITS``, ``{}`` when it has none) type and bound the values given
    (module docstring). ``argv`` may start with preset files (``config/quickstart.py``): their settings replace the
    defaults (a later file's over an earlier's), and the ``--name value`` overrides after them apply on top
    (checked against the script's defaults)."""
    defaults = script_settings(namespace)
    limits = namespace.get("_LIMITS", {}) if limits is None else limits
    parse_limits(limits, defaults)                      # a malformed _LIMITS fails here, with a traceback
    if wants_help(argv):
        print_help(defaults, script_path or namespace.get("__file__", "script.py"), limits=limits)
        raise SystemExit(0)
    try:
        preset, count = {}, len(preset_paths(argv))
        for path in preset_paths(argv):
            preset.update(read_preset(resource_path(path), defaults, limits))
        if not count:
            return parse_overrides(defaults, argv, limits)
        if limits is None:
            return parse_overrides({**defaults, **preset}, argv[count:])
        config = parse_overrides(defaults, argv[count:], limits)      # typed by the script's own defaults
        given = command_line_names(argv[count:])
        return {**config, **{k: v for k, v in preset.items() if k not in given}}
    except ConfigError as err:
        print(f"error: {err.message}", file=sys.stderr)
        raise SystemExit(2) from None


def check_setting(name, default, value, limit=None):
    """``value`` for the setting ``name`` checked and fitted as a command-line value would be (its default's
    type, ``limit`` a ``_LIMITS`` entry); ``ConfigError`` otherwise. For settings given inside other values,
    e.g. a study's variants."""
    return _coerce(name, default, value, repr(value), parse_limit(limit) if limit is not None else None)


def file_settings(path, private=()):
    """The settings of a script file read without importing it: its top-level ``name = literal`` lines with a
    public name (and the ``private`` names asked for, e.g. ``_LIMITS``), as ``{name: value}``. For code that needs
    an entry script's settings but may not import the script (utils/ never imports the scripts above it)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    settings = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name.startswith("_") and name not in private:
            continue
        try:
            settings[name] = ast.literal_eval(node.value)
        except ValueError:
            continue                     # not a plain value (an expression): not a setting
    return settings


def source_value(node, path):
    """The value of the expression ``node`` of the file ``path``, read without importing anything: a literal, in
    which a name stands for the literal the file assigns to it at the top level, or, when a top-level
    ``from module import NAME`` binds it, the literal that module's file assigns to ``NAME`` (yolo.py's
    ``LETTERBOX_IMAGE``, get_map.py's ``EVAL_CONFIDENCE``, both utils/metrics/evaluation.py's). ``ValueError`` for
    anything else."""
    expression = ast.parse(ast.unparse(node), mode="eval")          # a copy, its names replaced below
    names = [n for n in ast.walk(expression) if isinstance(n, ast.Name)]
    if names:
        tree = ast.parse(_read(path), filename=path)

        class Names(ast.NodeTransformer):
            def visit_Name(self, name):
                return ast.copy_location(ast.Constant(_source_name(tree, path, name.id)), name)

        expression = Names().visit(expression)
    return ast.literal_eval(expression)


def _source_name(tree, path, name):
    """The value ``source_value`` gives the name ``name`` in the file ``path`` (parsed: ``tree``): its last
    top-level binding there."""
    for node in reversed(tree.body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == name:
            return source_value(node.value, path)
        if isinstance(node, ast.ImportFrom) and not node.level:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    module = os.path.join(_ROOT, *node.module.split(".")) + ".py"
                    if not os.path.isfile(module):
                        raise ValueError(f"{path}: {name} comes from {node.module}, no file of this repository")
                    return _source_name(ast.parse(_read(module), filename=module), module, alias.name)
    raise ValueError(f"{path}: {name} is no top-level literal")


def class_defaults(path, class_name):
    """The ``_defaults`` dict of the class ``class_name`` in the file ``path``, read from its source
    (``source_value``) as the class holds it once imported: yolo.py's ``YOLO._defaults``, without importing torch."""
    tree = ast.parse(_read(path), filename=path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for statement in node.body:
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                        and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == "_defaults":
                    return source_value(statement.value, path)
    raise ValueError(f"{path}: no class {class_name} with a _defaults dict")


def source_settings(path):
    """The settings (and ``_LIMITS``) of a script read from its source alone: its top-level ``name = value`` lines
    whose value ``source_value`` reads (get_map.py's ``confidence = EVAL_CONFIDENCE`` too)."""
    tree = ast.parse(_read(path), filename=path)
    settings = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and (not node.targets[0].id.startswith("_") or node.targets[0].id == "_LIMITS"):
            try:
                settings[node.targets[0].id] = source_value(node.value, path)
            except ValueError:
                continue                     # not a plain value (an expression): not a setting
    return settings


def help_from_source(script_path, argv, defaults_of=()):
    """``-h``/``--help`` answered as ``resolve_config`` answers it, from the sources alone, for a script whose
    imports load torch (predict.py, get_map.py): called at its top before them. The settings are the script's
    (``source_settings``) over the ``_defaults`` of each ``(file, class)`` of ``defaults_of`` (``("yolo.py",
    "YOLO")``, the file relative to the script), as its ``settings_namespace`` merges them. Without a help flag
    nothing happens."""
    if not wants_help(argv):
        return
    namespace = {}
    for path, class_name in defaults_of:
        namespace.update(class_defaults(os.path.join(os.path.dirname(os.path.abspath(script_path)), path), class_name))
    namespace.update(source_settings(script_path))
    resolve_config(namespace, argv, script_path=script_path)       # prints the help and exits


def command_line_names(argv):
    """Names of the settings an argument list gives explicitly (``--name=value`` or ``--name value``)."""
    return {arg[2:].partition("=")[0] for arg in argv if arg.startswith("--") and len(arg) > 2}
