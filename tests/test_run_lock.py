"""utils/engine/run_lock.py with each backend this machine can run: flock, a msvcrt stand-in, and the exclusive-create file
used when neither module imports; and train.py starting without fcntl."""
import errno
import importlib.util
import json
import os
import socket
import subprocess
import sys
import types

import pytest

from test_train import TINY, run_train
from utils.errors import UserError
from utils.engine.run_lock import LOCK_NAME, RunLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ["flock", "msvcrt", "exclusive file"]


class FakeMsvcrt(types.ModuleType):
    """``msvcrt.locking`` as Windows documents it: ``LK_NBLCK`` locks ``nbytes`` from the file position, or raises
    PermissionError (EACCES) when another handle holds one of them; ``LK_UNLCK`` frees them. Locks belong to handles,
    so two descriptors of one process conflict as two processes do."""
    LK_UNLCK, LK_LOCK, LK_NBLCK = 0, 1, 2

    def __init__(self):
        super().__init__("msvcrt")
        self.held = {}                      # (device, inode, byte offset) -> fd holding it

    def locking(self, fd, mode, nbytes):
        stat, start = os.fstat(fd), os.lseek(fd, 0, os.SEEK_CUR)
        keys = [(stat.st_dev, stat.st_ino, start + i) for i in range(nbytes)]
        if mode == self.LK_NBLCK:
            if any(key in self.held for key in keys):
                raise PermissionError(errno.EACCES, "Permission denied")
            self.held.update(dict.fromkeys(keys, fd))
        elif mode == self.LK_UNLCK:
            if any(self.held.get(key) != fd for key in keys):
                raise PermissionError(errno.EACCES, "Permission denied")
            for key in keys:
                del self.held[key]
        else:
            raise ValueError(f"mode {mode} is not simulated")


def load_run_lock(monkeypatch, backend):
    """A fresh copy of utils/engine/run_lock.py imported with only ``backend``'s module available (the shared module,
    which the trainer holds, is left alone)."""
    if backend != "flock":
        monkeypatch.setitem(sys.modules, "fcntl", None)        # None in sys.modules: ``import fcntl`` fails
        monkeypatch.setitem(sys.modules, "msvcrt", FakeMsvcrt() if backend == "msvcrt" else None)
    spec = importlib.util.spec_from_file_location("run_lock_under_test", os.path.join(ROOT, "utils", "engine", "run_lock.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.BACKEND == backend
    return module


@pytest.fixture(params=BACKENDS)
def run_lock(request, monkeypatch):
    if request.param == "flock" and importlib.util.find_spec("fcntl") is None:
        pytest.skip("no fcntl here")
    return load_run_lock(monkeypatch, request.param)


def dead_pid():
    """The pid of a child that has exited (Linux hands out pids in order, so it is not reused this soon)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_acquire_is_refused_naming_the_owner(run_lock, tmp_path):
    with run_lock.RunLock(str(tmp_path)):
        with pytest.raises(UserError, match=rf"is in use by another training run \(pid {os.getpid()} on "
                                            rf"{socket.gethostname()}, started "):
            run_lock.RunLock(str(tmp_path)).acquire()
        assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_released_lock_is_removed_and_can_be_acquired_again(run_lock, tmp_path):
    lock = run_lock.RunLock(str(tmp_path / "logs")).acquire()        # the folder is created
    lock.release()
    assert not (tmp_path / "logs" / run_lock.LOCK_NAME).exists()
    lock.release()                                                     # twice is harmless
    with run_lock.RunLock(str(tmp_path / "logs")):
        assert (tmp_path / "logs" / run_lock.LOCK_NAME).exists()
    assert os.listdir(tmp_path / "logs") == []


def test_the_stale_lock_of_a_dead_pid_is_taken_over_with_a_note(run_lock, tmp_path, capsys):
    pid = dead_pid()
    stale = {"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00", "command": "train.py"}
    (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps(stale))
    (tmp_path / ".last_checkpoint.pth.abcd1234.tmp").write_bytes(b"half")  # left by a killed writer
    with run_lock.RunLock(str(tmp_path)):
        out = capsys.readouterr().out
        assert f"taking over the lock of {tmp_path} left by pid {pid} (started 2026-01-01T00:00:00)" in out
        assert "removed 1 temporary file(s)" in out and not (tmp_path / ".last_checkpoint.pth.abcd1234.tmp").exists()
        assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / run_lock.LOCK_NAME).exists()


@pytest.mark.parametrize("owner", [{"pid": os.getppid()}, {"pid": 1, "host": "another-host"}, {}],
                         ids=["live pid", "other host", "no owner"])
def test_the_exclusive_file_is_kept_while_its_owner_may_run(monkeypatch, tmp_path, owner):
    run_lock = load_run_lock(monkeypatch, "exclusive file")
    (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps(owner))
    with pytest.raises(UserError, match=rf"in use by another training run \(pid {owner.get('pid', '[?]')} "):
        run_lock.RunLock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / run_lock.LOCK_NAME).read_text()) == owner


def test_msvcrt_locks_a_byte_past_the_owner_record_and_unlocks_it(monkeypatch, tmp_path):
    run_lock = load_run_lock(monkeypatch, "msvcrt")
    fake = sys.modules["msvcrt"]
    with run_lock.RunLock(str(tmp_path)):
        (_, _, offset), = fake.held                  # Windows refuses others' reads of a locked region
        assert offset >= (tmp_path / run_lock.LOCK_NAME).stat().st_size
    assert fake.held == {}


def test_train_help_runs_without_fcntl():
    # The training code imports without fcntl (--help alone no longer imports it, so it is imported first).
    code = ("import sys; sys.modules['fcntl'] = None; import runpy; sys.argv = ['train.py', '--help']\n"
            "import utils.engine.trainer\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
            "finally:\n    print('backend:', sys.modules['utils.engine.run_lock'].BACKEND)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--save_dir" in result.stdout and "backend: exclusive file" in result.stdout


def test_a_second_training_run_on_a_folder_in_use_is_refused(tmp_path, lists):
    """Across processes, with this machine's own backend, through train.py."""
    save = tmp_path / "logs"
    with RunLock(str(save)):
        result = run_train([*TINY, *lists, "--UnFreeze_Epoch", "1", "--save_dir", str(save)])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"is in use by another training run (pid {os.getpid()}" in result.stderr
    assert not (save / "last_epoch_weights.pth").exists() and not (save / LOCK_NAME).exists()
