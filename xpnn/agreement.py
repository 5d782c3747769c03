"""The ranks' agreement before data-parallel training or evaluation: one allgather compares
what must be equal on every rank (settings, model, optimizer state, a digest of the data), and
an error on any rank raises on every rank, so that none is left waiting for another.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checks import shown
from .backends import to_numpy

if TYPE_CHECKING:
    from .transports import Communicator


class Disagreement(ValueError):
    """The ranks called ``train`` or ``evaluate`` differently, or one of them failed to start."""


class OtherRankFailed(RuntimeError):
    """Another rank failed where the ranks act together (writing a checkpoint): this rank stops
    with it rather than wait for it."""


#: Settings each rank has its own of (the sizes of its part in shard mode): gathered, not compared.
PER_RANK = ("part samples", "validation part samples")

#: Settings that are digests of the data: a difference means the ranks were given other data.
DATA = {"data": "X, y", "validation data": "validation_data"}


def agree(
    group: Communicator, settings: dict[str, Any] | None, error: BaseException | None
) -> list[dict[str, Any]]:
    """Compare every rank's settings (or the error that stopped it) in one allgather; raise on
    every rank if one failed or any setting differs from rank 0's. Every rank's settings."""
    mine = {"error": None if error is None else f"{type(error).__name__}: {error}"}
    mine["settings"] = settings
    every = group.allgather(mine)
    failed = [(rank, entry["error"]) for rank, entry in enumerate(every) if entry["error"]]
    if failed:
        if error is not None:
            return []  # the caller raises its own
        rank, message = failed[0]
        raise Disagreement(f"rank {rank} could not start: {message}")
    first = every[0]["settings"]
    for rank, entry in enumerate(every[1:], 1):
        for name, value in first.items():
            theirs = entry["settings"].get(name)
            if name in DATA and theirs != value:
                raise Disagreement(
                    f"{DATA[name]}: rank {rank} was given other data than rank 0 (their "
                    f"contents differ; the digests are {value[:12]}... and {theirs[:12]}...). "
                    f"Every rank must pass all the data, the same on every rank: each takes its "
                    f"share of every batch. To give each rank only its own part, pass "
                    f"shard=True on every rank"
                )
            if name not in PER_RANK and theirs != value:
                raise Disagreement(
                    f"the ranks differ in {name}: rank 0 has {value!r}, rank {rank} has "
                    f"{theirs!r}; every rank must pass the same data, settings and model"
                )
    return [entry["settings"] for entry in every]


def settings(model: Any, X: Any, y: Any, shard: bool = False, **given: Any) -> dict[str, Any]:
    """What must be equal on every rank before training or evaluating together: with the same
    data on every rank, its size and a digest of it (``data_digest``); in shard mode, each
    rank's ``part samples`` instead (gathered, not compared)."""
    network = model.network
    unfinished = network.epoch_in_progress
    order = None if unfinished is None else unfinished.order
    optimizer = model.optimizer
    buffer = network.parameters
    states = () if optimizer is None else optimizer_states(buffer, optimizer)
    return {
        "shard": shard,
        "part samples" if shard else "samples": X.shape[0],
        "input shape": tuple(X.shape[1:]),
        "target shape": tuple(y.shape[1:]),
        **given,
        "parameter count": buffer.params.shape[0],
        "dtype": model.backend.dtype_name,
        **part_settings(model, shard),
        "epochs trained": model.epochs_trained,
        "optimizer step": None if optimizer is None else optimizer.iterations,
        "optimizer state": states,
        "epoch in progress": None
        if unfinished is None
        else (unfinished.samples, unfinished.done, unfinished.steps, digest(order)),
        **({} if shard else {"data": data_digest(X, y)}),
    }


def part_settings(model: Any, shard: bool) -> dict[str, Any]:
    """Every part's class and each of its constructor settings (``config()``), one entry each,
    a class before its settings: a difference names the part, the setting and both values. In
    shard mode, without the settings a part takes from each rank's own data (``from_data``)."""
    parts = [(f"layer {i}", layer) for i, layer in enumerate(model.layers)]
    parts += [("loss", model.loss), ("optimizer", model.optimizer), ("accuracy", model.accuracy)]
    entries: dict[str, Any] = {"layers": [type(layer).__name__ for layer in model.layers]}
    for what, part in parts:
        entries[what] = None if part is None else type(part).__name__
        for setting, value in ({} if part is None else part.config()).items():
            if not (shard and setting in part.from_data):
                entries[f"{what} {type(part).__name__} {setting}"] = value
    return entries


def data_digest(X: Any, y: Any) -> str:
    """A SHA-256 digest of ``(X, y)``'s contents (after ``data.prepare``: in the model's dtype),
    one copy to the host for device arrays: to compare the ranks' data in one allgather."""
    hashed = hashlib.sha256()
    for array in (X, y):
        host = np.ascontiguousarray(to_numpy(array))
        hashed.update(f"{host.dtype.str}{host.shape}".encode())
        hashed.update(host.data)
    return hashed.hexdigest()


def optimizer_states(buffer: Any, optimizer: Any) -> list[str]:
    """The names of the optimizer's state arrays on the parameter buffer, once it has any."""
    ends = tuple(f"_{name}" for name in optimizer.state_names)
    return sorted(name for name in vars(buffer) if ends and name.endswith(ends))


def digest(values: np.ndarray | None) -> str | None:
    """A SHA-256 digest of a host array's contents (None for None)."""
    return None if values is None else hashlib.sha256(np.ascontiguousarray(values)).hexdigest()


def checked(group: Communicator, shard: Any) -> None:
    """Refuse a ``shard`` that is not a bool, on every rank (the others wait to agree)."""
    if not isinstance(shard, bool):
        error = TypeError(f"shard must be True or False; got {shown(shard)}")
        agree(group, None, error)
        raise error
