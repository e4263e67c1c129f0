"""The focal-loss preset of study.py: compare objectness losses over seeds on the same model, data and budget.

Each entry of ``settings`` is ``(name, focal_loss, alpha, gamma)``: ``name`` is the variant's folder under
``study_dir``; ``focal_loss=False`` is plain BCE (alpha and gamma are then unused). The first entry is the
baseline. Every study.py setting (``--seeds``, ``--first_seed``, ``--study_dir``, ...) and every train.py setting
is accepted too; train.py settings apply to all runs:
    python focal_study.py --UnFreeze_Epoch 40 --input_shape "[128, 128]" --seeds 3 \\
        --settings "[('bce', False, 0.25, 2), ('focal_g2_a0.25', True, 0.25, 2)]"

Runs are listed variant by variant, so a study stopped early has all seeds of its first variants; the same
command continues it. See study.py for what is written.
"""
import re
import sys

import study
from utils.config import script_settings
from utils.errors import UserError, run_entry

settings = [("bce", False, 0.25, 2),        # objectness losses, one variant each: (name, focal_loss, alpha, gamma)
            ("focal_g2_a0.25", True, 0.25, 2), ("focal_g0.5_a0.5", True, 0.5, 0.5),
            ("focal_g1_a0.5", True, 0.5, 1), ("focal_g0.5_a0.25", True, 0.25, 0.5),
            ("focal_g1_a0.25", True, 0.25, 1), ("focal_g2_a0.5", True, 0.5, 2)]
study_dir = "study_out"                    # one folder per setting and seed, and the results

_FOCAL = ("focal_loss", "focal_alpha", "focal_gamma")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_LIMITS = {"settings": "any length"}  # lists of any length; the rest typed by their defaults


def check_settings(entries):
    """``entries`` as a list of ``(name, focal_loss, alpha, gamma)`` tuples; SystemExit naming a bad one."""
    def fail(problem):
        raise UserError(f"--settings: {problem}; each entry is (name, focal_loss, alpha, gamma), "
                         f"e.g. ('focal_g2_a0.25', True, 0.25, 2)")

    if not isinstance(entries, (list, tuple)) or not entries:
        fail(f"expected a non-empty list, got {entries!r}")
    checked = []
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            fail(f"{entry!r} is not a 4-tuple")
        name, focal, alpha, gamma = entry
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            fail(f"name {name!r} must be a folder name of letters, digits, '.', '_' and '-'")
        if not isinstance(focal, bool):
            fail(f"focal_loss of {name!r} must be True or False, got {focal!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            fail(f"alpha of {name!r} must be a number in [0, 1], got {alpha!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
            fail(f"gamma of {name!r} must be a number >= 0, got {gamma!r}")
        checked.append((name, focal, alpha, gamma))
    return checked


def as_variants(entries):
    """study.py variants of ``(name, focal_loss, alpha, gamma)`` entries."""
    return [{"name": name, "focal_loss": focal, "focal_alpha": alpha, "focal_gamma": gamma}
            for name, focal, alpha, gamma in check_settings(entries)]


def study_arguments(argv):
    """``argv`` with ``--settings`` turned into study.py's ``--variants``; the focal settings are refused."""
    from utils.config import parse_value

    rest, entries, index = [], settings, 0
    while index < len(argv):
        name, _, inline = argv[index].partition("=")
        if name == "--settings":
            text = inline if inline else (argv[index + 1] if index + 1 < len(argv) else "")
            entries = parse_value(text)
            index += 1 if inline else 2
            continue
        if name[2:] in _FOCAL or name in ("--variants", "--sweep"):
            raise UserError(f"{name} is set by each run of the focal study; choose the objectness losses "
                             f"with --settings \"[(name, focal_loss, alpha, gamma), ...]\"")
        rest.append(argv[index])
        index += 1
    return rest, as_variants(entries)


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return study.main(["--help"])
    rest, variants = study_arguments(argv)
    own = {**script_settings(vars(study)), "study_dir": study_dir, "variants": variants}
    return study.main(rest, own=own, script="focal_study.py", script_argv=argv)


if __name__ == "__main__":
    run_entry(main, sys.argv[1:])
