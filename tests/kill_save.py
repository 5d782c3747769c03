"""A fork server whose children save a checkpoint and are killed at a chosen point of the write.

For the kill test in tests/test_io.py (POSIX only: it forks). ``python kill_save.py PATH`` builds a
model, saves epoch 0 to PATH and prints ``ready``; then it reads commands on stdin:

- ``kill EPOCH POINT``: fork a child that fills every parameter with EPOCH and saves with
  ``checkpoint={"epoch": EPOCH}``, and that SIGKILLs itself at POINT of the write (one of
  ``POINTS``); reap it and print ``dead EXITCODE`` (-9 after the SIGKILL, 0 had it lived on).

A file is consistent exactly when its parameters all equal its epoch. The points are reached by
wrapping the ``os`` functions the atomic write calls, in the child alone: nothing is timed.
Importing xpnn once and forking keeps each round to milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

import xpnn
from xpnn.io import save_model

#: Where a child dies, in the order a save reaches them; those before "replaced" leave the old
#: file, the others the new one.
POINTS = (
    "created",  # the temporary file just created, empty
    "writing",  # half of the bytes written to it
    "fsync",  # all written, before the data is synced
    "replace",  # synced, just before the rename onto the target
    "replaced",  # just after the rename, before the folder is synced
    "returned",  # after the save returned
)
BEFORE_THE_REPLACE = POINTS[: POINTS.index("replaced")]


def build() -> xpnn.Model:
    """Some 20,000 parameters, with Dropout and Adam's state: every section of a checkpoint."""
    model = xpnn.Model(seed=0)
    model.add(xpnn.Dense(32, 256))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.1))
    model.add(xpnn.Dense(256, 64))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    return model


def save(model: xpnn.Model, path: str, epoch: int) -> None:
    """Fill every parameter with ``epoch`` and save it as that epoch's checkpoint."""
    shapes = [tuple(p.shape for p in ps) for ps in model.get_parameters()]
    model.set_parameters([tuple(np.full(s, epoch, np.float32) for s in ss) for ss in shapes])
    save_model(model, path, checkpoint={"epoch": epoch})


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class HalfWriter:
    """The temporary file, whose ``write`` writes half of its bytes and then dies."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        die()

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def arm(point: str) -> None:
    """Make this process SIGKILL itself when the save reaches ``point``."""
    real_open, real_fdopen, real_fsync, real_replace = os.open, os.fdopen, os.fsync, os.replace

    def open_(name, flags, *args, **kwargs):
        fd = real_open(name, flags, *args, **kwargs)
        if point == "created" and flags & os.O_CREAT:
            die()
        return fd

    def fdopen(*args, **kwargs):
        file = real_fdopen(*args, **kwargs)
        return HalfWriter(file) if point == "writing" else file

    def fsync(fd):
        if point == "fsync":
            die()
        real_fsync(fd)

    def replace(*args, **kwargs):
        if point == "replace":
            die()
        real_replace(*args, **kwargs)
        if point == "replaced":
            die()

    os.open, os.fdopen, os.fsync, os.replace = open_, fdopen, fsync, replace


def child(model: xpnn.Model, path: str, epoch: int, point: str) -> None:
    """Save ``epoch`` and die at ``point``; never return into the server's loop."""
    try:
        arm(point)
        save(model, path, epoch)
        if point == "returned":
            die()
        os._exit(0)  # the point was never reached
    finally:
        os._exit(1)


def main(path: str) -> None:
    """Serve ``kill EPOCH POINT`` commands on stdin (module docstring)."""
    model = build()
    save(model, path, 0)
    print("ready", flush=True)
    for line in sys.stdin:
        command, epoch, point = line.split()
        assert command == "kill" and point in POINTS, line
        pid = os.fork()
        if pid == 0:
            child(model, path, int(epoch), point)
        _, status = os.waitpid(pid, 0)
        print(f"dead {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
