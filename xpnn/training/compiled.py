"""The compiled epoch: the batch loop of an epoch in one numba call, where the model allows it.

On the numpy backend with numba (``XPNN_JIT``), a step of training is some thirty calls from
Python into NumPy, BLAS and numba kernels, each a few microseconds of overhead on small
models. Here the steps run inside one compiled function instead, in chunks of at most
``CHUNK_STEPS`` steps, so that Ctrl-C is seen between chunks and an epoch it stops can be
finished as the step path finishes it.

It runs the same operations in the same order as the step path, so its numbers are the step
path's bit for bit (tested):

- the matrix products call NumPy's own BLAS with the routine and arguments NumPy's ``dot``
  chooses for each shape (``numpy_blas.product``: ``gemm``, ``gemv`` for the bias gradients
  and a single row or column, ``dot``, ``axpy``), under the same thread limits;
- the element-wise passes are the backend's own kernels (``xpnn.backends.jit``), the layers'
  and losses' in ``compiled_chain``, and the optimizers' own compiled loops (``compiled_rules``,
  with their flush of subnormal states); NumPy's ``exp``, ``tanh`` and ``log`` (softmax's,
  sigmoid's, tanh's, binary cross-entropy's: compiled ones round differently) are NumPy's own
  inner loops, called as C functions (``numpy_loops``);
- the scalars of each step (decayed learning rate, bias corrections) are the optimizer's,
  computed on the host in Python as the step path computes them, and Dropout's masks are
  drawn by the layers on the host before each chunk.

What it expresses (``compiled_chain``): ``Dense`` layers (with their regularizers), each
optionally followed by ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh`` or ``Linear`` and, but
for the last, then by ``Dropout``; a ``Softmax`` output with ``CategoricalCrossentropy`` (class
indices or one-hot rows), or an element-wise one (or none) with ``BinaryCrossentropy``,
``MeanSquaredError`` or ``MeanAbsoluteError`` and their metrics; any of xpnn's optimizers
(``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``SGD`` with or without momentum: those whose
``Optimizer.numba_step`` says how they run compiled, ``compiled_rules``); layers and batches
of any size, one unit, input or row included. Any other model,
data-parallel training, or ``XPNN_JIT_EPOCH=0`` runs the step path, and ``refusal`` says why.
Only imported where numba is, and only for NumPy wheels' OpenBLAS (``numpy_blas``).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numba
import numba.extending
import numpy as np

from ..backends import jit, numba_sums, numpy_blas, numpy_loops
from ..building import EpochInProgress
from ..losses import EPSILON
from ..optimizers.base import FLUSH_EVERY
from . import compiled_chain as chain
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


def _numba(function: Any) -> Any:
    """``function`` compiled as the backend's kernels are (NumPy's error model)."""
    return numba.njit(function, error_model="numpy", nogil=True)


_add_row, _product = _numba(jit._add_row), numpy_blas.product
_not_literal = numpy_blas.not_literal
_shift_rows, _normalize_rows = _numba(jit._shift_rows), _numba(jit._normalize_rows)
_labels_loss, _one_hot_loss = _numba(jit._crossentropy_labels), _numba(jit._crossentropy_one_hot)


def _loss(kind, metric, code, out, output, targets, alpha, s, t, losses, first, second, dacts,
          douts):  # fmt: skip
    """The batch's summed loss, right predictions, predictions compared and the gradient of
    the last Dense layer's output: ``Backend.softmax_crossentropy`` (the backend's kernel for
    class indices or target rows, chosen as numba compiles the call, below) for a Softmax
    output, else ``chain.output_loss``."""
    raise NotImplementedError("called only from compiled code")


@numba.extending.overload(_loss)
def _loss_kernel(kind, metric, code, out, output, targets, alpha, s, t, losses, first, second,
                 dacts, douts):  # fmt: skip
    if targets.ndim == 1:  # class indices: a Softmax output

        def labels(kind, metric, code, out, output, targets, alpha, s, t, losses, first, second,
                   dacts, douts):  # fmt: skip
            loss, right = _labels_loss(output, targets, s, douts, True)
            return loss, right, output.shape[0], douts

        return labels

    def rows(kind, metric, code, out, output, targets, alpha, s, t, losses, first, second,
             dacts, douts):  # fmt: skip
        if kind == chain.SOFTMAX:
            loss, right = _one_hot_loss(output, targets, s, douts, True)
            return loss, right, output.shape[0], douts
        loss, right, compared, gradient = chain.output_loss(
            kind, metric, code, out, output, targets, alpha, t, losses, first, second, dacts, douts
        )
        return np.float64(loss), right, compared, gradient

    return rows


def _steps(X, y, order, begin, steps, table, first, sums, counts, states, rule, flushed,
           batch, masks,
           weights, biases, dweights, dbiases, codes, alphas, dropped, penalty, penalized, outs,
           acts, drops, douts, dacts, ones, xb, yb, params, dparams, scalars, kind, metric,
           loss_scalars, losses, scratch, more_scratch):  # fmt: skip  # pragma: no cover
    """``steps`` training steps from sample ``begin``: forward, loss, backward and update, as
    ``Trainer.epoch`` runs them. Returns the steps done: fewer where a batch's loss is not
    finite (that step's update is not made).

    ``order`` is the epoch's sample order (empty: as given); ``table[i]`` holds step ``i``'s
    optimizer scalars, ``rule`` its loop, ``states`` and ``flushed`` its two state buffers and
    whether each is flushed (see ``compiled_rules``), and ``first`` counts the steps before
    (for the flush); ``sums[0]``, the
    loss sum, and ``counts``, the right predictions and predictions compared, are updated in
    place; ``masks[k][i]`` is step ``i``'s Dropout mask after layer ``k``. ``weights``... are
    the Dense layers' views of the flat ``params`` and ``dparams``; ``codes``... describe the
    chain and ``outs``... are its kept buffers of ``batch`` rows (``chain.Chain``);
    ``scalars``: the clip bounds, n (set here), 1, 0, 1 again, the smallest normal number.
    ``kind`` is the loss (``chain.SOFTMAX``...), ``metric`` what an element-wise output's
    metric counts, ``loss_scalars`` what ``chain.output_loss`` takes (the rows set here) and
    ``losses``, ``scratch`` and ``more_scratch`` its buffers.
    """
    samples, layers = X.shape[0], len(weights)
    softmax_scalars, zero_one = scalars[:4].copy(), scalars[4:6]
    output_scalars = loss_scalars.copy()
    zero, one, tiny = scalars[4], scalars[5], scalars[6]
    no = _not_literal(False)  # no transpose (see ``numpy_blas.not_literal``)
    batch_loss = sums[:1].copy()
    last = layers - 1
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
        # forward: Dense layers, their activations and Dropouts, then softmax with NumPy's exp
        layer_input = inputs
        for k in range(layers):
            out, act = outs[k][:rows], acts[k][:rows]
            _product(layer_input, weights[k], out, no, no)
            _add_row(out, biases[k])
            chain.activate(codes[k], out, act, alphas[k], zero_one)
            if dropped[k]:
                chain.times(act, masks[k][i, :rows], drops[k][:rows])
            layer_input = drops[k][:rows]
        output = acts[last][:rows]
        if kind == chain.SOFTMAX:
            _shift_rows(outs[last][:rows], output)
            numpy_loops.exp(output, output)
            _normalize_rows(output, zero_one)
        # the loss, the right predictions and the gradient of the last Dense layer's output
        softmax_scalars[2] = rows
        output_scalars[3] = rows
        loss, right, compared, gradient = _loss(
            kind, metric, codes[last], outs[last][:rows], output, targets, alphas[last],
            softmax_scalars, output_scalars, losses, scratch[:rows], more_scratch[:rows],
            dacts[last][:rows], douts[last][:rows],
        )  # fmt: skip
        batch_loss[0] = loss  # rounded to the dtype, as the step path's loss is
        # backward: each Dense layer's gradients, through the Dropouts and activations
        chain.backward(inputs, rows, i, gradient, weights, biases, dweights, dbiases, codes,
                       alphas, dropped, masks, outs, acts, drops, douts, dacts, penalty,
                       penalized, ones, zero_one)  # fmt: skip
        if not np.isfinite(batch_loss[0]):
            return i  # with this step's gradients, as on the step path, but no update
        sums[0] = sums[0] + batch_loss[0]
        counts[0] += right
        counts[1] += compared
        # the optimizer's update of the flat buffer
        update(rule, params, dparams, states[0], states[1], table[i])
        if (first + i + 1) % FLUSH_EVERY == 0:
            flush_states(flushed, states[0], states[1], tiny, zero, one)
    return steps


# numba warns that object mode (NumPy's exp where a sigmoid overflows, for NumPy's warning) takes
# the GIL back, which it does for that call alone; the loop releases it otherwise, for other
# threads (even other trainings).
warnings.filterwarnings(
    "ignore", "Code running in object mode won't allow parallel", numba.NumbaWarning
)

#: The compiled loop, compiled on first use; its disk cache goes stale with the kernels it runs.
KERNEL = jit.Kernel(
    _steps,
    sources=(
        jit.__file__ or "",
        numpy_blas.__file__ or "",
        numpy_loops.__file__ or "",
        numba_sums.__file__ or "",
        chain.__file__ or "",
        compiled_rules.__file__ or "",
        *compiled_rules.SOURCES,
    ),
)


#: What the step path calls that the compiled loop does in its own way: replaced on an instance
#: (a test, a user's hook), the step path runs.
_STEP_METHODS = (
    *("forward", "backward", "backward_with_sums", "predictions", "compare", "draw_mask"),
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
    why = chain.refusal(model, network.combined is not None)
    if why is not None:
        return why
    X, y = trainer.X, trainer.y
    parts = [*layers, optimizer, model, network.combined or network.loss, model.accuracy]
    if any(name in vars(part) for part in parts if part is not None for name in _STEP_METHODS):
        return "a method of the model replaced"  # the compiled loop would not call it
    if not (X.flags.c_contiguous and y.flags.c_contiguous):
        return "X or y not C-ordered"
    return numpy_blas.load()


class CompiledEpoch:
    """``Trainer.epoch`` for a model ``refusal`` accepts: the same steps, figures and training
    state, the batch loop compiled (``_steps``), in chunks of ``CHUNK_STEPS`` steps."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        model, network = trainer.model, trainer.network
        backend, dtype, rows = model.backend, model.backend.dtype, trainer.batch_size
        self.chain = layout = chain.Chain(model, rows, network.combined is not None)
        dense = layout.dense
        self.weights = tuple(layer.weights for layer in dense)
        self.biases = tuple(layer.biases for layer in dense)
        self.dweights = tuple(layer.dweights for layer in dense)
        self.dbiases = tuple(layer.dbiases for layer in dense)
        factors = [
            [getattr(layer, f"{kind}_regularizer_{norm}") for kind in ("weight", "bias")
             for norm in ("l1", "l2")]
            for layer in dense
        ]  # fmt: skip
        self.penalized = np.array(factors, dtype=np.bool_)
        self.penalty = np.array(
            [(w1, 2 * w2, 1, b1, 2 * b2, 1) for w1, w2, b1, b2 in factors], dtype
        )
        self.ones = np.ones(rows, dtype)  # the bias gradient's row of ones (``chain.backward``)
        self.xb = np.empty((rows, *trainer.X.shape[1:]), dtype)
        self.yb = np.empty((rows, *trainer.y.shape[1:]), trainer.y.dtype)
        tiny = np.finfo(dtype).smallest_normal
        self.scalars = jit.scalars(dtype, EPSILON, 1 - EPSILON, 0.0, 1.0, 0.0, 1.0, tiny)
        # An element-wise output's loss: 0, 1, the outputs, the rows (set per step), -2, the
        # metric's precision, the clip bounds and 0.5 (rounded to the dtype, as NumPy does).
        self.loss_scalars = jit.scalars(dtype, 0.0, 1.0, layout.outputs, 0.0, -2.0,
                                        layout.precision, EPSILON, 1 - EPSILON,
                                        0.5)  # fmt: skip
        self.parameters, self.backend = network.parameters, backend
        #: What every call of ``_steps`` takes after the step's own arguments and the masks.
        self.arguments = (self.weights, self.biases, self.dweights, self.dbiases, layout.codes,
                          layout.alphas, layout.dropped, self.penalty, self.penalized,
                          layout.outs, layout.acts, layout.drops, layout.douts, layout.dacts,
                          self.ones, self.xb, self.yb, network.parameters.params,
                          network.parameters.dparams, self.scalars, layout.loss, layout.metric,
                          self.loss_scalars, layout.losses,
                          layout.first, layout.second)  # fmt: skip

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
            first, draws = optimizer.iterations, self.chain.draws()
            rule, table, rates = self.optimizer_table(steps)
            stops = range(begin + batch, begin + (steps + 1) * batch, batch)
            self.chain.draw_masks([min(stop, samples) - stop + batch for stop in stops])
            ran = KERNEL(trainer.X, trainer.y, order, begin, steps, table, first, sums, counts,
                         states, rule, flushed, batch, self.chain.masks,
                         *self.arguments)  # fmt: skip
            if ran < steps:  # a loss that is not finite: the step path stops before its update
                optimizer.iterations, optimizer.current_learning_rate = first + ran, rates[ran]
                self.chain.set_draws([count + ran + 1 for count in draws])  # up to its forward
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
            network.epoch_in_progress = trainer.stopped_at(
                EpochInProgress(samples, begin, done, host_order, loss_sum, correct, compared)
            )
        return Sums(loss_sum / samples, correct, compared, model.regularization_loss())
