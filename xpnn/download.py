"""Downloads of files of known size and SHA-256: bounded in bytes and time, moved in whole.

The bytes go to a temporary file ``.<name>.<random>.download`` beside the target, which takes
the target's name only once the size and checksum match. No more bytes are read than the file
should have, and a watchdog shuts the connection down when the total deadline passes, however
slowly the server sends (a per-read timeout alone lets a trickle of a byte a second run on).

A download killed outright (power cut, SIGKILL) leaves its temporary behind. While a download
runs it holds a lock on its temporary (``flock``; where the platform lacks it, as Windows does,
an open file cannot be removed anyway). ``remove_leftovers`` removes only temporaries of this
pattern that no process holds locked and that have not changed for an hour (so not one just
created, before its lock): never one that another process is writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._checks import shown

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be removed there anyway
    fcntl = None

__all__ = ["fetch", "remove_leftovers"]

#: A default deadline: this many seconds, plus one per ``SLOWEST_RATE`` bytes of the file.
DEADLINE_BASE = 60.0
SLOWEST_RATE = 10_000
#: Seconds an unlocked temporary must have gone unchanged before it counts as left over.
STALE_AFTER = 3600.0
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.download")
_CHUNK = 1 << 16


def fetch(
    url: str,
    path: Path,
    sha256: str,
    size: int,
    *,
    timeout: float = 60.0,
    deadline: float | None = None,
    advice: str = "",
) -> None:
    """Download ``url`` to ``path``, with a progress bar, if it is ``size`` bytes of SHA-256
    ``sha256``.

    ``timeout`` bounds each wait for the server, ``deadline`` the whole download (by default
    a minute plus a second per 10 kB). A server that offers or sends more than ``size`` bytes
    is abandoned at once. Failures raise, naming the URL and ``path``, with ``advice`` added:
    ValueError when the bytes are not the file's, TimeoutError past a time limit, OSError
    otherwise (an HTTP error, no connection). ``path`` is then as it was and no temporary file
    is left.
    """
    from tqdm.auto import tqdm

    if deadline is None:
        deadline = DEADLINE_BASE + size / SLOWEST_RATE
    for name, value in (("timeout", timeout), ("deadline", deadline)):
        if not value > 0:  # also refuses NaN: a socket would not wait at all
            raise ValueError(f"{name} must be a positive number of seconds; got {shown(value)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, temporary = _create_temporary(path)
    except OSError as error:
        raise OSError(error.errno, f"cannot download {url} to {path}: {error.strerror}") from None
    digest, received = hashlib.sha256(), 0
    watchdog = _Watchdog(deadline)

    def failure(error_type: type[Exception], problem: str) -> Exception:
        message = f"{url}: {problem}; nothing was written to {path}"
        return error_type(f"{message}. {advice}" if advice else message)

    try:
        with os.fdopen(fd, "wb") as file:
            try:
                with watchdog, watchdog.opener().open(url, timeout=min(timeout, deadline)) as r:
                    offered = _content_length(r)
                    if offered is not None and offered != size:
                        raise failure(ValueError, f"the server offers {offered} bytes, not {size}")
                    with tqdm(total=size, unit="B", unit_scale=True, desc=path.name) as bar:
                        while chunk := r.read(min(_CHUNK, size + 1 - received)):
                            received += len(chunk)
                            if received > size:
                                raise failure(ValueError, f"the server sent more than {size} bytes")
                            file.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                if isinstance(error, urllib.error.HTTPError):
                    error.close()  # it holds the error page's response
                if watchdog.expired():
                    raise failure(TimeoutError, _late(deadline, received, size)) from error
                if isinstance(error, TimeoutError) or isinstance(
                    getattr(error, "reason", None), TimeoutError
                ):  # a timeout, or urllib's URLError around one
                    raise failure(TimeoutError, f"no data for {timeout} s") from error
                raise failure(OSError, f"cannot download it ({_reason(error)})") from error
            if received < size:
                if watchdog.expired():
                    raise failure(TimeoutError, _late(deadline, received, size))
                raise failure(ValueError, f"the server sent only {received} of {size} bytes")
            file.flush()
            os.fsync(file.fileno())
        if digest.hexdigest() != sha256:
            raise failure(
                ValueError, f"the download's SHA-256 is {digest.hexdigest()}, expected {sha256}"
            )
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def remove_leftovers(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporaries that killed downloads of ``names`` left in ``folder``; the paths
    removed.

    Only a regular file named as ``fetch`` names its temporaries for one of ``names``, unchanged
    for ``STALE_AFTER`` seconds and locked by no process, is removed: a download running in
    another process holds its lock. Anything that cannot be looked at or removed is left.
    """
    names = set(names)
    try:
        entries = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry)
        if match and match["name"] in names:
            with contextlib.suppress(OSError):
                if _remove_if_abandoned(Path(folder) / entry):
                    removed.append(Path(folder) / entry)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    """Unlink ``path`` if it is a regular file, long unchanged, that no process holds locked."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)  # a symlink is refused (ELOOP): it is not one of ours
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or time.time() - status.st_mtime < STALE_AFTER:
            return False
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: it is being written
        now = os.stat(path, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (status.st_dev, status.st_ino):
            return False  # another file has taken the name meanwhile
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, locked temporary file beside ``path``: its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.download")
        try:
            fd = os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
        if fcntl is not None:
            with contextlib.suppress(OSError):  # a file system without locks: age alone tells
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd, temporary


class _Watchdog:
    """Shuts down every connection of one download once ``seconds`` have passed: a read
    blocked on the server then returns, whatever the server does."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._start = time.monotonic()
        self._sockets: list = []
        self._lock = threading.Lock()
        self._fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._fired or time.monotonic() - self._start >= self._seconds

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            for sock in self._sockets:
                _shut(sock)

    def watch(self, sock: object) -> None:
        """Shut ``sock`` down with the others when the deadline passes (now, if it has)."""
        with self._lock:
            self._sockets.append(sock)
            if self._fired:
                _shut(sock)

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's default opener (proxies, redirects), its connections watched."""
        handlers = [_WatchedHTTP()]
        if hasattr(urllib.request, "HTTPSHandler"):
            handlers.append(_WatchedHTTPS())
        for handler in handlers:
            handler.watchdog = self
        return urllib.request.build_opener(*handlers)


class _Watched:
    """A urllib handler whose connections hand their sockets to its watchdog."""

    watchdog: _Watchdog

    def do_open(self, http_class: Any, request: Any, **kwargs: Any) -> Any:
        """urllib's ``do_open``, through a subclass of ``http_class`` that reports its socket."""
        watchdog = self.watchdog

        class Connection(http_class):
            def connect(self) -> None:
                super().connect()
                watchdog.watch(self.sock)

        return super().do_open(Connection, request, **kwargs)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


if hasattr(urllib.request, "HTTPSHandler"):

    class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
        pass


def _shut(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(2)  # socket.SHUT_RDWR: ends any read waiting on it


def _content_length(response: Any) -> int | None:
    try:
        return int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def _late(deadline: float, received: int, size: int) -> str:
    return f"not complete after {deadline:g} s, the time allowed ({received} of {size} bytes)"


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP error {error.code}: {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__
