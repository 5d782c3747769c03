"""tools/gpu_check.py, the checks for a machine with a GPU: which steps it runs, in which order,
what it says without a GPU, and that it keeps up with the examples. (Its commands themselves
need a GPU: they run there.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from xpnn.backends.cupy import CupyBackend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gpu_check():
    """The script as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_why_and_runs_nothing(gpu_check, monkeypatch, tmp_path, capsys):
    ran = []
    monkeypatch.setattr(CupyBackend, "unusable", staticmethod(lambda: "no device here"))
    monkeypatch.setattr(gpu_check, "run_step", lambda *args: ran.append(args) or (True, 0.0))
    assert gpu_check.main(["--out", str(tmp_path / "logs")]) == 2
    assert "no usable GPU: no device here" in capsys.readouterr().err
    assert ran == [] and not (tmp_path / "logs").exists()


def test_without_cupy_it_says_so(gpu_check, monkeypatch, capsys):
    def missing():
        raise ImportError('backend="cupy" needs CuPy')

    monkeypatch.setattr(CupyBackend, "unusable", staticmethod(missing))
    assert gpu_check.main([]) == 2
    assert 'no usable GPU: backend="cupy" needs CuPy' in capsys.readouterr().err


def test_steps_run_in_order_and_a_failure_sets_the_status(gpu_check, monkeypatch, tmp_path, capsys):
    ran = []

    def run_step(step, out, pytest_args, timeout):
        ran.append((step, pytest_args))
        return step != "examples", 1.0

    monkeypatch.setattr(CupyBackend, "unusable", staticmethod(lambda: None))
    monkeypatch.setattr(gpu_check, "run_step", run_step)
    assert gpu_check.main(["--out", str(tmp_path), "--", "-x", "tests/test_transfers.py"]) == 1
    args = ["-x", "tests/test_transfers.py"]
    assert ran == [(step, args) for step in ("device", "tests", "examples", "bench")]
    printed = capsys.readouterr().out
    assert "examples  FAILED" in printed and "bench     passed" in printed
    ran.clear()
    assert gpu_check.main(["--out", str(tmp_path), "--steps", "bench,tests"]) == 0
    assert [step for step, _ in ran] == ["bench", "tests"]


def test_an_unknown_step_is_refused(gpu_check, capsys):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--steps", "tests,gpu"])
    assert stopped.value.code == 2
    assert "--steps: unknown gpu; choose from device, tests, examples, bench" in (
        capsys.readouterr().err
    )


def test_every_example_runs_on_cupy(gpu_check, tmp_path):
    """Each example but the MPI one (it runs under mpiexec) is in examples/brief_runs.txt (the
    list the examples nox session runs too), and the examples step runs it with ``--backend
    cupy`` that its parser accepts, its figures in the output folder."""
    scripts = {path.name for path in (ROOT / "examples").glob("*.py")} - {"distributed.py"}
    assert sorted(script for script, *_ in gpu_check.brief_runs(tmp_path)) == sorted(scripts)
    commands = gpu_check.commands("examples", tmp_path, [])
    assert len(commands) == len(scripts)
    for command in commands:
        assert command[0] == sys.executable and command[-2:] == ["--backend", "cupy"]
        assert "{out}" not in " ".join(command)
        if "--out" in command:
            assert command[command.index("--out") + 1] == str(tmp_path / "figures")
        text = (ROOT / command[1]).read_text(encoding="utf-8")
        assert '"cupy"' in text  # among the --backend choices


def test_the_tests_step_runs_the_suite_on_cupy_alone(gpu_check, tmp_path):
    (command,) = gpu_check.commands("tests", tmp_path, ["-x"])
    assert command[:3] == [sys.executable, "-m", "pytest"] and command[-1] == "-x"
    assert "--ignore=tests/test_examples.py" in command


def test_a_step_runs_on_the_real_cupy_and_logs_each_command(gpu_check, monkeypatch, tmp_path):
    show = "import os; print([os.environ.get(n) for n in ('XPNN_TEST_BACKENDS', "
    show += "'XPNN_REQUIRE_GPU', 'XPNN_CUPY_API')])"
    python = sys.executable
    steps = [[python, "-c", show], [python, "-c", "raise SystemExit(3)"], [python, "-c", "pass"]]
    monkeypatch.setattr(gpu_check, "commands", lambda *args: steps)
    monkeypatch.setenv("XPNN_CUPY_API", "1")
    passed, _ = gpu_check.run_step("examples", tmp_path, [])
    assert not passed  # one command failed: the others still ran
    log = (tmp_path / "examples.log").read_text(encoding="utf-8")
    assert "['cupy', '1', None]" in log  # the real CuPy: never the stand-in
    assert log.count("$ ") == 3 and "exit status 3" in log and log.count("exit status 0") == 2


def test_a_command_past_the_timeout_is_stopped_with_its_children(gpu_check, monkeypatch, tmp_path):
    python = sys.executable
    forever = "import subprocess, sys, time; "
    forever += "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    forever += "time.sleep(600)"
    monkeypatch.setattr(
        gpu_check, "commands", lambda *args: [[python, "-c", forever], [python, "-c", "pass"]]
    )
    stopped = []
    kill = gpu_check.os.killpg

    def killpg(group, signal):
        stopped.append(group)
        kill(group, signal)

    monkeypatch.setattr(gpu_check.os, "killpg", killpg)
    passed, _ = gpu_check.run_step("bench", tmp_path, [], timeout=0.5)
    assert not passed and len(stopped) == 1  # the whole group: the command and its child
    log = (tmp_path / "bench.log").read_text(encoding="utf-8")
    assert "stopped: still running after 0.5 s" in log and log.endswith("exit status 0\n")


def test_the_timeout_must_be_positive(gpu_check, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--timeout", "0"])
    assert "--timeout must be a positive number of seconds; got 0" in capsys.readouterr().err
