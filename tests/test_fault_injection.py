"""SIGKILL a training run at random moments across its epochs and saves, 20 times: each time ``--resume True``
continues it (or, killed before its first checkpoint, a new start), and the finished weights equal those of an
uninterrupted run, bit for bit."""
import os
import random
import signal
import subprocess
import sys
import time

import torch

from test_train import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIALS = 20
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}            # the same thread count in every run: same float sums


def train(args, save_dir):
    return subprocess.run([sys.executable, "train.py", *args, "--save_dir", str(save_dir)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def weights(save_dir):
    return torch.load(os.path.join(save_dir, "last_epoch_weights.pth"), weights_only=True)


def test_killed_at_random_moments_then_resumed_equals_uninterrupted(tmp_path, lists):
    args = [*TINY, *lists, "--UnFreeze_Epoch", "3", "--save_period", "1", "--mosaic", "False",
            "--Unfreeze_batch_size", "4"]
    start = time.perf_counter()
    reference = train(args, tmp_path / "reference")
    duration = time.perf_counter() - start
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = weights(tmp_path / "reference")
    rng = random.Random(0)
    counts = {"resumed": 0, "restarted": 0, "identical": 0}
    for trial in range(TRIALS):
        save = tmp_path / f"trial{trial}"
        process = subprocess.Popen([sys.executable, "train.py", *args, "--save_dir", str(save)], cwd=ROOT, env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, duration))
        process.send_signal(signal.SIGKILL)
        process.wait()
        resumable = (save / "last_checkpoint.pth").exists()
        finished = train([*args, "--resume", "True"] if resumable else args, save)
        assert finished.returncode == 0, (trial, finished.stderr[-2000:])
        counts["resumed" if resumable else "restarted"] += 1
        got = weights(save)
        counts["identical"] += all(torch.equal(got[k], expected[k]) for k in expected)
        assert not (save / ".run.lock").exists() and not list(save.glob(".*.tmp"))
    print(f"fault injection: {TRIALS} kills, {counts}")
    assert counts["identical"] == TRIALS and counts["resumed"] >= 5
