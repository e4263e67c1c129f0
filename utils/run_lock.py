"""A lock on a run's ``save_dir``: a second training run on a folder in use is refused, naming the other run.

The lock is an ``flock`` on ``save_dir/.run.lock``, which also holds the owner's pid, start time and command. The
kernel drops an flock when its process dies, so a lock file left by a killed run is stale: the next run takes it
over and says so.
"""
import datetime
import fcntl
import json
import os
import socket
import sys

from utils.atomic import remove_temporaries
from utils.errors import UserError

LOCK_NAME = ".run.lock"


class RunLock:
    """``with RunLock(save_dir):`` holds the folder for the block (``acquire`` / ``release`` by hand also work)."""

    def __init__(self, folder):
        self.folder, self.path, self.fd = folder, os.path.join(folder, LOCK_NAME), None

    def _owner(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self._owner()
            raise UserError(f"{self.folder} is in use by another training run (pid {owner.get('pid', '?')} on "
                            f"{owner.get('host', '?')}, started {owner.get('started', '?')}: "
                            f"{owner.get('command', '?')}); wait for it, stop it, or choose another --save_dir") from None
        previous = self._owner()
        if previous.get("pid"):
            print(f"Note: taking over the lock of {self.folder} left by pid {previous['pid']} (started "
                  f"{previous.get('started', '?')}), which is no longer running.")
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
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
        os.remove(self.path)          # while still locked: no other run can be between the check and the removal
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
