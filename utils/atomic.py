"""The one atomic file write of the project, for every file it writes: weights, checkpoints, metadata JSON, CSV,
lists, plots, study tables.

The data goes to a uniquely named temporary file in the target's folder (so two writers never collide), is
fsynced and renamed over the target; on any failure the temporary file is removed and the target is untouched.
A full disk becomes a ``DiskFullError`` naming the file, the bytes it needed and the space left.
"""
import errno
import io
import os
import re
import shutil
import tempfile

from utils.errors import DiskFullError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _free_bytes(folder):
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")     # mkstemp(prefix=".<name>.", suffix=".tmp")


def remove_temporaries(folder):
    """Delete the temporary files a killed writer left in ``folder`` (call it only while no one writes there,
    e.g. holding the run lock); returns how many."""
    names = [n for n in os.listdir(folder) if _TEMPORARY.match(n)] if os.path.isdir(folder) else []
    for name in names:
        os.remove(os.path.join(folder, name))
    return len(names)


def atomic_write(path, data):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; returns ``path``."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            raise DiskFullError(path, len(data), _free_bytes(folder)) from err
        raise
    return path


def atomic_save(obj, path):
    """``torch.save`` of ``obj`` to ``path`` atomically (serialized in memory first, so a full disk is a clean
    ``DiskFullError`` instead of a torn zip)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getbuffer())


def atomic_savefig(figure, path, **savefig_kwargs):
    """``figure.savefig`` to ``path`` atomically (the format from the extension)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=os.path.splitext(path)[1][1:] or "png", **savefig_kwargs)
    return atomic_write(path, buffer.getvalue())


def atomic_save_image(image, path, **save_kwargs):
    """``PIL.Image.save`` to ``path`` atomically (the format from the extension)."""
    buffer = io.BytesIO()
    extension = os.path.splitext(path)[1][1:].lower()
    image.save(buffer, format={"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}.get(extension, extension.upper() or "PNG"),
               **save_kwargs)
    return atomic_write(path, buffer.getvalue())


def atomic_write_lines(path, lines):
    """Text lines, each ending in a newline, written atomically (training lists, class files, ImageSets)."""
    return atomic_write(path, "".join(line + "\n" for line in lines))
