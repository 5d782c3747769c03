"""numba's disk cache for the compiled kernels, checked before it is read.

numba keeps each compiled kernel in a cache folder as an index (``<name>.nbi``) and data files
(``<name>.<n>.nbc``), and reads both with ``pickle``, which runs whatever code a file names.
Two things follow, and :class:`CheckedCache` handles both:

- A folder that another user can write to (or owns) lets that user run code in the training
  process by planting a file. Such a folder is not read: the kernel compiles without the disk
  cache, and a warning names the folder once per process. As ssh does with keys, the folder and
  the kernel's files must belong to this user (or root) and be writable by no one else (a
  group of this user alone aside), and no folder above it may be writable by others unless it
  is sticky (as ``/tmp`` is, where no one can move another's folder).
- A damaged file (an interrupted write, a full disk) makes numba fail as it loads it
  (``UnpicklingError``, ``EOFError``, ``MemoryError``...), in every later process. The kernel's
  entry (its index and data files) is removed with a warning that names the folder, and the
  kernel compiles and is cached again.

Only imported once numba is: ``numba.core.caching`` is numba's own cache (``cache=True``).
"""

from __future__ import annotations

import functools
import glob
import os
import stat
import threading
import warnings
from typing import Any

from numba.core.caching import FunctionCache

__all__ = ["CheckedCache", "unsafe"]

#: Folders already warned about as unsafe (the warning is given once per process and folder).
_warned: set[str] = set()
_warned_lock = threading.Lock()


@functools.cache
def _private_group(gid: int, uid: int) -> bool:
    """True where ``gid`` is user ``uid``'s own group: their primary group, named as they are,
    with no other member. Debian and Ubuntu make one for every user and leave new folders
    writable by it (umask 002); like their ssh, such a group's write bit is harmless."""
    import grp
    import pwd

    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    return (
        gid == user.pw_gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}
    )


def _others_can_write(info: os.stat_result) -> bool:
    """True where users other than this one can write to the file or folder ``stat`` read."""
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _private_group(info.st_gid, os.geteuid())


def _owner_problem(path: str, info: os.stat_result) -> str | None:
    """Why ``path`` (already ``stat``-ed) may not hold this user's cache, or None."""
    if info.st_uid not in (os.geteuid(), 0):
        return f"{path} belongs to another user (uid {info.st_uid})"
    if _others_can_write(info):
        return f"{path} can be written by other users (mode {stat.S_IMODE(info.st_mode):#o})"
    return None


def unsafe(folder: str, files: list[str]) -> str | None:
    """Why the cache ``folder`` and its ``files`` are not safe to unpickle from, or None.

    Checked on POSIX systems only (Windows has no owner and mode bits to read this way).
    """
    if not hasattr(os, "geteuid"):
        return None
    folder = os.path.realpath(folder)
    try:
        problem = _owner_problem(folder, os.stat(folder))
        for name in files:
            problem = problem or _owner_problem(name, os.stat(name))
        parent = os.path.dirname(folder)
        while problem is None and parent != folder:
            info = os.stat(parent)
            if _others_can_write(info) and not info.st_mode & stat.S_ISVTX:
                mode = stat.S_IMODE(info.st_mode)
                problem = f"{parent}, which holds it, can be written by other users ({mode:#o})"
            folder, parent = parent, os.path.dirname(parent)
    except OSError as error:
        problem = f"it cannot be checked: {error}"
    return problem


class CheckedCache(FunctionCache):
    """numba's cache of one compiled function, which refuses an unsafe folder and drops a
    damaged entry instead of failing (see the module's docstring).

    numba judges an entry fresh by its function's source file alone; ``sources`` adds the
    files of the modules whose functions it calls (their size and time of change).
    """

    def __init__(self, py_func: Any, sources: tuple[str, ...] = ()) -> None:
        super().__init__(py_func)
        if sources:
            stamps = tuple((os.stat(path).st_mtime, os.stat(path).st_size) for path in sources)
            cache_file = self._cache_file
            cache_file._source_stamp = (cache_file._source_stamp, stamps)

    def _files(self) -> list[str]:
        """The function's index and data files in the folder (numba's names for them)."""
        base = os.path.join(glob.escape(self.cache_path), glob.escape(self._impl.filename_base))
        return sorted({*glob.glob(base + ".nbi"), *glob.glob(base + ".*.nbc")})

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        """numba's ``load_overload``, after the folder's check; None (compile) where the folder
        is unsafe or the entry damaged, or holds none: then ``jit.compiling`` is told first."""
        loaded = self._load(sig, target_context)
        if loaded is None:
            from . import jit

            jit.compiling()
        return loaded

    def _load(self, sig: Any, target_context: Any) -> Any:
        if not self._enabled:
            return None
        problem = unsafe(self.cache_path, self._files())
        if problem is not None:
            self.disable()  # neither read nor written
            with _warned_lock:
                first = self.cache_path not in _warned
                _warned.add(self.cache_path)
            if first:
                warnings.warn(
                    f"xpnn does not use numba's cache folder {self.cache_path}: {problem}. "
                    f"numba loads its files as Python objects, so whoever can write them can run "
                    f"code here; the kernels compile in every process instead. Make the folder "
                    f"yours and writable by you alone (chmod go-w), or set NUMBA_CACHE_DIR to "
                    f"such a folder",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return None
        target_context.refresh()  # as numba's does first: its failure is no damaged entry
        try:
            return super().load_overload(sig, target_context)
        except Exception as error:  # any failure to read or rebuild: the entry is damaged
            self._drop(error)
            return None

    def save_overload(self, sig: Any, data: Any) -> None:
        """numba's ``save_overload``; a failure (a full disk, a file damaged meanwhile) is a
        warning, not an error: the kernel is compiled already."""
        try:
            super().save_overload(sig, data)
        except Exception as error:
            self.disable()
            warnings.warn(
                f"xpnn could not save a compiled kernel in numba's cache folder "
                f"{self.cache_path} ({type(error).__name__}: {error}); it compiles again in the "
                f"next process",
                RuntimeWarning,
                stacklevel=2,
            )

    def _drop(self, error: Exception) -> None:
        """Remove the function's damaged index and data files, with a warning naming them."""
        files = self._files()
        removed = True
        for name in files:
            try:
                os.remove(name)
            except FileNotFoundError:
                pass  # another process removed it first
            except OSError:
                removed = False
        if not removed:
            self.disable()  # it would fail again as numba saves the new entry
        what = ", ".join(os.path.basename(name) for name in files) or "its files"
        warnings.warn(
            f"numba's cache folder {self.cache_path} held a damaged entry for "
            f"{self._impl.filename_base} ({type(error).__name__}: {error}); "
            f"{'removed' if removed else 'could not remove'} {what} and compiled the kernel "
            f"again",
            RuntimeWarning,
            stacklevel=3,
        )
