"""The examples as a user meets them: --help, the messages when something is missing, and the
figures they draw."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """A Python subprocess importing this xpnn, its output as text."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_help_shows_the_whole_description_and_every_default(script):
    shown = run(str(script), "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    description = " ".join(ast.get_docstring(ast.parse(script.read_text()), clean=False).split())
    assert description and description in text  # not cut to its first line
    options = re.split(r"\n  (?=-)", shown.stdout.split("options:", 1)[1])
    for option in options[1:]:
        if not option.strip().startswith("-h"):
            assert "(default:" in option, option


def test_spiral_help_shows_its_1500_epochs():
    assert "passes over the data (default: 1500)" in run("examples/spiral.py", "--help").stdout


def test_fashion_mnist_no_download_names_the_flag_the_folder_and_the_files(tmp_path):
    shown = run("examples/fashion_mnist.py", "--no-download", env={"XPNN_DATA": str(tmp_path)})
    assert shown.returncode == 1
    message = shown.stderr
    assert "--no-download" in message and "download=True" not in message
    assert str(tmp_path / "fashion-mnist") in message
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        assert name in message
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in message
    assert "--data DIR" in message and "--synthetic" in message
    assert "Traceback" not in message


def test_fashion_mnist_synthetic_says_so_and_keeps_the_real_runs_png(tmp_path):
    real = tmp_path / "fashion_mnist_curves.png"
    real.write_bytes(b"the real run's figure")
    shown = run("examples/fashion_mnist.py", "--synthetic", "--epochs", "1", "--out", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Data: a synthetic stand-in")
    assert "on the synthetic stand-in" in shown.stdout
    assert real.read_bytes() == b"the real run's figure"
    assert (tmp_path / "fashion_mnist_synthetic_curves.png").stat().st_size > 0


def test_distributed_without_mpi4py_names_the_extra():
    hide = (
        "import runpy, sys; sys.modules['mpi4py'] = None; sys.argv = ['distributed.py'];"
        "runpy.run_path('examples/distributed.py', run_name='__main__')"
    )
    shown = run("-c", hide)
    assert shown.returncode == 1
    assert 'pip install "xpnn[mpi]"' in shown.stderr and "Traceback" not in shown.stderr


def test_plot_title_and_integer_epoch_ticks_after_one_epoch():
    pytest.importorskip("matplotlib")
    import xpnn

    history = xpnn.History()
    history.append(epoch=1, loss=0.5, accuracy=0.75, learning_rate=0.001)
    figure = history.plot(title="synthetic stand-in: 1 epoch")
    assert figure._suptitle.get_text() == "synthetic stand-in: 1 epoch"
    for axis in figure.axes:
        low, high = axis.get_xlim()
        ticks = [t for t in axis.get_xticks() if low <= t <= high]
        assert ticks == [1.0], ticks  # not 0.94, 0.96, ... 1.06


@pytest.mark.parametrize(
    "page", ["README.md", "docs/index.md", "docs/getting-started/first-model.md"]
)
def test_the_first_example_of_a_page_runs(page, tmp_path):
    text = (ROOT / page).read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(code)
    shown = run(str(script), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for written in ("curves.png", "spiral.xpnn"):  # what the example says it writes
        assert (tmp_path / written).exists() == (f'"{written}"' in code)
