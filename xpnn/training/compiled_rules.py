"""The optimizer's part of the compiled epoch: each optimizer's own numba loop, by rule number.

An optimizer says how its step runs compiled (``Optimizer.numba_step``): which numba loop of
its module, and that loop's scalars for the coming step, worked out on the host as its numba
version works them out; its ``kept_states`` give the loop's state arrays in order, and its
``flushed_states`` those that ``Optimizer.flush`` zeroes the subnormals of. This module numbers
the loops it knows (``RULES``), computes the scalars of a run of steps ahead (``table``), and
gives the compiled loop two functions that work on the flat buffers or on any slice of them
(one layer's, say): ``update`` runs the loop a rule names, ``flush_states`` the flush.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..optimizers import adagrad, adam, adamw, rmsprop, sgd

__all__ = ["LOOPS", "RULES", "SOURCES", "flush_states", "refusal", "states", "table", "update"]

#: The optimizers' numba loops the compiled epoch runs; a rule is a loop's place here.
LOOPS = (
    adam._numba_loop,
    sgd._numba_plain,
    sgd._numba_momentum,
    rmsprop._numba_loop,
    adagrad._numba_loop,
    adamw._numba_loop,
)
RULES = {loop: rule for rule, loop in enumerate(LOOPS)}

#: The files of the modules whose compiled functions ``update`` calls (for the disk cache).
SOURCES = tuple(module.__file__ or "" for module in (adam, sgd, rmsprop, adagrad, adamw))

#: What the step path calls on an optimizer that the compiled epoch does not: a class that
#: replaces one of them below the class that says how it runs compiled is refused.
_UPDATE_PARTS = ("update", "update_params", "flush", "version", "versions")


def _numba(function: Any) -> Any:
    """``function`` compiled as the backend's kernels are (NumPy's error model)."""
    return numba.njit(function, error_model="numpy", nogil=True)


_adam, _sgd, _sgd_momentum, _rmsprop, _adagrad, _adamw = (_numba(loop) for loop in LOOPS)


def _update(rule, params, dparams, state0, state1, row):  # pragma: no cover - numba
    """One step of rule ``rule`` (a place in ``LOOPS``) on flat ``params`` from ``dparams``,
    with the states the loop takes (the parameters stand in for those it does not) and the
    step's scalars ``row``."""
    if rule == 0:
        _adam(params, dparams, state0, state1, row)
    elif rule == 1:
        _sgd(params, dparams, row)
    elif rule == 2:
        _sgd_momentum(params, dparams, state0, row)
    elif rule == 3:
        _rmsprop(params, dparams, state0, row)
    elif rule == 4:
        _adagrad(params, dparams, state0, row)
    else:
        _adamw(params, dparams, state0, state1, row)


def _flush(a, tiny, zero, one):  # pragma: no cover - compiled by numba
    """``Backend.flush_subnormals`` on one flat array: each value times 1, or times 0 where
    it is below ``tiny`` in magnitude."""
    for i in range(a.size):
        a[i] = a[i] * (one if abs(a[i]) >= tiny else zero)


def _flush_states(flushed, state0, state1, tiny, zero, one):  # pragma: no cover - numba
    """``Optimizer.flush`` on the states ``flushed`` marks (two flags, one per state)."""
    if flushed[0]:
        _flush(state0, tiny, zero, one)
    if flushed[1]:
        _flush(state1, tiny, zero, one)


_flush = _numba(_flush)
update, flush_states = _numba(_update), _numba(_flush_states)


def _loop(optimizer: Any) -> Any:
    step = optimizer.numba_step()
    return None if step is None else step[0]


def refusal(optimizer: Any) -> str | None:
    """Why ``optimizer``'s steps cannot run compiled, or None where they can."""
    cls = type(optimizer)
    if _loop(optimizer) not in RULES or len(optimizer.kept_states()) > 2:
        return f"{cls.__name__} has no compiled epoch"
    owner = next(c for c in cls.__mro__ if "numba_step" in vars(c))
    below = cls.__mro__[: cls.__mro__.index(owner)]
    if any(name in vars(c) for c in below for name in _UPDATE_PARTS):
        return f"{cls.__name__} replaces its update"
    return None


def table(optimizer: Any, steps: int, dtype: Any) -> tuple[int, np.ndarray, list[float]]:
    """Run ``optimizer``'s bookkeeping for ``steps`` steps ahead (its ``pre_update_params`` and
    ``post_update_params``, as the step path runs them) and return its rule, the scalars of
    each step in ``dtype``, and the learning rate before each step (to go back to)."""
    rows: list[tuple[float, ...]] = []
    rates: list[float] = []
    loop = None
    for _ in range(steps):
        rates.append(optimizer.current_learning_rate)
        optimizer.pre_update_params()
        loop, row = optimizer.numba_step()
        rows.append(row)
        optimizer.post_update_params()
    return RULES[loop], np.array(rows, dtype=dtype), rates


def states(optimizer: Any, parameters: Any) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The optimizer's state buffers on the flat ``parameters`` (made as its first update makes
    them), in the order its loop takes them, the parameters standing in for a state it does
    not keep; and two flags, whether each is flushed."""
    kept = optimizer.kept_states()
    arrays = [optimizer.state(parameters, f"param_{name}", parameters.params) for name in kept]
    arrays += [parameters.params] * (2 - len(kept))
    flushed = [name in optimizer.flushed_states for name in kept] + [False] * (2 - len(kept))
    return (arrays[0], arrays[1]), np.array(flushed, dtype=np.bool_)
