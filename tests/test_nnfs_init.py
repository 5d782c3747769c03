"""The book's ``nnfs.init()`` replaces ``np.dot`` (with a wrapper that takes no ``out=``),
``np.zeros``, ``np.eye`` and ``np.random.randn``. xpnn must train as it does without it,
whether it ran before or after ``import xpnn``; each order runs in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnn

SCRIPT = Path(__file__).with_name("nnfs_run.py")


def _run(order: str, backend: str, folder: Path) -> dict:
    out = folder / f"{order}.npz"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), order, backend, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as arrays:
        return dict(arrays)


@pytest.mark.parametrize("order", ["before", "after"])
def test_nnfs_init_changes_nothing(backend, order, tmp_path):
    """A Model (with dropout) and the book's hand-written loop end with the parameters of the
    same run without nnfs.init(), bit for bit (xpnn multiplies with NumPy's own dot, which
    nnfs leaves alone), and the Model's epochs run compiled as often as without it."""
    plain = _run("none", backend, tmp_path)
    after_init = _run(order, backend, tmp_path)
    assert after_init.keys() == plain.keys()
    for name, expected in plain.items():
        assert after_init[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(after_init[name], expected, err_msg=name)
    if xpnn.get_backend(backend).fast_path == "numba":
        assert plain["compiled_steps"] > 0
