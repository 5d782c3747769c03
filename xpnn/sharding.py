"""Data-parallel training on parts: ``Model.train(X_part, y_part, comm=comm, shard=True)``.

Each rank passes only its own part of the data (and of the validation data). The data are the
parts together in rank order: N samples, n_r of them on rank r. ``batch_size`` is the global
batch B, and an epoch has ceil(N / B) steps, as one process's has. Step t takes from each
rank's part the positions ``[cut(t), cut(t + 1))`` of that part's order, where
``cut(t) = min(n_r, t * B * n_r // N)`` (``cuts``): every part is taken in proportion to its
size, so every rank works at every step and every part ends with the epoch. A global batch
holds B samples up to rounding (from B - K + 1 to B + K - 1 over K ranks; exactly B when every
``B * n_r / N`` is whole, as with equal parts and K dividing B). The gradients are weighted and
summed as with replicated data, so the run is the one process's that trains on the same
batches in the same order: step t's batch is rank 0's piece, then rank 1's, and so on
(``one_process_batches``).

Shuffling: every rank draws the one order of all N samples that one process would draw,
``model.rng.permutation(N)``, and takes its own samples in that order (``part_orders``), so the
model's generator moves on alike on every rank. An epoch that Ctrl-C stopped keeps the order of
the steps (``one_process_batches`` joined), in memory and in a checkpoint: the samples it has
taken come first, so one process (or replicated training) given the parts together finishes the
epoch with each sample taken once, and every rank takes its own order from it again. It costs
every rank a few arrays of N indices (8 bytes each) per epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .replicas import ReplicaTrainer, shared_sums
from .training import Sums

__all__ = ["ShardTrainer", "cuts", "one_process_batches", "own_order", "part_orders"]


def cuts(step: int, sizes: list[int], batch_size: int) -> list[int]:
    """Where step ``step`` (from 0) of an epoch begins in each rank's part: ``cut(step)``."""
    total = sum(sizes)
    return [min(n, step * batch_size * n // total) for n in sizes]


def own_order(order: np.ndarray, sizes: list[int], rank: int) -> np.ndarray:
    """Rank ``rank``'s samples in ``order`` (of all the parts together, in rank order), as
    positions in its part."""
    low = sum(sizes[:rank])
    mine = order[(order >= low) & (order < low + sizes[rank])]
    return mine - low


def part_orders(rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    """One epoch's order of every rank's part, drawn as shard mode draws it from the model's
    generator ``rng``: one permutation of all the samples, each rank's own taken from it."""
    order = rng.permutation(sum(sizes))
    return [own_order(order, sizes, rank) for rank in range(len(sizes))]


def steps_order(order: np.ndarray, sizes: list[int], batch_size: int) -> np.ndarray:
    """The samples (of the parts together) in the order of an epoch's steps, when ``order``
    (of all the samples) orders each part (``own_order``): step by step, rank by rank."""
    offsets = np.cumsum([0, *sizes])
    steps = -(-int(offsets[-1]) // batch_size)
    keys = np.empty(len(order), dtype=np.int64)
    for rank, n in enumerate(sizes):
        ends = np.array([cuts(step + 1, sizes, batch_size)[rank] for step in range(steps)])
        at = np.searchsorted(ends, np.arange(n), side="right")  # each position's step
        keys[offsets[rank] : offsets[rank + 1]] = at * len(sizes) + rank
    mine = np.concatenate([offsets[r] + own_order(order, sizes, r) for r in range(len(sizes))])
    return mine[np.argsort(keys, kind="stable")]


def one_process_batches(
    sizes: list[int], batch_size: int, orders: list[np.ndarray] | None = None
) -> list[np.ndarray]:
    """One epoch's batches as indices into the parts concatenated in rank order: what one
    process trains on to take the steps shard mode takes (``orders``: each part's, or None)."""
    offsets = np.cumsum([0, *sizes])
    steps = -(-int(offsets[-1]) // batch_size)
    batches = []
    for step in range(steps):
        begin, end = cuts(step, sizes, batch_size), cuts(step + 1, sizes, batch_size)
        pieces = []
        for rank, (low, high) in enumerate(zip(begin, end)):
            positions = np.arange(low, high) if orders is None else orders[rank][low:high]
            pieces.append(offsets[rank] + positions)
        batches.append(np.concatenate(pieces))
    return batches


def taken_by_steps(order: np.ndarray, sizes: list[int], batch_size: int, steps: int) -> bool:
    """Whether the first ``steps`` steps of shard training took ``order``'s first samples:
    an epoch in progress that shard training (of these parts) stopped."""
    if len(order) != sum(sizes):
        return False
    taken = order[: sum(cuts(steps, sizes, batch_size))]
    counts = np.bincount(np.searchsorted(np.cumsum(sizes), taken, side="right"), None, len(sizes))
    return counts.tolist() == cuts(steps, sizes, batch_size)


class ShardTrainer(ReplicaTrainer):
    """A ``ReplicaTrainer`` whose rank holds only its part: it learns the parts' sizes at the
    agreement, cuts each step's piece of its part (``cuts``), shuffles its part
    (``part_orders``) and validates over all of its validation part."""

    shard = True

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.given_batch = options["batch_size"]
        self.sizes = [self.X.shape[0]]
        self.own: np.ndarray | None = None  # this epoch's order of this rank's part

    def check_epoch_in_progress(self) -> None:
        """Checked once the parts' sizes are known (``begin``)."""

    def given(self, epochs: int) -> dict[str, Any]:
        """``ReplicaTrainer.given`` with the sizes of this rank's parts, and the global batch
        as given (each rank's part is smaller)."""
        given = super().given(epochs)
        validation = self.validation
        del given["validation samples"], given["validation data"]
        given["batch size"] = self.given_batch
        given["validation"] = validation is not None
        given["validation part samples"] = 0 if validation is None else validation[0].shape[0]
        return given

    def begin(self, every: list[dict[str, Any]]) -> None:
        """Learn the parts' sizes; refuse (on every rank alike, before any change) a global
        batch smaller than the number of ranks, or an epoch in progress of other parts."""
        group, model = self.group, self.model
        self.sizes = sizes = [entry["part samples"] for entry in every]
        samples = sum(sizes)
        batch = samples if self.given_batch is None else min(self.given_batch, samples)
        if batch < group.size:
            raise ValueError(
                f"batch_size is {batch}: with shard=True every global batch takes from every "
                f"rank's part, so it must be at least the number of ranks, {group.size}"
            )
        self.samples, self.batch_size = samples, batch
        self.validation_samples = sum(entry["validation part samples"] for entry in every)
        unfinished = self.network.epoch_in_progress
        self.own = None
        if unfinished is None:
            return
        order, steps = unfinished.order, unfinished.steps
        done = sum(cuts(steps, sizes, batch))
        if (
            unfinished.samples != samples
            or unfinished.done != done
            or (order is not None and not taken_by_steps(order, sizes, batch, steps))
        ):
            raise ValueError(
                f"epoch {model.epochs_trained + 1} stopped after {unfinished.done} of "
                f"{unfinished.samples} samples (Ctrl-C), but these parts ({sizes} samples on "
                f"the ranks, batch_size {batch}) would not have stopped there: train on the "
                f"same parts on the same ranks to finish it, or call discard_epoch_in_progress()"
            )
        if order is not None:
            self.own = own_order(order, sizes, group.rank)

    def draw_order(self) -> np.ndarray | None:
        """``Trainer.draw_order``: the order of all the samples (which an epoch in progress
        keeps); this rank takes its own from it (``part_orders``)."""
        if not self.shuffle:
            self.own = None
            return None
        order = self.model.rng.permutation(self.samples)
        self.own = own_order(order, self.sizes, self.group.rank)
        return steps_order(order, self.sizes, self.batch_size)

    def batches(self, X: Any, y: Any, order: Any, begin: int) -> Any:
        """``Trainer.batches``: this rank's piece of its part for each step from global sample
        ``begin``, in its own order (``order`` is that of all the parts)."""
        backend, sizes, batch = self.model.backend, self.sizes, self.batch_size
        rank, steps = self.group.rank, -(-self.samples // self.batch_size)
        own = None if self.own is None else backend.asarray(self.own, backend.index_dtype)
        first, done = 0, 0
        while done < begin:
            first += 1
            done = sum(cuts(first, sizes, batch))
        low = cuts(first, sizes, batch)[rank]
        for step in range(first, steps):
            ends = cuts(step + 1, sizes, batch)
            high, stop = ends[rank], sum(ends)
            self.share = (high - low, stop - done)
            if own is None:
                yield stop, X[low:high, ...], y[low:high, ...]
            else:
                indices = own[low:high]
                xp = backend.xp
                yield stop, xp.take(X, indices, axis=0), xp.take(y, indices, axis=0)
            low, done = high, stop

    def validate(self) -> Sums:
        """``Trainer.validate``: each rank over all of its validation part, summed."""
        X, y = self.validation
        backend, xp = self.model.backend, self.model.backend.xp
        totals, compared = shared_sums(self.model, X, y, self.group, self.batch_size, whole=True)
        correct = xp.astype(totals[1], backend.index_dtype)
        return Sums(totals[0] / self.validation_samples, correct, compared)
