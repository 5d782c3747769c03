"""Data-parallel training over MPI: K processes train as one process would, only sharing the work.

Every rank passes the same ``(X, y)``. ``batch_size`` is the global batch: each rank takes its
contiguous share of every global batch, cut from the one order all ranks draw alike, computes
its gradient, and weights it by ``n_local / n_global``. One sum over the ranks (an Allreduce
of the flat gradient buffer, with slots after it for the step's loss, right predictions and a
stop flag) then gives every rank the gradient one process computes over the whole batch, and
every rank takes the same optimizer step. Penalty gradients, which every rank adds in full,
carry weights that sum to one: they are counted once.

The ranks talk through a ``Communicator``: rank, size, an allgather of small Python objects,
and an in-place sum and broadcast of the backend's arrays. ``communicator()`` picks one for an
mpi4py communicator and a backend (``transports``): MPI on the arrays themselves for NumPy; on
CuPy, NCCL on the stream where every rank has a device of its own, a CUDA-aware MPI where the
library says it is one, otherwise staging through host memory, which also serves the array-API
reference backends. A model keeps its communicators from one ``train`` to the next until
``close(model)`` or until it is freed.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

import numpy as np

from . import data, progress, training
from ._checks import positive_int
from .agreement import (
    Disagreement,
    OtherRankFailed,
    agree,
    checked,
    digest,
    settings,
)
from .backends import to_numpy
from .building import finalized
from .history import History
from .replicas import STOP_CHECK_EVERY, ReplicaTrainer, share, shared_sums
from .training import read
from .transports import (
    Communicator,
    CudaAwareMPI,
    HostMPI,
    NcclMPI,
    arrays_device,
    communicator,
    mpi_cuda_support,
    use_device,
)

__all__ = [
    "STOP_CHECK_EVERY",
    "Communicator",
    "CudaAwareMPI",
    "Disagreement",
    "HostMPI",
    "NcclMPI",
    "OtherRankFailed",
    "close",
    "communicator",
    "evaluate",
    "mpi_cuda_support",
    "share",
    "train",
    "use_device",
]

#: Each model's communicators, made once per (mpi4py communicator, backend) and closed with the
#: model (or by ``close``): an NCCL communicator is costly to make and must be freed.
_GROUPS: weakref.WeakKeyDictionary[Any, dict[tuple[int, int], tuple[Any, Communicator]]] = (
    weakref.WeakKeyDictionary()
)
_GROUPS_LOCK = threading.Lock()


def group_of(model: Any, comm: Any) -> Communicator:
    """The model's ``Communicator`` over ``comm`` (``communicator(comm, model.backend)``), made
    at its first ``train`` or ``evaluate`` and kept until ``close(model)`` or the model is
    freed. A ``Communicator`` passed as ``comm`` is used as it is."""
    if isinstance(comm, Communicator):
        return comm
    key = (id(comm), id(model.backend))
    with _GROUPS_LOCK:
        groups = _GROUPS.get(model)
        if groups is None:
            groups = _GROUPS[model] = {}
            weakref.finalize(model, _close_all, groups)
        if key in groups:
            return groups[key][1]
    group = communicator(comm, model.backend, arrays=arrays_device(model))
    with _GROUPS_LOCK:
        groups[key] = (comm, group)  # the comm kept alive, so that its id stays its own
    return group


def close(model: Any) -> None:
    """Close the communicators ``train`` and ``evaluate`` made for ``model`` (an NCCL
    communicator is destroyed) at a point of the program every rank reaches alike; the next
    ``train(..., comm=...)`` makes new ones. Freeing the model does the same, whenever the
    garbage collector gets to it."""
    with _GROUPS_LOCK:
        groups = _GROUPS.get(model)
    if groups is not None:
        _close_all(groups)


def _close_all(groups: dict[tuple[int, int], tuple[Any, Communicator]]) -> None:
    while groups:
        _, (_, group) = groups.popitem()
        group.close()


def train(model: Any, X: Any, y: Any, *, comm: Any, shard: bool = False, **options: Any) -> History:
    """``Model.train(..., comm=comm)``: every rank checks its arguments, all agree on them (or
    every rank raises), then each trains on its share; only rank 0 shows progress and writes
    checkpoints. ``shard=True``: each rank passes its own part of the data (``sharding``)."""
    finalized(model, "train")
    group = group_of(model, comm)
    checked(group, shard)
    checkpoint = options["checkpoint"]
    if group.rank != 0:
        options.update(verbose=False, checkpoint=None)
    made: list[ReplicaTrainer] = []
    kind = ReplicaTrainer
    if shard:
        from .sharding import ShardTrainer

        kind = ShardTrainer

    def make(*args: Any, **kwargs: Any) -> ReplicaTrainer:
        made.append(kind(group, checkpoint, *args, **kwargs))
        return made[-1]

    try:
        return training.train(model, X, y, trainer=make, **options)
    except Exception as error:
        if not (made and made[-1].agreed):
            agree(group, None, error)  # the other ranks raise at their agreement
        raise


def evaluate(
    model: Any,
    X: Any,
    y: Any,
    comm: Any,
    batch_size: int | None,
    *,
    verbose: bool = False,
    shard: bool = False,
) -> dict[str, float]:
    """``Model.evaluate(..., comm=comm)``: each rank the loss and right predictions over its
    contiguous share of ``(X, y)`` (``shard=True``: over all of its own part), summed over the
    ranks; every rank returns the same figures. The ranks' parameters must agree (compared by
    a digest; nothing is broadcast), and so must their data unless ``shard``."""
    network = finalized(model, "evaluate")
    group = group_of(model, comm)
    checked(group, shard)
    backend = model.backend
    try:
        X, y = data.prepare(model, X, y)
        if batch_size is not None:
            positive_int(batch_size, "batch_size")
        if model.accuracy is not None:
            model.accuracy.init(y)
    except Exception as error:
        agree(group, None, error)
        raise
    parameters = digest(np.ascontiguousarray(to_numpy(network.parameters.params)))
    given = {"batch size": batch_size, "parameters": parameters}
    every = agree(group, settings(model, X, y, shard, **given), None)
    samples = sum(entry["part samples"] for entry in every) if shard else X.shape[0]
    totals, compared = shared_sums(model, X, y, group, batch_size, whole=shard)
    figures = [totals[0], totals[1], model.regularization_loss()]
    loss_sum, correct, regularization = read(backend, figures)
    data_loss = loss_sum / samples
    if not math.isfinite(data_loss):
        raise ValueError(
            f"X, y: the loss over these data is {data_loss}: the model's computation "
            f"overflows {backend.dtype_name} on them; scale X (and y) to a smaller range"
        )
    result = {
        "loss": data_loss + regularization,
        "data_loss": data_loss,
        "regularization_loss": regularization,
    }
    if model.accuracy is not None:
        result["accuracy"] = correct / compared
    if verbose and group.rank == 0:
        print(progress.validation_line(result))
    return result
