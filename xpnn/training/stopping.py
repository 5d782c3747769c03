"""How training stops short: a non-finite loss, and Ctrl-C.

A NaN or infinite loss raises ``NonFiniteLossError``; off the host it is seen at a report, and
the ``Snapshot`` of the last good report is put back first. Ctrl-C (``StopOnInterrupt``) stops
after the current step; an epoch it stops inside is kept as the network's
``epoch_in_progress`` (``building.EpochInProgress``), which the next ``train`` finishes (and a
checkpoint saves). Early stopping is ``early_stopping.py``'s.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..building import Network
    from ..optimizers import Optimizer

__all__ = ["NonFiniteLossError", "Snapshot", "StopOnInterrupt"]


class NonFiniteLossError(FloatingPointError):
    """The training loss, or the validation loss early stopping reads (``validation`` True),
    became NaN or infinite; training stopped."""

    def __init__(
        self, epoch: int, step: int | None, dtype: str | None = None, *, kept: str | None = None
    ) -> None:
        self.epoch, self.step = epoch, step
        self.validation = kept is not None  # the validation loss, which early stopping reads
        if kept is not None:  # finite parameters on checked, finite data: an overflow
            super().__init__(
                f"validation_data: the validation loss became NaN or infinite at epoch {epoch}: "
                f"the model's computation on these data overflows {dtype}, so early stopping "
                f"cannot compare it; {kept}. Validation inputs scaled to a smaller range "
                "usually help"
            )
            return
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch}"
        if dtype is not None:  # before any update: the learning rate cannot be the cause
            super().__init__(
                f"the loss became NaN or infinite at {where}, before any update: the model's "
                f"computation on this data overflows {dtype}. Inputs scaled to a smaller range "
                "usually help"
            )
            return
        kept = (
            "the parameters are those after the last finite step"
            if step is not None
            else "the parameters are those of the last report before it"
        )
        super().__init__(
            f"the loss became NaN or infinite at {where}; {kept}. A smaller learning rate, "
            "or inputs scaled to a smaller range, usually helps"
        )


class Snapshot:
    """A copy of what training changes (parameters, optimizer state, step and epoch counts, an
    epoch in progress), to go back to when a report finds a non-finite loss."""

    def __init__(self, network: Network, optimizer: Optimizer) -> None:
        self.network, self.optimizer = network, optimizer
        self.take()

    def _arrays(self) -> dict[str, Any]:
        states = tuple(f"_{name}" for name in self.optimizer.state_names)
        return {
            name: value
            for name, value in vars(self.network.parameters).items()
            if name == "params" or name.endswith(states)
        }

    def take(self) -> None:
        """Copy the network's training state as it is now."""
        xp = self.network.backend.xp
        self.arrays = {k: xp.asarray(v, copy=True) for k, v in self._arrays().items()}
        optimizer, network = self.optimizer, self.network
        self.counts = (
            optimizer.iterations,
            optimizer.current_learning_rate,
            network.epochs_trained,
        )
        self.epoch_in_progress = network.epoch_in_progress  # never changed, only replaced

    def restore(self) -> None:
        """Put the copied state back."""
        current = self._arrays()
        for name, saved in self.arrays.items():
            current[name][...] = saved
        optimizer, network = self.optimizer, self.network
        optimizer.iterations, optimizer.current_learning_rate, network.epochs_trained = self.counts
        network.epoch_in_progress = self.epoch_in_progress


class StopOnInterrupt:
    """While training, Ctrl-C asks to stop after the current step; a second one stops at once."""

    stopped = False

    def __enter__(self) -> StopOnInterrupt:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
