"""PyTorch tensors on the CPU, a CUDA or ROCm GPU, Apple's MPS or an Intel XPU.

The array API comes from ``array_api_compat.torch``; the hot operations call torch directly
where that pays (one fused call instead of several, a result written into the flat gradient
buffer). ``torch`` is imported when the first torch backend is made, never before.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from . import devices
from .base import Backend, to_numpy

__all__ = ["DEVICE_ORDER", "HostFloat64", "TorchBackend", "scratch_pair"]

#: The accelerators ``backend="torch"`` tries, in order, before the CPU (ROCm builds of torch
#: call AMD GPUs "cuda").
DEVICE_ORDER = ("cuda", "mps", "xpu")

TORCH_EXTRA = 'pip install "xpnn[torch]" (or a torch build for your device from pytorch.org)'


class TorchBackend(Backend):
    """PyTorch on one device: ``"torch"`` takes CUDA where it works, else MPS, else XPU, else
    the CPU (on several CUDA or XPU devices, as CuPy does: ``XPNN_DEVICE``, a device made
    current, or an MPI launcher's node-local rank modulo the devices; ``devices.pick``);
    ``"torch:<device>"`` (``"torch:cpu"``, ``"torch:mps"``, ``"torch:cuda:1"``) chooses.

    Optimizers run their ``torch_update`` (in-place torch operations on the flat buffer), the
    same operations in the same order as the reference. Like a GPU library's, its arrays are
    read at reports only (``on_host`` is False, even on the CPU), so a step never waits.
    """

    name = "torch"
    fast_path = "torch"
    #: ``get_backend`` accepts ``"torch:<device>"``.
    takes_device = True

    def __init__(self, dtype: str = "float32", device: str | None = None) -> None:
        torch, xp = _import_torch()
        if device is not None:
            _refuse_float64_on_mps(_parse(torch, device), device, dtype)
        where = _device(torch, device)
        _refuse_float64_on_mps(where, "mps", dtype)
        Backend.__init__(self, xp, where, dtype)
        if where.type == "mps":
            self.xp = HostFloat64(xp)
        self.name = "torch" if device is None else f"torch:{device}"
        self.torch = torch
        self._numpy_dtype = {self.dtype: np.dtype(dtype), self.index_dtype: np.dtype(np.int64)}

    def ensure(self, a: Any, argument: str = "inputs") -> Any:
        """``Backend.ensure`` for this library; a tensor that autograd tracks is taken without
        its history (xpnn computes its own gradients, into buffers autograd refuses)."""
        if type(a) is self.array_type and a.requires_grad:
            a = a.detach()
        return Backend.ensure(self, a, argument)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``Backend.asarray`` for this library: host data converted by NumPy (the same
        rounding as the numpy backend's) and copied, never shared with the caller's array."""
        dtype = self.dtype if dtype is None else dtype
        if self.is_own(a):
            return a if a.dtype == dtype else a.to(dtype)
        if type(a) is self.array_type:  # torch on another device: straight there
            return a.detach().to(self.device, dtype, copy=True)
        host = np.array(to_numpy(a), dtype=self._numpy_dtype.get(dtype), order="C", copy=True)
        return self.torch.from_numpy(host).to(self.device, dtype)

    def synchronize(self) -> None:
        """``Backend.synchronize`` for this library."""
        module = getattr(self.torch, self.device.type, None)
        if self.device.type != "cpu" and hasattr(module, "synchronize"):
            module.synchronize()

    # -- random numbers ---------------------------------------------------------------------------

    def random_generator(self, seed: int | None) -> Any:
        """``Backend.random_generator`` for this library: on the CPU, NumPy's (the reference's:
        the same draws as the numpy backend, and a state a checkpoint saves); on an
        accelerator, torch's own there, so that a draw never leaves the device."""
        if self.device.type == "cpu":
            return Backend.random_generator(self, seed)
        generator = self.torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed) % 2**64)
        return generator

    def random(self, generator: Any, shape: tuple[int, ...]) -> Any:
        """``Backend.random`` for this library."""
        if isinstance(generator, np.random.Generator):  # the CPU: NumPy's draws, not copied
            draws = generator.random(shape, dtype=self.dtype_name)
            return self.torch.from_numpy(draws).to(self.device)
        return self.torch.rand(shape, generator=generator, dtype=self.dtype, device=self.device)

    # -- operations with a fast path ------------------------------------------------------------

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        """``Backend.matmul`` for this library: straight into ``out`` (a view of the flat
        gradient buffer) where one is given."""
        if out is None:
            return self.torch.matmul(a, b)
        return self.torch.matmul(a, b, out=out)

    def sum_rows(self, a: Any, *, out: Any) -> Any:
        """``Backend.sum_rows`` for this library."""
        return self.torch.sum(a, dim=0, keepdim=True, out=out)

    def affine(self, inputs: Any, weights: Any, biases: Any) -> Any:
        """``Backend.affine`` in one call (the product accumulates onto the biases)."""
        if inputs.ndim != 2 or biases.ndim != 2 or biases.shape[0] != 1:
            return Backend.affine(self, inputs, weights, biases)
        return self.torch.addmm(biases, inputs, weights)

    def relu(self, inputs: Any) -> Any:
        """``Backend.relu`` for this library."""
        return self.torch.relu(inputs)

    def relu_backward(self, dvalues: Any, inputs: Any) -> Any:
        """``Backend.relu_backward`` for this library (the reference's product with the mask,
        so a NaN gradient stays NaN)."""
        return dvalues * (inputs > 0)

    def softmax(self, inputs: Any) -> Any:
        """``Backend.softmax`` in one call (torch shifts each row by its maximum too)."""
        if inputs.ndim != 2:
            return Backend.softmax(self, inputs)
        return self.torch.softmax(inputs, dim=1)

    def take_labels(self, a: Any, labels: Any) -> Any:
        """``Backend.take_labels`` for this library."""
        return self.torch.gather(a, 1, labels[:, None])[:, 0]

    def softmax_crossentropy(
        self, probs: Any, y_true: Any, epsilon: float, *, gradient: bool = True
    ) -> tuple[Any, Any, Any]:
        """``Backend.softmax_crossentropy`` through torch's own calls (``clamp`` for the
        array-API ``clip``, which checks its bounds in Python at every call)."""
        torch = self.torch
        if probs.ndim != 2:
            return Backend.softmax_crossentropy(self, probs, y_true, epsilon, gradient=gradient)
        clipped = torch.clamp(probs, epsilon, 1 - epsilon)
        predicted = torch.argmax(probs, dim=1)
        if y_true.ndim == 1:
            confidences = self.take_labels(clipped, y_true)
            right = predicted == y_true
        else:
            confidences = torch.sum(clipped * y_true, dim=1)
            right = predicted == torch.argmax(y_true, dim=1)
        loss = torch.sum(-torch.log(confidences))
        dinputs = None
        if gradient:
            targets = self.one_hot(y_true, probs.shape[1]) if y_true.ndim == 1 else y_true
            dinputs = probs - targets
            dinputs /= probs.shape[0]
        return loss, torch.count_nonzero(right), dinputs


class HostFloat64:
    """``array_api_compat.torch`` for a device without float64 (Apple's MPS): a cast to float64,
    which only the reading of figures at a report asks for, is made on the host."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._xp, name)

    def astype(self, x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
        """``astype``, on the host for float64."""
        if dtype == self._xp.float64:
            return self._xp.astype(x.cpu(), dtype)
        return self._xp.astype(x, dtype, copy=copy, device=device)


def scratch_pair(scratch: dict, like: Any) -> tuple[Any, Any]:
    """Two tensors shaped as ``like`` on its device to compute in, kept in ``scratch`` (the
    optimizer's) for the next step."""
    key = ("torch", tuple(like.shape), like.dtype, like.device)
    pair = scratch.get(key)
    if pair is None:
        pair = scratch[key] = (like.new_empty(like.shape), like.new_empty(like.shape))
    return pair


def _import_torch() -> tuple[Any, Any]:
    """torch and ``array_api_compat.torch``; ImportError naming the extra without them."""
    try:
        torch = importlib.import_module("torch")
        xp = importlib.import_module("array_api_compat.torch")
    except ImportError as error:
        raise ImportError(
            f'backend="torch" needs PyTorch and array-api-compat: {TORCH_EXTRA}'
        ) from error
    return torch, xp


def _device(torch: Any, device: str | None) -> Any:
    """The ``torch.device`` asked for (None: the first accelerator of ``DEVICE_ORDER`` that
    works, else the CPU), with its index, once a small computation ran there."""
    if device is None:
        for kind in DEVICE_ORDER:
            where = _this_process(torch, kind)
            if unusable(torch, where) is None:
                return _probed(torch, where)
        return _probed(torch, "cpu")
    _parse(torch, device)
    problem = unusable(torch, device)
    if problem is not None:
        raise RuntimeError(f'backend="torch:{device}": {problem}; use backend="torch:cpu"')
    return _probed(torch, device)


def _this_process(torch: Any, kind: str) -> str:
    """``kind`` with the index of the device this process takes where there are several (CUDA,
    XPU), by ``devices.pick``'s rules: ``XPNN_DEVICE``, else a device the user made current,
    else an MPI launcher's node-local rank modulo the devices; else ``kind`` alone (torch's
    current device). Asked before anything runs on a device, so that no rank makes a context
    on another's."""
    module = getattr(torch, kind, None)
    if kind not in ("cuda", "xpu") or module is None or not module.is_available():
        return kind
    initialized = getattr(module, "is_initialized", lambda: True)

    def current() -> int:
        return int(module.current_device()) if initialized() else 0

    choice = devices.pick(int(module.device_count()), current, os.environ)
    return kind if choice is None else f"{kind}:{choice.device}"


def _parse(torch: Any, device: str) -> Any:
    """``torch.device(device)``; ValueError naming the backend where torch knows no such
    device."""
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f'backend="torch:{device}": {device!r} is not a torch device (expected "cpu", '
            f'"cuda", "cuda:1", "mps", "xpu", ...)'
        ) from error


def _refuse_float64_on_mps(where: Any, device: str, dtype: str) -> None:
    """ValueError where ``dtype`` is float64 and ``where`` an MPS device (Metal has none)."""
    if where.type == "mps" and dtype == "float64":
        raise ValueError(
            f'backend="torch:{device}": Apple\'s MPS has no float64; use dtype="float32", or '
            f'backend="torch:cpu" for float64'
        )


def unusable(torch: Any, device: str) -> str | None:
    """Why torch cannot compute on ``device`` here, or None where a small matrix product there
    gives the right numbers."""
    kind = torch.device(device).type
    if kind == "mps":
        available = torch.backends.mps.is_available()
    elif kind == "cpu":
        available = True
    else:
        module = getattr(torch, kind, None)
        available = module is not None and module.is_available()
    if not available:
        return f"this torch build ({torch.__version__}) has no usable {kind!r} device here"
    try:
        a = torch.arange(6.0, device=device).reshape(2, 3)
        product = (a @ a.T).cpu().tolist()
    except Exception as error:  # torch raises many kinds; the message is what matters
        return f"torch failed at a small computation on {device!r}: {type(error).__name__}: {error}"
    if product != [[5.0, 14.0], [14.0, 50.0]]:
        return f"torch computed a wrong matrix product on {device!r} ({product})"
    return None


def _probed(torch: Any, device: str) -> Any:
    """``device`` as its tensors report it (``cuda`` becomes ``cuda:0``)."""
    return torch.empty(0, device=device).device
