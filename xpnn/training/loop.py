"""The loop: ``train`` checks ``Model.train``'s arguments and runs a ``Trainer``, whose
``run`` goes over epochs (reports, validation, early stopping, checkpoints, Ctrl-C) and whose
``epoch`` is the step loop.

The loop has two named places for data-parallel training to override: ``Trainer.batches``,
where a batch is cut, and ``Trainer.combine``, where a step's gradients and figures come
together before the update (``distributed.py`` also overrides ``validate``, to share the
validation data out, ``interruption`` and ``save_checkpoint``, so that the replicas agree on
Ctrl-C and only one writes; its shard mode also ``draw_order``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import blas_threads, data, progress
from .._checks import positive_int, shown
from ..agreement import data_digest
from ..backends.jit import announcing_compiles, epochs_compiled
from ..building import EpochInProgress, check_settings, finalized
from ..description import check_savable
from ..files import check_writable
from ..history import History
from .early_stopping import Best
from .evaluation import Sums, count_correct, read_sums, sums
from .stopping import NonFiniteLossError, Snapshot, StopOnInterrupt

if TYPE_CHECKING:
    from ..building import ModelFace, Network

__all__ = ["COMPILING", "Trainer", "train"]

#: Said once in a run's progress where numba compiles a kernel (none in its cache yet).
COMPILING = (
    "xpnn: numba is compiling the training loop for this model (once: its cache keeps it "
    "for later runs)"
)


@dataclasses.dataclass
class Epoch:
    """A finished epoch whose figures (and its validation's, if any) wait, on the device, for
    the next report."""

    number: int
    sums: Sums
    learning_rate: float
    seconds: float
    validation: Sums | None = None


def loss_and_backward(
    model: ModelFace, network: Network, output: Any, y: Any, counting: bool
) -> tuple[Any, Any, int]:
    """A step's summed data loss, right predictions (None unless ``counting``) and predictions
    compared, with every layer's gradients (``network.backward``). A softmax output with
    cross-entropy gets all of them from one pass over the outputs."""
    combined = network.combined
    if combined is not None:
        batch_loss, right = combined.backward_with_sums(output, y)
        network.backward_from(combined.dinputs)
        return batch_loss, right if counting else None, output.shape[0] if counting else 0
    batch_loss = network.backend.xp.sum(network.loss.forward(output, y))
    right, count = count_correct(model, output, y) if counting else (None, 0)
    network.backward(output, y)
    return batch_loss, right, count


def train(
    model: ModelFace,
    X: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int | None,
    shuffle: bool,
    validation_data: tuple[Any, Any] | None,
    early_stopping: int | None,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int | None,
    print_every: int,
    verbose: bool | str,
    note: progress.Note | None = None,
    trainer: Callable[..., Trainer] | None = None,
) -> History:
    """``Model.train``: its arguments checked (before any step), then a ``Trainer``'s run
    (``trainer`` makes it; ``distributed.train`` passes one that trains across processes).
    ``note``: why ``backend="auto"`` chose as it did, said with the progress if shown."""
    finalized(model, "train")
    blas = blas_threads.setting()  # XPNN_BLAS_THREADS, checked before anything changes
    epochs_compiled()  # and XPNN_JIT_EPOCH
    if model.optimizer is None:
        raise ValueError("the model has no optimizer: call set(optimizer=...) before train()")
    epochs = positive_int(epochs, "epochs")
    print_every = positive_int(print_every, "print_every")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be True or False; got {shown(shuffle)}")
    display = progress.mode(verbose)
    checkpoint_every = (
        1 if checkpoint_every is None else positive_int(checkpoint_every, "checkpoint_every")
    )
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path; got {shown(checkpoint)}")
        check_writable(checkpoint, "checkpoint")
        check_savable(model, "checkpoint")  # here, not at the first checkpoint epochs later
    if early_stopping is not None:
        early_stopping = positive_int(early_stopping, "early_stopping")
        if validation_data is None:
            raise ValueError("early_stopping watches the validation loss: give validation_data")
    check_settings(model)  # the optimizer may have been set, or a setting changed, since
    X, y = data.prepare(model, X, y)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        validation = data.prepare(model, *validation_data, argument="validation_data")
    if model.accuracy is not None:
        model.accuracy.init(y)
    trainer = (Trainer if trainer is None else trainer)(
        model,
        X,
        y,
        batch_size=batch_size,
        shuffle=shuffle,
        validation=validation,
        early_stopping=early_stopping,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        print_every=print_every,
        display=display,
        note=note,
    )
    with blas_threads.limited(model, trainer.batch_size, blas):
        return trainer.run(epochs)


class Trainer:
    """One run of training over prepared ``(X, y)``: epochs of steps, reports, checkpoints.

    It trains ``model``'s network (``Model.network``: its passes, parameters and training
    state) with the model's optimizer, loss and metric. A data-parallel trainer overrides
    ``batches`` (to cut each replica's share) and ``combine`` (to sum gradients and figures
    over replicas); the rest stays as it is.
    """

    def __init__(
        self,
        model: ModelFace,
        X: Any,
        y: Any,
        *,
        batch_size: int | None,
        shuffle: bool,
        validation: tuple[Any, Any] | None,
        early_stopping: int | None,
        checkpoint: str | os.PathLike | None,
        checkpoint_every: int,
        print_every: int,
        display: str | None,
        note: progress.Note | None = None,
    ) -> None:
        samples = X.shape[0]
        self.model, self.X, self.y = model, X, y
        self.network = network = finalized(model, "train")
        self.samples = samples  # an epoch's (with data-parallel parts: every rank's together)
        self.batch_size = samples if batch_size is None else min(batch_size, samples)
        self.shuffle, self.validation, self.early_stopping = shuffle, validation, early_stopping
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.print_every, self.display, self.note = print_every, display, note
        # Off the host a non-finite loss is seen at a report; the state of the last good
        # report is kept to go back to.
        self.snapshot = None if model.backend.on_host else Snapshot(network, model.optimizer)
        self.check_epoch_in_progress()
        #: Why the compiled epoch does not run where the backend has it (said in the header).
        self.step_by_step: str | None = None
        self.compiled = self.compiled_epoch()

    def check_epoch_in_progress(self) -> None:
        """Refuse (before any step) to finish an epoch Ctrl-C stopped on other data."""
        unfinished, samples = self.network.epoch_in_progress, self.X.shape[0]
        if unfinished is None:
            return
        stopped = (
            f"epoch {self.model.epochs_trained + 1} stopped after {unfinished.done} of "
            f"{unfinished.samples} samples (Ctrl-C): train on the same X and y to finish it, "
            "or call discard_epoch_in_progress() first"
        )
        if samples != unfinished.samples:
            raise ValueError(f"X has {samples} samples, but {stopped}")
        if unfinished.data is not None and data_digest(self.X, self.y) != unfinished.data:
            raise ValueError(f"X and y are not the data that {stopped}")

    def stopped_at(self, unfinished: EpochInProgress) -> EpochInProgress:
        """``unfinished``, with a digest of the data it stopped on (one pass over it, at
        Ctrl-C only), so that the next ``train`` finishes it on the same data."""
        unfinished.data = data_digest(self.X, self.y)
        return unfinished

    def compiled_epoch(self) -> Any:
        """What runs each epoch's steps in one compiled call (``training.compiled``) where it
        can run this training: the numpy backend compiled by numba, this class's own batches
        and steps (a data-parallel trainer cuts and combines its own), and a model it
        expresses. None otherwise: ``epoch`` runs them one by one."""
        if self.model.backend.fast_path != "numba" or any(
            getattr(type(self), name) is not getattr(Trainer, name)
            for name in ("batches", "combine", "epoch", "draw_order")
        ):
            return None
        from . import compiled  # imports numba: only where the backend runs it

        self.step_by_step = compiled.refusal(self)
        return None if self.step_by_step else compiled.CompiledEpoch(self)

    def run(self, epochs: int) -> History:
        """Train ``epochs`` more epochs (the first may finish one Ctrl-C stopped); the History."""
        model, network, backend = self.model, self.network, self.model.backend
        samples, checkpoint = self.samples, self.checkpoint
        history = History()
        pending: list[Epoch] = []
        regularized = any(getattr(layer, "regularized", False) for layer in network.trainable)
        first, final = network.epochs_trained + 1, network.epochs_trained + epochs
        steps = -(-samples // self.batch_size)
        chosen = ""
        if self.display is not None and self.note is not None:  # said once, when shown
            why = self.note.take()
            chosen = "" if why is None else f"; backend='auto' chose it: {why}"
        path = ", epochs compiled" if self.compiled is not None else ""
        if self.step_by_step:
            path = f", step by step: {self.step_by_step}"
        shown = progress.Progress(
            self.display,
            first,
            final,
            f"xpnn: training on {backend.name} ({backend.device}, {backend.dtype_name}"
            f"{path}{chosen}): {samples} "
            f"samples, {steps} step{'s' if steps > 1 else ''} per epoch{self.placement()}",
        )
        best = Best(self.early_stopping) if self.early_stopping else None
        started = time.perf_counter()
        announced: list[bool] = []

        def compiling() -> None:  # numba's first compile of a kernel for these arrays
            if not announced:
                announced.append(True)
                shown.notice(COMPILING)

        try:
            with self.interruption() as interrupt, announcing_compiles(compiling):
                for epoch in range(first, final + 1):
                    figures = self.epoch(epoch, interrupt)
                    unfinished = network.epoch_in_progress
                    if unfinished is not None:  # stopped inside the epoch: next train ends it
                        self.record(history, pending)
                        if checkpoint is not None:
                            self.save_checkpoint()
                        shown.message(
                            f"xpnn: interrupted in epoch {epoch} after {unfinished.done} of "
                            f"{samples} samples (step {model.optimizer.iterations}); train() "
                            f"finishes the epoch"
                        )
                        break
                    network.epochs_trained = epoch
                    validated = None  # every epoch, as its figures: on the device until a report
                    if self.validation is not None:
                        validated = self.validate()
                    seconds = time.perf_counter() - started
                    lr = model.optimizer.current_learning_rate
                    pending.append(Epoch(epoch, figures, lr, seconds, validated))
                    shown.epoch()
                    reported = epoch % self.print_every == 0 or epoch == final
                    saving = checkpoint is not None and (
                        epoch % self.checkpoint_every == 0 or epoch == final
                    )
                    if reported or saving or best is not None:
                        self.record(history, pending)
                        if reported:
                            shown.report(history, regularized)
                    stop = best is not None and self.stop_early(best, history)
                    if stop and not reported:  # the last epoch run is reported, as the last
                        shown.report(history, regularized)
                    if best is not None and (stop or epoch == final) and best.epoch != epoch:
                        best.restore(network)  # the run ends: the best epoch's parameters
                        why = (
                            f"early stop at epoch {epoch}: no better validation loss for "
                            f"{self.early_stopping} epochs"
                            if stop
                            else f"the last epoch, {epoch}, did not have the best validation loss"
                        )
                        shown.message(f"xpnn: {why}; restored the best, epoch {best.epoch}")
                    if saving or (stop and checkpoint is not None):
                        # After the report (a non-finite loss is never saved) and the restore
                        # (the last checkpoint holds what the model holds when train returns).
                        self.save_checkpoint()
                    if stop:
                        break
                    if interrupt.stopped:  # at the epoch's last step: the epoch is whole
                        self.record(history, pending)
                        if checkpoint is not None and not saving:
                            self.save_checkpoint()
                        shown.message(
                            f"xpnn: interrupted at the end of epoch {epoch} "
                            f"(step {model.optimizer.iterations})"
                        )
                        break
            self.record(history, pending)
        finally:
            shown.close()
        return history

    def stop_early(self, best: Best, history: History) -> bool:
        """``best.stop`` on the latest validation loss. A NaN or infinite one cannot be
        compared: the best parameters go back (the latest stay if none was finite before),
        the checkpoint is written (so that it holds them) and NonFiniteLossError names
        validation_data."""
        model, loss, epoch = self.model, history["val_loss"][-1], history["epoch"][-1]
        if math.isfinite(loss):
            return best.stop(self.network, loss, epoch)
        if best.restore(self.network):
            kept = f"the parameters are those of the best epoch, {best.epoch}, restored"
        else:
            kept = f"the parameters are those of epoch {epoch}, on which it ran"
        if self.checkpoint is not None:
            self.save_checkpoint()
        raise NonFiniteLossError(epoch, None, model.backend.dtype_name, kept=kept)

    def draw_order(self) -> np.ndarray | None:
        """A new epoch's sample order (a host int64 array), drawn on the host from the model's
        generator so every backend shuffles alike; None without shuffling."""
        return self.network.rng.permutation(self.samples) if self.shuffle else None

    def validate(self) -> Sums:
        """The validation data's figures after an epoch, left on the device."""
        return sums(self.model, *self.validation, self.batch_size)

    def placement(self) -> str:
        """What the first report's header adds about where training runs (data-parallel
        training: every rank's device and the transport); nothing for one process."""
        return ""

    def interruption(self) -> StopOnInterrupt:
        """What Ctrl-C sets while the loop runs: its ``stopped`` ends training after a step."""
        return StopOnInterrupt()

    def save_checkpoint(self) -> None:
        """Write the checkpoint (with the training state) to the ``checkpoint`` path."""
        self.model.save(self.checkpoint)

    def batches(self, X: Any, y: Any, order: Any, begin: int) -> Iterator[tuple[int, Any, Any]]:
        """Where a batch is cut: ``(stop, batch_X, batch_y)`` for each step from sample
        ``begin``, in ``order`` (a device index array; None: as given).

        ``stop`` is where the next step begins, so that Ctrl-C can resume there.
        """
        samples, batch_size, xp = X.shape[0], self.batch_size, self.model.backend.xp
        for start in range(begin, samples, batch_size):
            stop = min(start + batch_size, samples)
            if order is None:
                yield stop, X[start:stop, ...], y[start:stop, ...]
            else:
                indices = order[start:stop]
                yield stop, xp.take(X, indices, axis=0), xp.take(y, indices, axis=0)

    def combine(self, batch_loss: Any, right: Any, count: int) -> tuple[Any, Any, int]:
        """Where a step's gradients (the model's flat ``dparams``) and figures come together
        before the update: the summed loss, right predictions (None without a metric) and
        predictions compared. On one device there is nothing to combine."""
        return batch_loss, right, count

    def epoch(self, number: int, interrupt: StopOnInterrupt) -> Sums:
        """One pass over the data, or the rest of the one Ctrl-C stopped; its sums stay on the
        device. Stopped inside it, it leaves the network's ``epoch_in_progress`` to go on from.
        Where ``compiled_epoch`` gave one, the compiled epoch runs the same steps."""
        if self.compiled is not None:
            return self.compiled.epoch(number, interrupt)
        model = self.model
        backend = model.backend
        network = self.network
        optimizer, parameters = model.optimizer, network.parameters
        samples = self.samples
        counting = model.accuracy is not None
        unfinished, network.epoch_in_progress = network.epoch_in_progress, None
        if unfinished is None:
            host_order = self.draw_order()
            begin, steps, compared = 0, 0, 0
            loss_sum, correct = backend.zeros(()), backend.zeros((), backend.index_dtype)
        else:  # the epoch's own order and sums, whatever ``shuffle`` says now
            host_order, begin, steps = unfinished.order, unfinished.done, unfinished.steps
            loss_sum, correct = unfinished.loss_sum, unfinished.correct
            compared = unfinished.compared
        order = None if host_order is None else backend.asarray(host_order, backend.index_dtype)
        cut = self.batches(self.X, self.y, order, begin)
        for step, (stop, batch_X, batch_y) in enumerate(cut, steps + 1):
            output = model.forward(batch_X, training=True)
            batch_loss, right, count = loss_and_backward(model, network, output, batch_y, counting)
            batch_loss, right, count = self.combine(batch_loss, right, count)
            if backend.on_host and not math.isfinite(batch_loss):
                # Host memory: reading the loss costs nothing, so stop before the update (after
                # the combine, so that every replica stops at the same step).
                first = optimizer.iterations == 0
                raise NonFiniteLossError(number, step, backend.dtype_name if first else None)
            loss_sum = loss_sum + batch_loss
            if right is not None:
                correct, compared = correct + right, compared + count

            optimizer.pre_update_params()
            optimizer.update_params(parameters)
            optimizer.post_update_params()
            if interrupt.stopped:
                if stop < samples:
                    network.epoch_in_progress = self.stopped_at(
                        EpochInProgress(
                            samples, stop, step, host_order, loss_sum, correct, compared
                        )
                    )
                break
        return Sums(loss_sum / samples, correct, compared, model.regularization_loss())

    def record(self, history: History, pending: list[Epoch]) -> None:
        """Read the pending epochs' figures, and their validation's, in one transfer.

        A non-finite loss among them restores the snapshot (taken at the last good report)
        and raises NonFiniteLossError; otherwise the snapshot moves up to now.
        """
        if not pending:
            return
        validated = [entry.validation for entry in pending if entry.validation is not None]
        read = read_sums(self.model.backend, [entry.sums for entry in pending] + validated)
        read_validation = iter(read[len(pending) :])
        for entry, sums_read in zip(pending, read):
            if not math.isfinite(sums_read.data_loss):
                pending.clear()
                if self.snapshot is not None:
                    self.snapshot.restore()
                raise NonFiniteLossError(entry.number, None)
        if self.snapshot is not None:
            self.snapshot.take()
        for entry, s in zip(pending, read):
            figures = {}
            if entry.validation is not None:
                v = next(read_validation)
                figures = {
                    "val_data_loss": v.data_loss,
                    "val_loss": v.data_loss + s.regularization,  # the epoch's penalty
                    "val_accuracy": v.correct / v.compared if v.compared else math.nan,
                }
            history.append(
                epoch=entry.number,
                loss=s.data_loss + s.regularization,
                data_loss=s.data_loss,
                regularization_loss=s.regularization,
                accuracy=s.correct / s.compared if s.compared else math.nan,
                learning_rate=entry.learning_rate,
                seconds=entry.seconds,
                **figures,
            )
        pending.clear()
