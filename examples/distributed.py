"""The spiral model trained data-parallel over MPI: every rank a share of each global batch.

    mpiexec -n 2 python -m mpi4py examples/distributed.py          # 2 processes
    mpiexec -n 2 python -m mpi4py examples/distributed.py --check --dtype float64 --epochs 20
    mpiexec -n 2 python -m mpi4py examples/distributed.py --shard --check --epochs 20
    srun -n 8 python -m mpi4py examples/distributed.py             # on a cluster (Slurm)

Needs ``pip install xpnn[mpi]`` (mpi4py, and the mpich wheel's ``mpiexec``, which lands in the
environment's ``bin``: activate it first, ``. .venv/bin/activate``, or run
``.venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py examples/distributed.py``). ``python -m mpi4py``
ends the whole job when one rank raises, instead of leaving the others waiting. Every rank
builds the same data (seeded) and the same model, and passes ``comm``: ``batch_size`` is the
global batch, so K ranks train as one process does, up to the order of sums: ``--check`` trains
one alone on rank 0 and prints the largest parameter difference. In float64 over 20 epochs it
is about 1e-10; over a longer run, in float64 as in float32, the last-bit differences grow in
a run as chaotic as this one (Adam on the spiral) to the size of the weights themselves (0.9
after 100 epochs in float64), as any change of summation order (thread count, BLAS kernel)
does. Only rank 0 prints, and only it saves the model.

``--shard``: each rank keeps only its own part of the data (``shard=True``), as a run on data too
large for one node would; ``--check`` then trains one process batch by batch in the order shard
mode defines (``xpnn.sharding``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import xpnn
from xpnn import sharding
from xpnn.datasets import spiral_data


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help  # says its default in its own words
        return super()._get_help_string(action)


def build(seed: int, dtype: str) -> xpnn.Model:
    """2-64-3, ReLU, softmax with cross-entropy, Adam: the book's batch-training network."""
    model = xpnn.Model(seed=seed, dtype=dtype)
    model.add(xpnn.Dense(2, 64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=0.02, decay=5e-5),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    parser.add_argument("--epochs", type=int, default=300, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and shuffles")
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="the parameters' dtype"
    )
    parser.add_argument("--check", action="store_true", help="compare with one process")
    parser.add_argument("--save", type=Path, help="where rank 0 saves the trained model")
    parser.add_argument("--shard", action="store_true", help="each rank only its own part")
    args = parser.parse_args()
    try:
        from mpi4py import MPI
    except ImportError:
        raise SystemExit(
            'examples/distributed.py needs mpi4py and an MPI: pip install "xpnn[mpi]" '
            "(mpi4py and the mpich wheel, whose mpiexec lands in the same environment's bin)"
        ) from None

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    X, y = spiral_data(1000, 3, seed=args.seed)  # the same data on every rank
    X_val, y_val = spiral_data(100, 3, seed=args.seed + 1)
    data, validation = (X, y), (X_val, y_val)
    if args.shard:  # only this rank's contiguous part of each (a real run would load only it)
        data = tuple(np.array_split(a, size)[rank] for a in (X, y))
        validation = tuple(np.array_split(a, size)[rank] for a in (X_val, y_val))
    model = build(args.seed, args.dtype)
    started = time.perf_counter()
    model.train(*data, epochs=args.epochs, batch_size=args.batch_size,
                validation_data=validation, print_every=max(1, args.epochs // 5),
                verbose="lines", comm=comm, shard=args.shard)  # fmt: skip
    seconds = time.perf_counter() - started
    figures = model.evaluate(*validation, comm=comm, shard=args.shard)  # the same on every rank
    if rank == 0:
        print(f"{comm.Get_size()} ranks, {seconds:.2f} s: validation accuracy "
              f"{figures['accuracy']:.3f}, loss {figures['loss']:.3f}")  # fmt: skip
        if args.save is not None:
            model.save(args.save)
    sizes = comm.allgather(len(data[0]))
    if args.check and rank == 0:
        alone = build(args.seed, args.dtype)
        if not args.shard:
            alone.train(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=False)
        for _ in range(args.epochs if args.shard else 0):
            orders = sharding.part_orders(alone.rng, sizes)
            for batch in sharding.one_process_batches(sizes, args.batch_size, orders):
                alone.train(X[batch], y[batch], shuffle=False, verbose=False)
        ours, its = (np.concatenate([a.ravel() for layer in m.get_parameters() for a in layer])
                     for m in (model, alone))  # fmt: skip
        largest = float(np.max(np.abs(ours - its)))
        print(f"largest parameter difference from one process: {largest:.2g} ({args.dtype})")


if __name__ == "__main__":
    main()
