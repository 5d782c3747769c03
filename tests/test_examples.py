"""The examples as a user meets them: --help, the messages when something is missing, and the
figures they draw."""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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


#: Pages whose code goes on from another page's: that page's code runs first.
CONTINUES = {
    "docs/guides/saving.md": "docs/guides/model.md",
    "docs/guides/mpi.md": "docs/guides/model.md",
}


def page_code(page: str) -> str:
    """The Python a page shows, its blocks in order; blocks included from an example
    (``--8<--``) are left out: the examples themselves run (``nox -s examples``)."""
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / page).read_text(), flags=re.S | re.M)
    return "\n".join(block for block in blocks if not block.startswith("--8<--"))


PAGES = [
    str(path.relative_to(ROOT))
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    if page_code(str(path.relative_to(ROOT)))
]


def small_fashion_mnist(folder: Path) -> None:
    """Four small files in Fashion-MNIST's format where ``fashion_mnist`` looks first, so a
    page's call reads them instead of downloading 30 MB."""
    from xpnn.idx import write_idx

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for kind, count in (("train", 60), ("t10k", 10)):
        write_idx(folder / f"{kind}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))  # fmt: skip
        write_idx(folder / f"{kind}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, count, dtype=np.uint8))  # fmt: skip


@pytest.mark.parametrize("page", PAGES)
def test_the_code_of_a_page_runs(page, tmp_path):
    """Every block a page shows, in order, as one script a user could paste: the names a
    block uses are defined above it, on the page or on the page it goes on from, and the files
    it names are written."""
    code = page_code(page)
    if "mpi4py" in code:
        pytest.importorskip("mpi4py", reason="the mpi extra: nox -s mpi runs this page")
    before = page_code(CONTINUES[page]) if page in CONTINUES else ""
    script = tmp_path / "page.py"
    script.write_text(f"{before}\n{code}")
    small_fashion_mnist(tmp_path / "data" / "fashion-mnist")
    shown = run(str(script), cwd=tmp_path, env={"XPNN_DATA": str(tmp_path / "data")})
    assert shown.returncode == 0, shown.stderr
    for written in re.findall(r"\"([\w-]+\.(?:png|xpnn))\"", code):
        assert (tmp_path / written).is_file(), f"{page} says it writes {written}"


def commands() -> list[tuple[str, str, list[str]]]:
    """Each command the docs (and the examples' own docstrings) give for an example: (page,
    script, its options and their values)."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *EXAMPLES]:
        for line in page.read_text().splitlines():
            for script, rest in re.findall(r"python3? (?:-m mpi4py )?examples/(\w+\.py)(.*)", line):
                rest = re.split(r"[`#|]", rest)[0]
                options = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)(?:[ =]([\w.]+))?", rest)
                found.append((str(page.relative_to(ROOT)), script, options))
    return found


@functools.cache
def help_text(script: str) -> str:
    shown = run(str(ROOT / "examples" / script), "--help")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_the_commands_the_docs_give_run_existing_examples_with_their_options():
    found = commands()
    assert len(found) >= 20  # the pages were read
    for page, script, options in found:
        assert (ROOT / "examples" / script).is_file(), f"{page}: no examples/{script}"
        shown = help_text(script)
        known = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", shown))
        for option, value in options:
            assert option in known, f"{page}: examples/{script} has no {option}"
            choices = re.search(rf"{option} {{([^}}]+)}}", shown)
            if choices and value:  # a value outside the choices argparse lists
                assert value in choices[1].split(","), f"{page}: {script} {option} {value}"
