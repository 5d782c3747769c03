"""Book-style scripts print the same lines on ``xpnn.book`` as on the book's classes.

Each script in ``tests/book_scripts`` exercises a chapter's path (the first layers, backprop,
the hand-written loop with each optimizer, regularization, dropout, binary and regression
heads, the final Model with batches and validation, the batch-training notebook). It runs in
its own process (``nnfs.init()`` patches NumPy) with reference classes written from the book's
formulas and with ``from xpnn.book import *``. On NumPy, where ``xpnn.book`` computes the
book's own products, the printed text must be the same character for character; on the device
backends (other products, float32 throughout) the first line with numbers must agree to the
digits printed and every other number within 0.03.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "book_scripts" / "run.py"
ROOT = HERE.parent

#: (script, argument, epochs): short runs, long enough for every printing branch.
SCRIPTS = [
    ("first_layers.py", None, None),
    ("backprop.py", None, None),
    ("optimizers.py", "sgd", 301),
    ("optimizers.py", "momentum", 301),
    ("optimizers.py", "adagrad", 301),
    ("optimizers.py", "rmsprop", 301),
    ("optimizers.py", "adam", 301),
    ("regularized.py", "l2", 201),
    ("regularized.py", "dropout", 201),
    ("binary.py", None, 301),
    ("regression.py", None, 301),
    ("model.py", "categorical", 3),
    ("model.py", "binary", 3),
    ("model.py", "regression", 3),
    ("batches.py", None, 101),
]
#: Scripts whose figures the device backends' float32 products send elsewhere within the short
#: run (the regression's accuracy counts predictions within std(y) / 250 of the target, which
#: flips with the last bits): there only the lines' text and first line are compared.
CHAOTIC = {("regression.py", None), ("model.py", "regression")}

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def run(classes: str, script: str, argument: str | None, epochs: int | None, **env: str) -> str:
    """What the script prints on ``classes`` ("reference" or "xpnn")."""
    environment = dict(os.environ, **env)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    if epochs is not None:
        environment["EPOCHS"] = str(epochs)
    command = [sys.executable, str(RUNNER), classes, script, *([argument] if argument else [])]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def last_digit(number: str) -> float:
    """The value of one unit in the last digit printed: 0.001 for "0.360", 1e-11 for
    "1.0475188e-04"."""
    mantissa, _, exponent = number.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def assert_same_lines(expected: str, got: str, *, tolerance: float = 0.03) -> None:
    """The same lines: equal text around the numbers; the first line with numbers equal to the
    digits printed (one unit of the last digit apart at most), every other number within
    ``tolerance`` (None: the text alone)."""
    expected_lines, got_lines = expected.splitlines(), got.splitlines()
    assert len(got_lines) == len(expected_lines), (expected, got)
    first = True
    for index, (want, have) in enumerate(zip(expected_lines, got_lines)):
        # NumPy pads printed arrays to the widest number: compare the text without spaces.
        assert "".join(NUMBER.sub("#", want).split()) == "".join(NUMBER.sub("#", have).split()), (
            index,
            want,
            have,
        )
        wanted, had = NUMBER.findall(want), NUMBER.findall(have)
        assert len(wanted) == len(had), (index, want, have)
        if not wanted:
            continue
        for a, b in zip(wanted, had):
            if first:
                unit = max(last_digit(a), last_digit(b))
                assert abs(float(a) - float(b)) <= unit * 1.0001, (index, want, have)
            elif tolerance is not None:
                assert abs(float(a) - float(b)) <= tolerance, (index, want, have)
        first = False


@pytest.fixture(scope="module")
def reference_lines() -> dict:
    """Each script's lines on the reference classes, run once."""
    return {}


def _reference(cache: dict, script: str, argument: str | None, epochs: int | None) -> str:
    key = (script, argument)
    if key not in cache:
        cache[key] = run("reference", script, argument, epochs, XPNN_CUPY_API="0")
    return cache[key]


@pytest.mark.parametrize(
    ("script", "argument", "epochs"),
    SCRIPTS,
    ids=[f"{s[:-3]}-{a}" if a else s[:-3] for s, a, _ in SCRIPTS],
)
def test_script_prints_the_book_lines(backend, reference_lines, script, argument, epochs):
    """The script prints the reference's lines on ``xpnn.book``: the very same text on NumPy
    (with or without the compiled path), the same lines to float32 rounding elsewhere."""
    expected = _reference(reference_lines, script, argument, epochs)
    got = run("xpnn", script, argument, epochs, XPNN_BOOK_BACKEND=backend)
    if backend == "numpy":
        assert got == expected
    else:
        chaotic = (script, argument) in CHAOTIC
        # torch and a real GPU round their own way (other reductions, a square root 1 ulp
        # apart), and a training run carries that further than NumPy's float32 rounding does.
        own_arithmetic = backend.startswith("torch") or (
            backend == "cupy" and "cupy_api" not in sys.modules
        )
        tolerance = 0.1 if own_arithmetic else 0.03
        assert_same_lines(expected, got, tolerance=None if chaotic else tolerance)


@pytest.mark.parametrize(("script", "argument"), [("batches.py", None), ("first_layers.py", None)])
def test_faster_products_print_the_same_lines(reference_lines, script, argument):
    """``exact=False`` (xpnn's float32 products on NumPy) prints the batch-training notebook's
    lines, and the first layers' to the digits printed. (A longer chaotic run, Adam at 0.05 on
    the spiral, drifts further: that is why the book's products are the default.)"""
    epochs = dict((s, e) for s, a, e in SCRIPTS if (s, a) == (script, argument))[script]
    expected = _reference(reference_lines, script, argument, epochs)
    got = run("xpnn", script, argument, epochs, XPNN_BOOK_EXACT="0", XPNN_CUPY_API="0")
    assert_same_lines(expected, got)


def test_the_comparison_catches_a_changed_digit():
    """The checks above can fail: a first line one digit off, or a later number off by more
    than the tolerance, or other words, is refused."""
    lines = "epoch: 0, acc: 0.360, loss: 1.099\nepoch: 100, acc: 0.420, loss: 1.050"
    assert_same_lines(lines, lines)
    assert_same_lines(lines, lines.replace("0.420", "0.440"))  # within 0.03
    for changed in (
        lines.replace("1.099", "1.101"),  # first line: two units off
        lines.replace("0.420", "0.460"),  # later: beyond 0.03
        lines.replace("loss: 1.050", "lss: 1.050"),
        lines + "\nextra",
    ):
        with pytest.raises(AssertionError):
            assert_same_lines(lines, changed)
    assert last_digit("1.0475188e-04") == pytest.approx(1e-11)
    assert last_digit("0.360") == pytest.approx(1e-3)
