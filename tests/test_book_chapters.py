"""The chapter tool (``tests/book_scripts/chapters.py``): it strips a chapter's book classes,
adds the import, runs both and compares their printed lines.

The chapters here are our own, written in the book's style: the classes come from
``tests/book_scripts/reference.py`` (the book's formulas, written for these tests) under the
book's names, so the stripping and comparing are tested without the book's code.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOL = HERE / "book_scripts" / "chapters.py"
sys.path.insert(0, str(HERE / "book_scripts"))

import chapters  # noqa: E402
import reference  # noqa: E402

HEAD = """import numpy as np
import nnfs
from nnfs.datasets import spiral_data

nnfs.init()


"""
KEPT_CLASS = '''
# Not one of the book's classes: it stays.
class Counter:
    """Counts."""

    def __init__(self):
        self.count = 0

'''
BODY = """
# Create dataset
X, y = spiral_data(samples=100, classes=3)
dense1 = Layer_Dense(2, 8)
activation1 = Activation_ReLU()
dense2 = Layer_Dense(8, 3)
counter = Counter()

dense1.forward(X)
activation1.forward(dense1.output)
dense2.forward(activation1.output)
print(dense2.output[:3])
loss = np.mean(dense2.output ** 2)
print(f'loss: {loss:.7f}, count: {counter.count}')
dense2.backward(2 * dense2.output / dense2.output.size)
activation1.backward(dense2.dinputs)
dense1.backward(activation1.dinputs)
print(dense1.dweights)
print('dbiases:', dense2.dbiases)
"""


def chapter_source() -> str:
    """A small chapter in the book's style: imports, ``nnfs.init()``, two classes under the
    book's names, a class of its own, a forward and backward pass that print."""
    classes = "\n\n".join(
        f"# {cls.__name__}\n{inspect.getsource(cls)}"
        for cls in (reference.Layer_Dense, reference.Activation_ReLU)
    )
    return HEAD + classes + KEPT_CLASS + BODY


def test_the_variant_removes_the_book_classes_and_keeps_every_other_line():
    source = chapter_source()
    variant, removed = chapters.make_variant(source)
    assert removed == ["Layer_Dense", "Activation_ReLU"]
    assert "class Layer_Dense" not in variant and "class Activation_ReLU" not in variant
    assert "class Counter:" in variant
    lines = variant.splitlines()
    # The import follows the imports, before nnfs.init().
    assert lines[3] == chapters.IMPORT_LINE
    assert lines[:3] == source.splitlines()[:3]
    # Every other line kept, in order: the variant less the import is the source less the
    # classes' lines (their comments stay).
    class_lines = set()
    for cls in (reference.Layer_Dense, reference.Activation_ReLU):
        text = inspect.getsource(cls).splitlines()
        class_lines.update(text)
    expected = [line for line in source.splitlines() if line not in class_lines or not line]
    got = [line for line in lines if line != chapters.IMPORT_LINE]
    assert [line for line in got if line] == [line for line in expected if line]
    assert "# Layer_Dense" in lines and "# Not one of the book's classes: it stays." in lines


def test_a_layer_drawing_at_another_scale_gets_the_weight_scale_line():
    """The regression chapter draws at 0.1: the variant sets ``Layer_Dense.weight_scale``."""
    source = (
        "import numpy as np\n\nclass Layer_Dense:\n    def __init__(self, i, n):\n"
        "        self.weights = {} * np.random.randn(i, n)\n\nprint(1)\n"
    )
    variant, removed = chapters.make_variant(source.format("0.1"))
    assert removed == ["Layer_Dense"]
    assert variant == (
        f"import numpy as np\n{chapters.IMPORT_LINE}\nLayer_Dense.weight_scale = 0.1\n\n\n"
        "print(1)\n"
    )
    variant, _ = chapters.make_variant(source.format("0.01"))
    assert "weight_scale" not in variant


def test_a_script_without_book_classes_gets_the_import_after_its_imports():
    variant, removed = chapters.make_variant("import numpy as np\nprint(np.ones(2))")
    assert removed == []
    assert variant == f"import numpy as np\n{chapters.IMPORT_LINE}\nprint(np.ones(2))"


def test_the_comparison_verdicts():
    lines = (
        "[[ 0.0000000e+00 -1.0475188e-04]]\n"
        "epoch: 0, acc: 0.360, loss: 1.099\nepoch: 100, acc: 0.420"
    )
    assert chapters.compare(lines, lines).verdict == "same text"
    # NumPy pads arrays to the widest number: spaces do not count.
    padded = lines.replace("[[ 0.0000000e+00", "[[0.0000000e+00")
    assert chapters.compare(lines, padded).verdict == "same lines"
    within = chapters.compare(lines, lines.replace("0.420", "0.440"))
    assert within.verdict == "same lines" and within.largest == pytest.approx(0.02)
    for changed in (
        lines.replace("-1.0475188e-04", "-1.0475190e-04"),  # first numeric line: 2 units off
        lines.replace("0.420", "0.460"),  # beyond 0.03
        lines.replace("acc: 0.420", "accuracy: 0.420"),
        lines + "\nextra",
        lines.rpartition("\n")[0],
    ):
        assert chapters.compare(lines, changed).verdict == "differs", changed
    assert chapters.compare(lines, lines.replace("0.420", "0.460"), 0.05).verdict == "same lines"
    assert "line 3" in chapters.compare(lines, lines.replace("0.420", "0.460")).detail


def run_tool(folder: Path, backend: str, *options: str) -> list[str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE.parent), environment.get("PYTHONPATH")])
    )
    command = [sys.executable, str(TOOL), str(folder), "--backend", backend, *options]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_the_tool_runs_a_chapter_on_xpnn_book(backend, tmp_path):
    """Our chapter prints the same lines with ``from xpnn.book import *`` (the very text on
    NumPy); a chapter that does not parse, one that fails with its own classes and one that
    fails on ``xpnn.book`` are named as such."""
    if backend not in ("numpy", "strict", "cupy"):
        pytest.skip(f"the tool runs numpy, strict and cupy; not {backend}")
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "ch01.py").write_text(chapter_source())
    (folder / "ch02.py").write_text(chapter_source() + "\n>>>\n")
    (folder / "ch03.py").write_text(chapter_source().replace("print(dense1.dweights)", "1 / 0"))
    (folder / "ch04.py").write_text(chapter_source() + "dense1.book_only()\n")
    originals = tmp_path / "originals"
    verdicts = run_tool(folder, backend, "--originals", str(originals))
    assert len(verdicts) == 4, verdicts
    expected = "same text" if backend == "numpy" else "same "
    assert verdicts[0].startswith(f"ch01.py: {expected}"), verdicts[0]
    assert "2 classes replaced" in verdicts[0]
    assert verdicts[1].startswith("ch02.py: fails as shipped (SyntaxError"), verdicts[1]
    assert verdicts[2].startswith("ch03.py: fails as shipped (ZeroDivisionError"), verdicts[2]
    assert verdicts[3].startswith("ch04.py: fails as shipped (AttributeError"), verdicts[3]
    # The original's lines were kept, and a second pass reads them instead of running it.
    kept = originals / "ch01.out"
    seconds, _, printed = kept.read_text().partition("\n")
    assert float(seconds) > 0 and "loss: " in printed
    kept.write_text(f"{seconds}\n" + printed.replace("loss: ", "loss = "))
    again = run_tool(folder, backend, "--originals", str(originals), "--only", "ch01")
    assert len(again) == 1 and again[0].startswith("ch01.py: differs"), again


def test_the_tool_names_a_variant_that_fails(tmp_path):
    """A chapter whose own class has a method ``xpnn.book``'s lacks runs as shipped and fails
    as the variant: the verdict says so, with the error."""
    folder = tmp_path / "book"
    folder.mkdir()
    source = chapter_source().replace(
        "    def forward(self, inputs, training=False):\n        self.inputs = inputs\n"
        "        self.output = np.maximum(0, inputs)",
        "    def forward(self, inputs, training=False):\n        self.inputs = inputs\n"
        "        self.output = np.maximum(0, inputs)\n\n    def describe(self):\n"
        "        return 'ReLU'",
    )
    assert "def describe" in source
    (folder / "ch05.py").write_text(source + "print(activation1.describe())\n")
    verdicts = run_tool(folder, "numpy")
    assert verdicts[0].startswith("ch05.py: fails (AttributeError"), verdicts


def test_the_tool_refuses_a_missing_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, str(TOOL), str(tmp_path / "none")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "FOLDER must be a folder" in done.stderr
