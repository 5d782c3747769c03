"""How many threads NumPy's BLAS runs while xpnn trains, evaluates or predicts.

OpenBLAS splits every matrix product above a small size over all its threads, and a thread
that finds no free core spins until one frees. For a small model that costs more than it
gains even on an idle machine, and on a busy one (a laptop with a browser, two training
processes side by side) a step can take tens of times longer. So while ``train``,
``evaluate`` or ``predict`` runs on a host backend (numpy, and strict, whose arrays are NumPy's
underneath), xpnn holds the process's BLAS libraries to a thread count chosen from the size of
the model's largest matrix product: one thread per ``MACS_PER_THREAD`` multiply-adds, at least
one, and never more than the limit in force before (the cores, ``OMP_NUM_THREADS``, or an outer
``threadpoolctl`` limit). On CuPy the products run on the GPU and host BLAS is left alone.

``XPNN_BLAS_THREADS`` overrides the choice: a positive integer (that many threads, whatever
the model), ``auto`` (the default: the choice above) or ``off`` (xpnn leaves BLAS alone).

BLAS limits belong to the whole process, while users train from several threads at once. The
runs in progress are counted under one lock: the first to begin saves the limits in force, the
smallest choice among the runs in progress holds while they overlap (they share the cores
anyway), and the last to end puts the saved limits back. Limits that other code sets while a
run is in progress are overwritten when the runs change and at the end; BLAS calls that other
threads make meanwhile run under xpnn's limit. (An OpenMP build of OpenBLAS keeps a limit per
thread: there each run sets and puts back its own thread's.)
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import ThreadpoolController

from ._checks import shown

if TYPE_CHECKING:
    from .building import ModelFace

__all__ = ["ENV", "MACS_PER_THREAD", "choose", "limited", "rows", "setting"]

#: The environment variable that overrides the choice.
ENV = "XPNN_BLAS_THREADS"

#: Multiply-adds of the largest product per BLAS thread. W2's 256 x 784 x 512 product (103
#: million) keeps two threads; the digits MLP at batch 32 (largest 32 x 128 x 128, half a
#: million) runs on one, where a second thread made an epoch slower on an idle machine (8.1 ms
#: against 6.9) and up to 40 times slower on a busy one.
MACS_PER_THREAD = 8_000_000

#: Backends whose products go through NumPy's BLAS on the host.
HOST_BLAS = frozenset({"numpy", "strict"})

_lock = threading.Lock()
_libraries: list[Any] | None = None  # threadpoolctl's controllers of the BLAS libraries
_saved: list[tuple[Any, int]] = []  # (library, its limit before the first run in progress)
# A run in progress: (its threads, whether xpnn chose them: then capped by the saved limit).
_runs: dict[object, tuple[int, bool]] = {}


def setting() -> int | str:
    """``XPNN_BLAS_THREADS``, checked: a positive integer, ``"auto"`` (also unset or blank) or
    ``"off"``. Anything else raises ValueError naming the variable."""
    raw = os.environ.get(ENV, "")
    value = raw.strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value == "off":
        return "off"
    if value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(
        f"{ENV} must be a positive integer (BLAS threads while xpnn trains, evaluates and "
        f"predicts), 'auto' (xpnn chooses from the model's size) or 'off' (BLAS left as it "
        f"is); got {shown(raw)}"
    )


def rows(X: Any, batch_size: int | None) -> int:
    """The rows of the largest batch that ``X`` is cut into with ``batch_size``."""
    samples = int(X.shape[0])
    return samples if batch_size is None else min(int(batch_size), samples)


def choose(model: ModelFace, rows: int) -> int:
    """Threads for ``model``'s products on batches of ``rows``: one per ``MACS_PER_THREAD``
    multiply-adds of the largest product, at least one (before the cap by the prior limit)."""
    largest = 0
    for layer in model.layers:
        shape = getattr(getattr(layer, "weights", None), "shape", ())
        if len(shape) == 2:
            largest = max(largest, rows * int(shape[0]) * int(shape[1]))
    return max(1, largest // MACS_PER_THREAD)


def _blas() -> list[Any]:
    """NumPy's BLAS: the BLAS libraries loaded from NumPy's folders (a wheel's ``numpy.libs``),
    or where none is (NumPy built against a system BLAS) every BLAS library loaded when first
    asked."""
    global _libraries
    if _libraries is None:
        found = ThreadpoolController().select(user_api="blas").lib_controllers
        home = os.path.dirname(os.path.dirname(os.path.realpath(np.__file__)))
        own = [lib for lib in found if _inside(lib.filepath, home) in ("numpy", "numpy.libs")]
        _libraries = own or list(found)
    return _libraries


def _inside(path: str, home: str) -> str:
    """The first folder of ``path`` below ``home`` ("" where it is not below)."""
    try:
        relative = os.path.relpath(os.path.realpath(path), home)
    except ValueError:  # another drive
        return ""
    return relative.split(os.sep)[0]


def _per_thread(library: Any) -> bool:
    """Whether ``library`` keeps its limit per thread: OpenBLAS or BLIS built on OpenMP."""
    return getattr(library, "threading_layer", None) == "openmp"


def _set(library: Any, threads: int) -> None:
    """Set ``library``'s limit from this thread. threadpoolctl lets only one Python thread at a
    time set OpenBLAS's process-wide limit (it ignores the others); xpnn's calls are ordered by
    its lock, so each takes that role first."""
    clear = getattr(type(library), "clear_controlling_thread", None)
    if clear is not None and not _per_thread(library):
        clear(force=True)
    library.set_num_threads(threads)


def _limit(before: int, runs: Iterable[tuple[int, bool]]) -> int:
    """The smallest limit among ``runs`` for a library whose limit was ``before``."""
    return min((min(before, n) if chosen else n for n, chosen in runs), default=before)


def _apply() -> None:
    """Set every saved library to the smallest limit among the runs in progress."""
    for library, before in _saved:
        _set(library, _limit(before, _runs.values()))


@contextlib.contextmanager
def limited(model: ModelFace, rows: int, threads: int | str | None = None) -> Iterator[None]:
    """Hold BLAS to the thread count chosen for ``model`` on batches of ``rows`` while the
    block runs, and put the previous limits back after the last overlapping run (see the
    module's docstring). ``threads``: ``setting()``'s value, read here where not given."""
    threads = setting() if threads is None else threads
    if threads == "off" or model.backend.name not in HOST_BLAS:
        yield
        return
    auto = threads == "auto"
    run = (choose(model, rows) if auto else int(threads), auto)
    token = object()
    with _lock:
        libraries = _blas()
        if not _runs:
            _saved[:] = [
                (lib, n)
                for lib in libraries
                if not _per_thread(lib) and (n := lib.get_num_threads()) is not None
            ]
        _runs[token] = run
        _apply()
    # An OpenMP build's limit belongs to the calling thread: set here, put back here.
    own = [(lib, lib.get_num_threads()) for lib in libraries if _per_thread(lib)]
    try:
        for library, before in own:
            if before is not None:
                _set(library, _limit(before, [run]))
        yield
    finally:
        for library, before in own:
            if before is not None:
                _set(library, before)
        with _lock:
            del _runs[token]
            if _runs:
                _apply()
            else:
                for library, before in _saved:
                    _set(library, before)
                _saved.clear()
