"""W2 on one process against 2 MPI ranks: time per step, and the Allreduce's share of a step.

    python benchmarks/mpi.py [--rounds 3] [--epochs 2]

Needs xpnn with the ``mpi`` extra (mpi4py, and the mpich wheel's ``mpiexec``). Each measurement
is a fresh launch, the three kinds alternating over the rounds:

- ``1 process, 1 thread``: ``OMP_NUM_THREADS=1``;
- ``1 process, 2 threads``: ``OMP_NUM_THREADS=2``, what one process makes of 2 cores;
- ``2 ranks, 1 thread each``: ``mpiexec -n 2`` with ``OMP_NUM_THREADS=1`` per rank, each rank on
  half of every global batch of 256.

Each trains W2 (benchmarks/workloads.py: 8192 x 784 normal rows, 784-512-512-10, Adam, global
batch 256, float32) for one warm-up epoch, then ``--epochs`` timed epochs. Under MPI, every
Allreduce inside the steps is timed (the wall time in the call, which includes waiting for the
other rank to arrive), and afterwards 50 Allreduces of the same buffer (670k float32 values and
3 figure slots), each after a barrier, time the transfer alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xpnn.distributed import Communicator

HERE = Path(__file__).resolve().parent
MARK = "MPI-BENCH "
KINDS = ("1 process, 1 thread", "1 process, 2 threads", "2 ranks, 1 thread each")


def child(epochs: int, distributed: bool) -> None:
    """One measurement; rank 0 (or the lone process) prints its JSON result."""
    sys.path.insert(0, str(HERE))
    from workloads import WORKLOADS, make_data

    import xpnn
    from xpnn import distributed as dist

    workload = WORKLOADS["W2"]
    X, y = make_data(workload, 8192)
    model = xpnn.Model(seed=0)
    widths = workload.widths
    for index in range(len(widths) - 1):
        model.add(xpnn.Dense(widths[index], widths[index + 1]))
        model.add(xpnn.ReLU() if index < len(widths) - 2 else xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=workload.learning_rate),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    comm, timed = None, None
    if distributed:
        from mpi4py import MPI

        timed = Timed(dist.communicator(MPI.COMM_WORLD, model.backend))
        comm = timed
    options = dict(batch_size=workload.batch_size, verbose=False, comm=comm)
    model.train(X, y, epochs=1, **options)  # warm-up
    if timed is not None:
        timed.seconds.clear()
    before = model.optimizer.iterations
    started = time.perf_counter()
    history = model.train(X, y, epochs=epochs, **options)
    seconds = time.perf_counter() - started
    steps = model.optimizer.iterations - before
    result = {"ms_per_step": 1e3 * seconds / steps, "loss": history["loss"][-1]}
    if timed is not None:
        result["allreduce_ms_in_step"] = 1e3 * statistics.median(timed.seconds)
        result["allreduce_share"] = sum(timed.seconds) / seconds
        result["allreduce_ms_alone"] = timed.alone(model.network.parameters.summed)
    if timed is None or timed.rank == 0:
        print(MARK + json.dumps(result), flush=True)


class Timed(Communicator):
    """A communicator that times each of its Allreduce calls."""

    def __init__(self, inner) -> None:
        self.inner, self.rank, self.size = inner, inner.rank, inner.size
        self.seconds: list[float] = []

    def allgather(self, value):
        return self.inner.allgather(value)

    def broadcast(self, buffer, root=0):
        self.inner.broadcast(buffer, root)

    def allreduce(self, buffer):
        started = time.perf_counter()
        self.inner.allreduce(buffer)
        self.seconds.append(time.perf_counter() - started)

    def alone(self, buffer, repeats: int = 50) -> float:
        """Median ms of an Allreduce of ``buffer`` that starts with both ranks at a barrier."""
        times = []
        for _ in range(repeats):
            self.inner.comm.Barrier()
            started = time.perf_counter()
            self.inner.allreduce(buffer)
            times.append(time.perf_counter() - started)
        return 1e3 * statistics.median(times)


def launch(kind: str, epochs: int) -> dict:
    threads = "2" if kind == KINDS[1] else "1"
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    command = [sys.executable, str(Path(__file__)), "--child", "--epochs", str(epochs)]
    if kind == KINDS[2]:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", "2", sys.executable,
                   "-m", "mpi4py", *command[1:], "--distributed"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        sys.exit(f"error: {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len(MARK) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (32 steps each)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.epochs, args.distributed)
        return
    results: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    load = os.getloadavg()[0]
    for round_ in range(args.rounds):
        order = KINDS if round_ % 2 == 0 else KINDS[::-1]
        for kind in order:
            results[kind].append(launch(kind, args.epochs))
    print(f"W2, {os.cpu_count()} cores, {args.rounds} rounds of {args.epochs} timed epochs; "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    base = statistics.median(r["ms_per_step"] for r in results[KINDS[0]])
    for kind in KINDS:
        times = [r["ms_per_step"] for r in results[kind]]
        median = statistics.median(times)
        line = (f"{kind:24s} {median:7.2f} ms/step (rounds {min(times):.2f} - {max(times):.2f}), "
                f"{base / median:.2f}x the 1-thread process")  # fmt: skip
        print(line)
    ranks = results[KINDS[2]]
    print(
        "Allreduce (2 ranks): "
        f"{statistics.median(r['allreduce_ms_in_step'] for r in ranks):.2f} ms per step inside "
        f"training, {100 * statistics.median(r['allreduce_share'] for r in ranks):.0f}% of the "
        f"timed wall time; {statistics.median(r['allreduce_ms_alone'] for r in ranks):.2f} ms "
        "alone after a barrier"
    )


if __name__ == "__main__":
    main()
