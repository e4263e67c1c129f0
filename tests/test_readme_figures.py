"""Every result figure in the README says how much it varies: a mean ± sd, or "one run" beside it."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A result figure: a score with two or more decimals (0.844, +0.081, −0.040); mAP@0.5 and γ 0.5 are settings.
FIGURE = re.compile(r"(?<![\w.@])[+−-]?0\.\d{2,}")
METRIC = re.compile(r"mAP|\bAP|\bAR|F1|precision|recall", re.IGNORECASE)


def figure_lines_without_spread(text):
    """``(line number, line)`` of each line outside code blocks that gives a metric's figure with neither ``±`` nor
    "one run"; a table row is about a metric when its header is."""
    missing, in_code, header = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        is_row = line.startswith("|")
        if is_row and not header:
            header = line
        elif not is_row:
            header = ""
        about_metric = METRIC.search(line) or (is_row and METRIC.search(header))
        if FIGURE.search(line) and about_metric and "±" not in line and "one run" not in line:
            missing.append((number, line))
    return missing


def test_every_readme_figure_has_its_spread():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        missing = figure_lines_without_spread(f.read())
    assert not missing, "README lines with a result figure but no '±' or 'one run':\n" + "\n".join(
        f"{n}: {line}" for n, line in missing)


def test_the_rule_catches_a_bare_figure_and_passes_a_spread():
    text = ("The preset reaches val mAP@0.5 0.862.\n"
            "It reaches val mAP@0.5 0.844 ± 0.050 over 7 seeds.\n"
            "A fresh clone gave test 0.754 (one run, mAP@0.5).\n"
            "| list | mAP@0.5 |\n|---|---|\n| val | 0.83 |\n| test | 0.79 ± 0.03 |\n"
            "```\nmAP 0.99\n```\n"
            "Threshold γ 0.5, α 0.5, IoU 0.3 at mAP@0.5.\n")
    assert [n for n, _ in figure_lines_without_spread(text)] == [1, 6]
