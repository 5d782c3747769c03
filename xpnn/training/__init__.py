"""Training: the loop over epochs and batches, and what surrounds it.

- ``loop``: ``train`` checks ``Model.train``'s arguments and runs a ``Trainer``: its epochs,
  steps, reports, validation and checkpoints, and the places data-parallel training overrides;
- ``evaluation``: the figures (``Sums``, on the device until a report reads them all in one
  transfer), ``evaluate`` and ``predict``;
- ``stopping``: a non-finite loss (``NonFiniteLossError``, the ``Snapshot`` it goes back to)
  and Ctrl-C (``StopOnInterrupt``);
- ``early_stopping``: the best validation loss of a run, and its parameters.
"""

from __future__ import annotations

from .evaluation import Sums, count_correct, evaluate, predict, read, read_sums, slices, sums
from .loop import Trainer, train
from .stopping import NonFiniteLossError, Snapshot, StopOnInterrupt

__all__ = [
    "NonFiniteLossError",
    "Snapshot",
    "StopOnInterrupt",
    "Sums",
    "Trainer",
    "count_correct",
    "evaluate",
    "predict",
    "read",
    "read_sums",
    "slices",
    "sums",
    "train",
]
