"""Checkpoints: the training state a file holds so that training resumes exactly.

``Model.save`` (and ``train``'s ``checkpoint=``) writes a checkpoint: a model file (``model_files``)
whose ``state`` metadata adds, as JSON, the caller's ``checkpoint`` dict (such as
``{"epoch": 12}``), the optimizer's step count and rate, the model's shuffling generator, each
Dropout's mask seed and count of masks drawn, the epochs trained and, if Ctrl-C stopped
training inside an epoch, where it stopped (``epoch_in_progress``); its tensors add the
optimizer's state buffers (``optimizer.param_<state>``) and that epoch's sample order
(``state.epoch_order``). Loading checks all of it, then puts it into a freshly finalized model:
trained N more epochs, it ends exactly where the saved one would have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import shown
from ..backends import to_numpy
from ..building import EpochInProgress
from ..description import MAX_COUNT, MAX_SEED, check_count, checkpoint_info
from .format import Invalid, expect
from .reader import Want, check_keys

if TYPE_CHECKING:
    from ..building import ModelFace

__all__ = ["check_epoch", "plan_state", "restore_state", "training_state"]

_BUFFER = "param"  # the ParameterBuffer's prefix of the optimizer's state buffers
_ORDER = "state.epoch_order"  # the sample order of the epoch in progress
_PROGRESS_KEYS = {"samples", "done", "steps", "loss_sum", "correct", "compared", "shuffled"}
_BIG = 2**128  # bound of PCG64's state words


def training_state(
    model: ModelFace, checkpoint: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON state and the state tensors that make training resume exactly: ``model``'s
    optimizer, generators and network (``Model.network``, its training state)."""
    network = model.network
    # What a file could not load back is refused before anything.
    epochs = check_count(network.epochs_trained, "epochs_trained")
    info = checkpoint_info(checkpoint)
    if "epoch" in info:
        check_epoch(info["epoch"], TypeError, ValueError)
    tensors = {}
    optimizer = None
    if model.optimizer is not None:
        iterations = check_count(model.optimizer.iterations, "optimizer.iterations")
        optimizer = {
            "iterations": iterations,
            "current_learning_rate": float(model.optimizer.current_learning_rate),
        }
        buffer = network.parameters
        for prefix, params, _ in buffer.trainable_parameters():
            for suffix in model.optimizer.state_names:
                value = getattr(buffer, f"{prefix}_{suffix}", None)
                if value is not None and tuple(value.shape) == tuple(params.shape):
                    tensors[f"optimizer.{prefix}_{suffix}"] = to_numpy(value)
            if iterations or tensors:  # a state not made yet (a model finalized again): zeros
                for suffix in model.optimizer.kept_states():  # as the next step makes it
                    zeros = np.zeros(tuple(params.shape), model.backend.dtype_name)
                    tensors.setdefault(f"optimizer.{prefix}_{suffix}", zeros)

    rng_state = model.rng.bit_generator.state
    _check_pcg64(rng_state, "model.rng", TypeError)
    dropout = {}
    for index, layer in enumerate(model.layers):
        if layer.draws_random:
            dropout[str(index)] = layer.random_state()
    state = {"checkpoint": info, "optimizer": optimizer, "rng": rng_state, "dropout": dropout}
    state["epochs_trained"] = epochs  # numbers the epochs (History, reports) of later runs
    progress = network.epoch_in_progress
    if progress is not None:  # stopped inside an epoch: where, in which order, its sums so far
        loss_sum = float(to_numpy(progress.loss_sum))
        if not math.isfinite(loss_sum):
            raise ValueError("the epoch in progress has a NaN or infinite loss: it cannot be saved")
        state["epoch_in_progress"] = {
            "samples": int(progress.samples),
            "done": int(progress.done),
            "steps": int(progress.steps),
            "loss_sum": loss_sum,
            "correct": int(to_numpy(progress.correct)),
            "compared": int(progress.compared),
            "shuffled": progress.order is not None,
        }
        if progress.order is not None:
            tensors[_ORDER] = np.asarray(progress.order, dtype=np.int64)
    return state, tensors


def plan_state(
    state: dict[str, Any],
    optimizer: type | None,
    has_accuracy: bool,
    dtype: str,
    total: int,
) -> tuple[dict[str, Any], dict[str, Want]]:
    """A file's training state with its keys checked, and the tensors it needs: the state
    buffers of ``optimizer`` (a class; ``total`` parameters of ``dtype``) and the sample order
    of an epoch in progress. Checked before any tensor is read."""
    optional = {"epochs_trained", "epoch_in_progress"} & set(state)
    state = check_keys(
        state, {"checkpoint", "optimizer", "rng", "dropout"} | optional, "the training state"
    )
    wanted = {}
    if optimizer is not None:
        for suffix in optimizer.state_names:
            wanted[f"optimizer.{_BUFFER}_{suffix}"] = Want((dtype,), (total,), False)
    if "epoch_in_progress" in state:
        progress = _check_progress(state["epoch_in_progress"], has_accuracy)
        if progress["shuffled"]:
            wanted[_ORDER] = Want(("int64",), (progress["samples"],))
    return state, wanted


def _check_progress(progress: Any, has_accuracy: bool) -> dict[str, Any]:
    """The epoch a checkpoint stopped in: how far it got, and its sums so far."""
    progress = check_keys(progress, _PROGRESS_KEYS, "the epoch in progress")
    samples, done, steps = progress["samples"], progress["done"], progress["steps"]
    correct, compared = progress["correct"], progress["compared"]
    loss_sum = progress["loss_sum"]

    def count(value: Any) -> bool:
        return type(value) is int and 0 <= value < MAX_COUNT

    expect(
        count(samples) and count(done) and 0 < done < samples,
        f"the epoch in progress must have done 1 to samples - 1 samples; got done={done!r:.40} "
        f"of samples={samples!r:.40}",
    )
    expect(
        count(steps) and 0 < steps <= done,
        f"the epoch in progress: steps {steps!r:.40} is not between 1 and {done}",
    )
    expect(
        type(loss_sum) in (int, float) and math.isfinite(loss_sum),
        f"the epoch in progress: loss_sum {loss_sum!r:.40} is not a finite number",
    )
    expect(
        count(compared) and count(correct) and correct <= compared,
        f"the epoch in progress: correct={correct!r:.40} of compared={compared!r:.40} is not "
        f"a count of right predictions",
    )
    expect(
        has_accuracy or compared == 0,
        "the epoch in progress counts predictions, but the model has no accuracy metric",
    )
    expect(
        type(progress["shuffled"]) is bool,
        f"the epoch in progress: shuffled {progress['shuffled']!r:.40} is not true or false",
    )
    return progress


def restore_state(
    model: ModelFace, state: dict[str, Any], tensors: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Put the checkpoint's training state (keys checked) into the freshly finalized ``model``
    (its optimizer, generators and network)."""
    network = model.network
    epochs = state.get("epochs_trained", 0)
    expect(
        type(epochs) is int and 0 <= epochs < MAX_COUNT,
        f"epochs_trained {epochs!r:.80} is not a non-negative integer",
    )
    checkpoint = state["checkpoint"]
    expect(isinstance(checkpoint, dict), "the checkpoint information is not a JSON object")
    try:  # Python's json reads NaN and Infinity; a save never writes them
        json.dumps(checkpoint, allow_nan=False)
    except ValueError:
        raise Invalid("the checkpoint information holds NaN or infinity") from None
    if "epoch" in checkpoint:
        check_epoch(checkpoint["epoch"], Invalid, Invalid)

    # Check everything first, then write.
    optimizer, saved = model.optimizer, state["optimizer"]
    buffers: dict[str, np.ndarray] = {}
    if optimizer is None:
        expect(saved is None, "it holds optimizer state but the model has no optimizer")
    else:
        saved = check_keys(saved, {"iterations", "current_learning_rate"}, "the optimizer state")
        iterations, rate = saved["iterations"], saved["current_learning_rate"]
        expect(
            type(iterations) is int and 0 <= iterations < MAX_COUNT,
            f"the optimizer's iterations {iterations!r:.80} is not a non-negative integer",
        )
        expect(  # a rate decayed below the smallest float is 0
            type(rate) in (int, float) and math.isfinite(rate) and rate >= 0,
            f"the optimizer's current_learning_rate {rate!r:.80} is not a positive number",
        )
        expect(
            rate > 0 or optimizer.decay > 0,
            "the optimizer's current_learning_rate is 0, but it has no decay to make it so",
        )
        dtype = model.backend.dtype_name  # the model's, which a load may choose
        with np.errstate(over="ignore"):
            expect(
                bool(np.isfinite(np.asarray(rate, dtype=dtype))),
                f"the optimizer's current_learning_rate {rate!r:.80} is beyond {dtype}",
            )
        allowed = {}
        for prefix, params, _ in network.parameters.trainable_parameters():
            for suffix in optimizer.state_names:
                allowed[f"optimizer.{prefix}_{suffix}"] = (f"{prefix}_{suffix}", params.shape)
        for name in sorted(n for n in tensors if n.startswith("optimizer.")):
            expect(name in allowed, f"tensor {name!r} is not state of {type(optimizer).__name__}")
            attribute, shape = allowed[name]
            array = tensors[name]
            expect(
                tuple(array.shape) == tuple(shape),
                f"tensor {name!r} has shape {tuple(array.shape)}, but the model needs "
                f"{tuple(shape)}",
            )
            if attribute.removeprefix(f"{_BUFFER}_") in optimizer.non_negative_states:
                expect(bool(np.all(array >= 0)), f"tensor {name!r} holds negative values")
            array = np.array(array, dtype=dtype)  # owned, writable; checked to fit the dtype
            buffers[attribute] = array
        # Without its state an optimizer would go on from zeros: a different run.
        kept = [f"optimizer.{_BUFFER}_{suffix}" for suffix in optimizer.kept_states()]
        missing = [name for name in kept if name not in tensors]
        expect(
            not missing or (iterations == 0 and len(missing) == len(kept)),
            f"the optimizer state tensors {missing} are missing: {type(optimizer).__name__} "
            f"keeps them from its first step, and the checkpoint is after {iterations} steps"
            if iterations
            else f"the optimizer state tensors {missing} are missing, while others are there",
        )

    _check_pcg64(state["rng"], "the model's generator state", Invalid)
    dropout = state["dropout"]
    indices = {str(i) for i, layer in enumerate(model.layers) if layer.draws_random}
    expect(
        isinstance(dropout, dict) and set(dropout) == indices,
        f"the Dropout generator states must be given for the layers {sorted(indices)}",
    )
    for index, entry in dropout.items():
        # {"seed", "draws"}; a file from before keyed masks: {"state"} (NumPy) or {"seed"} (CuPy).
        expect(
            isinstance(entry, dict) and set(entry) in ({"seed", "draws"}, {"state"}, {"seed"}),
            f"the random state of layer {index} must be {{'seed': ..., 'draws': ...}} (or, "
            f"from an older file, {{'state': ...}} or {{'seed': ...}})",
        )
        if "state" in entry:
            _check_pcg64(entry["state"], f"the generator state of layer {index}", Invalid)
        else:
            seed, draws = entry["seed"], entry.get("draws", 0)
            expect(
                type(seed) is int and 0 <= seed < MAX_SEED,
                f"the generator seed of layer {index} is not a non-negative integer",
            )
            expect(
                type(draws) is int and 0 <= draws < 2**63,
                f"the masks drawn by layer {index} are not a whole number in [0, 2**63)",
            )
    progress = state.get("epoch_in_progress")  # checked by _check_progress
    order = loss_sum = None
    if progress is not None:
        with np.errstate(over="ignore"):
            loss_sum = np.asarray(progress["loss_sum"], dtype=model.backend.dtype_name)
        expect(
            bool(np.isfinite(loss_sum)),
            f"the epoch in progress: loss_sum {progress['loss_sum']!r:.40} is beyond "
            f"{model.backend.dtype_name}",
        )
        if progress["shuffled"]:
            order = tensors[_ORDER]
            expect(_is_permutation(order), f"tensor {_ORDER!r} is not an order of the samples")

    if optimizer is not None:
        optimizer.iterations = saved["iterations"]
        optimizer.current_learning_rate = float(saved["current_learning_rate"])
        for attribute, array in buffers.items():
            setattr(network.parameters, attribute, model.backend.asarray(array))
    if "epochs_trained" in state:
        network.epochs_trained = epochs
    if progress is not None:
        backend = model.backend
        network.epoch_in_progress = EpochInProgress(
            samples=progress["samples"],
            done=progress["done"],
            steps=progress["steps"],
            order=None if order is None else np.array(order, dtype=np.int64),
            loss_sum=backend.asarray(loss_sum),
            correct=backend.asarray(np.asarray(progress["correct"]), dtype=backend.index_dtype),
            compared=progress["compared"],
        )
    # After finalize(), which drew the initial weights and Dropout seeds from this generator.
    model.rng.bit_generator.state = state["rng"]
    for index, entry in dropout.items():
        layer = model.layers[int(index)]
        layer.set_random_state(entry)
    return checkpoint


def _is_permutation(order: np.ndarray) -> bool:
    """True if ``order`` (1-D) holds each of 0, 1, ..., len(order) - 1 once."""
    n = order.shape[0]
    if n == 0 or order.min() < 0 or order.max() >= n:
        return n == 0
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    return bool(seen.all())


def _check_pcg64(state: Any, what: str, error: type[Exception]) -> None:
    """``state`` is a NumPy PCG64 ``bit_generator.state`` dict, with every value in range."""
    ok = (
        isinstance(state, dict)
        and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
        and state["bit_generator"] == "PCG64"
        and isinstance(state["state"], dict)
        and set(state["state"]) == {"state", "inc"}
        and all(type(v) is int and 0 <= v < _BIG for v in state["state"].values())
        and state["has_uint32"] in (0, 1)
        and type(state["has_uint32"]) is int
        and type(state["uinteger"]) is int
        and 0 <= state["uinteger"] < 2**32
    )
    if not ok:
        raise error(f"{what} is not a NumPy PCG64 generator state")


def check_epoch(epoch: Any, type_error: type[Exception], value_error: type[Exception]) -> None:
    """``checkpoint["epoch"]``, if given, is a non-negative integer (else the error named)."""
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise type_error(f"checkpoint['epoch'] must be an integer; got {epoch!r:.80}")
    if epoch < 0:
        raise value_error(f"checkpoint['epoch'] must be >= 0; got {shown(epoch)}")
