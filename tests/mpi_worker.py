"""One rank of the MPI tests: ``mpiexec -n K python -m mpi4py mpi_worker.py MODE BACKEND OUT``.

MODE "rules" trains the models of tests/replicas.py over ``MPI.COMM_WORLD`` through every rule
of data-parallel training and pickles what each rank saw to ``OUT/rank<r>.pkl``; tests/test_mpi.py
compares the ranks with each other and with one process. MODE "crash" raises an uncaught error
on the last rank in the middle of training: the job must end, not hang.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if os.environ.get("XPNN_CUPY_API") == "1":  # the CuPy API stand-in, as tests/conftest.py puts it
    import cupy_api

    cupy = cupy_api.install()
    # Two devices per node, and no NCCL: the stand-in's NCCL sums within one process only.
    cupy_api.DEVICE_COUNT = 2
    cupy.cuda.nccl.available = False

from helpers import spiral
from replicas import (
    CASES,
    SHARD_SIZES,
    build,
    build_dropout,
    build_without_metric,
    flat,
    inject_nan,
)

import xpnn
import xpnn.io

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()


def equal_runs(backend: str) -> dict:
    X_val, y_val = spiral(20, 3, seed=1)
    runs = {}
    for optimizer, samples, batch_size in CASES:
        X, y = spiral(samples, 3)
        model = build(backend, optimizer)
        history = model.train(X, y, epochs=3, batch_size=batch_size, verbose=False,
                              validation_data=(X_val, y_val), comm=COMM)  # fmt: skip
        runs[optimizer] = {"params": flat(model), "history": dict(history.history)}
    return runs


def from_rank_0(backend: str) -> dict:
    X, y = spiral(30, 3)
    model = build(backend, seed=11 if RANK == 0 else 100 + RANK)  # other weights and order
    model.train(X, y, epochs=2, batch_size=16, verbose=False, comm=COMM)
    return {"params": flat(model)}


def disagreements(backend: str) -> dict:
    X, y = spiral(20, 3)
    other = RANK == SIZE - 1
    cases = {
        "samples": dict(X=spiral(21, 3)) if other else {},
        "batch size": dict(batch_size=17) if other else {},
        "epochs": dict(epochs=3) if other else {},
        "parameter count": dict(hidden=17) if other else {},
        "dtype": dict(dtype="float32") if other else {},
        "epochs trained": dict(before=1) if other else {},
        "an argument": dict(epochs=0) if other else {},
        "optimizer Adam beta_1": dict(beta_1=0.5) if other else {},
    }
    seen = {}
    for name, change in cases.items():
        data = change.get("X", (X, y))
        model = build(
            backend, hidden=change.get("hidden", 16), dtype=change.get("dtype", "float64")
        )
        model.set(optimizer=xpnn.Adam(beta_1=change.get("beta_1", 0.9)))
        model.finalize()
        if change.get("before"):
            model.train(*data, epochs=1, verbose=False)
        try:
            epochs, batch_size = change.get("epochs", 2), change.get("batch_size", 16)
            model.train(*data, epochs=epochs, batch_size=batch_size, verbose=False, comm=COMM)
            seen[name] = None
        except ValueError as error:
            seen[name] = str(error)
    return seen


def non_finite(backend: str) -> dict:
    X, y = spiral(43, 3)
    model = build(backend)
    if RANK == 1:
        inject_nan(model, at_call=6)  # epoch 2, step 1
    try:
        model.train(X, y, epochs=3, batch_size=32, verbose=False, comm=COMM)
        return {"raised": None}
    except xpnn.NonFiniteLossError as error:
        return {"raised": (error.epoch, error.step), "params": flat(model),
                "iterations": model.optimizer.iterations}  # fmt: skip


def ctrl_c(backend: str, out: str) -> dict:
    X, y = spiral(43, 3)  # 17 steps of 8 per epoch
    model = build(backend)
    if RANK == SIZE - 1:  # a real SIGINT on the last rank after its third step
        post = model.optimizer.post_update_params

        def post_update_params():
            post()
            if model.optimizer.iterations == 3:
                signal.raise_signal(signal.SIGINT)

        model.optimizer.post_update_params = post_update_params
    path = os.path.join(out, "stopped.safetensors")
    model.train(X, y, epochs=2, batch_size=8, verbose=False, checkpoint=path, comm=COMM)
    stopped = {"iterations": model.optimizer.iterations, "params": flat(model)}
    COMM.Barrier()  # rank 0 has written the checkpoint
    loaded = xpnn.Model.load(path, backend=backend, dtype="float64")
    model.train(X, y, epochs=2, batch_size=8, verbose=False, comm=COMM)
    loaded.train(X, y, epochs=2, batch_size=8, verbose=False, comm=COMM)
    return {**stopped, "epochs": model.epochs_trained, "resumed": flat(model),
            "from_file": flat(loaded)}  # fmt: skip


def checkpoints(backend: str, out: str) -> dict:
    X, y = spiral(30, 3)
    path = os.path.join(out, "run.safetensors")
    writes = []
    save_model = xpnn.io.save_model

    def counted(*args, **kwargs):
        writes.append(1)
        return save_model(*args, **kwargs)

    xpnn.io.save_model = counted
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        model = build(backend)
        model.train(X, y, epochs=4, batch_size=16, checkpoint=path, checkpoint_every=2,
                    print_every=1, verbose="lines", comm=COMM)  # fmt: skip
    xpnn.io.save_model = save_model
    COMM.Barrier()  # the file is whole before any rank reads it
    resumed = xpnn.Model.load(path, backend=backend, dtype="float64")
    resumed.train(X, y, epochs=2, batch_size=16, verbose=False, comm=COMM)
    return {"printed": shown.getvalue(), "writes": len(writes), "resumed": flat(resumed)}


def dropout(backend: str) -> dict:
    X, y = spiral(20, 3)
    model = build_dropout(backend)
    model.train(X, y, epochs=1, verbose=False, comm=COMM)
    return {"mask": xpnn.to_numpy(model.layers[2].binary_mask).copy(), "params": flat(model)}


def evaluation(backend: str) -> dict:
    X, y = spiral(43, 3)
    model = build(backend)
    model.train(X, y, epochs=2, batch_size=32, verbose=False)  # alone, on every rank alike
    return {"params": model.get_parameters(), "figures": model.evaluate(X, y, comm=COMM)}


def other_data(backend: str) -> dict:
    X, y = spiral(20, 3)
    if RANK == SIZE - 1:
        X = X.copy()
        X[5, 0] += 1e-9  # same shapes and counts, other contents
    model = build(backend)
    try:
        model.train(X, y, epochs=1, batch_size=16, verbose=False, comm=COMM)
    except ValueError as error:
        return {"message": str(error), "iterations": model.optimizer.iterations}
    return {"message": None, "iterations": model.optimizer.iterations}


def shard(backend: str) -> dict:
    X, y = spiral(43, 3)
    X_val, y_val = spiral(11, 3, seed=1)
    sizes, val_sizes = SHARD_SIZES[SIZE], {2: [20, 13], 3: [15, 10, 8]}[SIZE]
    low, val_low = sum(sizes[:RANK]), sum(val_sizes[:RANK])
    mine = X[low : low + sizes[RANK]], y[low : low + sizes[RANK]]
    validation = (X_val[val_low : val_low + val_sizes[RANK]],
                  y_val[val_low : val_low + val_sizes[RANK]])  # fmt: skip
    model = build(backend)
    history = model.train(*mine, epochs=3, batch_size=32, validation_data=validation,
                          verbose=False, shard=True, comm=COMM)  # fmt: skip
    return {"params": flat(model), "history": dict(history.history)}


def checkpoint_fault(backend: str, out: str) -> dict:
    """Rank 0 cannot write its second checkpoint; its script catches the error and goes on."""
    X, y = spiral(20, 3)
    path = os.path.join(out, "fault", "run.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model = build(backend)
    if RANK == 0:
        checkpoint = model.save

        def replaced(given):
            checkpoint(given)
            if not os.path.isdir(path):  # a directory where the file was: the next write fails
                os.remove(path)
                os.mkdir(path)

        model.save = replaced
    try:
        model.train(X, y, epochs=4, batch_size=16, checkpoint=path, verbose=False, comm=COMM)
        raised = None
    except Exception as error:
        raised = (type(error).__name__, str(error))
    return {"raised": raised, "iterations": model.optimizer.iterations,
            "after": COMM.allgather(RANK)}  # fmt: skip


def no_metric(backend: str) -> dict:
    X, y = spiral(13, 3)
    model = build_without_metric(backend)
    return {"figures": model.evaluate(X, y, batch_size=8, comm=COMM)}


def optimizer_state(backend: str) -> dict:
    X, y = spiral(10, 3)
    model = build(backend, "Adam")
    if RANK == SIZE - 1:  # Adam's state arrays made, everything else back as it was
        model.train(X, y, epochs=1, verbose=False)
        model.set_parameters(build(backend, "Adam").get_parameters())
        model.optimizer.iterations, model.epochs_trained = 0, 0
        model.optimizer.current_learning_rate = model.optimizer.learning_rate
    try:
        model.train(X, y, epochs=1, verbose=False, comm=COMM)
    except ValueError as error:
        return {"message": str(error)}
    return {"message": None}


def crash(backend: str) -> None:
    X, y = spiral(200, 3)
    model = build(backend)
    if RANK == SIZE - 1:
        post = model.optimizer.post_update_params

        def post_update_params():
            post()
            if model.optimizer.iterations == 3:
                raise RuntimeError("a fault on one rank")

        model.optimizer.post_update_params = post_update_params
    model.train(X, y, epochs=1000, batch_size=16, verbose=False, comm=COMM)


def place(backend: str) -> dict:
    """Where the first model landed, the transport, the line rank 0 logs; then a model built
    on another device than its rank's on the last rank, which every rank must refuse."""
    import logging

    import cupy

    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Lines()
    logging.getLogger("xpnn").addHandler(handler)
    logging.getLogger("xpnn").setLevel(logging.INFO)
    model = build(backend)
    group = xpnn.distributed.group_of(model, COMM)
    logging.getLogger("xpnn").removeHandler(handler)
    own = cupy.cuda.Device().id
    placement = {
        "device": own,
        "arrays": model.layers[0].weights.device.id,
        "transport": type(group).__name__,
        "logged": [line for line in lines if line.startswith("ranks on devices:")],
        "placement": group.placement,
        "node": MPI.Get_processor_name(),
    }
    if SIZE == 3:  # ranks 0 and 2 share device 0: NCCL asked for is refused on every rank
        try:
            xpnn.distributed.communicator(COMM, model.backend, "nccl")
        except ValueError as error:
            placement["nccl refused"] = str(error)
    if RANK == SIZE - 1:
        cupy.cuda.Device((own + 1) % 2).use()
    misplaced = build(backend)
    cupy.cuda.Device(own).use()
    X, y = spiral(20, 3)
    before = flat(misplaced)
    try:
        misplaced.train(X, y, epochs=1, batch_size=8, verbose=False, comm=COMM)
    except ValueError as error:
        placement["refused"] = str(error)
    placement["unchanged"] = bool(np.array_equal(flat(misplaced), before))
    return placement


def main() -> None:
    mode, backend, out = sys.argv[1:4]
    if mode == "crash":
        crash(backend)
        return
    placement = None
    if backend == "cupy":  # the device each rank takes without being asked
        placement = place(backend)
    seen = {
        "size": SIZE,
        "placement": placement,
        "equal": equal_runs(backend),
        "from_rank_0": from_rank_0(backend),
        "disagreements": disagreements(backend),
        "non_finite": non_finite(backend),
        "ctrl_c": ctrl_c(backend, out),
        "checkpoints": checkpoints(backend, out),
        "dropout": dropout(backend),
        "evaluate": evaluation(backend),
        "other_data": other_data(backend),
        "shard": shard(backend),
        "checkpoint_fault": checkpoint_fault(backend, out),
        "no_metric": no_metric(backend),
        "optimizer_state": optimizer_state(backend),
    }
    with open(os.path.join(out, f"rank{RANK}.pkl"), "wb") as file:
        pickle.dump(seen, file)
    np.testing.assert_equal(COMM.allgather(RANK), list(range(SIZE)))


if __name__ == "__main__":
    main()
