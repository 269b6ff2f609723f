"""Safe file access for an output folder that someone else may have made.

An atlas folder travels: a student renders the one a colleague sent, a build reuses last
year's. Anything in it may be hostile or broken: a manifest naming `../../elsewhere` as a
layer, `static/` a symlink to a folder outside, a FIFO where a JSON file belongs. So every
read and write of the atlas goes through the four primitives here:

* `check_name`: a name read from a file that becomes part of a path must match a strict
  pattern (no `/`, no leading dot, no NUL, bounded length);
* `inside`: a path, with its symlinks resolved, must stay inside the output folder;
* `atomic_write` (and `write_if_changed`, `append`): never through a symlink, neither at the
  temp name (created with O_EXCL | O_NOFOLLOW) nor at the final one;
* `read_regular` / `open_regular`: open only regular files, non-blocking, so a FIFO is an
  error instead of a hang.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

from generator.errors import StoreError

TEMP_MARK = ".tmp-"
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # one path component: no "/", no leading "." (so no "..")


class UnsafePathError(StoreError):
    """A name or path that would leave the output folder, or a write through a symlink."""


def check_name(name: object, what: str = "name") -> str:
    """`name` when it is a safe single path component (letters, digits, `_`, `.`, `-`; not
    starting with a dot; at most 128 characters); else UnsafePathError naming `what`."""
    if isinstance(name, str) and NAME.fullmatch(name):
        return name
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    raise UnsafePathError(f"{what} {shown} is not a safe file name (letters, digits, _ . - only)")


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def inside(root: Path | str, path: Path | str) -> Path:
    """`path` if, with every symlink resolved, it is `root` or below it; else UnsafePathError.
    Parts that do not exist yet are taken as they are (what `mkdir` would create)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafePathError(f"refusing to write {path}: it leads outside {root} (through a symlink or '..')")
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Writes


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARK in path.name


def describe(exc: OSError) -> str:
    """An OSError as a user reads it."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device (disk full)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (is the output folder writable?)"
    return exc.strerror or str(exc)


def no_follow(path: str, flags: int) -> int:
    """An `opener` for open(): never through a symlink at the name, never blocking on a FIFO."""
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    return os.open(path, flags | extra, 0o666)


def _prepare(path: Path, root: Path | str | None) -> None:
    """The folder exists and stays inside `root`; the final name is not a symlink."""
    if root is not None:
        inside(root, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        inside(root, path.parent)  # again: mkdir may have walked through a symlink made meanwhile
    if path.is_symlink():
        raise UnsafePathError(f"refusing to write {path}: it is a symlink (remove it, or move the output folder)")


def atomic_write(path: Path, data: bytes, root: Path | str | None = None) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part.

    A temp file in the same folder (created exclusively, not through a symlink), fsync, then
    os.replace: a killed process leaves the old file, a power cut no renamed-but-empty one.
    With `root`, the folder must stay inside it. Every failure is a StoreError naming the path.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        _prepare(path, root)
        with open(tmp, "xb", opener=no_follow) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            if tmp.is_symlink() or tmp.is_file():
                tmp.unlink()
        except OSError:
            pass
        raise StoreError(f"cannot write {path}: {describe(exc)}") from exc


def write_if_changed(path: Path, data: bytes, root: Path | str | None = None) -> bool:
    """atomic_write unless `path` already holds `data` (a re-render of a big site then costs
    reads, not a fsync per page); returns whether it wrote."""
    path = Path(path)
    try:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and read_regular(path, follow=False) == data:
            return False
    except OSError:
        pass
    atomic_write(path, data, root)
    return True


def append(path: Path, data: bytes, root: Path | str | None = None) -> None:
    """Append to a regular file (created if missing), never through a symlink and never
    blocking on a FIFO; StoreError when it cannot."""
    path = Path(path)
    try:
        _prepare(path, root)
        if path.exists() and not path.is_file():  # a FIFO with no reader would say only "no such device"
            raise OSError(errno.EINVAL, "not a regular file")
        fd = no_follow(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {describe(exc)}") from exc


# ---------------------------------------------------------------------------------------------
# Reads


def open_regular(path: Path | str, follow: bool = True) -> BinaryIO:
    """A binary file object for `path` if it is a regular file; OSError otherwise. Opened
    non-blocking, so a FIFO (or a device) fails at once instead of hanging the command."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str, follow: bool = True, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (see open_regular); OSError when it is not one, or when it
    is larger than `max_bytes`."""
    with open_regular(path, follow) as handle:
        if max_bytes is not None and os.fstat(handle.fileno()).st_size > max_bytes:
            raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
        return handle.read()
