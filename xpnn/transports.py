"""How the ranks of data-parallel training talk: host MPI, NCCL or a CUDA-aware MPI, and which
CUDA device each rank computes on.

``communicator(comm, backend, transport)`` makes the ``Communicator``; ``"auto"`` picks NCCL on
CuPy only where every rank of a node has a device of its own, a CUDA-aware MPI only where the
MPI library says it is one, and host staging otherwise, logging why (logger ``xpnn``).
Each rank computes on a device of its own (``backends.devices`` chooses it when CuPy is first
used, ``use_device(comm)`` where the launcher does not say the node-local rank); a model on
another device than its rank's is refused before training starts.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import warnings
from typing import Any

import numpy as np

from ._checks import shown
from .backends import Backend, devices, to_numpy

__all__ = [
    "Communicator",
    "CudaAwareMPI",
    "HostMPI",
    "NcclMPI",
    "communicator",
    "mpi_cuda_support",
    "use_device",
]

log = logging.getLogger("xpnn")


class Communicator:
    """What data-parallel training needs of a group of processes.

    ``rank`` and ``size``; ``allgather`` of small Python objects (host side, at the start);
    ``allreduce`` sums an array of the backend over the ranks in place, every rank getting the
    same result; ``broadcast`` copies rank ``root``'s array into every rank's. ``close`` frees
    what it holds (an NCCL communicator); it is also a context manager that closes on exit.
    """

    rank: int
    size: int
    #: Where the ranks compute and how they talk (``ranks on devices: host1:0,1; transport=...``),
    #: which the first report's header shows; None where ``communicator`` did not place them.
    placement: str | None = None

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order."""
        raise NotImplementedError

    def allreduce(self, buffer: Any) -> None:
        """Sum ``buffer`` over the ranks, in place."""
        raise NotImplementedError

    def broadcast(self, buffer: Any, root: int = 0) -> None:
        """Overwrite ``buffer`` with rank ``root``'s, in place."""
        raise NotImplementedError

    def close(self) -> None:
        """Free what this communicator holds beside the MPI communicator (nothing here)."""

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class HostMPI(Communicator):
    """MPI through mpi4py on host memory: NumPy arrays in place; any other backend's arrays
    staged through a host copy (one transfer each way per call)."""

    def __init__(self, comm: Any, backend: Backend) -> None:
        from mpi4py import MPI

        self.comm, self.backend, self._in_place = comm, backend, MPI.IN_PLACE
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._on_host = isinstance(backend.zeros(0), np.ndarray)

    def allgather(self, value: Any) -> list[Any]:
        """``Communicator.allgather`` over MPI (pickled objects)."""
        return self.comm.allgather(value)

    def allreduce(self, buffer: Any) -> None:
        """``Communicator.allreduce`` with ``MPI_Allreduce(MPI_IN_PLACE, ...)``."""
        if self._on_host:
            self.comm.Allreduce(self._in_place, buffer)
            return
        host = np.array(to_numpy(buffer))  # a writable, contiguous copy
        self.comm.Allreduce(self._in_place, host)
        buffer[...] = self.backend.asarray(host, buffer.dtype)

    def broadcast(self, buffer: Any, root: int = 0) -> None:
        """``Communicator.broadcast`` with ``MPI_Bcast``."""
        if self._on_host:
            self.comm.Bcast(buffer, root=root)
            return
        host = np.array(to_numpy(buffer))
        self.comm.Bcast(host, root=root)
        buffer[...] = self.backend.asarray(host, buffer.dtype)


class CudaAwareMPI(HostMPI):
    """CuPy arrays handed to a CUDA-aware MPI directly, after the current stream has finished
    the work that writes them (MPI does not order itself after CUDA streams)."""

    def allreduce(self, buffer: Any) -> None:
        """``Communicator.allreduce`` on device memory."""
        self.backend.synchronize()
        self.comm.Allreduce(self._in_place, buffer)

    def broadcast(self, buffer: Any, root: int = 0) -> None:
        """``Communicator.broadcast`` on device memory."""
        self.backend.synchronize()
        self.comm.Bcast(buffer, root=root)


class NcclMPI(Communicator):
    """CuPy arrays summed by NCCL (``cupy.cuda.nccl``), queued on the current stream so the host
    never waits for them. ``comm`` (an mpi4py communicator, or a ``Communicator``) carries
    NCCL's unique id and the small Python objects. ``close()`` destroys the NCCL communicator."""

    def __init__(self, comm: Any, backend: Backend) -> None:
        host = comm if isinstance(comm, Communicator) else HostMPI(comm, backend)
        self.host, self.backend = host, backend
        self.rank, self.size = host.rank, host.size
        nccl = _nccl(backend)
        self._nccl = nccl
        unique_id = host.allgather(nccl.get_unique_id() if self.rank == 0 else None)[0]
        self._comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def allgather(self, value: Any) -> list[Any]:
        """``Communicator.allgather`` through the host communicator."""
        return self.host.allgather(value)

    def _args(self, buffer: Any) -> tuple[int, int, int, int]:
        if self._comm is None:
            raise RuntimeError("this NCCL communicator was closed")
        if not buffer.flags.c_contiguous:  # NCCL reads `size` values on from the pointer
            raise ValueError("NCCL sums and broadcasts contiguous arrays only")
        stream = self.backend.xp.cuda.get_current_stream().ptr
        return buffer.data.ptr, buffer.size, self._types[str(buffer.dtype)], stream

    def allreduce(self, buffer: Any) -> None:
        """``Communicator.allreduce`` with ``ncclAllReduce`` in place on the current stream."""
        pointer, count, dtype, stream = self._args(buffer)
        self._comm.allReduce(pointer, pointer, count, dtype, self._nccl.NCCL_SUM, stream)

    def broadcast(self, buffer: Any, root: int = 0) -> None:
        """``Communicator.broadcast`` with ``ncclBcast`` on the current stream."""
        pointer, count, dtype, stream = self._args(buffer)
        self._comm.bcast(pointer, count, dtype, root, stream)

    def close(self) -> None:
        """Destroy the NCCL communicator (once; later calls do nothing)."""
        nccl_comm, self._comm = self._comm, None
        if nccl_comm is not None:
            nccl_comm.destroy()


TRANSPORTS = {"host": HostMPI, "cuda-mpi": CudaAwareMPI, "nccl": NcclMPI}


def _nccl(backend: Backend) -> Any:
    """``cupy.cuda.nccl`` of the backend's CuPy (which warns on import where the NCCL library
    is missing)."""
    nccl = getattr(backend.xp.cuda, "nccl", None)
    if nccl is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nccl = importlib.import_module(f"{backend.xp.__name__}.cuda.nccl")
    return nccl


# -- which MPI is CUDA-aware ------------------------------------------------------------------


def mpi_cuda_support(version: str | None = None, query: Any = None) -> tuple[bool, str]:
    """Whether the MPI library reads device memory, and why it is taken to: Open MPI by its
    ``MPIX_Query_cuda_support()`` extension, MPICH by ``--with-cuda`` in its build
    configuration, Cray MPICH by ``MPICH_GPU_SUPPORT_ENABLED=1``. ``version`` is
    ``MPI.Get_library_version()`` and ``query`` the extension function (both found here when
    None); anything else is taken as not CUDA-aware."""
    if version is None:
        from mpi4py import MPI

        version = MPI.Get_library_version()
    first = version.strip().splitlines()[0].strip() if version.strip() else "this MPI"
    if "CRAY MPICH" in version.upper():
        enabled = os.environ.get("MPICH_GPU_SUPPORT_ENABLED") == "1"
        return enabled, f"{first}: MPICH_GPU_SUPPORT_ENABLED is {'1' if enabled else 'not 1'}"
    if version.startswith("MPICH"):
        configure = next(
            (line for line in version.splitlines() if line.startswith("MPICH configure:")), ""
        )
        flags = configure.split()[2:]
        with_cuda = [f for f in flags if f == "--with-cuda" or f.startswith("--with-cuda=")]
        aware = bool(with_cuda) and with_cuda[-1] != "--with-cuda=no"
        said = "built with " + with_cuda[-1] if aware else "built without --with-cuda"
        return aware, f"MPICH {said} ({configure.strip() or 'no configure line'})"
    if "Open MPI" in version:
        query = query if query is not None else _mpi_symbol("MPIX_Query_cuda_support")
        if query is None:
            return False, f"{first}: no MPIX_Query_cuda_support() (built without CUDA)"
        aware = bool(query())
        return aware, f"{first}: MPIX_Query_cuda_support() returned {int(aware)}"
    return False, f"{first} does not say that it is CUDA-aware"


def _mpi_symbol(name: str) -> Any:
    """The C function ``name`` of the MPI library loaded in this process, or None."""
    paths: list[str | None] = [None]
    try:
        with open("/proc/self/maps") as maps:
            paths += sorted({line.split()[-1] for line in maps if "libmpi" in line})
    except OSError:
        pass
    for path in paths:
        try:
            function = getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
        function.restype, function.argtypes = ctypes.c_int, []
        return function
    return None


# -- devices ----------------------------------------------------------------------------------


def node_rank(comm: Any) -> int:
    """This rank's rank among the ranks of its node (``comm.Split_type(MPI.COMM_TYPE_SHARED)``);
    a collective call."""
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(node.Get_rank())
    finally:
        node.Free()


def use_device(comm: Any, device: int | None = None) -> int:
    """Make this rank's CUDA device CuPy's current one and return its number: ``device`` where
    given (the user's choice), else the rank's node-local rank (``comm.Split_type(
    MPI.COMM_TYPE_SHARED)``) modulo the node's device count. A collective call: every rank of
    ``comm`` makes it (with or without ``device``), before it builds its model (whose arrays
    live on the device current then). Under a launcher that names the node-local rank, xpnn
    makes the same choice without this call (``xpnn.backends.devices``)."""
    import cupy

    local = node_rank(comm)  # on every rank, whatever it chose
    count = cupy.cuda.runtime.getDeviceCount()
    if count < 1:
        raise RuntimeError("use_device: CuPy sees no CUDA device on this node")
    named = device is not None
    if device is None:
        device = local % count
    elif isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < count:
        raise ValueError(f"device must be an int in [0, {count}) on this node; got {shown(device)}")
    cupy.cuda.Device(device).use()
    if named:
        devices.record(device, f"use_device(comm, device={device})", by_user=True)
    else:
        devices.record(device, f"use_device: node-local rank {local} modulo {count}", False)
    return device


def arrays_device(model: Any) -> int | None:
    """The CUDA device of ``model``'s parameters (its first layer's that has some), or None
    where it has none or is not on CuPy."""
    if model.backend.name != "cupy":
        return None
    for layer in model.layers:
        for _, name, _ in layer.parameter_names:
            return int(getattr(layer, name).device.id)
    return None


def misplaced(comm: Any, backend: Backend, arrays: int | None) -> str | None:
    """Why this rank's arrays (on device ``arrays``; None: the current one) are not where this
    rank computes, or None where they are: on the user's device where one was named, else on
    the node-local rank's modulo the node's devices. A collective call (``node_rank``)."""
    local = node_rank(comm)
    choice = devices.chosen()
    if choice is not None and choice.by_user:
        expected, why = choice.device, choice.why
    else:
        count = backend.xp.cuda.runtime.getDeviceCount()
        expected, why = local % count, f"node-local rank {local} modulo {count} devices"
    current = backend.xp.cuda.Device().id
    arrays = current if arrays is None else arrays
    if arrays != expected:
        return f"its model is on CUDA device {arrays}, but its device is {expected} ({why})"
    if current != arrays:
        return f"its model is on CUDA device {arrays}, but device {current} is current"
    return None


def devices_line(where: list[tuple[str, int]]) -> str:
    """Every rank's device by node, in rank order: ``"host1:0,1 host2:0,1"``."""
    nodes: dict[str, list[str]] = {}
    for node, device in where:
        nodes.setdefault(node, []).append(str(device))
    return " ".join(f"{node}:{','.join(found)}" for node, found in nodes.items())


def shared_devices(where: list[tuple[str, int]]) -> str | None:
    """Which ranks share a device (as a phrase), or None where every rank has its own."""
    first: dict[tuple[str, int], int] = {}
    for rank, place in enumerate(where):
        if place in first:
            node, device = place
            return f"ranks {first[place]} and {rank} share CUDA device {device} on {node}"
        first[place] = rank
    return None


def facts(
    group: Communicator, backend: Backend, comm: Any = None, arrays: int | None = None
) -> list[tuple[Any, ...]]:
    """Every rank's (node, current device, NCCL available, CUDA-aware MPI, why, misplaced),
    in rank order, in one allgather; ``misplaced`` is checked where ``comm`` (mpi4py) is
    given, ``arrays`` being the device of the model's arrays."""
    from mpi4py import MPI

    nccl = getattr(_nccl(backend), "available", False)
    aware, why = mpi_cuda_support()
    problem = None if comm is None else misplaced(comm, backend, arrays)
    device = backend.xp.cuda.Device().id
    return group.allgather((MPI.Get_processor_name(), device, bool(nccl), aware, why, problem))


def decide(every: list[tuple[Any, ...]]) -> tuple[str, str]:
    """The transport ``"auto"`` takes given every rank's ``facts``, and why."""
    shared = shared_devices([(node, device) for node, device, *_ in every])
    if shared is not None:
        return "host", (
            f"{shared} (more ranks than devices on the node; use_device, XPNN_DEVICE or "
            f"CUDA_VISIBLE_DEVICES choose others)"
        )
    if all(entry[2] for entry in every):
        return "nccl", "every rank has a device of its own"
    lacking = [rank for rank, entry in enumerate(every) if not entry[2]]
    if all(entry[3] for entry in every):
        return "cuda-mpi", f"NCCL is not available on ranks {lacking}; {every[0][4]}"
    unaware = next(entry[4] for entry in every if not entry[3])
    return (
        "host",
        f"NCCL is not available on ranks {lacking} and the MPI is not CUDA-aware: {unaware}",
    )


def choose(group: Communicator, backend: Backend) -> tuple[str, str]:
    """The transport ``"auto"`` takes on CuPy over the ranks of ``group`` (host MPI), and why:
    every rank's facts gathered in one allgather, so that every rank takes the same one."""
    return decide(facts(group, backend))


def check_placement(every: list[tuple[Any, ...]]) -> None:
    """ValueError on every rank where a rank's model is not on its device (``facts``)."""
    wrong = [(rank, entry) for rank, entry in enumerate(every) if entry[5] is not None]
    if wrong:
        rank, entry = wrong[0]
        raise ValueError(
            f"rank {rank} on {entry[0]}: {entry[5]}. Build each rank's model on its own device: "
            f"xpnn makes it current when the process first uses CuPy, from the node-local rank "
            f"its launcher sets ({', '.join(devices.LOCAL_RANK_VARIABLES)}); where it sets none, "
            f"call xpnn.distributed.use_device(comm) on every rank before building the model. "
            f"use_device(comm, device=k) or XPNN_DEVICE=k names a device"
        )


def communicator(
    comm: Any, backend: Backend, transport: str = "auto", *, arrays: int | None = None
) -> Communicator:
    """A ``Communicator`` over the mpi4py communicator ``comm`` for ``backend``'s arrays.

    ``transport``: "host" (MPI on host memory, staging device arrays), "nccl", "cuda-mpi" (the
    MPI library must be CUDA-aware; chosen by hand, it is taken at its word) or "auto": on
    CuPy, NCCL where it is available and every rank has a device of its own, else a CUDA-aware
    MPI where the library says it is one (``mpi_cuda_support``), else host MPI, with one log
    line that says why; host MPI on every other backend. A ``Communicator`` passed as ``comm``
    is returned as it is. A collective call: every rank makes it.

    On CuPy, every rank's arrays must be on its device (``misplaced``; ``arrays``: the device
    of the model's, by default the current one), or every rank raises a ValueError; rank 0
    logs (logger ``xpnn``, INFO) every rank's device and the transport in one line:
    ``ranks on devices: host1:0,1 host2:0,1; transport='auto' chose 'nccl': ...``, which the
    communicator keeps as its ``placement`` and the first report's header shows.
    """
    if isinstance(comm, Communicator):
        return comm
    if transport not in ("auto", *TRANSPORTS):
        raise ValueError(
            f"transport must be 'auto', 'host', 'nccl' or 'cuda-mpi'; got {shown(transport)}"
        )
    try:
        from mpi4py import MPI
    except ImportError:
        raise TypeError(
            f"comm must be an mpi4py communicator (install xpnn[mpi]) or an "
            f"xpnn.distributed.Communicator; got {shown(comm)}"
        ) from None
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(
            f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD; got {shown(comm)}"
        )
    host = HostMPI(comm, backend)
    if backend.name != "cupy":
        if transport != "host" and transport != "auto":
            raise ValueError(f"transport={transport!r} needs the cupy backend; this is {backend}")
        return host
    every = facts(host, backend, comm, arrays)
    check_placement(every)
    if transport == "auto":
        transport, why = decide(every)
        said = f"transport='auto' chose {transport!r}: {why}"
    else:
        said = f"transport={transport!r} as asked"
    shared = shared_devices([(node, device) for node, device, *_ in every])
    if transport == "nccl" and shared is not None:
        raise ValueError(
            f"transport='nccl' needs a CUDA device per rank, but {shared} (NCCL refuses "
            f"that); give each rank its own device (use_device, XPNN_DEVICE, "
            f"CUDA_VISIBLE_DEVICES) before building the model"
        )
    where = devices_line([(node, device) for node, device, *_ in every])
    placement = f"ranks on devices: {where}; {said}"
    if host.rank == 0:
        log.info("%s", placement)
    made = NcclMPI(host, backend) if transport == "nccl" else TRANSPORTS[transport](comm, backend)
    made.placement = placement
    return made
