"""Atomic file writes: a reader never sees a half-written model, report or checkpoint.

Every temporary this package creates (an atomic write's temp file, an export's staging
directory) is named ``.<name>.ser-edge-tmp.<host>.<pid>.<random>[.ext]``, so a later run can
recognise one left behind by a killed process (same host, pid no longer running) and remove it
(:func:`remove_stale_temps`), without touching a temp a live writer is using or any file that is
not ours. The first atomic write into a directory in a process cleans that directory. Temp
files of older releases (``.<name>.<8 random>.tmp[.ext]``, no pid) are stale once an hour old.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Set, Union

from .errors import SerEdgeError

PathLike = Union[str, "os.PathLike[str]"]


class OutputPathError(SerEdgeError, ValueError):
    """An output path cannot be written as asked (a directory where a file goes, or the reverse)."""


def check_output_file(path: PathLike) -> str:
    """``path`` as a string if a file can be written there; :class:`OutputPathError` when it is an
    existing directory or a parent is not a directory. For commands to call before the work."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputPathError(f"{path}: is a directory; give a file path for the output")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputPathError(f"{path}: {parent} is a file, not a directory")
    return path


def check_output_dir(path: PathLike) -> str:
    """``path`` as a string if it is, or can be created as, a directory; :class:`OutputPathError`
    when it (or a parent) is an existing file."""
    path = os.fspath(path)
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        what = "is an existing file" if probe == os.path.abspath(path) else f"is inside {probe}, which is a file"
        raise OutputPathError(f"{path}: {what}; give a directory for the output")
    return path


TEMP_MARK = "ser-edge-tmp"
_TEMP_RE = re.compile(r"^\..*\." + TEMP_MARK + r"\.([A-Za-z0-9-]*)\.(\d+)\.")
#: Temp files of releases before these names (``.<name>.<8 random>.tmp[.ext]``) carry no pid; they
#: count as stale once this old (no atomic write takes an hour).
LEGACY_TEMP_AGE_S = 3600
_LEGACY_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
#: Directories already cleaned by this process.
_CLEANED: Set[str] = set()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]


def temp_prefix(name: str) -> str:
    """Prefix of a temporary for ``name`` made by this process: ``.<name>.ser-edge-tmp.<host>.<pid>.``."""
    return f".{name}.{TEMP_MARK}.{_host()}.{os.getpid()}."


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def stale_temps(directory: PathLike) -> List[str]:
    """Paths in ``directory`` (not recursive) that are temporaries of a process of this host that
    no longer runs (see the module docstring)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    host = _host()
    out = []
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m and m.group(1) == host and not _pid_running(int(m.group(2))):
            out.append(entry.path)
        elif _LEGACY_RE.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_AGE_S:
                    out.append(entry.path)
            except OSError:
                pass
    return sorted(out)


def remove_stale_temps(directory: PathLike) -> List[str]:
    """Delete :func:`stale_temps` of ``directory`` (files, and staging directories with their
    contents). Returns what was removed; errors (e.g. a race with another cleaner) are ignored."""
    removed = []
    for path in stale_temps(directory):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    For writers that want a filename (``torch.save``, ``onnx.save``, ``np.savez``). The temp file
    lives in the same directory so the final ``os.replace`` is atomic on POSIX.
    """
    path = check_output_file(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    if directory not in _CLEANED:
        _CLEANED.add(directory)
        remove_stale_temps(directory)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(base), suffix=os.path.splitext(base)[1], dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; give the final file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
