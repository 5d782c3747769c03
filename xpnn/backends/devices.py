"""Which CUDA device this process computes on: one per rank of an MPI job, without being asked.

CuPy makes its arrays on the current device, so the device must be chosen before a model is
built. ``choose(cupy)`` runs when this process first uses CuPy (the first cupy backend, or
``backend="auto"``'s probe), before it allocates anything: what ``use_device`` chose, where
it was called first; else ``XPNN_DEVICE``; else a device made current beforehand
(``cupy.cuda.Device(k).use()``) is kept; else, under an MPI launcher, the node-local rank it
gives (``LOCAL_RANK_VARIABLES``) modulo the node's device count. ``CUDA_VISIBLE_DEVICES``
limits the devices counted, as CUDA does. ``chosen()`` says what was decided, so that training
can check a model's device and say it. ``backend="torch"`` on CUDA or XPU takes its device by
the same rules (``pick``), as the index in its ``torch.device``, making nothing current.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import shown

__all__ = ["LOCAL_RANK_VARIABLES", "Choice", "choose", "chosen", "pick", "record"]

#: The node-local rank as launchers set it, in the order read: MPI launchers' own before
#: Slurm's, since ``mpiexec`` inside a Slurm batch script inherits the script's SLURM_LOCALID.
LOCAL_RANK_VARIABLES = (
    "OMPI_COMM_WORLD_LOCAL_RANK",  # Open MPI's mpiexec / mpirun
    "MPI_LOCALRANKID",  # MPICH's and Intel MPI's Hydra mpiexec
    "MV2_COMM_WORLD_LOCAL_RANK",  # MVAPICH2
    "PALS_LOCAL_RANKID",  # HPE Cray PALS
    "PMI_LOCAL_RANK",  # PMI launchers
    "SLURM_LOCALID",  # srun
)


@dataclass(frozen=True)
class Choice:
    """The device this process computes on and why; ``by_user``: named by the user (it stands
    even where the node-local rank would give another)."""

    device: int
    why: str
    by_user: bool


_choice: Choice | None = None


def chosen() -> Choice | None:
    """What ``choose`` or ``use_device`` decided in this process; None: nothing yet."""
    return _choice


def record(device: int, why: str, by_user: bool) -> None:
    """Note the device made current (by ``use_device`` or ``choose``)."""
    global _choice
    _choice = Choice(device, why, by_user)


def choose(cupy: Any, environ: Mapping[str, str] | None = None) -> Choice | None:
    """Make this process's device current, as the module says, and return the choice (None
    where nothing was chosen: no launcher, no device). ValueError for a bad ``XPNN_DEVICE``."""
    environ = os.environ if environ is None else environ
    if _choice is not None:
        return _choice  # use_device came first
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver: the backend's probe says so
        return None
    picked = pick(count, lambda: cupy.cuda.Device().id, environ)
    return None if picked is None else _use(cupy, picked.device, picked.why, picked.by_user)


def pick(count: int, current: Callable[[], int], environ: Mapping[str, str]) -> Choice | None:
    """The device this process takes among the ``count`` it sees, and why, as the module says
    (``current()``: the device current now, 0 unless the user made another current); None
    where nothing says (no launcher) or there is no device. Changes nothing. ValueError for a
    bad ``XPNN_DEVICE``. CuPy's choice (``choose``) and torch's (``backend="torch"`` on CUDA
    or XPU) alike."""
    if count < 1:
        return None
    named = environ.get("XPNN_DEVICE", "").strip()
    if named:
        if not (named.isdigit() and int(named) < count):
            raise ValueError(
                f"XPNN_DEVICE must be a device number in [0, {count}) (the devices CUDA "
                f"shows this process); got {shown(named)}"
            )
        return Choice(int(named), f"XPNN_DEVICE={named}", True)
    device = current()
    if device != 0:  # made current before xpnn first used the device: the user's choice
        return Choice(device, f"device {device} was current", True)
    for name in LOCAL_RANK_VARIABLES:
        local = environ.get(name, "").strip()
        if local.isdigit():
            device = int(local) % count
            why = f"node-local rank {local} ({name}) modulo {count} device{'s' * (count > 1)}"
            return Choice(device, why, False)
    return None


def _use(cupy: Any, device: int, why: str, by_user: bool) -> Choice:
    cupy.cuda.Device(device).use()
    record(device, why, by_user)
    assert _choice is not None
    return _choice
