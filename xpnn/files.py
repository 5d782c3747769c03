"""Files on disk: names, atomic writes, and which files may be written or read.

A save writes a temporary file beside its target, flushes it to disk and renames it onto the
target in one ``os.replace``, so a crash leaves the old file or the new one, never a mixture.
Only a regular file (or none yet) is ever replaced or read: a directory, a FIFO, a device or a
socket is refused before anything is done. Errors name the user's path, not a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from typing import Any

__all__ = [
    "check_writable",
    "file_kind",
    "file_name",
    "save_target",
    "shown",
    "write_atomic",
]

PathLike = str | os.PathLike[str]


def write_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it, then rename it onto ``path``.

    ``path`` may be a regular file, nothing yet, or a symlink to either, whose target is then
    written and the link kept; anything else is refused with a ValueError before anything is
    written. A failed write raises an OSError of the system's kind that names ``path`` (not the
    temporary file) and the cause; the temporary file is removed and ``path`` is as it was.
    """
    target = save_target(path)
    directory, name = os.path.split(target)
    try:
        fd, temporary = _create_temporary(directory, name)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        with os.fdopen(fd, "wb") as file:
            with contextlib.suppress(OSError):  # keep the permissions of a file we replace
                os.chmod(file.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        save_target(path)  # nothing but a regular file has taken its place meanwhile
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise
    _fsync_directory(directory)


def save_target(path: PathLike) -> str:
    """The file a save to ``path`` writes: ``path``, or the file its symlinks lead to.

    ValueError naming ``path`` if that exists and is not a regular file: a directory, a FIFO,
    a device or a socket is never replaced. OSError (naming ``path``) if it cannot be looked at.
    """
    try:
        problem, target = _target_problem(path)
    except OSError as error:
        raise _write_error(path, error) from None
    if problem is not None:
        raise ValueError(f"cannot save to {shown(path)}: it {problem}; nothing was written")
    return target


def _target_problem(path: PathLike) -> tuple[str | None, str]:
    """Why a save to ``path`` must not write (None if it may), and the file it would write."""
    path = file_name(path)
    name = os.fsdecode(path)
    if not name:
        return "is an empty file name", name
    if "\0" in name:
        return "holds a NUL character, which no file name may", name
    if name.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        return "ends with a path separator, as a folder's name does", name
    target = os.fsdecode(os.path.realpath(path))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return None, target
    if stat.S_ISREG(mode):
        return None, target
    kind = file_kind(mode)
    if os.path.islink(path):
        return f"is a symlink to {target}, which is {kind}, not a regular file", target
    return f"is {kind}, not a regular file", target


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new file ``.<name>.<random>.tmp`` in ``directory``: its descriptor and path.

    ``<name>`` is cut short where the whole would pass the folder's longest file name (255
    bytes, most often): the random part keeps it unique and ``O_EXCL`` makes sure.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    stem = _shortened(name, _name_max(directory) - len(".." + "0" * 12 + ".tmp"))
    while True:
        temporary = os.path.join(directory, f".{stem}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary  # the umask applies
        except FileExistsError:
            continue


def _name_max(directory: str) -> int:
    """The longest file name, in bytes, that ``directory`` takes (255 where it cannot tell)."""
    try:
        limit = os.pathconf(directory or os.curdir, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf, or no answer
        return 255
    return limit if limit > 0 else 255  # -1: no limit known


def _shortened(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes of the file system's encoding, whole
    characters only."""
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    end = max(limit, 0)
    while end and (encoded[end] & 0xC0) == 0x80:  # not inside a UTF-8 character
        end -= 1
    return os.fsdecode(encoded[:end])


def _write_error(path: PathLike, error: OSError) -> OSError:
    """``error`` told about ``path`` rather than the temporary file: the same kind of OSError
    (PermissionError, ...), the same errno, a message that names the file and the cause."""
    cause = error.strerror or str(error) or type(error).__name__
    message = f"cannot save {shown(path)}: {cause}; the file there, if any, is unchanged"
    if error.errno is None:
        return OSError(message)
    return OSError(error.errno, message)  # OSError picks the subclass for the errno


def check_writable(path: PathLike, argument: str) -> None:
    """Raise ValueError naming ``argument`` unless a save to ``path`` can write its file.

    The file, if it exists, must be a regular one (symlinks followed) and its folder must
    exist and take a new file: a temporary file is created there and removed, which, unlike
    ``os.access``, also tells a read-only file system and a folder that root cannot write.
    """
    try:
        problem, target = _target_problem(path)
    except OSError as error:
        raise ValueError(f"{argument}: {shown(path)!r}: {error.strerror or error}") from None
    if problem is not None:
        raise ValueError(f"{argument}: {shown(path)!r} {problem}")
    directory, name = os.path.split(target)
    if not os.path.isdir(directory):
        raise ValueError(f"{argument}: the folder {directory!r} does not exist")
    try:
        fd, temporary = _create_temporary(directory, name)
    except OSError as error:
        raise ValueError(
            f"{argument}: no file can be written in the folder {directory!r} "
            f"({error.strerror or error})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(temporary)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the platform allows syncing a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file of ``os.stat`` mode ``mode`` is, in words ("a directory", ...)."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "a special file")


def file_name(path: Any) -> str | bytes:
    """``path`` as a file name; TypeError for anything else (an int would open a descriptor)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file name (str or os.PathLike); got {path!r:.80}")
    return os.fspath(path)


def shown(path: Any) -> str:
    """``path`` as a message shows it."""
    try:
        return os.fsdecode(path)
    except TypeError:
        return repr(path)
