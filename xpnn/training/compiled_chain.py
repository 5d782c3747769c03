"""The layers, output and loss of the compiled epoch (``training.compiled``): what a model is
made of, as small integer codes, and the compiled passes that run it, forward and backward.

A model the compiled epoch runs is a chain of ``Dense`` layers, each optionally followed by an
element-wise activation (``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Linear``) and then,
but for the last, by a ``Dropout``; its output is ``Softmax`` with ``CategoricalCrossentropy``
(the fused kernel), or the last Dense layer's activation (or none) with
``BinaryCrossentropy``, ``MeanSquaredError`` or ``MeanAbsoluteError`` (with
``CategoricalAccuracy(binary=True)``, ``RegressionAccuracy`` or no metric).

Every pass does what the step path's NumPy operations do, in the same order and in the same
dtype, so the numbers are the same bit for bit (tested): the four arithmetic operations round
alike wherever they run; NumPy's ``exp``, ``tanh`` and ``log`` (its own vectorised versions,
which numba's do not match) are its inner loops, called as C functions (``numpy_loops``); a
sum over a row or a batch follows NumPy's pairwise order (``numba_sums``); Dropout's
masks are drawn on the host, by the layer itself, before each chunk of steps.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..activations import LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from ..backends import jit, numba_sums, numpy_blas
from ..backends.numpy_loops import exp as numpy_exp
from ..backends.numpy_loops import log as numpy_log
from ..backends.numpy_loops import tanh as numpy_tanh
from ..layers import Dense, Dropout
from ..losses import BinaryCrossentropy, MeanAbsoluteError, MeanSquaredError
from ..metrics import CategoricalAccuracy, RegressionAccuracy

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Chain",
    "activate",
    "backward",
    "output_loss",
    "refusal",
]

#: The activation after each Dense layer, by code (none and ``Linear`` alike pass values on).
NONE, RELU, LEAKY, SIGMOID, TANH = range(5)
ACTIVATIONS = {Linear: NONE, ReLU: RELU, LeakyReLU: LEAKY, Sigmoid: SIGMOID, Tanh: TANH}
#: The losses after an element-wise output (0: Softmax with cross-entropy, the fused kernel).
SOFTMAX, BINARY, SQUARED, ABSOLUTE = range(4)
LOSSES = {BinaryCrossentropy: BINARY, MeanSquaredError: SQUARED, MeanAbsoluteError: ABSOLUTE}
#: What the metric counts outside the fused kernel: nothing, 0/1 outputs, values near targets.
UNCOUNTED, BINARY_CLASSES, REGRESSION = range(3)


def _numba(function: Any) -> Any:
    """``function`` compiled as the backend's kernels are (NumPy's error model)."""
    return numba.njit(function, error_model="numpy", nogil=True)


# -- activations: forward and backward, as the classes in xpnn.activations compute them ------


@_numba
def _leaky(inputs, alpha, output):  # pragma: no cover - compiled by numba
    """``where(inputs > 0, inputs, alpha * inputs)``."""
    rows, columns = inputs.shape
    for i in range(rows):
        for j in range(columns):
            x = inputs[i, j]
            output[i, j] = x if x > 0 else alpha * x


@_numba
def _leaky_backward(dvalues, inputs, alpha, dinputs):  # pragma: no cover
    """``where(inputs > 0, dvalues, alpha * dvalues)``."""
    rows, columns = dvalues.shape
    for i in range(rows):
        for j in range(columns):
            d = dvalues[i, j]
            dinputs[i, j] = d if inputs[i, j] > 0 else alpha * d


@_numba
def times(values, mask, output):  # pragma: no cover - compiled by numba
    """``values * mask`` (Dropout's forward and backward), into ``output`` (may be ``values``)."""
    rows, columns = values.shape
    for i in range(rows):
        for j in range(columns):
            output[i, j] = values[i, j] * mask[i, j]


_relu, _relu_backward = _numba(jit._relu), _numba(jit._relu_backward)
_add_row = _numba(jit._add_row)
_product, _sum = numpy_blas.product, numba_sums.numpy_sum
_not_literal = numpy_blas.not_literal


@_numba
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


@_numba
def _sigmoid(inputs, one, output):  # pragma: no cover - compiled by numba
    """``1 / (1 + exp(-inputs))`` into ``output``, with NumPy's ``exp``."""
    rows, columns = inputs.shape
    for i in range(rows):
        for j in range(columns):
            output[i, j] = -inputs[i, j]
    numpy_exp(output, output)
    overflowed = False
    for i in range(rows):
        for j in range(columns):
            e = output[i, j]
            overflowed |= np.isinf(e) and np.isfinite(inputs[i, j])
            output[i, j] = one / (one + e)
    if overflowed:  # the step path's exp warns (or raises, as np.errstate says): let NumPy's
        with numba.objmode():  # say so, its values (the same) left unused
            np.exp(np.negative(inputs))


@_numba
def _sigmoid_backward(dvalues, output, one, dinputs):  # pragma: no cover
    """``dvalues * (1 - output) * output``."""
    rows, columns = dvalues.shape
    for i in range(rows):
        for j in range(columns):
            dinputs[i, j] = dvalues[i, j] * (one - output[i, j]) * output[i, j]


@_numba
def _tanh_backward(dvalues, output, one, dinputs):  # pragma: no cover - compiled by numba
    """``dvalues * (1 - output * output)``."""
    rows, columns = dvalues.shape
    for i in range(rows):
        for j in range(columns):
            dinputs[i, j] = dvalues[i, j] * (one - output[i, j] * output[i, j])


@_numba
def activate(code, out, act, alpha, s):  # pragma: no cover - compiled by numba
    """Activation ``code`` of the Dense output ``out`` into ``act`` (``out`` itself for
    none); ``s`` holds 0 and 1 in the dtype."""
    if code == RELU:
        _relu(out, s, act)
    elif code == LEAKY:
        _leaky(out, alpha, act)
    elif code == SIGMOID:
        _sigmoid(out, s[1], act)
    elif code == TANH:
        numpy_tanh(out, act)


@_numba
def _activate_backward(code, gradient, out, act, alpha, s, dout):  # pragma: no cover
    """The gradient of activation ``code``'s inputs from ``gradient``, its outputs': in
    ``dout``, or ``gradient`` itself for none."""
    if code == RELU:
        _relu_backward(gradient, out, s, dout)
    elif code == LEAKY:
        _leaky_backward(gradient, out, alpha, dout)
    elif code == SIGMOID:
        _sigmoid_backward(gradient, act, s[1], dout)
    elif code == TANH:
        _tanh_backward(gradient, act, s[1], dout)
    else:
        return gradient
    return dout


# -- the passes through the chain -----------------------------------------------------------


@_numba
def backward(inputs, rows, step, gradient, weights, biases, dweights, dbiases, codes, alphas,
             dropped, masks, outs, acts, drops, douts, dacts, penalty, penalized, ones,
             s):  # fmt: skip  # pragma: no cover
    """Each Dense layer's gradients, from ``gradient`` (the last one's output's), back through
    the Dropouts and activations between them, as ``Dense.backward`` computes them (with the
    regularizers' gradients, ``_penalize``)."""
    no, yes = _not_literal(False), _not_literal(True)  # see ``numpy_blas.not_literal``
    row_of_ones = ones[:rows].reshape(1, rows)  # C-ordered, as every other operand
    for k in range(len(weights) - 1, -1, -1):
        layer_input = inputs if k == 0 else drops[k - 1][:rows]
        _product(layer_input, gradient, dweights[k], yes, no)
        _product(row_of_ones, gradient, dbiases[k], no, no)  # Backend.sum_rows
        if penalized[k, 0] or penalized[k, 1]:
            _penalize(dweights[k], weights[k], penalty[k, :3], penalized[k, 0], penalized[k, 1])
        if penalized[k, 2] or penalized[k, 3]:
            _penalize(dbiases[k], biases[k], penalty[k, 3:], penalized[k, 2], penalized[k, 3])
        if k > 0:
            dact = dacts[k - 1][:rows]
            _product(gradient, weights[k], dact, no, yes)
            if dropped[k - 1]:
                times(dact, masks[k - 1][step, :rows], dact)
            gradient = _activate_backward(codes[k - 1], dact, outs[k - 1][:rows],
                                          acts[k - 1][:rows], alphas[k - 1], s,
                                          douts[k - 1][:rows])  # fmt: skip


# -- the losses and metrics of an element-wise output ---------------------------------------


@_numba
def _clip(x, low, high):  # pragma: no cover - compiled by numba
    """NumPy's ``minimum(maximum(x, low), high)``: NaN stays NaN."""
    if x != x:
        return x
    return min(max(x, low), high)


@_numba
def output_loss(loss, metric, code, out, output, targets, alpha, s, losses, first, second,
                gradient, dout):  # fmt: skip  # pragma: no cover
    """The batch's summed loss of ``output`` (the last activation ``code``'s, of ``out``)
    against ``targets`` as the step path sums it (each sample's mean over the outputs, then
    ``sum``), the right predictions and predictions compared where ``metric``, and the gradient
    of the output's inputs (``gradient``, then ``dout``; the one returned).

    ``s``: 0, 1, the outputs, the rows, -2, the metric's precision, the clipping bounds and 0.5
    in the dtype; ``losses``, ``first`` and ``second`` are scratch of the batch's rows and
    shape.
    """
    zero, one, outputs, n, minus_two, precision = s[0], s[1], s[2], s[3], s[4], s[5]
    low, high, half = s[6], s[7], s[8]
    rows, columns = output.shape
    if loss == BINARY:  # clipped, then the logs of both sides, with NumPy's log
        for i in range(rows):
            for j in range(columns):
                c = _clip(output[i, j], low, high)
                first[i, j], second[i, j] = c, one - c
        numpy_log(first, first)
        numpy_log(second, second)
    for i in range(rows):
        for j in range(columns):
            p, y = output[i, j], targets[i, j]
            if loss == BINARY:
                c = _clip(p, low, high)
                first[i, j] = -(y * first[i, j] + (one - y) * second[i, j])
                gradient[i, j] = -(y / c - (one - y) / (one - c)) / outputs / n
            elif loss == SQUARED:
                d = y - p
                first[i, j] = d * d
                gradient[i, j] = minus_two * d / outputs / n
            else:
                first[i, j] = abs(y - p)
                e = p - y
                sign = one if e > 0 else (zero - one if e < 0 else (zero if e == 0 else e))
                gradient[i, j] = sign / outputs / n
    for i in range(rows):
        losses[i] = _sum(first[i], 0, columns) / outputs
    right = 0
    if metric == BINARY_CLASSES:
        for i in range(rows):
            for j in range(columns):
                right += (one if output[i, j] > half else zero) == targets[i, j]
    elif metric == REGRESSION:
        for i in range(rows):
            for j in range(columns):
                right += abs(output[i, j] - targets[i, j]) < precision
    compared = rows * columns if metric != UNCOUNTED else 0
    dinputs = _activate_backward(code, gradient, out, output, alpha, s[:2], dout)
    return _sum(losses, 0, rows), right, compared, dinputs


# -- the host side: what a model is made of, and the buffers ------------------------------


def refusal(model: Any, combined: bool) -> str | None:
    """Why ``model``'s layers, loss or metric are not a chain the compiled epoch runs, or None."""
    layers, loss, metric = list(model.layers), model.loss, model.accuracy
    if combined:
        layers = layers[:-1]
    elif type(layers[-1]) is Softmax:
        return "a Softmax output without CategoricalCrossentropy"
    elif type(loss) not in LOSSES:
        return f"{type(loss).__name__} has no compiled epoch"
    if metric is not None and type(metric) not in (CategoricalAccuracy, RegressionAccuracy):
        return f"{type(metric).__name__} has no compiled epoch"
    if not layers or type(layers[0]) is not Dense:
        return "the first layer is not Dense"
    groups: list[list[type]] = []
    for layer in layers:
        kind = type(layer)
        if kind is Dense:
            groups.append([])
        elif kind not in ACTIVATIONS and kind is not Dropout:
            return f"{kind.__name__} has no compiled epoch"
        else:
            groups[-1].append(kind)
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        allowed: list[list[type]] = [[]] + [[a] for a in ACTIVATIONS]
        if not last:
            allowed += [[Dropout]] + [[a, Dropout] for a in ACTIVATIONS]
        if group not in allowed:
            return (
                "layers other than Dense, each followed by at most one element-wise "
                "activation and then (not the last) one Dropout"
            )
    return None


class Chain:
    """What ``forward``, ``backward`` and ``output_loss`` take for one model and batch size:
    the codes of its layers and the buffers they write, made once per training run."""

    def __init__(self, model: Any, rows: int, combined: bool) -> None:
        dtype, layers = model.backend.dtype, list(model.layers)
        dense = [i for i, layer in enumerate(layers) if type(layer) is Dense]
        ends = [*dense[1:], len(layers) - int(combined)]
        codes, alphas, self.dropouts = [], [], []
        for start, end in zip(dense, ends):
            after = layers[start + 1 : end]
            active = [layer for layer in after if type(layer) in ACTIVATIONS]
            codes.append(ACTIVATIONS[type(active[0])] if active else NONE)
            alphas.append(active[0].alpha if active and type(active[0]) is LeakyReLU else 0.0)
            dropout = [layer for layer in after if type(layer) is Dropout]
            self.dropouts.append(dropout[0] if dropout else None)
        self.dense = [layers[i] for i in dense]
        self.codes = np.array(codes, np.int64)
        self.alphas = jit.scalars(dtype, *alphas)  # rounded to the dtype, as NumPy does
        self.dropped = np.array([d is not None for d in self.dropouts], np.bool_)
        self.outs = tuple(np.empty((rows, layer.n_neurons), dtype) for layer in self.dense)
        last = len(self.dense) - 1
        self.acts = tuple(
            out if code == NONE and not (combined and k == last) else np.empty_like(out)
            for k, (out, code) in enumerate(zip(self.outs, codes))
        )  # the last's, with a Softmax output: its probabilities
        self.drops = tuple(
            np.empty_like(act) if d is not None else act for act, d in zip(self.acts, self.dropouts)
        )
        self.douts = tuple(np.empty_like(out) for out in self.outs)
        self.dacts = tuple(np.empty_like(out) for out in self.outs)
        self.masks = tuple(np.empty((0, rows, out.shape[1]), dtype) for out in self.outs)
        #: Scratch for the losses of an element-wise output.
        outputs = self.outs[-1].shape[1]
        self.losses = np.empty(rows, dtype)
        self.first, self.second = np.empty((rows, outputs), dtype), np.empty((rows, outputs), dtype)
        self.loss = SOFTMAX if combined else LOSSES[type(model.loss)]
        metric = model.accuracy
        self.metric = (
            UNCOUNTED
            if combined or metric is None
            else (REGRESSION if type(metric) is RegressionAccuracy else BINARY_CLASSES)
        )
        self.precision = getattr(metric, "precision", None) or 0.0
        self.outputs = outputs

    def draw_masks(self, batches: list[int]) -> None:
        """Each Dropout's masks for steps of ``batches`` rows, drawn by the layer as its
        ``forward`` draws them (and counted as drawn)."""
        for k, layer in enumerate(self.dropouts):
            if layer is None:
                continue
            if self.masks[k].shape[0] < len(batches):
                masks = list(self.masks)
                masks[k] = np.empty((len(batches), *self.outs[k].shape), self.outs[k].dtype)
                self.masks = tuple(masks)
            for step, rows in enumerate(batches):
                self.masks[k][step, :rows] = layer.draw_mask((rows, self.outs[k].shape[1]))

    def draws(self) -> list[int]:
        """Each Dropout's masks drawn so far."""
        return [layer.draws for layer in self.dropouts if layer is not None]

    def set_draws(self, draws: list[int]) -> None:
        """Go back to ``draws()``'s counts."""
        for layer, count in zip((d for d in self.dropouts if d is not None), draws):
            layer.draws = count
