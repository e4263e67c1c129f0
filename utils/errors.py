"""One error policy for every entry script: a user's mistake gets one clear message and exit status 2, a bug keeps
its traceback.

User-facing are ``UserError`` (bad files, bad settings, mismatched classes: library code raises it with a message
that names the file and what to do), a missing file or folder, a permission problem and a full or read-only disk.
Everything else is a bug and propagates unchanged. ``UserError`` is a ``ValueError``, so callers that caught
``ValueError`` keep working.
"""
import errno
import sys

# OSError numbers that describe the user's environment, not a bug.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class UserError(ValueError):
    """A problem with the user's input, settings or environment; the message says which file and what to do."""


class DiskFullError(UserError):
    """A write failed for lack of space; ``path``: the file, ``needed`` and ``free``: bytes (None when unknown)."""

    def __init__(self, path, needed, free, note=""):
        self.path, self.needed, self.free = path, needed, free
        size = f"{needed / 2 ** 20:.1f} MiB" if needed is not None else "its size"
        room = f", {free / 2 ** 20:.1f} MiB free" if free is not None else ""
        super().__init__(f"no space left on the device to write {path} (needed {size}{room}); nothing already "
                         f"written was changed{note}")


def is_user_error(err):
    """Whether ``err`` is the user's to fix (see the module docstring)."""
    if isinstance(err, (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return True
    return isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS


def user_message(err):
    """The one-line text of a user-facing error (an OSError with its file named)."""
    if isinstance(err, OSError) and not isinstance(err, UserError) and err.filename and str(err.filename) not in str(err):
        return f"{err.strerror or err}: {err.filename}"
    return str(err)


def run_entry(main, *args):
    """Run an entry script's ``main(*args)`` and exit with its status; a user-facing error prints ``error: ...``
    on stderr and exits with 2, any other exception keeps its traceback."""
    try:
        status = main(*args)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:     # noqa: BLE001 - sorted into user errors and bugs right here
        if not is_user_error(err):
            raise
        print(f"error: {user_message(err)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
