"""numba's disk cache of the compiled kernels: a damaged entry is dropped and compiled again,
and a folder that other users can write is not read (its files are unpickled).

Each test caches one small kernel in a folder of its own (numba's ``NUMBA_CACHE_DIR``, set
through ``numba.config``), as a fresh process would: a new ``Kernel`` is a new numba dispatcher,
which looks in the disk cache on its first call.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from xpnn.backends import jit

numba = pytest.importorskip("numba", reason="the compiled path needs numba (the jit extra)")

from xpnn.backends import jit_cache  # noqa: E402 - needs numba

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
POSIX = hasattr(os, "geteuid")


def _scale(a, s):  # pragma: no cover - compiled by numba
    for i in range(a.size):
        a[i] = a[i] * s[0]


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    """An empty folder for numba's cache, this user's alone (as the umask 022 leaves it)."""
    from numba.core import config

    folder = tmp_path / "numba-cache"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(config, "CACHE_DIR", str(folder))
    monkeypatch.setattr(jit_cache, "_warned", set())
    umask = os.umask(0o022)
    try:
        yield folder
    finally:
        os.umask(umask)


def _fresh_run():
    """A new kernel of ``_scale`` run once: (cache hits, compilations) of its dispatcher, and
    its cache folder."""
    kernel = jit.Kernel(_scale)
    values = np.arange(4.0)
    kernel(values, np.array([2.0]))
    np.testing.assert_array_equal(values, [0, 2, 4, 6])
    stats = kernel._compiled.stats
    hits, misses = sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
    return hits, misses, kernel._compiled._cache.cache_path


def _entry(folder, suffix):
    [path] = folder.glob(f"*/test_jit_cache._scale*{suffix}")
    return path


DAMAGES = {
    "truncated": lambda content: content[: len(content) // 2],
    "random bytes": lambda content: np.random.default_rng(0).bytes(len(content)),
    "empty": lambda content: b"",
    "one byte flipped": lambda content: content[:-9] + bytes([content[-9] ^ 0xFF]) + content[-8:],
    # A pickle frame that claims 2**62 bytes, as a damaged length would.
    "huge length": lambda content: b"\x80\x04\x95" + (1 << 62).to_bytes(8, "little"),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("damaged", ["index .nbi", "data .nbc"])
def test_a_damaged_cache_entry_is_dropped_and_compiled_again(cache_folder, damaged, damage):
    """numba would fail on the entry (UnpicklingError, EOFError, MemoryError...) in every
    process until the folder is deleted; the kernel compiles, warns naming the folder, and
    the next process finds a whole entry again."""
    assert _fresh_run()[:2] == (0, 1)  # compiled and saved
    assert _fresh_run()[:2] == (1, 0)  # loaded from the disk cache
    path = _entry(cache_folder, damaged.split()[1])
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    with pytest.warns(RuntimeWarning, match=re.escape(str(path.parent)) + ".*damaged"):
        hits, misses, _ = _fresh_run()
    assert (hits, misses) == (0, 1)
    assert _fresh_run()[:2] == (1, 0)  # saved again, whole


def test_a_damaged_entry_is_dropped_in_every_mode_of_failure(cache_folder, monkeypatch):
    """Whatever numba raises while it rebuilds an entry it has read (here a MemoryError), the
    entry goes and the kernel compiles."""
    _fresh_run()

    def failing(self, target_context, payload):
        raise MemoryError

    with monkeypatch.context() as patched:
        patched.setattr(numba.core.caching.CompileResultCacheImpl, "rebuild", failing)
        with pytest.warns(RuntimeWarning, match="MemoryError"):
            assert _fresh_run()[:2] == (0, 1)
    assert _fresh_run()[:2] == (1, 0)  # the entry saved after the drop is whole


def test_a_compile_is_announced_where_the_cache_has_none(cache_folder):
    """Inside ``announcing_compiles`` a kernel about to compile says so (a training run shows
    it); one loaded from the disk cache says nothing, nor does a compile outside the block."""
    calls = []
    with jit.announcing_compiles(lambda: calls.append("compiling")):
        assert _fresh_run()[:2] == (0, 1)
        assert calls == ["compiling"]
        assert _fresh_run()[:2] == (1, 0)
    assert calls == ["compiling"]
    for entry in cache_folder.rglob("*.nb*"):
        entry.unlink()
    assert _fresh_run()[:2] == (0, 1)  # compiled again, with no one to tell
    assert calls == ["compiling"]


def test_a_compile_outside_a_training_run_is_logged_once(cache_folder, monkeypatch, caplog):
    """A hand-written loop (the book's scripts) has no progress to show a compile in: the
    process's first compile outside ``announcing_compiles`` is logged instead, once; one
    inside the block is the block's to show, and a kernel loaded from the cache says nothing."""
    monkeypatch.setattr(jit, "_compile_logged", False)

    def drop_entries():
        for entry in cache_folder.rglob("*.nb*"):
            entry.unlink()

    def logged():
        return [r for r in caplog.records if r.getMessage() == jit.COMPILING]

    with caplog.at_level(logging.WARNING, logger="xpnn"):
        with jit.announcing_compiles(lambda: None):
            assert _fresh_run()[:2] == (0, 1)
        assert _fresh_run()[:2] == (1, 0)
        assert logged() == []
        drop_entries()
        assert _fresh_run()[:2] == (0, 1)
        (record,) = logged()
        assert (record.name, record.levelno) == ("xpnn", logging.WARNING)
        drop_entries()
        assert _fresh_run()[:2] == (0, 1)
    assert len(logged()) == 1


def test_the_compile_notice_reaches_stderr_without_logging_set_up():
    """Where the user has not set up logging (a book script), Python's default handler prints
    the notice on stderr, once, and the script's own output is left alone."""
    script = "from xpnn.backends import jit\njit.compiling(); print('epoch: 0'); jit.compiling()\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout == "epoch: 0\n"
    assert done.stderr == jit.COMPILING + "\n"


def test_a_cache_that_cannot_be_saved_is_a_warning(cache_folder, monkeypatch):
    """A full disk as numba saves the compiled kernel: the kernel runs, with a warning."""

    def full(self, name, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(numba.core.caching.IndexDataCacheFile, "_save_data", full)
    with pytest.warns(RuntimeWarning, match="could not save.*No space left"):
        assert _fresh_run()[:2] == (0, 1)


class _Planted:
    """Unpickled, it makes the folder ``marker``: the code a planted index would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _plant(cache_folder, tmp_path):
    """Cache the kernel, then replace its index by one whose unpickling runs code (makes
    ``tmp_path/ran``); the index's path and that marker."""
    _fresh_run()
    index = _entry(cache_folder, ".nbi")
    marker = tmp_path / "ran"
    planted = pickle.dumps(numba.__version__, protocol=-1) + pickle.dumps(_Planted(str(marker)))
    index.write_bytes(planted)
    return index, marker


def _shared_group(path, mode):
    """``path`` in a group other users may belong to (not this user's own), writable by it."""
    os.chown(path, -1, 4321)
    os.chmod(path, mode)


UNSAFE = {
    "cache dir 0o777": lambda folder, index: os.chmod(folder, 0o777),
    "cache dir 0o757": lambda folder, index: os.chmod(folder, 0o757),
    "its folder 0o1777 (sticky)": lambda folder, index: os.chmod(index.parent, 0o1777),
    "its folder 0o757": lambda folder, index: os.chmod(index.parent, 0o757),
    "the index 0o666": lambda folder, index: os.chmod(index, 0o666),
    "the index 0o646": lambda folder, index: os.chmod(index, 0o646),
}
# Changing a file's owner or group needs root.
AS_ROOT = {
    "cache dir 0o770, a shared group": lambda folder, index: _shared_group(folder, 0o770),
    "its folder 0o775, a shared group": lambda folder, index: _shared_group(index.parent, 0o775),
    "the index 0o664, a shared group": lambda folder, index: _shared_group(index, 0o664),
    "its folder another user's": lambda folder, index: os.chown(index.parent, 4321, -1),
    "the index another user's": lambda folder, index: os.chown(index, 4321, -1),
}


@pytest.mark.skipif(not POSIX, reason="owner and mode bits are checked on POSIX systems")
@pytest.mark.parametrize(
    "unsafe",
    [
        *UNSAFE,
        *(
            pytest.param(name, marks=pytest.mark.skipif(not ROOT, reason="chown needs root"))
            for name in AS_ROOT
        ),
    ],
)
def test_a_cache_folder_others_can_write_is_not_read(cache_folder, tmp_path, unsafe):
    """A planted index in a folder another user can write (or owns) would run its code as
    numba unpickles it: the folder is not read, a warning names it, the kernel compiles."""
    index, marker = _plant(cache_folder, tmp_path)
    {**UNSAFE, **AS_ROOT}[unsafe](cache_folder, index)
    with pytest.warns(RuntimeWarning, match=re.escape(str(index.parent)) + ".*run code"):
        hits, misses, _ = _fresh_run()
    assert (hits, misses) == (0, 1)
    assert not marker.exists()
    assert index.read_bytes().endswith(pickle.dumps(_Planted(str(marker))))  # left alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fresh_run()  # the warning is given once per folder


def test_a_planted_index_in_a_safe_folder_would_run(cache_folder, tmp_path):
    """What the test above guards against: numba unpickles the planted index and its code
    runs (here in a folder this user alone can write, so only this user could plant it). The
    unpickled value is no index, so the entry counts as damaged and is compiled again."""
    _, marker = _plant(cache_folder, tmp_path)
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert _fresh_run()[:2] == (0, 1)
    assert marker.is_dir()


@pytest.mark.parametrize("mode", [0o700, 0o755, 0o1777])
def test_a_private_cache_folder_is_used(cache_folder, mode, recwarn):
    """This user's folder, under folders others cannot write (or sticky ones, as /tmp):
    the cache is read, without a word."""
    os.chmod(cache_folder, mode)  # above the kernel's folder: 0o1777 is /tmp's mode
    _fresh_run()
    hits, misses, folder = _fresh_run()
    assert (hits, misses) == (1, 0)
    assert folder.startswith(str(cache_folder))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_check_names_the_problem(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    assert jit_cache.unsafe(str(folder), []) is None
    os.chmod(folder, 0o722)
    assert "can be written by other users (mode 0o722)" in jit_cache.unsafe(str(folder), [])
    assert "cannot be checked" in jit_cache.unsafe(str(tmp_path / "missing"), [])


def _own_group():
    """This user's own group (named as they are, theirs alone), or None."""
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(user.pw_gid)
    private = group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}
    return user.pw_gid if private else None


@pytest.mark.skipif(not POSIX or _own_group() is None, reason="needs a group of this user alone")
def test_a_folder_writable_by_this_users_own_group_is_used(cache_folder, recwarn):
    """Debian and Ubuntu give every user a group of their own and umask 002: folders writable
    by that group are this user's alone, as their ssh holds too."""
    _fresh_run()
    index = _entry(cache_folder, ".nbi")
    for path, mode in [(cache_folder, 0o775), (index.parent, 0o775), (index, 0o664)]:
        os.chown(path, -1, _own_group())
        os.chmod(path, mode)
    assert _fresh_run()[:2] == (1, 0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
