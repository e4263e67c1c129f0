"""Numbered run folders, as ultralytics users know them: ``logs/exp``, ``logs/exp2``, ``logs/exp3`` ...

Every script that writes results (train.py, get_map.py, predict.py) puts a run without an explicit output folder
into a new folder ``<root>/<name><n>``, so one run never overwrites another. ``exist_ok`` reuses ``<root>/<name>``
as it is (upstream's single folder); an explicit folder (``--save_dir``, ``--map_out_path``, ``--save_path``) is
used as given.
"""
import os
import re

RUN_NAME = "exp"
TRAIN_ROOT = "logs"          # train.py's runs: logs/exp, logs/exp2, ...


def _run_folders(root, name):
    """``[(number, path)]`` of the existing ``root/name``, ``root/name2``, ... (``name`` itself counts as 1)."""
    if not os.path.isdir(root):
        return []
    pattern = re.compile(rf"^{re.escape(name)}(\d*)$")
    found = []
    for entry in os.listdir(root):
        match = pattern.match(entry)
        if match and os.path.isdir(os.path.join(root, entry)):
            found.append((int(match.group(1) or 1), os.path.join(root, entry)))
    return sorted(found)


def new_run_dir(root, name=RUN_NAME, exist_ok=False):
    """Create and return the next free ``root/name<n>`` (``root/name`` first); with ``exist_ok`` ``root/name``.

    The folder is claimed with ``os.mkdir``, which fails when another process made it first, so two runs starting
    together still get two folders."""
    name = name or RUN_NAME
    first = os.path.join(root, name)
    if exist_ok:
        os.makedirs(first, exist_ok=True)
        return first
    os.makedirs(root, exist_ok=True)
    taken = _run_folders(root, name)
    number = taken[-1][0] + 1 if taken else 1
    while True:
        path = first if number == 1 else f"{first}{number}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            number += 1


def latest_run_with(root, filename, name=None):
    """The most recently modified ``root/<run>/filename`` (runs named ``name<n>`` only when ``name`` is given),
    or None. Used by ``--resume True`` and by the scripts that default to the newest weights."""
    if not os.path.isdir(root):
        return None
    candidates = []
    for entry in os.listdir(root):
        if name and not re.match(rf"^{re.escape(name)}\d*$", entry):
            continue
        path = os.path.join(root, entry, filename)
        if os.path.isfile(path):
            candidates.append((os.path.getmtime(path), path))
    return max(candidates)[1] if candidates else None
