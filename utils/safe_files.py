"""Files a hostile or careless folder can hold: never block on them, never follow a link out, never lose data.

- :func:`open_regular` opens a file for reading without ever blocking: FIFOs, sockets and devices are refused
  before and after opening (``O_NONBLOCK``), so a named pipe among the images cannot hang a run.
- :func:`write_atomic` replaces or creates a file atomically: the new content goes to a temp file in the same
  folder, is flushed to disk (``fsync``), then renamed over the target. A full disk, a file-size limit or a
  permission error leaves the old file as it was and no partial or empty file behind. The final name is opened
  relative to the folder with ``O_NOFOLLOW``, so a symbolic link swapped in after the checks is never followed.
- :func:`printable` shows any file name (also bytes that are not UTF-8) as text that every console can print.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from pathlib import Path

logger = logging.getLogger(__name__)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NOCTTY = getattr(os, "O_NOCTTY", 0)
O_BINARY = getattr(os, "O_BINARY", 0)  # Windows
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Relative-to-folder file operations (openat, renameat, linkat): POSIX; Windows falls back to full paths.
DIR_FD = all(f in os.supports_dir_fd for f in (os.open, os.rename, os.link, os.stat, os.unlink)) and bool(O_DIRECTORY)
TEMP_PREFIX = ".qwen3vl-"  # hidden (the folder loader skips dot files) and short (never over NAME_MAX)
TEMP_SUFFIX = ".tmp"


def printable(path: str | os.PathLike) -> str:
    """A file name as printable text: bytes that are not UTF-8 become ``\\xNN`` (never a UnicodeEncodeError)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    """``"a FIFO"``, ``"a socket"``, ``"a device"``, ``"a folder"``... for messages about non-regular files."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


class NotRegularFileError(ValueError):
    """A path that must be a regular file is a FIFO, socket, device or folder."""


def open_regular(path: str | os.PathLike):
    """Open a regular file for binary reading, never blocking; anything else raises NotRegularFileError."""
    mode = os.stat(path).st_mode  # follows links; a dangling link or a loop raises OSError here
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"{printable(path)} is {file_kind(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | O_NONBLOCK | O_NOCTTY | O_BINARY)
    try:
        mode = os.fstat(fd).st_mode  # it may have been swapped since the stat above
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{printable(path)} is {file_kind(mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (links followed); False for anything else, a dangling link or a link loop."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


class _Folder:
    """A folder opened once: names inside it are used relative to its descriptor (no path re-resolution)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fd = os.open(folder, os.O_RDONLY | O_DIRECTORY) if DIR_FD else None

    def name(self, name: str) -> str:
        return name if self.fd is not None else os.path.join(self.folder, name)

    def at(self) -> dict:
        return {"dir_fd": self.fd} if self.fd is not None else {}

    def pair(self) -> dict:
        return {"src_dir_fd": self.fd, "dst_dir_fd": self.fd} if self.fd is not None else {}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def sync(self) -> None:
        """Make the rename durable (POSIX; folders cannot be fsynced on Windows). The file is already complete
        under its name by then, so a folder that refuses fsync (some network mounts) only gets a warning."""
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            except OSError as err:
                logger.warning("cannot fsync folder %s (%s); the file is written, but a power cut right now "
                               "could still lose the rename", printable(self.folder), err.strerror or err)


def read_no_follow(folder: Path, name: str, max_bytes: int) -> tuple[bytes, os.stat_result] | None:
    """The bytes and stat of ``folder/name`` if it is a regular file (not a link); None if it does not exist.

    Raises NotRegularFileError for a link (``O_NOFOLLOW``), FIFO, device or folder, and for files larger
    than ``max_bytes``. ``max_bytes`` 0: only the stat is taken (the bytes are ``b""``).
    """
    where = _Folder(folder)
    try:
        try:
            fd = os.open(where.name(name), os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_BINARY, **where.at())
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise NotRegularFileError(f"{printable(folder / name)} is a symbolic link") from None
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularFileError(f"{printable(folder / name)} is {file_kind(st.st_mode)}")
            if not max_bytes:
                return b"", st
            if st.st_size > max_bytes:
                raise NotRegularFileError(f"{printable(folder / name)} has {st.st_size} bytes, more than a caption")
            return f.read(max_bytes + 1), st
    finally:
        where.close()


def write_atomic(folder: Path, name: str, data: bytes, mode: int | None = None, owner: tuple[int, int] | None = None,
                 replace: bool = True) -> bool:
    """Write ``data`` as ``folder/name`` atomically; returns False when ``replace`` is off and the name exists.

    The temp file is created in ``folder`` (hidden, ``O_EXCL | O_NOFOLLOW``), written, fsynced and then
    renamed over ``name`` (``replace``) or hard-linked to it, which fails if anything already has that name
    (``replace=False``: a file created meanwhile, or a link, is never overwritten). ``mode`` (default: 0666
    minus the umask, as for any new file) and ``owner`` keep the permissions of a file being replaced. On any
    error the temp file is removed and the target is as it was.
    """
    where = _Folder(folder)
    tmp = f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    created = False
    try:
        fd = os.open(where.name(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_BINARY, 0o666,
                     **where.at())
        created = True
        with os.fdopen(fd, "wb") as f:
            _keep_permissions(f.fileno(), mode, owner)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(where.name(tmp), where.name(name), **where.pair())
            created = False
        elif not _link_new(where, tmp, name):
            return False
        where.sync()
        return True
    finally:
        if created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where.name(tmp), **where.at())
        where.close()


def _link_new(where: _Folder, tmp: str, name: str) -> bool:
    """Give the finished temp file the name ``name`` unless that name exists; False if it does.

    A hard link is atomic and never replaces anything. Filesystems without hard links (FAT, some network
    shares) get a check then a rename instead.
    """
    try:
        os.link(where.name(tmp), where.name(name), **where.pair())
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV):
            raise
        try:
            os.stat(where.name(name), follow_symlinks=False, **where.at())
            return False
        except FileNotFoundError:
            os.replace(where.name(tmp), where.name(name), **where.pair())
            return True
    os.unlink(where.name(tmp), **where.at())
    return True


def _keep_permissions(fd: int, mode: int | None, owner: tuple[int, int] | None) -> None:
    if mode is not None and hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(mode))
    if owner is not None and hasattr(os, "fchown"):
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != owner:
            try:
                os.fchown(fd, *owner)
            except PermissionError:  # only root may give a file away; the new file keeps the writer as owner
                logger.debug("cannot keep the owner %s of a replaced file (not root)", owner)
