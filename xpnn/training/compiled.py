"""The compiled epoch: the batch loop of an epoch in one numba call, where the model allows it.

On the numpy backend with numba (``XPNN_JIT``), a step of training is some thirty calls from
Python into NumPy, BLAS and numba kernels, each a few microseconds of overhead on small
models. Here the steps run inside one compiled function instead, in chunks of at most
``CHUNK_STEPS`` steps, so that Ctrl-C is seen between chunks and an epoch it stops can be
finished as the step path finishes it.

It runs the same operations in the same order as the step path, so its numbers are the step
path's bit for bit (tested):

- the matrix products call NumPy's own BLAS (``cblas_?gemm`` and, for the bias gradients,
  ``cblas_?gemv``, with the arguments NumPy's ``dot`` passes), under the same thread limits;
- the element-wise passes are the backend's own kernels (``xpnn.backends.jit``) and the
  optimizers' own compiled loops (``compiled_rules``, with their flush of subnormal states),
  and softmax's ``exp`` is NumPy's (a compiled ``exp`` rounds differently), called back in
  object mode for about a microsecond per step;
- the scalars of each step (decayed learning rate, bias corrections) are the optimizer's,
  computed on the host in Python as the step path computes them.

What it expresses: ``Dense`` layers (with their regularizers), each optionally followed by
``ReLU``, a ``Softmax`` output with ``CategoricalCrossentropy`` (class indices or one-hot
rows), any of xpnn's optimizers (``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``SGD`` with
or without momentum: those whose ``Optimizer.numba_step`` says how they run compiled), batches
of 2 rows or more and layers of 2 units or more (NumPy's ``dot`` takes another BLAS routine
for a single row or column). Any other model, data-parallel training, or ``XPNN_JIT_EPOCH=0``
runs the step path.
Only imported where numba is, and only for NumPy wheels' OpenBLAS (``numpy_blas``).
"""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any

import numba
import numba.extending
import numpy as np

from ..activations import ReLU, Softmax
from ..backends import jit, numpy_blas
from ..backends import numpy as numpy_backend
from ..building import EpochInProgress
from ..layers import Dense
from ..losses import EPSILON
from ..optimizers.base import FLUSH_EVERY
from . import compiled_rules
from .compiled_rules import flush_states, update
from .evaluation import Sums
from .stopping import NonFiniteLossError, StopOnInterrupt

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["CHUNK_STEPS", "ENV", "KERNEL", "CompiledEpoch", "refusal"]

#: The environment variable that turns the compiled epoch off (``0``, ``false``, ``no``,
#: ``off``); read when ``train`` starts.
ENV = jit.EPOCH_SWITCH

#: Steps per compiled call: Ctrl-C is seen between calls.
CHUNK_STEPS = 64


def _penalize(gradient, values, s, l1, l2):  # pragma: no cover - compiled by numba
    """``Dense``'s penalty gradients added to ``gradient``, as its ``_add_penalty_gradient``
    adds them: ``s[0]`` times 1 or -1 (where the value is negative) where ``l1``, then
    ``s[1]`` (twice the L2 factor) times the value where ``l2``; ``s[2]`` is 1."""
    rows, columns = gradient.shape
    for i in range(rows):
        for j in range(columns):
            if l1:
                gradient[i, j] += s[0] * (-s[2] if values[i, j] < 0 else s[2])
            if l2:
                gradient[i, j] += s[1] * values[i, j]


def _numba(function: Any) -> Any:
    """``function`` compiled as the backend's kernels are (NumPy's error model)."""
    return numba.njit(function, error_model="numpy", nogil=True)


_penalize = _numba(_penalize)
_product, _column_sums = numpy_blas.product, numpy_blas.column_sums
_add_row, _relu = _numba(jit._add_row), _numba(jit._relu)
_relu_backward = _numba(jit._relu_backward)
_shift_rows, _normalize_rows = _numba(jit._shift_rows), _numba(jit._normalize_rows)
_labels_loss, _one_hot_loss = _numba(jit._crossentropy_labels), _numba(jit._crossentropy_one_hot)


def _crossentropy(probs, targets, s, dinputs):
    """``Backend.softmax_crossentropy`` with its gradient, for class indices or target rows:
    the backend's kernel for them, chosen as numba compiles the call (below)."""
    raise NotImplementedError("called only from compiled code")


@numba.extending.overload(_crossentropy)
def _crossentropy_kernel(probs, targets, s, dinputs):
    kernel = _labels_loss if targets.ndim == 1 else _one_hot_loss
    return lambda probs, targets, s, dinputs: kernel(probs, targets, s, dinputs, True)


def _steps(X, y, order, begin, steps, table, first, sums, counts, states, rule, flushed, batch,
           weights, biases, dweights, dbiases, relu, penalty, penalized, outs, acts, douts,
           dacts, ones, xb, yb, params, dparams, scalars):  # fmt: skip  # pragma: no cover
    """``steps`` training steps from sample ``begin``: forward, loss, backward and update, as
    ``Trainer.epoch`` runs them. Returns the steps done: fewer where a batch's loss is not
    finite (that step's update is not made).

    ``order`` is the epoch's sample order (empty: as given); ``table[i]`` holds step ``i``'s
    optimizer scalars, ``rule`` its loop, ``states`` and ``flushed`` its two state buffers and
    whether each is flushed (see ``compiled_rules``), and ``first`` counts the steps before
    (for the flush); ``sums[0]``, the
    loss sum, and ``counts``, the right predictions and predictions compared, are updated in
    place. ``weights``... are the Dense layers' views of the flat ``params`` and ``dparams``;
    ``relu[k]`` says whether a ReLU follows layer ``k``, ``penalty[k]`` holds its regularizers'
    factors (the weights' L1, twice L2 and 1, then the biases' alike) and ``penalized[k]``
    which are set; ``outs``, ``acts``, ``douts``, ``dacts`` are kept buffers of ``batch`` rows;
    ``scalars``: the clip bounds, n (set here), 1, 0, 1 again, the smallest normal number.
    """
    samples, layers = X.shape[0], len(weights)
    loss_scalars, zero_one = scalars[:4].copy(), scalars[4:6]
    zero, one, tiny = scalars[4], scalars[5], scalars[6]
    batch_loss = sums[:1].copy()
    for i in range(steps):
        start = begin + i * batch
        stop = min(start + batch, samples)
        rows = stop - start
        if order.size:
            for r in range(rows):
                sample = order[start + r]
                for c in range(X.shape[1]):
                    xb[r, c] = X[sample, c]
                yb[r] = y[sample]
            inputs, targets = xb[:rows], yb[:rows]
        else:
            inputs, targets = X[start:stop], y[start:stop]
        # forward: Dense (and ReLU) layers, then softmax with NumPy's exp
        layer_input = inputs
        for k in range(layers):
            out = outs[k][:rows]
            _product(layer_input, weights[k], out, False, False)
            _add_row(out, biases[k])
            if relu[k]:
                _relu(out, zero_one, acts[k][:rows])
            layer_input = acts[k][:rows]
        probs = acts[layers - 1][:rows]
        _shift_rows(outs[layers - 1][:rows], probs)
        with numba.objmode():
            np.exp(probs, out=probs)
        _normalize_rows(probs, zero_one)
        # the loss, the right predictions and the gradient of the softmax's inputs
        loss_scalars[2] = rows
        gradient = douts[layers - 1][:rows]
        loss, right = _crossentropy(probs, targets, loss_scalars, gradient)
        batch_loss[0] = loss  # rounded to the dtype, as the step path's loss is
        # backward: each Dense layer's gradients, through the ReLUs
        for k in range(layers - 1, -1, -1):
            layer_input = inputs if k == 0 else acts[k - 1][:rows]
            _product(layer_input, gradient, dweights[k], True, False)
            _column_sums(ones[:, :rows], gradient, dbiases[k])
            if penalized[k, 0] or penalized[k, 1]:
                _penalize(dweights[k], weights[k], penalty[k, :3], penalized[k, 0], penalized[k, 1])
            if penalized[k, 2] or penalized[k, 3]:
                _penalize(dbiases[k], biases[k], penalty[k, 3:], penalized[k, 2], penalized[k, 3])
            if k > 0:
                _product(gradient, weights[k], dacts[k - 1][:rows], False, True)
                gradient = dacts[k - 1][:rows]
                if relu[k - 1]:
                    _relu_backward(gradient, outs[k - 1][:rows], zero_one, douts[k - 1][:rows])
                    gradient = douts[k - 1][:rows]
        if not np.isfinite(batch_loss[0]):
            return i  # with this step's gradients, as on the step path, but no update
        sums[0] = sums[0] + batch_loss[0]
        counts[0] += right
        counts[1] += rows
        # the optimizer's update of the flat buffer
        update(rule, params, dparams, states[0], states[1], table[i])
        if (first + i + 1) % FLUSH_EVERY == 0:
            flush_states(flushed, states[0], states[1], tiny, zero, one)
    return steps


# numba warns that object mode (NumPy's exp, above) takes the GIL back, which it does for
# that call alone; the loop releases it otherwise, for other threads (even other trainings).
warnings.filterwarnings(
    "ignore", "Code running in object mode won't allow parallel", numba.NumbaWarning
)

#: The compiled loop, compiled on first use; its disk cache goes stale with the kernels it runs.
KERNEL = jit.Kernel(
    _steps,
    sources=(jit.__file__ or "", compiled_rules.__file__ or "", *compiled_rules.SOURCES),
)


#: What the step path calls that the compiled loop does in its own way: replaced on an instance
#: (a test, a user's hook), the step path runs.
_STEP_METHODS = (
    *("forward", "backward", "backward_with_sums"),
    *("update", "update_params", "pre_update_params", "post_update_params"),
)


def refusal(trainer: Trainer) -> str | None:
    """Why ``trainer``'s epochs cannot run compiled, or None where they can."""
    model, network, optimizer = trainer.model, trainer.network, trainer.model.optimizer
    if not jit.epochs_compiled():
        return f"{ENV} turns it off"
    if model.backend.fast_path != "numba" or model.backend.dtype_name not in ("float32", "float64"):
        return "the backend is not numpy with numba"
    if (why := compiled_rules.refusal(optimizer)) is not None:
        return why
    layers = model.layers
    if network.combined is None or type(layers[-1]) is not Softmax:
        return "the output is not Softmax with CategoricalCrossentropy"
    kinds = [type(layer) for layer in layers[:-1]]
    if (
        not kinds
        or kinds[0] is not Dense
        or kinds[-1] is not Dense
        or not set(kinds) <= {Dense, ReLU}
        or any(a is ReLU and b is ReLU for a, b in itertools.pairwise(kinds))
    ):
        return "layers other than Dense, each optionally followed by ReLU, before the Softmax"
    dense = [layer for layer in layers if type(layer) is Dense]
    if min(min(layer.n_inputs, layer.n_neurons) for layer in dense) < 2:
        return "a layer of 1 unit"
    X, y, batch = trainer.X, trainer.y, trainer.batch_size
    unfinished = network.epoch_in_progress
    begins = (0,) if unfinished is None else (0, unfinished.done)
    if batch < 2 or any((trainer.samples - begin) % batch == 1 for begin in begins):
        return "a batch of 1 row"
    parts = [*layers, optimizer, model, network.combined]
    if any(name in vars(part) for part in parts for name in _STEP_METHODS):
        return "a method of the model replaced"  # the compiled loop would not call it
    if not (X.flags.c_contiguous and y.flags.c_contiguous):
        return "X or y not C-ordered"
    if numpy_backend._dot is not np.dot:  # the book's nnfs.init() replaced it: matmul runs
        return "NumPy's dot replaced"
    return numpy_blas.load()


class CompiledEpoch:
    """``Trainer.epoch`` for a model ``refusal`` accepts: the same steps, figures and training
    state, the batch loop compiled (``_steps``), in chunks of ``CHUNK_STEPS`` steps."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        model, network = trainer.model, trainer.network
        backend, dtype, rows = model.backend, model.backend.dtype, trainer.batch_size
        dense = [layer for layer in model.layers if type(layer) is Dense]
        relu = [type(b) is ReLU for a, b in zip(model.layers, model.layers[1:]) if type(a) is Dense]
        self.weights = tuple(layer.weights for layer in dense)
        self.biases = tuple(layer.biases for layer in dense)
        self.dweights = tuple(layer.dweights for layer in dense)
        self.dbiases = tuple(layer.dbiases for layer in dense)
        self.relu = np.array(relu, dtype=np.bool_)
        factors = [
            [getattr(layer, f"{kind}_regularizer_{norm}") for kind in ("weight", "bias")
             for norm in ("l1", "l2")]
            for layer in dense
        ]  # fmt: skip
        self.penalized = np.array(factors, dtype=np.bool_)
        self.penalty = np.array(
            [(w1, 2 * w2, 1, b1, 2 * b2, 1) for w1, w2, b1, b2 in factors], dtype
        )
        self.outs = tuple(np.empty((rows, layer.n_neurons), dtype) for layer in dense)
        # Where no ReLU follows, a layer's output is the next one's input.
        acts = [np.empty_like(out) if r else out for out, r in zip(self.outs, relu)]
        acts[-1] = np.empty_like(self.outs[-1])  # the softmax's probabilities
        self.acts = tuple(acts)
        self.douts = tuple(np.empty_like(out) for out in self.outs)
        self.dacts = tuple(np.empty_like(out) for out in self.outs)
        self.ones = np.ones((1, rows), dtype)
        self.xb = np.empty((rows, *trainer.X.shape[1:]), dtype)
        self.yb = np.empty((rows, *trainer.y.shape[1:]), trainer.y.dtype)
        tiny = np.finfo(dtype).smallest_normal
        self.scalars = jit.scalars(dtype, EPSILON, 1 - EPSILON, 0.0, 1.0, 0.0, 1.0, tiny)
        self.parameters, self.backend = network.parameters, backend
        #: What every call of ``_steps`` takes after the step's own arguments.
        self.arguments = (rows, self.weights, self.biases, self.dweights, self.dbiases, self.relu,
                          self.penalty, self.penalized, self.outs, self.acts, self.douts,
                          self.dacts, self.ones, self.xb, self.yb, network.parameters.params,
                          network.parameters.dparams, self.scalars)  # fmt: skip

    def optimizer_table(self, steps: int) -> tuple[int, np.ndarray, list[float]]:
        """The optimizer's rule, the scalars of each of ``steps`` steps and the learning rate
        before each, its bookkeeping run ahead (``compiled_rules.table``)."""
        return compiled_rules.table(self.trainer.model.optimizer, steps, self.backend.dtype)

    def states(self) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """The optimizer's state buffers, in the order ``_steps`` takes them, and whether each
        is flushed (``compiled_rules.states``)."""
        return compiled_rules.states(self.trainer.model.optimizer, self.parameters)

    def epoch(self, number: int, interrupt: StopOnInterrupt) -> Sums:
        """``Trainer.epoch``, its steps run compiled."""
        trainer, model = self.trainer, self.trainer.model
        network, backend, optimizer = trainer.network, self.backend, model.optimizer
        samples, batch = trainer.samples, trainer.batch_size
        counting = model.accuracy is not None
        unfinished, network.epoch_in_progress = network.epoch_in_progress, None
        if unfinished is None:
            host_order = trainer.draw_order()
            begin, done, compared = 0, 0, 0
            loss_sum, correct = backend.zeros(()), backend.zeros((), backend.index_dtype)
        else:
            host_order, begin, done = unfinished.order, unfinished.done, unfinished.steps
            loss_sum, correct = unfinished.loss_sum, unfinished.correct
            compared = unfinished.compared
        order = np.empty(0, np.int64) if host_order is None else np.asarray(host_order, np.int64)
        sums = np.array([loss_sum], backend.dtype)
        counts = np.array([correct, compared], np.int64)
        missing = [name for name in optimizer.kept_states()
                   if getattr(self.parameters, f"param_{name}", None) is None]  # fmt: skip
        (states, flushed), updated = self.states(), False
        while begin < samples:
            steps = min(CHUNK_STEPS, -(-(samples - begin) // batch))
            first = optimizer.iterations
            rule, table, rates = self.optimizer_table(steps)
            ran = KERNEL(trainer.X, trainer.y, order, begin, steps, table, first, sums, counts,
                         states, rule, flushed, *self.arguments)  # fmt: skip
            if ran < steps:  # a loss that is not finite: the step path stops before its update
                optimizer.iterations, optimizer.current_learning_rate = first + ran, rates[ran]
                if not updated and ran == 0:  # no update made: no new state, as on the step path
                    for name in missing:
                        delattr(self.parameters, f"param_{name}")
                dtype = backend.dtype_name if optimizer.iterations == 0 else None
                raise NonFiniteLossError(number, done + ran + 1, dtype)
            begin, done, updated = min(begin + steps * batch, samples), done + steps, True
            if interrupt.stopped:
                break
        loss_sum = sums[0]
        if counting:
            correct, compared = counts[0], int(counts[1])
        if begin < samples:
            network.epoch_in_progress = EpochInProgress(
                samples, begin, done, host_order, loss_sum, correct, compared
            )
        return Sums(loss_sum / samples, correct, compared, model.regularization_loss())
