"""The data-parallel rules under real MPI: ``mpiexec -n 2`` and ``-n 3`` run tests/mpi_worker.py.

Needs mpi4py and an ``mpiexec`` (``pip install xpnn[mpi]`` brings both, as the mpi nox session
does); elsewhere these skip with the reason. Every launch has a timeout, so a hang fails the
test instead of blocking the run. tests/test_distributed.py checks the same logic in-process.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install xpnn[mpi])")

from helpers import spiral
from replicas import CASES, SHARD_SIZES, build, build_without_metric, flat

import xpnn
from xpnn import distributed, sharding

HERE = Path(__file__).resolve().parent
MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH or beside python")
SIZES = [2, 3]
LAUNCH_TIMEOUT = 300  # seconds; the launches take a few seconds each on 2 cores
_launched: dict = {}


def launch(size: int, mode: str, backend: str, out: Path) -> subprocess.CompletedProcess:
    command = [MPIEXEC, "-n", str(size), sys.executable, "-m", "mpi4py",
               str(HERE / "mpi_worker.py"), mode, backend, str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    # A session of its own, so that a launch past its time is ended whole, ranks included.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, start_new_session=True) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"{' '.join(command)} still ran after {LAUNCH_TIMEOUT} s: a hang")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def ranks(backend, tmp_path_factory, request):
    """What every rank of ``mpiexec -n size`` saw, one launch per (size, backend)."""
    size = request.param
    if (size, backend) not in _launched:
        out = tmp_path_factory.mktemp(f"mpi-{size}-{backend}")
        done = launch(size, "rules", backend, out)
        assert done.returncode == 0, done.stdout + done.stderr
        seen = [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(size)]
        _launched[size, backend] = seen
    return _launched[size, backend]


by_size = pytest.mark.parametrize("ranks", SIZES, indirect=True, ids=[f"n{n}" for n in SIZES])


@by_size
def test_every_rank_ends_with_bit_identical_parameters(ranks):
    for optimizer, _, _ in CASES:
        first = ranks[0]["equal"][optimizer]["params"]
        for seen in ranks[1:]:
            assert np.array_equal(seen["equal"][optimizer]["params"], first)


@by_size
def test_parameters_and_history_equal_one_process(ranks, backend):
    X_val, y_val = spiral(20, 3, seed=1)
    for optimizer, samples, batch_size in CASES:
        X, y = spiral(samples, 3)
        alone = build(backend, optimizer)
        expected = alone.train(X, y, epochs=3, batch_size=batch_size, verbose=False,
                               validation_data=(X_val, y_val))  # fmt: skip
        for seen in ranks:
            run = seen["equal"][optimizer]
            np.testing.assert_allclose(run["params"], flat(alone), rtol=0, atol=1e-12)
            for name in ("loss", "data_loss", "regularization_loss", "accuracy", "val_loss"):
                np.testing.assert_allclose(run["history"][name], expected[name], rtol=1e-12)
            np.testing.assert_array_equal(run["history"]["val_accuracy"], expected["val_accuracy"])


@by_size
def test_parameters_and_shuffling_come_from_rank_0(ranks, backend):
    X, y = spiral(30, 3)
    alone = build(backend, seed=11)
    alone.train(X, y, epochs=2, batch_size=16, verbose=False)
    for seen in ranks:
        np.testing.assert_allclose(seen["from_rank_0"]["params"], flat(alone), rtol=0, atol=1e-12)


@by_size
def test_differing_settings_raise_on_every_rank(ranks):
    last = len(ranks) - 1
    names = ["samples", "batch size", "epochs", "parameter count", "dtype", "epochs trained",
             "optimizer Adam beta_1"]  # fmt: skip
    for seen in ranks:
        for name in names:
            message = seen["disagreements"][name]
            assert message and f"differ in {name}: rank 0 has" in message
            assert f"rank {last} has" in message
    for seen in ranks[:-1]:
        assert (
            f"rank {last} could not start: ValueError: epochs"
            in seen["disagreements"]["an argument"]
        )
    assert "epochs must be" in ranks[-1]["disagreements"]["an argument"]


@by_size
def test_a_non_finite_loss_on_one_rank_raises_on_every_rank_at_the_same_step(ranks, backend):
    on_host = xpnn.get_backend(backend).on_host
    for seen in ranks:
        result = seen["non_finite"]
        assert result["raised"] == ((2, 1) if on_host else (2, None))
        assert result["iterations"] == (5 if on_host else 0)
        assert np.array_equal(result["params"], ranks[0]["non_finite"]["params"])


@by_size
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step_and_resumes(ranks, backend):
    X, y = spiral(43, 3)
    alone = build(backend)
    alone.train(X, y, epochs=2, batch_size=8, verbose=False)
    on_host = xpnn.get_backend(backend).on_host
    for seen in ranks:
        result = seen["ctrl_c"]
        assert result["iterations"] == (4 if on_host else distributed.STOP_CHECK_EVERY)
        assert np.array_equal(result["params"], ranks[0]["ctrl_c"]["params"])
        assert result["epochs"] == 2
        np.testing.assert_allclose(result["resumed"], flat(alone), rtol=0, atol=1e-12)
        np.testing.assert_allclose(result["from_file"], flat(alone), rtol=0, atol=1e-12)


@by_size
def test_only_rank_0_prints_and_writes_and_a_resumed_run_matches(ranks, backend):
    X, y = spiral(30, 3)
    alone = build(backend)
    alone.train(X, y, epochs=6, batch_size=16, verbose=False)
    assert ranks[0]["checkpoints"]["writes"] == 2  # epochs 2 and 4: checkpoint_every=2
    printed = ranks[0]["checkpoints"]["printed"]
    assert "epoch: 1," in printed and "epoch: 2," in printed
    for seen in ranks[1:]:
        assert seen["checkpoints"]["writes"] == 0 and seen["checkpoints"]["printed"] == ""
    for seen in ranks:
        np.testing.assert_allclose(seen["checkpoints"]["resumed"], flat(alone), rtol=0, atol=1e-12)


@by_size
def test_dropout_masks_differ_by_rank_while_parameters_agree(ranks):
    masks = [seen["dropout"]["mask"] for seen in ranks]
    assert all(not np.array_equal(masks[0][: len(m)], m[: len(masks[0])]) for m in masks[1:])
    for seen in ranks:
        assert np.array_equal(seen["dropout"]["params"], ranks[0]["dropout"]["params"])


@by_size
def test_evaluate_over_ranks_equals_one_process(ranks, backend):
    X, y = spiral(43, 3)
    model = build(backend)
    model.set_parameters(ranks[0]["evaluate"]["params"])
    expected = model.evaluate(X, y)
    for seen in ranks:
        for name, value in expected.items():
            assert seen["evaluate"]["figures"][name] == pytest.approx(value, rel=1e-12, abs=0)


@by_size
def test_ranks_given_other_data_are_refused_on_every_rank(ranks):
    for seen in ranks:
        message = seen["other_data"]["message"]
        assert message and message.startswith(f"X, y: rank {len(ranks) - 1} was given other")
        assert "shard=True" in message
        assert seen["other_data"]["iterations"] == 0


@by_size
def test_shard_equals_one_process_on_the_defined_order(ranks, backend):
    sizes = SHARD_SIZES[len(ranks)]
    X, y = spiral(43, 3)
    X_val, y_val = spiral(11, 3, seed=1)
    alone, losses, val_losses = build(backend), [], []
    for _ in range(3):
        batches = sharding.one_process_batches(sizes, 32, sharding.part_orders(alone.rng, sizes))
        sums = [len(b) * alone.train(X[b], y[b], shuffle=False, verbose=False)["data_loss"][0]
                for b in batches]  # fmt: skip
        losses.append(sum(sums) / len(X))
        val_losses.append(alone.evaluate(X_val, y_val)["data_loss"])
    for seen in ranks:
        run = seen["shard"]
        np.testing.assert_allclose(run["params"], flat(alone), rtol=0, atol=1e-12)
        np.testing.assert_allclose(run["history"]["data_loss"], losses, rtol=1e-12)
        np.testing.assert_allclose(run["history"]["val_data_loss"], val_losses, rtol=1e-12)
        assert np.array_equal(run["params"], ranks[0]["shard"]["params"])


@by_size
def test_a_checkpoint_failure_on_rank_0_raises_on_every_rank(ranks):
    """Rank 0's script catches its error and goes on; the others raise too, after the same
    step, and meet it at its next collective call (no hang: the launch has a timeout)."""
    name, message = ranks[0]["checkpoint_fault"]["raised"]
    assert name == "ValueError" and "it is a directory" in message
    for seen in ranks[1:]:
        name, message = seen["checkpoint_fault"]["raised"]
        assert name == "OtherRankFailed" and "rank 0 could not write the checkpoint" in message
    for seen in ranks:
        assert seen["checkpoint_fault"]["iterations"] == 8  # epoch 2 of 4 steps each
        assert seen["checkpoint_fault"]["after"] == list(range(len(ranks)))


@by_size
def test_evaluate_over_ranks_without_an_accuracy_metric(ranks, backend):
    X, y = spiral(13, 3)
    expected = build_without_metric(backend).evaluate(X, y, batch_size=8)
    assert "accuracy" not in expected
    for seen in ranks:
        figures = seen["no_metric"]["figures"]
        assert figures.keys() == expected.keys()
        for name, value in expected.items():
            assert figures[name] == pytest.approx(value, rel=1e-12, abs=0)


@by_size
def test_ranks_holding_other_optimizer_state_arrays_are_refused(ranks):
    last = len(ranks) - 1
    for seen in ranks:
        message = seen["optimizer_state"]["message"]
        assert message and f"differ in optimizer state: rank 0 has [], rank {last} has [" in message


@pytest.mark.parametrize("size", SIZES)
def test_an_uncaught_error_on_one_rank_ends_the_job_within_seconds(size, tmp_path):
    started = time.perf_counter()
    done = launch(size, "crash", "numpy", tmp_path)
    seconds = time.perf_counter() - started
    assert done.returncode != 0
    assert "RuntimeError: a fault on one rank" in done.stderr
    assert seconds < 60, f"the job took {seconds:.0f} s to end"


def test_readme_runs_under_python_m_mpi4py():
    readme = (HERE.parent / "README.md").read_text()
    assert "mpiexec -n 2 python -m mpi4py examples/distributed.py" in readme


@by_size
def test_each_rank_computes_on_a_device_of_its_node_without_asking(ranks, backend):
    """The workers call no use_device: the launcher's node-local rank (MPICH's MPI_LOCALRANKID,
    Open MPI's OMPI_COMM_WORLD_LOCAL_RANK) picks the device when CuPy is first used; the
    stand-in plays two devices and no NCCL (tests/mpi_worker.py)."""
    if backend != "cupy":
        pytest.skip("devices are CuPy's")
    places = [seen["placement"] for seen in ranks]
    # All ranks of these launches are on one node: node-local rank = rank.
    devices = [r % 2 for r in range(len(ranks))]
    assert [p["device"] for p in places] == devices
    assert [p["arrays"] for p in places] == devices
    assert {p["transport"] for p in places} == {"HostMPI"}
    node = places[0]["node"]
    (line,) = places[0]["logged"]
    assert line.startswith(f"ranks on devices: {node}:{','.join(map(str, devices))}; ")
    assert "transport='auto' chose 'host'" in line
    if len(ranks) == 3:
        assert "ranks 0 and 2 share CUDA device 0" in line
        for place in places:
            assert place["nccl refused"].startswith(
                f"transport='nccl' needs a CUDA device per rank, but ranks 0 and 2 share CUDA "
                f"device 0 on {node}"
            )
    assert all(p["logged"] == [] for p in places[1:])  # rank 0 alone says it
    assert all(p["placement"] == line for p in places)  # which the first report shows


@by_size
def test_a_model_on_another_device_than_its_ranks_is_refused_on_every_rank(ranks, backend):
    if backend != "cupy":
        pytest.skip("devices are CuPy's")
    last = len(ranks) - 1
    places = [seen["placement"] for seen in ranks]
    own = last % 2
    said = (
        f"rank {last} on {places[0]['node']}: its model is on CUDA device {(own + 1) % 2}, "
        f"but its device is {own} (node-local rank {last} "
    )
    for place in places:
        assert place["refused"].startswith(said)
        assert "use_device(comm)" in place["refused"]
        assert place["unchanged"]
