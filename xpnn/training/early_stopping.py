"""Early stopping: the best validation loss of a run, and the parameters that gave it.

``Trainer.run`` notes every epoch's validation loss (a finite one: it raises on others first)
and puts the best epoch's parameters back when the run ends, by early stopping or because its
epochs ran out.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..building import Network

__all__ = ["Best"]


class Best:
    """The best validation loss so far, its epoch, and a copy of its parameters.

    Kept for one ``train`` call: a later call, or a run resumed from a checkpoint, starts
    watching afresh.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.loss, self.epoch, self.params, self.waited = math.inf, 0, None, 0

    def stop(self, network: Network, loss: float, epoch: int) -> bool:
        """Note epoch ``epoch``'s finite validation ``loss``; True once ``patience`` epochs
        passed without a lower one (an equal one is no better)."""
        if loss < self.loss:
            self.loss, self.epoch, self.waited = loss, epoch, 0
            self.params = network.backend.xp.asarray(network.parameters.params, copy=True)
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, network: Network) -> bool:
        """Put the best epoch's parameters back (the optimizer state and epoch count stay);
        False where there is none yet."""
        if self.params is None:
            return False
        network.parameters.params[...] = self.params
        return True
