"""A fork server whose children save one checkpoint path over and over until killed.

For the kill test in tests/test_io.py (POSIX only: it forks). ``python kill_save.py PATH`` builds a
model of about half a million parameters, saves epoch 0 to PATH and prints ``ready``; then it reads
commands on stdin:

- ``go EPOCH``: fork a child that, for epoch after epoch from EPOCH + 1, fills every parameter
  with the epoch number and saves with ``checkpoint={"epoch": epoch}``, forever; print
  ``pid PID``. A file is consistent exactly when its parameters all equal its epoch.
- ``wait PID``: reap that child and print ``dead EXITCODE`` (-9 after a SIGKILL).

Importing xpnn once and forking keeps each round to milliseconds, so the test can kill dozens
of saves in a few seconds.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import xpnn
from xpnn.io import save_model


def build() -> xpnn.Model:
    """About half a million parameters (2 MB), so that a save takes a few milliseconds."""
    model = xpnn.Model(seed=0)
    model.add(xpnn.Dense(32, 512))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.1))
    model.add(xpnn.Dense(512, 1024))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    return model


def save(model: xpnn.Model, path: str, epoch: int) -> None:
    shapes = [tuple(p.shape for p in ps) for ps in model.get_parameters()]
    model.set_parameters([tuple(np.full(s, epoch, np.float32) for s in ss) for ss in shapes])
    save_model(model, path, checkpoint={"epoch": epoch})


def saver(model: xpnn.Model, path: str, epoch: int) -> None:
    """The child: save epoch after epoch until killed."""
    try:
        while True:
            epoch += 1
            save(model, path, epoch)
    finally:
        os._exit(1)  # never return into the server's loop


def main(path: str) -> None:
    model = build()
    save(model, path, 0)
    print("ready", flush=True)
    for line in sys.stdin:
        command, argument = line.split()
        if command == "go":
            pid = os.fork()
            if pid == 0:
                saver(model, path, int(argument))
            print(f"pid {pid}", flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(argument), 0)
            print(f"dead {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
