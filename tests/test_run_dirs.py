"""utils/engine/run_dirs.py: numbered run folders (exp, exp2, exp3 ...; after the highest, never overwriting), ``exist_ok``,
custom names, the newest run holding a file, and two processes claiming folders at once."""
import multiprocessing
import os

import pytest

from utils.engine.run_dirs import latest_run_with, new_run_dir


def entries(root):
    return sorted(os.listdir(root))


def test_numbering_starts_at_the_bare_name(tmp_path):
    root = str(tmp_path / "logs")                                                   # created when missing
    assert new_run_dir(root) == os.path.join(root, "exp")
    assert new_run_dir(root) == os.path.join(root, "exp2")
    assert new_run_dir(root) == os.path.join(root, "exp3")
    assert entries(root) == ["exp", "exp2", "exp3"]
    assert all(os.path.isdir(os.path.join(root, n)) for n in entries(root))


def test_a_gap_continues_after_the_highest(tmp_path):
    for name in ("exp", "exp5"):
        (tmp_path / name).mkdir()
    assert new_run_dir(str(tmp_path)) == str(tmp_path / "exp6")
    assert entries(tmp_path) == ["exp", "exp5", "exp6"]


def test_only_folders_of_the_name_count(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp2").write_text("a file, not a run")                            # taken, but not a run folder
    (tmp_path / "exp9x").mkdir()                                                    # not name<n>
    (tmp_path / "train7").mkdir()                                                   # another name
    (tmp_path / "experiment").mkdir()
    assert new_run_dir(str(tmp_path)) == str(tmp_path / "exp3")
    assert (tmp_path / "exp2").read_text() == "a file, not a run"


def test_the_first_free_number_when_only_numbered_runs_exist(tmp_path):
    (tmp_path / "exp3").mkdir()                                                     # exp itself is missing
    assert new_run_dir(str(tmp_path)) == str(tmp_path / "exp4")


def test_exist_ok_reuses_the_bare_folder(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "weights.pth").write_bytes(b"kept")
    (tmp_path / "exp4").mkdir()
    assert new_run_dir(str(tmp_path), exist_ok=True) == str(tmp_path / "exp")
    assert new_run_dir(str(tmp_path), exist_ok=True) == str(tmp_path / "exp")
    assert entries(tmp_path) == ["exp", "exp4"] and (tmp_path / "exp" / "weights.pth").read_bytes() == b"kept"
    fresh = tmp_path / "fresh"
    assert new_run_dir(str(fresh), exist_ok=True) == str(fresh / "exp") and os.path.isdir(fresh / "exp")


def test_custom_names(tmp_path):
    (tmp_path / "exp").mkdir()
    assert new_run_dir(str(tmp_path), name="predict") == str(tmp_path / "predict")
    assert new_run_dir(str(tmp_path), name="predict") == str(tmp_path / "predict2")
    assert new_run_dir(str(tmp_path), name="train", exist_ok=True) == str(tmp_path / "train")
    assert new_run_dir(str(tmp_path), name="") == str(tmp_path / "exp2")            # empty: the default name
    assert new_run_dir(str(tmp_path), name=None) == str(tmp_path / "exp3")


def test_a_name_with_regex_characters_is_taken_literally(tmp_path):
    (tmp_path / "aXb7").mkdir()                                                     # would match the regex a.b\d*
    assert new_run_dir(str(tmp_path), name="a.b") == str(tmp_path / "a.b")
    assert new_run_dir(str(tmp_path), name="a.b") == str(tmp_path / "a.b2")
    assert new_run_dir(str(tmp_path), name="v1+") == str(tmp_path / "v1+")
    assert new_run_dir(str(tmp_path), name="v1+") == str(tmp_path / "v1+2")


def _claim(root, count, barrier, queue):
    barrier.wait()
    queue.put([new_run_dir(root) for _ in range(count)])


def test_two_processes_at_once_get_different_folders(tmp_path):
    context = multiprocessing.get_context("fork")
    root, count = str(tmp_path / "logs"), 25
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_claim, args=(root, count, barrier, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    claimed = [queue.get(timeout=20) for _ in workers]
    for worker in workers:
        worker.join(timeout=20)
        assert worker.exitcode == 0
    every = claimed[0] + claimed[1]
    assert len(set(every)) == 2 * count                                             # no folder handed out twice
    # Each process's folders increase, and together they are exp, exp2 ... exp50 with no gap.
    for paths in claimed:
        numbers = [int(os.path.basename(p)[3:] or 1) for p in paths]
        assert numbers == sorted(numbers)
    expected = ["exp"] + [f"exp{n}" for n in range(2, 2 * count + 1)]
    assert sorted(os.path.basename(p) for p in every) == sorted(expected) == entries(root)


def write_run_file(root, run, filename, mtime):
    folder = os.path.join(root, run)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, filename)
    with open(path, "w") as f:
        f.write(run)
    os.utime(path, (mtime, mtime))
    return path


def test_latest_run_with_is_the_newest_file_not_the_highest_number(tmp_path):
    root = str(tmp_path)
    write_run_file(root, "exp", "last.pth", 1_000_000)
    newest = write_run_file(root, "exp2", "last.pth", 3_000_000)
    write_run_file(root, "exp3", "last.pth", 2_000_000)
    write_run_file(root, "exp4", "other.txt", 9_000_000)                           # no last.pth: ignored
    os.makedirs(os.path.join(root, "exp5", "last.pth"))                              # a folder, not the file: ignored
    os.utime(os.path.join(root, "exp5", "last.pth"), (9_000_000, 9_000_000))
    os.utime(os.path.join(root, "exp3"), (9_500_000, 9_500_000))                     # the folder's mtime does not count
    assert latest_run_with(root, "last.pth") == newest
    assert latest_run_with(root, "other.txt") == os.path.join(root, "exp4", "other.txt")
    assert latest_run_with(root, "missing.pth") is None
    assert latest_run_with(str(tmp_path / "no_logs"), "last.pth") is None


def test_latest_run_with_the_name_filter(tmp_path):
    root = str(tmp_path)
    exp = write_run_file(root, "exp", "best.pth", 1_000_000)
    exp7 = write_run_file(root, "exp7", "best.pth", 2_000_000)
    train = write_run_file(root, "train", "best.pth", 5_000_000)
    write_run_file(root, "exp_old", "best.pth", 8_000_000)                         # not exp<n>
    write_run_file(root, "myexp", "best.pth", 8_000_000)
    assert latest_run_with(root, "best.pth") in (os.path.join(root, "exp_old", "best.pth"),
                                                 os.path.join(root, "myexp", "best.pth"))   # no filter: any folder
    assert latest_run_with(root, "best.pth", name="exp") == exp7
    assert latest_run_with(root, "best.pth", name="train") == train
    assert latest_run_with(root, "best.pth", name="predict") is None
    os.utime(exp, (3_000_000, 3_000_000))
    assert latest_run_with(root, "best.pth", name="exp") == exp


@pytest.mark.parametrize("name", ["a.b", "v1+"])
def test_latest_run_with_a_name_with_regex_characters(tmp_path, name):
    root = str(tmp_path)
    literal = write_run_file(root, f"{name}2", "last.pth", 1_000_000)
    write_run_file(root, "aXb3" if name == "a.b" else "v11", "last.pth", 5_000_000)   # matches only as a regex
    assert latest_run_with(root, "last.pth", name=name) == literal
