"""The error policy: user mistakes get one message and exit 2 in every entry script, bugs keep their traceback;
one atomic write (unique temporary names, cleanup, a full disk named); near-miss suggestions. The run lock is
tested in test_run_lock.py."""
import errno
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from test_train import TINY, read_csv, run_train
from utils.atomic import atomic_save, atomic_write
from utils.config import ConfigError, parse_overrides
from utils.errors import DiskFullError, UserError, is_user_error, run_entry
from utils.engine.run_lock import LOCK_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture()
def user_mistakes(tmp_path):
    """One user mistake per entry script: (arguments, words the message must contain)."""
    torch.save({"a": torch.zeros(1)}, tmp_path / "odd.pth")
    (tmp_path / "empty_voc" / "VOC2007" / "Annotations").mkdir(parents=True)
    (tmp_path / "no_xml").mkdir()
    three = tmp_path / "three.txt"
    three.write_text("a\nb\nc\n")
    return {
        "train": ([os.path.join(ROOT, "train.py"), "--train_annotation_path", str(tmp_path / "none.txt"),
                   "--val_annotation_path", str(tmp_path / "none.txt"), "--VOCdevkit_path", str(tmp_path / "nowhere"),
                   "--save_dir", str(tmp_path / "logs")], "nowhere"),
        "predict": ([os.path.join(ROOT, "predict.py"), "--model_path", str(tmp_path / "odd.pth"), "--image", "x.jpg",
                     "--classes_path", str(three)], "odd.pth"),
        "get_map": ([os.path.join(ROOT, "get_map.py"), "--map_mode", "2", "--VOCdevkit_path", str(tmp_path / "no_voc")],
                    "test.txt"),
        "voc_annotation": ([os.path.join(ROOT, "voc_annotation.py"), "--VOCdevkit_path", str(tmp_path / "empty_voc")],
                           "no .xml annotation files"),
        "kmeans": ([os.path.join(ROOT, "kmeans_for_anchors.py"), "--annotations_path", str(tmp_path / "no_xml")],
                   "no .xml annotation files"),
        "summary": ([os.path.join(ROOT, "summary.py"), "--input_shape", "[100, 100]"], "multiples of 32"),
        "study": ([os.path.join(ROOT, "study.py"), "--sweep", "focal_gama=[1]"], "did you mean focal_gamma"),
        "focal_study": ([os.path.join(ROOT, "study.py"), "config/focal_study.py", "--variants",
                         "[{'name': 'a', 'focal_alpha': 2}]"], "--focal_alpha takes a number from 0 to 1, got 2"),
        "settings": ([os.path.join(ROOT, "train.py"), "--focal_gama", "1"], "did you mean --focal_gamma?"),
    }


@pytest.mark.parametrize("script", ["train", "predict", "get_map", "voc_annotation", "kmeans", "summary", "study",
                                    "focal_study", "settings"])
def test_a_user_mistake_is_one_message_and_exit_2(script, user_mistakes, tmp_path):
    args, words = user_mistakes[script]
    result = run_script(args, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and words in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_bug_keeps_its_traceback():
    def buggy():
        return np.zeros(3).reshape(2, 2)           # a ValueError from numpy is a bug, not the user's

    with pytest.raises(ValueError, match="reshape"):
        run_entry(buggy)
    with pytest.raises(SystemExit) as exit_info:
        run_entry(lambda: (_ for _ in ()).throw(UserError("bad file x.txt")))
    assert exit_info.value.code == 2
    assert is_user_error(OSError(errno.ENOSPC, "full")) and not is_user_error(OSError(errno.EBADF, "bug"))
    assert not is_user_error(RuntimeError("CUDA error")) and is_user_error(FileNotFoundError("x"))


def test_unknown_setting_suggests_near_misses():
    with pytest.raises(ConfigError, match=r"unknown setting --focal_gama; did you mean --focal_gamma\?"):
        parse_overrides({"focal_gamma": 2, "focal_alpha": 0.25, "seed": 1}, ["--focal_gama", "1"])
    with pytest.raises(ConfigError, match="--help lists the 3 settings"):
        parse_overrides({"focal_gamma": 2, "focal_alpha": 0.25, "seed": 1}, ["--zzz", "1"])


def test_atomic_write_uses_unique_temporaries_and_leaves_the_target_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    texts = [json.dumps({"writer": i, "pad": "x" * 200_000}) for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, text)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in texts and os.listdir(tmp_path) == ["metrics.json"]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    before = target.read_text()
    with pytest.raises(DiskFullError) as err:
        atomic_write(target, "y" * 3_000_000)
    assert err.value.path == target and err.value.needed == 3_000_000 and err.value.free > 0
    assert str(target) in str(err.value) and "2.9 MiB" in str(err.value)
    assert target.read_text() == before and os.listdir(tmp_path) == ["metrics.json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_disk_full_during_training_names_the_file_and_what_is_intact(tmp_path, lists, monkeypatch, capsys):
    """ENOSPC injected into the second epoch's checkpoint write: a message, not a traceback; epoch 1's checkpoint
    stays loadable and resuming (with space again) finishes the run."""
    import train
    from utils.engine.resume import checkpoint_epoch

    save = tmp_path / "logs"
    argv = [*TINY, *lists, "--UnFreeze_Epoch", "3", "--mosaic", "False", "--save_dir", str(save)]
    real_fsync, writes = os.fsync, []

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        writes.append(name)
        if "last_checkpoint.pth" in name and sum("last_checkpoint.pth" in w for w in writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert train.main(argv) == 2
    message = capsys.readouterr().err
    assert "no space left on the device to write" in message and "last_checkpoint.pth" in message
    assert f"{save / 'last_checkpoint.pth'} (end of epoch 1) is intact" in message
    assert f"python train.py --resume True --save_dir {save}" in message
    assert checkpoint_epoch(str(save / "last_checkpoint.pth")) == 1 and not (save / LOCK_NAME).exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert train.main([*argv, "--resume", "True"]) == 0
    assert [int(r["epoch"]) for r in read_csv(save)[0]] == [1, 2, 3]


def test_a_truncated_checkpoint_is_refused_naming_the_newest_good_weights(tmp_path, lists):
    save = tmp_path / "logs"
    result = run_train([*TINY, *lists, "--UnFreeze_Epoch", "2", "--save_period", "1", "--mosaic", "False",
                        "--save_dir", str(save)])
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = save / "last_checkpoint.pth"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    newest = sorted(save.glob("ep002-*.pth"))[0]
    newest.write_bytes(b"")                                        # the newest periodic file is broken too
    result = run_train([*TINY, *lists, "--UnFreeze_Epoch", "3", "--resume", "True", "--save_dir", str(save)])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    good = sorted(save.glob("ep001-*.pth"))[0]
    assert f"cannot resume from {checkpoint}" in result.stderr and f"the newest good weights are {good}" in result.stderr


def test_weights_save_atomically_through_the_one_helper(tmp_path):
    atomic_save({"w": torch.arange(3)}, tmp_path / "w.pth")
    assert torch.load(tmp_path / "w.pth", weights_only=True)["w"].tolist() == [0, 1, 2]
    image = Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8))
    from utils.atomic import atomic_save_image

    atomic_save_image(image, tmp_path / "a b.jpg")
    with Image.open(tmp_path / "a b.jpg") as again:
        assert again.format == "JPEG" and again.size == (4, 4)
