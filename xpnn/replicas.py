"""One rank of data-parallel training: its share of each batch, its gradient summed over the
ranks, and the agreement that keeps the ranks in step (``distributed`` holds the public calls;
``sharding`` the mode where each rank passes its own part of the data).

A ``ReplicaTrainer`` is a ``Trainer`` whose step takes the rank's contiguous share of every
global batch, weights its gradient by ``n_local / n_global`` and sums it over the ranks in one
call (with the step's loss, right predictions and a stop flag in slots after it), so every rank
takes the step one process would take over the whole batch.
"""

from __future__ import annotations

from typing import Any

from .agreement import OtherRankFailed, agree, data_digest, optimizer_states, settings
from .history import History
from .layers import Dropout
from .training import StopOnInterrupt, Sums, Trainer, count_correct, read, slices
from .transports import Communicator

__all__ = [
    "STOP_CHECK_EVERY",
    "AgreedStop",
    "ReplicaTrainer",
    "share",
    "shared_sums",
    "start_alike",
]

#: Steps between reads of the summed stop flag where reading costs a device synchronisation.
STOP_CHECK_EVERY = 16


def share(start: int, stop: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part of samples ``[start, stop)`` split over ``size`` ranks:
    sizes differ by at most one, the first ranks taking the extra; empty past the samples."""
    count, extra = divmod(stop - start, size)
    begin = start + rank * count + min(rank, extra)
    return begin, begin + count + (rank < extra)


# -- training ---------------------------------------------------------------------------------


class AgreedStop(StopOnInterrupt):
    """Ctrl-C under MPI: a first one only asks (``requested``); the ranks stop after the step
    whose summed stop flag first counts a request, all at once. A second one stops this rank
    at once (and the job with it, under ``python -m mpi4py``)."""

    requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class ReplicaTrainer(Trainer):
    """A ``Trainer`` on one rank: each step on its share of the global batch, the gradients and
    figures summed over the ranks before the update (``batches`` and ``combine``)."""

    shard = False  # every rank passes all the data

    def __init__(
        self, group: Communicator, given_checkpoint: Any, *args: Any, **options: Any
    ) -> None:
        super().__init__(*args, **options)
        self.group, self.agreed = group, False
        # Every rank keeps the path it was given, though only rank 0 writes, so that the
        # reports (which a checkpoint brings) fall on the same epochs on every rank.
        self.checkpoint = given_checkpoint
        model = self.model
        self.per_sample = 0  # predictions compared per sample, known without a read
        if model.accuracy is not None:
            one = model.forward(self.X[:1, ...])
            self.per_sample = count_correct(model, one, self.y[:1, ...])[1]
        self.share = (0, 0)
        self.check_every = 1 if model.backend.on_host else STOP_CHECK_EVERY
        self.steps = 0

    def given(self, epochs: int) -> dict[str, Any]:
        """The arguments of ``train`` that must agree on every rank."""
        validation = self.validation
        return {
            "epochs": epochs,
            "batch size": self.batch_size,
            "shuffle": self.shuffle,
            "validation samples": None if validation is None else validation[0].shape[0],
            "early stopping": self.early_stopping,
            "checkpoint": self.checkpoint is not None,
            "checkpoint every": self.checkpoint_every,
            "print every": self.print_every,
            "validation data": None if validation is None else data_digest(*validation),
        }

    def begin(self, every: list[dict[str, Any]]) -> None:
        """What a trainer does with every rank's agreed settings before the first step (a
        shard trainer learns the sizes of the parts); nothing here."""

    def run(self, epochs: int) -> History:
        """Agree with the other ranks, start from rank 0's state, then train."""
        given = self.given(epochs)
        self.agreed = True  # from here on, every rank takes part in what comes or none does
        mine = settings(self.model, self.X, self.y, self.shard, **given)
        self.begin(agree(self.group, mine, None))
        start_alike(self.model, self.group)
        if self.snapshot is not None:
            self.snapshot.take()
        return super().run(epochs)

    def validate(self) -> Sums:
        """``Trainer.validate``: each rank over its share of the validation data, the sums
        added up over the ranks (on the device, read with the report's figures)."""
        X, y = self.validation
        totals, compared = shared_sums(self.model, X, y, self.group, self.batch_size)
        backend, xp = self.model.backend, self.model.backend.xp
        return Sums(totals[0] / X.shape[0], xp.astype(totals[1], backend.index_dtype), compared)

    def placement(self) -> str:
        """``Trainer.placement``: every rank's device and the transport, where the communicator
        placed them (CuPy)."""
        said = self.group.placement
        return "" if said is None else f"; {said}"

    def interruption(self) -> StopOnInterrupt:
        """``Trainer.interruption``: a request that the ranks agree on (``AgreedStop``)."""
        self.interrupt = AgreedStop()
        return self.interrupt

    def save_checkpoint(self) -> None:
        """``Trainer.save_checkpoint`` on rank 0 only; the ranks then agree that it was written
        (one allgather), so that a failure stops every rank instead of leaving the others
        waiting for rank 0 at the next step: rank 0 raises its error, the others
        ``OtherRankFailed``."""
        failure = None
        if self.group.rank == 0:
            try:
                super().save_checkpoint()
            except Exception as error:
                failure = error
        message = None if failure is None else f"{type(failure).__name__}: {failure}"
        reported = self.group.allgather(message)[0]
        if failure is not None:
            raise failure
        if reported is not None:
            raise OtherRankFailed(
                f"rank 0 could not write the checkpoint {str(self.checkpoint)!r} ({reported}); "
                f"every rank stops here, at step {self.model.optimizer.iterations}"
            )

    def batches(self, X: Any, y: Any, order: Any, begin: int) -> Any:
        """``Trainer.batches``: this rank's contiguous share of each global batch."""
        xp, rank, size = self.model.backend.xp, self.group.rank, self.group.size
        samples = X.shape[0]
        for start in range(begin, samples, self.batch_size):
            stop = min(start + self.batch_size, samples)
            low, high = share(start, stop, rank, size)
            self.share = (high - low, stop - start)
            if order is None:
                yield stop, X[low:high, ...], y[low:high, ...]
            else:
                indices = order[low:high]
                yield stop, xp.take(X, indices, axis=0), xp.take(y, indices, axis=0)

    def combine(self, batch_loss: Any, right: Any, count: int) -> tuple[Any, Any, int]:
        """``Trainer.combine``: gradients weighted by ``n_local / n_global`` and the figures,
        summed over the ranks in one call; the stop flag read every ``check_every`` steps."""
        backend, xp = self.model.backend, self.model.backend.xp
        buffer = self.network.parameters
        local, total = self.share
        if local != total:
            dparams = buffer.dparams
            dparams *= local / total  # in place: the buffer the Allreduce sends
        figures = buffer.figures
        figures[0] = batch_loss
        figures[1] = 0.0 if right is None else xp.astype(right, backend.dtype)
        figures[2] = 1.0 if self.interrupt.requested else 0.0
        self.group.allreduce(buffer.summed)
        self.steps += 1
        if self.steps % self.check_every == 0 and read(backend, [figures[2]])[0] > 0:
            self.interrupt.stopped = True
        summed_loss = xp.asarray(figures[0], copy=True)
        if right is None:
            return summed_loss, None, 0
        return summed_loss, xp.astype(figures[1], backend.index_dtype), total * self.per_sample


def start_alike(model: Any, group: Communicator) -> None:
    """Rank 0's parameters, optimizer state, step count, shuffling generator and Dropout mask
    seeds and counts on every rank; each rank draws its masks from its own stream (its rank),
    so that masks differ between ranks and rank 0's are those one process would draw."""
    buffer = model.network.parameters
    for name in ("params", *optimizer_states(buffer, model.optimizer)):
        group.broadcast(getattr(buffer, name))
    optimizer = model.optimizer
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    host = (
        model.rng.bit_generator.state,
        optimizer.iterations,
        optimizer.current_learning_rate,
        [layer.random_state() for layer in dropouts],
    )
    state, optimizer.iterations, optimizer.current_learning_rate, masks = group.allgather(host)[0]
    model.rng.bit_generator.state = state
    for layer, mask_state in zip(dropouts, masks):
        layer.set_random_state(mask_state)
        layer.stream = group.rank


def shared_sums(
    model: Any, X: Any, y: Any, group: Communicator, batch_size: int | None, whole: bool = False
) -> tuple[Any, int]:
    """The loss sum and right predictions over ``(X, y)`` (on the device, ``[loss, right]``),
    each rank over its contiguous share (``whole``: over all of its ``X``, its part in shard
    mode), summed over the ranks; and the predictions compared."""
    backend, xp = model.backend, model.backend.xp
    low, high = (0, X.shape[0]) if whole else share(0, X.shape[0], group.rank, group.size)
    totals = backend.zeros(2)
    compared = 0
    shared = slices(X[low:high, ...], y[low:high, ...], batch_size) if high > low else ()
    for batch_X, batch_y in shared:
        output = model.forward(batch_X)
        totals[0] = totals[0] + xp.sum(model.loss.forward(output, batch_y))
        if model.accuracy is not None:
            right, count = count_correct(model, output, batch_y)
            totals[1] = totals[1] + xp.astype(right, backend.dtype)
            compared += count
    group.allreduce(totals)
    return totals, sum(group.allgather(compared))
