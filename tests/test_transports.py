"""The transports of data-parallel training without a GPU: NCCL and a CUDA-aware MPI on the CuPy
stand-in (its ``cupy.cuda.nccl`` checks every call against CuPy 14.2's), ranks as threads; which
transport ``"auto"`` takes; which MPI counts as CUDA-aware; a device per rank; a communicator
made once per model and closed deterministically."""

from __future__ import annotations

import gc
import logging
import sys

import numpy as np
import pytest
from helpers import seed_model, spiral
from thread_ranks import ThreadCommunicator, ThreadGroup, run_ranks

import xpnn
from xpnn import distributed, transports
from xpnn.backends import devices

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install xpnn[mpi])")


@pytest.fixture
def standin(backend, monkeypatch):
    """The CuPy stand-in's modules, with two devices; skips where cupy is not the stand-in."""
    if backend != "cupy":
        pytest.skip("NCCL and device placement are CuPy's (run with XPNN_CUPY_API=1)")
    cupy_api = sys.modules.get("cupy_api")
    if cupy_api is None or sys.modules.get("cupy") is not cupy_api._standin:
        pytest.skip("needs the CuPy stand-in: these ranks are threads of one process")
    monkeypatch.setattr(cupy_api, "DEVICE_COUNT", 2)
    monkeypatch.setattr(devices, "_choice", None)  # what use_device records, per test
    monkeypatch.setattr(cupy_api._current, "id", 0, raising=False)  # device 0, restored after
    return cupy_api


def _ranks(size, work, devices=None):
    """``work(rank, group)`` on ``size`` thread ranks, each with its own current device
    (``devices[rank]``, default its rank)."""
    import cupy

    host = ThreadGroup(size)
    backend = xpnn.get_backend("cupy")

    def rank_work(rank):
        cupy.cuda.Device(rank if devices is None else devices[rank]).use()
        return work(rank, ThreadCommunicator(host, rank, backend))

    return run_ranks(size, rank_work)


def _raise_any(results):
    for result in results:
        if hasattr(result, "error"):
            raise result.error
    return results


def test_nccl_sums_and_broadcasts_in_place(standin):
    backend = xpnn.get_backend("cupy", "float64")

    def work(rank, host):
        with transports.NcclMPI(host, backend) as group:
            values = backend.asarray(np.arange(5.0) + 10 * rank)
            group.allreduce(values)
            shared = backend.asarray(np.full(3, float(rank)))
            group.broadcast(shared, root=1)
            return xpnn.to_numpy(values), xpnn.to_numpy(shared)

    for summed, shared in _raise_any(_ranks(2, work)):
        np.testing.assert_array_equal(summed, 2 * np.arange(5.0) + 10)
        np.testing.assert_array_equal(shared, 1.0)


def test_nccl_refuses_a_strided_view(standin):
    backend = xpnn.get_backend("cupy", "float64")

    def work(rank, host):
        with transports.NcclMPI(host, backend) as group:
            with pytest.raises(ValueError, match="contiguous"):
                group.allreduce(backend.zeros(6)[::2])
            return True

    assert _raise_any(_ranks(2, work)) == [True, True]


def test_nccl_calls_bind_to_cupys_signatures(standin):
    """A datatype where the operator goes (or any argument out of place) fails, as it would
    on a GPU: the stand-in checks each argument's type and meaning."""
    nccl = sys.modules["cupy"].cuda.nccl
    pointer = xpnn.get_backend("cupy").zeros(4).data.ptr

    def work(rank, host):
        unique = host.allgather(nccl.get_unique_id() if rank == 0 else None)[0]
        comm = nccl.NcclCommunicator(2, unique, rank)
        with pytest.raises(nccl.NcclError, match="datatype 0"):  # NCCL_SUM as the datatype
            comm.allReduce(pointer, pointer, 4, nccl.NCCL_SUM, nccl.NCCL_FLOAT32, 0)
        with pytest.raises(TypeError, match="count must be an int"):
            comm.allReduce(pointer, pointer, 4.0, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
        with pytest.raises(TypeError, match="stream"):
            comm.bcast(pointer, 4, nccl.NCCL_FLOAT32, 0)
        comm.destroy()
        return True

    assert _raise_any(_ranks(2, work, devices=[0, 1])) == [True, True]


def test_nccl_refuses_two_ranks_on_one_device(standin):
    backend = xpnn.get_backend("cupy")
    results = _ranks(2, lambda rank, host: transports.NcclMPI(host, backend), devices=[0, 0])
    for result in results:
        assert "Duplicate GPU detected" in str(result.error)


@pytest.mark.parametrize(
    ("devices", "available", "expected"),
    [([0, 1], True, "nccl"), ([0, 0], True, "host"), ([0, 1], False, "host")],
    ids=["own-devices", "shared-device", "no-nccl"],
)
def test_auto_takes_nccl_only_with_a_device_per_rank(
    standin, monkeypatch, devices, available, expected
):
    monkeypatch.setattr(sys.modules["cupy"].cuda.nccl, "available", available)
    monkeypatch.setattr(transports, "mpi_cuda_support", lambda: (False, "not CUDA-aware"))
    backend = xpnn.get_backend("cupy")
    results = _raise_any(_ranks(2, lambda rank, host: transports.choose(host, backend), devices))
    assert [choice for choice, _ in results] == [expected] * 2
    if devices == [0, 0]:
        assert "ranks 0 and 1 share CUDA device 0" in results[0][1]
        assert "use_device" in results[0][1]


def test_auto_takes_a_cuda_aware_mpi_only_where_it_says_so(standin, monkeypatch):
    monkeypatch.setattr(sys.modules["cupy"].cuda.nccl, "available", False)
    monkeypatch.setattr(transports, "mpi_cuda_support", lambda: (True, "it says so"))
    backend = xpnn.get_backend("cupy")
    results = _raise_any(_ranks(2, lambda rank, host: transports.choose(host, backend)))
    assert [choice for choice, _ in results] == ["cuda-mpi"] * 2


class RecordingComm:
    """An mpi4py-like communicator over thread ranks: what a CUDA-aware MPI is handed."""

    def __init__(self, host, log):
        self.host, self.log = host, log

    def Get_rank(self):
        return self.host.rank

    def Get_size(self):
        return self.host.size

    def Allreduce(self, in_place, buffer):

        self.log.append(("Allreduce", type(buffer), cupy_api_syncs()))
        self.host.allreduce(buffer)

    def Bcast(self, buffer, root=0):
        self.log.append(("Bcast", type(buffer), cupy_api_syncs()))
        self.host.broadcast(buffer, root)


def cupy_api_syncs():
    return sys.modules["cupy_api"].counts["cuda.Stream.synchronize"]


def test_cuda_aware_mpi_gets_device_arrays_after_a_synchronisation(standin):
    import cupy

    backend = xpnn.get_backend("cupy", "float64")

    def work(rank, host):
        log = []
        group = transports.CudaAwareMPI(RecordingComm(host, log), backend)
        before = cupy_api_syncs()
        values = backend.asarray(np.arange(3.0) + rank)
        group.allreduce(values)
        group.broadcast(values, root=0)
        return log, before, xpnn.to_numpy(values)

    for log, before, values in _raise_any(_ranks(2, work)):
        assert [(name, kind) for name, kind, _ in log] == [
            ("Allreduce", cupy.ndarray),  # the device array itself, no host copy
            ("Bcast", cupy.ndarray),
        ]
        assert all(synced > before for _, _, synced in log)  # the stream finished first
        np.testing.assert_array_equal(values, 2 * np.arange(3.0) + 1)


MPICH_WHEEL = """MPICH Version:      5.0.2
MPICH Device:       ch4:ucx ofi
MPICH configure:    --with-device=ch4:ucx,ofi --with-pm=hydra:gforker
"""


@pytest.mark.parametrize(
    ("version", "query", "aware"),
    [
        (MPICH_WHEEL, None, False),
        (
            "MPICH Version: 4.2\nMPICH configure: --prefix=/x --with-cuda=/usr/local/cuda\n",
            None,
            True,
        ),
        ("MPICH Version: 4.2\nMPICH configure: --with-cuda=no\n", None, False),
        ("Open MPI v5.0.3, package: Open MPI", lambda: 1, True),
        ("Open MPI v5.0.3, package: Open MPI", lambda: 0, False),
        ("Intel(R) MPI Library 2021.10", None, False),
    ],
    ids=["mpich-wheel", "mpich-cuda", "mpich-no-cuda", "ompi-cuda", "ompi-host", "unknown"],
)
def test_which_mpi_is_cuda_aware(version, query, aware):
    found, why = transports.mpi_cuda_support(version, query)
    assert found is aware and why


def test_this_mpi_is_asked(monkeypatch):
    from mpi4py import MPI

    found, why = transports.mpi_cuda_support()
    assert MPI.Get_library_version().strip().splitlines()[0].split()[0] in why or "MPICH" in why
    if "MPICH configure:" in MPI.Get_library_version() and "--with-cuda" not in why:
        assert found is False  # the mpi extra's wheel: never picked by "auto"


def test_use_device_takes_the_node_rank_or_the_users_choice(standin):
    import cupy
    from mpi4py import MPI

    assert distributed.use_device(MPI.COMM_SELF) == 0 and cupy.cuda.Device().id == 0
    assert distributed.use_device(MPI.COMM_SELF, 1) == 1 and cupy.cuda.Device().id == 1
    for wrong in (2, -1, True, 1.0):
        with pytest.raises(ValueError, match="device must be an int in"):
            distributed.use_device(MPI.COMM_SELF, wrong)
    assert cupy.cuda.Device().id == 1  # unchanged by a refused choice
    cupy.cuda.Device(0).use()
    standin.DEVICE_COUNT = 0
    with pytest.raises(RuntimeError, match="no CUDA device"):
        distributed.use_device(MPI.COMM_SELF)


def test_transports_other_than_host_need_cupy(backend):
    from mpi4py import MPI

    if backend == "cupy":
        pytest.skip("on CuPy these are the transports")
    for transport in ("nccl", "cuda-mpi"):
        with pytest.raises(ValueError, match="needs the cupy backend"):
            transports.communicator(MPI.COMM_SELF, xpnn.get_backend(backend), transport)
    with pytest.raises(ValueError, match="transport must be"):
        transports.communicator(MPI.COMM_SELF, xpnn.get_backend(backend), "gloo")


class Counted(transports.HostMPI):
    made = 0
    closed = 0

    def __init__(self, *args):
        super().__init__(*args)
        Counted.made += 1

    def close(self):
        Counted.closed += 1


def test_a_model_makes_its_communicator_once_and_closes_it(backend, monkeypatch, caplog):
    from mpi4py import MPI

    monkeypatch.setattr(distributed, "communicator", lambda comm, be, **_: Counted(comm, be))
    Counted.made = Counted.closed = 0
    X, y = spiral(20, 3)
    model = seed_model(backend, seed=0)
    for _ in range(2):
        model.train(X, y, epochs=1, batch_size=8, verbose=False, comm=MPI.COMM_SELF)
        model.evaluate(X, y, comm=MPI.COMM_SELF)
    assert (Counted.made, Counted.closed) == (1, 0)
    distributed.close(model)
    assert Counted.closed == 1
    model.train(X, y, epochs=1, batch_size=8, verbose=False, comm=MPI.COMM_SELF)
    assert Counted.made == 2
    del model
    gc.collect()
    assert Counted.closed == 2  # freed with the model


def test_auto_logs_its_choice_once(standin, caplog):
    from mpi4py import MPI

    X, y = spiral(20, 3)
    model = seed_model("cupy", seed=0)
    with caplog.at_level(logging.INFO, logger="xpnn"):
        model.train(X, y, epochs=1, batch_size=8, verbose=False, comm=MPI.COMM_SELF)
        model.train(X, y, epochs=1, batch_size=8, verbose=False, comm=MPI.COMM_SELF)
    chosen = [r.getMessage() for r in caplog.records if "transport='auto' chose" in r.getMessage()]
    node = MPI.Get_processor_name()
    assert chosen == [
        f"ranks on devices: {node}:0; transport='auto' chose 'nccl': every rank has a device "
        f"of its own"
    ]
    distributed.close(model)


def test_a_transport_asked_for_is_logged_with_the_devices(standin, caplog):
    from mpi4py import MPI

    distributed.use_device(MPI.COMM_SELF, 1)
    with caplog.at_level(logging.INFO, logger="xpnn"):
        transports.communicator(MPI.COMM_SELF, xpnn.get_backend("cupy"), "host", arrays=1)
    node = MPI.Get_processor_name()
    assert caplog.messages == [f"ranks on devices: {node}:1; transport='host' as asked"]


def test_the_devices_line_groups_ranks_by_node():
    where = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2)]
    assert transports.devices_line(where) == "a:0,1,2 b:0,1"
    assert transports.devices_line([("n", 0)]) == "n:0"


def _choose(standin, environ, current=0):
    import cupy

    devices._choice = None
    standin.Device(current).use()
    choice = devices.choose(cupy, environ)
    return choice, cupy.cuda.Device().id


def test_the_launchers_node_local_rank_chooses_the_device(standin):
    choice, current = _choose(standin, {"MPI_LOCALRANKID": "3"})
    assert (choice.device, choice.by_user, current) == (1, False, 1)  # 3 modulo 2 devices
    assert choice.why == "node-local rank 3 (MPI_LOCALRANKID) modulo 2 devices"
    # mpiexec in a Slurm batch script: the MPI launcher's variable, not the inherited SLURM_LOCALID
    choice, current = _choose(standin, {"SLURM_LOCALID": "0", "OMPI_COMM_WORLD_LOCAL_RANK": "1"})
    assert (choice.device, current) == (1, 1)
    assert devices.chosen() is choice
    assert _choose(standin, {"SLURM_LOCALID": "2"})[1] == 0
    assert _choose(standin, {}) == (None, 0)  # no launcher: CuPy's device 0, nothing chosen
    assert devices.chosen() is None
    standin.DEVICE_COUNT = 0  # no device: nothing chosen, the backend's probe says why
    assert devices.choose(sys.modules["cupy"], {"MPI_LOCALRANKID": "1"}) is None


def test_the_user_overrides_the_device(standin):
    import cupy
    from mpi4py import MPI

    choice, current = _choose(standin, {"XPNN_DEVICE": "0", "MPI_LOCALRANKID": "1"})
    assert (choice.device, choice.by_user, choice.why, current) == (0, True, "XPNN_DEVICE=0", 0)
    for wrong in ("2", "-1", "one", "1.0"):
        with pytest.raises(ValueError, match=f"XPNN_DEVICE must be .* got '{wrong}'"):
            _choose(standin, {"XPNN_DEVICE": wrong}, current=1)
        assert cupy.cuda.Device().id == 1 and devices.chosen() is None  # nothing changed
    # A device made current before xpnn first uses CuPy is the user's choice: kept.
    choice, current = _choose(standin, {"MPI_LOCALRANKID": "0"}, current=1)
    assert (choice.device, choice.by_user, current) == (1, True, 1)
    # use_device first: it stands.
    devices._choice = None
    distributed.use_device(MPI.COMM_SELF, 1)
    standin.Device(0).use()
    assert devices.choose(cupy, {"XPNN_DEVICE": "0"}).device == 1
    assert devices.chosen().why == "use_device(comm, device=1)"


@pytest.mark.parametrize(
    ("built_on", "named", "current", "said"),
    [
        (0, 1, 1, "on CUDA device 0, but its device is 1 (use_device(comm, device=1))"),
        (1, None, 0, "on CUDA device 1, but its device is 0 (node-local rank 0 modulo 2"),
        (0, None, 1, "on CUDA device 0, but device 1 is current"),
    ],
    ids=["named-device", "node-rank", "current"],
)
def test_a_model_built_on_another_device_is_refused_before_training(
    standin, built_on, named, current, said
):
    from mpi4py import MPI

    X, y = spiral(20, 3)
    standin.Device(built_on).use()
    model = seed_model("cupy", seed=0)
    before = model.get_parameters()
    if named is not None:
        distributed.use_device(MPI.COMM_SELF, named)
    standin.Device(current).use()
    with pytest.raises(ValueError, match="use_device") as refused:
        model.train(X, y, epochs=1, batch_size=8, verbose=False, comm=MPI.COMM_SELF)
    node = MPI.Get_processor_name()
    assert str(refused.value).startswith(f"rank 0 on {node}: its model is {said}")
    assert model.epochs_trained == 0 and model.optimizer.iterations == 0
    for layer_before, layer_after in zip(before, model.get_parameters()):
        for a, b in zip(layer_before, layer_after):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="its model is on CUDA device"):
        model.evaluate(X, y, comm=MPI.COMM_SELF)
    distributed.use_device(MPI.COMM_SELF, built_on)  # naming the model's device: it may train
    model.train(X, y, epochs=1, batch_size=8, verbose=False, comm=MPI.COMM_SELF)  # now it may
    assert model.epochs_trained == 1
    distributed.close(model)


def test_every_rank_takes_the_same_transport(standin, monkeypatch):
    """NCCL on one rank only: no rank takes it (each one's facts are gathered first)."""
    import threading
    import types

    here = threading.local()
    monkeypatch.setattr(
        transports, "_nccl", lambda backend: types.SimpleNamespace(available=here.rank == 0)
    )
    monkeypatch.setattr(transports, "mpi_cuda_support", lambda: (False, "not CUDA-aware"))
    backend = xpnn.get_backend("cupy")

    def work(rank, host):
        here.rank = rank
        return transports.choose(host, backend)

    results = _raise_any(_ranks(2, work))
    assert [choice for choice, _ in results] == ["host", "host"]
    assert "NCCL is not available on ranks [1]" in results[0][1]


def test_data_parallel_training_through_nccl_equals_the_host_transport(standin):
    """Two thread ranks on devices 0 and 1 train through the NCCL stand-in (parameters and
    optimizer state broadcast, gradients and figures summed) as through host sums."""
    X, y = spiral(40, 3)

    def run(through_nccl):
        def work(rank, host):
            model = seed_model("cupy", seed=0)
            group = transports.NcclMPI(host, model.backend) if through_nccl else host
            history = model.train(X, y, epochs=2, batch_size=16, verbose=False, comm=group)
            group.close()
            return _flat(model), history["loss"]

        return _raise_any(_ranks(2, work))

    import nccl_standin

    before = dict(nccl_standin.counts)
    through_nccl = run(True)
    assert nccl_standin.counts["allReduce"] - before.get("allReduce", 0) >= 2 * 2 * 3  # steps
    assert nccl_standin.counts["bcast"] > before.get("bcast", 0)  # the start from rank 0
    for (params, losses), (expected, expected_losses) in zip(through_nccl, run(False)):
        np.testing.assert_array_equal(params, expected)
        assert losses == expected_losses


def _flat(model):
    return np.concatenate([np.ravel(xpnn.to_numpy(p)) for ps in model.get_parameters() for p in ps])
