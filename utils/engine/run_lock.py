"""A lock on a run's ``save_dir``: a second training run on a folder in use is refused, naming the other run.

The lock is ``save_dir/.run.lock``, which also holds the owner's pid, host, start time and command. One backend is
chosen at import, the first this Python has:

- ``fcntl.flock`` (Linux, macOS): the kernel drops it when its process dies;
- ``msvcrt.locking`` (Windows): a lock on one byte far past the owner record (Windows refuses reads of a locked
  region, and others must read who holds the lock), also dropped by the system when its process dies;
- an exclusive-create lock file (neither module): the file itself is the lock, held while its owner's pid runs on
  this host. Two runs taking over the same stale file at the same instant can both win; the others have no such
  window.

So a lock file left by a killed run is stale: the next run takes it over and says so.
"""
import contextlib
import datetime
import json
import os
import socket
import sys

from utils.atomic import remove_temporaries
from utils.errors import UserError

try:
    import fcntl
except ImportError:
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None

LOCK_NAME = ".run.lock"
_MSVCRT_BYTE = 1 << 30     # offset of the byte msvcrt locks: past any owner record


def _read_owner(path):
    """The owner record of a lock file; ``{}`` when it is missing, empty or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


# Each backend: lock(path) -> the open fd, or None while another run holds the lock; release(fd, path) unlocks and
# removes the file.
def _flock(path):
    """``fcntl.flock`` on the file (whole-file, per open file description)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _flock_release(fd, path):
    os.remove(path)          # while still locked: no other run can be between the check and the removal
    os.close(fd)


def _msvcrt_lock(path):
    """``msvcrt.locking`` of the byte at ``_MSVCRT_BYTE`` (locking starts at the file position)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    os.lseek(fd, _MSVCRT_BYTE, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except PermissionError:  # EACCES: another handle holds the byte
        os.close(fd)
        return None
    return fd


def _msvcrt_release(fd, path):
    os.ftruncate(fd, 0)      # a file left behind (below) then names no owner
    os.lseek(fd, _MSVCRT_BYTE, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    os.close(fd)             # Windows cannot remove an open file, so close first
    with contextlib.suppress(OSError):
        os.remove(path)      # fails when the next run has it open already: then it is theirs


def _pid_running(owner):
    """Whether the owner's pid may still run: unknown owners and other hosts count as running (never stolen)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0 or owner.get("host", socket.gethostname()) != socket.gethostname():
        return True
    if os.name != "posix":
        return True          # os.kill(pid, 0) is no probe on Windows (it sends CTRL_C_EVENT); msvcrt serves there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


def _exclusive(path):
    """Create the file exclusively; a file whose owner no longer runs is removed and created again."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:
        if _pid_running(_read_owner(path)):
            return None
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)      # stale: its owner no longer runs
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:  # another run took it over first
        return None


def _exclusive_release(fd, path):
    os.close(fd)
    os.remove(path)


if fcntl is not None:
    BACKEND, _lock, _release = "flock", _flock, _flock_release
elif msvcrt is not None:
    BACKEND, _lock, _release = "msvcrt", _msvcrt_lock, _msvcrt_release
else:
    BACKEND, _lock, _release = "exclusive file", _exclusive, _exclusive_release


class RunLock:
    """``with RunLock(save_dir):`` holds the folder for the block (``acquire`` / ``release`` by hand also work)."""

    def __init__(self, folder):
        self.folder, self.path, self.fd = folder, os.path.join(folder, LOCK_NAME), None

    def _owner(self):
        return _read_owner(self.path)

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        previous = self._owner()      # read first: the exclusive-file backend replaces a stale file
        fd = _lock(self.path)
        if fd is None:
            owner = self._owner()
            raise UserError(f"{self.folder} is in use by another training run (pid {owner.get('pid', '?')} on "
                            f"{owner.get('host', '?')}, started {owner.get('started', '?')}: "
                            f"{owner.get('command', '?')}); wait for it, stop it, or choose another --save_dir")
        if previous.get("pid"):
            print(f"Note: taking over the lock of {self.folder} left by pid {previous['pid']} (started "
                  f"{previous.get('started', '?')}), which is no longer running.")
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt left the position at its locked byte
        os.write(fd, json.dumps(owner).encode("utf-8"))
        os.fsync(fd)
        self.fd = fd
        removed = remove_temporaries(self.folder)      # left by a writer killed mid-write; nobody else writes now
        if removed:
            print(f"Note: removed {removed} temporary file(s) a killed run left in {self.folder}.")
        return self

    def release(self):
        if self.fd is None:
            return
        _release(self.fd, self.path)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
