"""Does a run take the time train.py's auto settings announce? (utils/engine/auto_settings.py, EPOCH_OVERHEAD)

Runs ``python train.py --data DATA`` with nothing else but ``--time_budget_min`` (and ``--UnFreeze_Epoch`` when
given), each in a fresh run folder under a temporary working directory, and prints per run the announced time
(the "Auto settings" line), the measured wall time of the whole command (start-up, list building, training,
evaluation, final table) and their ratio. A ratio near 1 means the printed estimate can be trusted.
Usage: python bench/bench_auto.py [--data VOCdevkit] [--budget 30] [--epochs N] [--repeats 1]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANNOUNCED = re.compile(r"about (\d+) (min|s) on this CPU")


def announced_seconds(stdout):
    """Seconds of the "Auto settings" line's estimate, or None when there is none (auto did not apply)."""
    match = ANNOUNCED.search(stdout)
    if not match:
        return None
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def timed_run(data, budget, epochs, workdir):
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--data", os.path.abspath(data),
            "--time_budget_min", str(budget)] + (["--UnFreeze_Epoch", str(epochs)] if epochs else [])
    start = time.perf_counter()
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"train.py failed ({result.returncode}):\n{result.stderr[-2000:]}")
    line = next((row for row in result.stdout.splitlines() if row.startswith("Auto settings")), "")
    return announced_seconds(result.stdout), elapsed, line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "VOCdevkit"))
    parser.add_argument("--budget", type=float, default=30)
    parser.add_argument("--epochs", type=int, default=0, help="UnFreeze_Epoch; 0 = auto's choice")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(args.repeats):
            announced, elapsed, line = timed_run(args.data, args.budget, args.epochs, workdir)
            print(line)
            ratio = f"{elapsed / announced:.2f}" if announced else "n/a"
            print(f"run {repeat + 1}: announced {announced or float('nan'):.0f} s, measured {elapsed:.0f} s "
                  f"(whole command), measured / announced {ratio}")


if __name__ == "__main__":
    main()
