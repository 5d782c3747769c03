"""An in-process stand-in for MPI: K ranks as K threads, talking through a barrier.

It implements ``xpnn.distributed.Communicator`` with host copies summed in rank order, so the
data-parallel logic (shares, weights, agreement, stop flags) runs in the plain test sessions,
without mpi4py, on every backend. A rank left waiting fails with ``BrokenBarrierError`` after
``TIMEOUT`` seconds instead of hanging the suite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from xpnn.backends import to_numpy
from xpnn.distributed import Communicator

TIMEOUT = 30


class ThreadGroup:
    """What the threads of one group share: a barrier and a slot per rank."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=TIMEOUT)
        self.slots: list[Any] = [None] * size


class ThreadCommunicator(Communicator):
    """Rank ``rank`` of a ``ThreadGroup``; ``backend`` is the backend of the arrays it sums."""

    def __init__(self, group: ThreadGroup, rank: int, backend: Any) -> None:
        self.group, self.rank, self.size, self.backend = group, rank, group.size, backend
        self.calls = {"allgather": 0, "allreduce": 0, "broadcast": 0}

    def _gather(self, value: Any) -> list[Any]:
        group = self.group
        group.slots[self.rank] = value
        group.barrier.wait()
        every = list(group.slots)
        group.barrier.wait()  # nobody writes the next round's slots before all have read
        return every

    def allgather(self, value: Any) -> list[Any]:
        self.calls["allgather"] += 1
        return self._gather(value)

    def allreduce(self, buffer: Any) -> None:
        self.calls["allreduce"] += 1
        every = self._gather(np.array(to_numpy(buffer)))
        total = every[0].copy()
        for part in every[1:]:
            total += part
        buffer[...] = self.backend.asarray(total, buffer.dtype)

    def broadcast(self, buffer: Any, root: int = 0) -> None:
        self.calls["broadcast"] += 1
        every = self._gather(np.array(to_numpy(buffer)))
        buffer[...] = self.backend.asarray(every[root], buffer.dtype)


class Raised:
    """What a rank raised, in place of its result."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def run_ranks(size: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(rank)`` in ``size`` threads at once; each rank's result, or ``Raised`` with the
    exception it raised (returned, not raised, so a test can check every rank's)."""
    results: list[Any] = [None] * size

    def target(rank: int) -> None:
        try:
            results[rank] = work(rank)
        except BaseException as error:  # every rank's outcome is its result
            results[rank] = Raised(error)

    threads = [threading.Thread(target=target, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 4)
        assert not thread.is_alive(), "a rank is still running: left waiting"
    return results
