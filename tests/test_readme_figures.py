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


def markdown_files():
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(docs, name) for name in os.listdir(docs) if name.endswith(".md"))


def heading_anchors(path):
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    with open(path, encoding="utf-8") as f:
        headings = [line.lstrip("#").strip() for line in f if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_relative_links_of_the_readme_and_docs_exist():
    broken = []
    for path in markdown_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(path, ROOT)}: {target} (no such file)")
            elif anchor and resolved.endswith(".md") and anchor not in heading_anchors(resolved):
                broken.append(f"{os.path.relpath(path, ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_commands_name_files_that_exist():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    named = set()
    for block in blocks:
        named |= set(re.findall(r"python (\S+\.py)", block))                   # the scripts run
        named |= set(re.findall(r"\b((?:config|img|tools|bench|model_data)/[\w./-]+)", block))
    assert {"train.py", "config/quickstart.py", "predict.py"} <= named
    missing = sorted(p for p in named if not os.path.exists(os.path.join(ROOT, p)))
    assert not missing, f"README commands name files that do not exist: {missing}"
