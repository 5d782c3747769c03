"""Data-parallel training, its logic run in-process: K ranks as K threads (tests/thread_ranks.py).

These run in every test session, without mpi4py, on every backend; tests/test_mpi.py runs the
same rules under ``mpiexec`` in the mpi session.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import spiral
from replicas import CASES, build, build_dropout, build_without_metric, flat, inject_nan
from thread_ranks import Raised, ThreadCommunicator, ThreadGroup, run_ranks

import xpnn
from xpnn import agreement, distributed, sharding


def together(size, work):
    """``work(rank, comm)`` on ``size`` thread ranks; every rank's result (errors raised)."""
    group = ThreadGroup(size)
    results = run_ranks(size, lambda rank: work(rank, group))
    for result in results:
        if isinstance(result, Raised):
            raise result.error
    return results


def comm_of(group, rank, model):
    return ThreadCommunicator(group, rank, model.backend)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("samples", [0, 1, 2, 7, 64])
def test_shares_cover_a_batch_contiguously(size, samples):
    shares = [distributed.share(10, 10 + samples, rank, size) for rank in range(size)]
    assert shares[0][0] == 10 and shares[-1][1] == 10 + samples
    assert all(shares[r][1] == shares[r + 1][0] for r in range(size - 1))
    counts = [high - low for low, high in shares]
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize(("optimizer", "samples", "batch_size"), CASES)
def test_equal_to_one_process(backend, size, optimizer, samples, batch_size):
    X, y = spiral(samples, 3)
    X_val, y_val = spiral(20, 3, seed=1)
    options = dict(epochs=3, batch_size=batch_size, verbose=False, validation_data=(X_val, y_val))
    alone = build(backend, optimizer)
    expected = alone.train(X, y, **options)

    def work(rank, group):
        model = build(backend, optimizer)
        history = model.train(X, y, comm=comm_of(group, rank, model), **options)
        return flat(model), history

    results = together(size, work)
    for params, history in results:
        assert np.array_equal(params, results[0][0])  # bit-identical on every rank
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)
        for name in ("loss", "data_loss", "regularization_loss", "accuracy", "val_loss"):
            np.testing.assert_allclose(history[name], expected[name], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(history["val_accuracy"], expected["val_accuracy"])
        assert history["learning_rate"] == expected["learning_rate"]


@pytest.mark.parametrize("size", [2, 3])
def test_each_rank_validates_its_share_only(backend, size):
    """Validation every epoch is shared out like the training batches: each rank runs its
    share of the validation samples, and the ranks' sums give one process's figures."""
    X, y = spiral(30, 3)
    X_val, y_val = spiral(11, 3, seed=1)  # 33 samples: shares of 17 and 16, or 11 each
    options = dict(epochs=2, batch_size=16, verbose=False, validation_data=(X_val, y_val))
    expected = build(backend).train(X, y, **options)

    def work(rank, group):
        model = build(backend)
        rows, forward = [], model.forward

        def counted(X, training=False):
            if not training:
                rows.append(X.shape[0])
            return forward(X, training)

        model.forward = counted
        history = model.train(X, y, comm=comm_of(group, rank, model), **options)
        return rows, history

    results = together(size, work)
    shares = [distributed.share(0, 33, rank, size) for rank in range(size)]
    for (rows, history), (low, high) in zip(results, shares):
        # One row to count the predictions per sample, then its share in each of 2 epochs.
        assert sum(rows) == 1 + 2 * (high - low)
        np.testing.assert_allclose(history["val_loss"], expected["val_loss"], rtol=1e-5)
        assert history["val_accuracy"] == expected["val_accuracy"]


def test_one_rank_is_one_process_bit_for_bit(backend):
    X, y = spiral(43, 3)
    alone = build(backend)
    expected = alone.train(X, y, epochs=2, batch_size=32, verbose=False)

    def work(rank, group):
        model = build(backend)
        history = model.train(X, y, epochs=2, batch_size=32, verbose=False,
                              comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model), history

    ((params, history),) = together(1, work)
    assert np.array_equal(params, flat(alone))
    assert history["loss"] == expected["loss"] and history["accuracy"] == expected["accuracy"]


def test_early_stopping_stops_every_rank_alike(backend):
    X, y = spiral(43, 3)
    X_val, y_val = spiral(10, 3, seed=2)
    options = dict(epochs=30, batch_size=32, verbose=False, validation_data=(X_val, y_val),
                   early_stopping=2)  # fmt: skip
    alone = build(backend, "SGD")
    expected = alone.train(X, y, **options)
    assert len(expected["epoch"]) < 30  # it did stop early

    def work(rank, group):
        model = build(backend, "SGD")
        history = model.train(X, y, comm=comm_of(group, rank, model), **options)
        return flat(model), history["epoch"]

    for params, epochs in together(2, work):
        assert epochs == expected["epoch"]
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)


def test_evaluate_refuses_ranks_whose_parameters_differ(backend):
    X, y = spiral(10, 3)

    def work(rank, group):
        model = build(backend, seed=rank)
        try:
            model.evaluate(X, y, comm=comm_of(group, rank, model))
        except ValueError as error:
            return str(error)

    for message in together(2, work):
        assert "differ in parameters" in message


@pytest.mark.parametrize("size", [2, 3])
def test_regression_equals_one_process(backend, size):
    X, y = xpnn.datasets.sine_data(101)  # batches of 25: a last one of 1 sample

    def regression():
        model = xpnn.Model(backend=backend, seed=2, dtype="float64")
        model.add(xpnn.Dense(1, 8, weight_scale=0.1))
        model.add(xpnn.Tanh())
        model.add(xpnn.Dense(8, 1, weight_scale=0.1))
        model.add(xpnn.Linear())
        model.set(loss=xpnn.MeanSquaredError(), optimizer=xpnn.Adam(learning_rate=0.01),
                  accuracy=xpnn.RegressionAccuracy())  # fmt: skip
        model.finalize()
        return model

    alone = regression()
    expected = alone.train(X, y, epochs=4, batch_size=25, verbose=False)

    def work(rank, group):
        model = regression()
        history = model.train(X, y, epochs=4, batch_size=25, verbose=False,
                              comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model), history

    for params, history in together(size, work):
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)
        np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-12)
        assert history["accuracy"] == expected["accuracy"]


def test_shard_regression_takes_each_ranks_precision_and_compares_the_rest(backend):
    """A precision left to the data is each rank's own in shard mode (from its own part), not a
    difference; the metric's class, and a precision differing without shard, still are."""
    X, y = xpnn.datasets.sine_data(100)

    def work(rank, group, shard, precision=None):
        model = xpnn.Model(backend=backend, seed=2, dtype="float64")
        model.add(xpnn.Dense(1, 1))
        model.add(xpnn.Linear())
        model.set(loss=xpnn.MeanSquaredError(), optimizer=xpnn.Adam(),
                  accuracy=xpnn.RegressionAccuracy(precision))  # fmt: skip
        model.finalize()
        part = slice(50 * rank, 50 * rank + 50) if shard else slice(None)
        try:
            model.train(X[part], y[part], epochs=1, batch_size=20, verbose=False, shard=shard,
                        comm=comm_of(group, rank, model))  # fmt: skip
        except ValueError as error:
            return error
        return model.accuracy.precision

    precisions = together(2, lambda rank, group: work(rank, group, True))
    assert all(isinstance(p, float) for p in precisions), precisions
    assert precisions[0] != precisions[1]
    errors = together(2, lambda rank, group: work(rank, group, False, 0.01 * (rank + 1)))
    for error in errors:
        assert "differ in accuracy RegressionAccuracy precision: rank 0 has 0.01" in str(error)


def test_weights_by_share_not_by_rank_count(backend):
    # The last batch splits 1 / 0 / 0: dividing each gradient by the number of ranks would
    # shrink that step's gradient threefold; the result would be far from one process's.
    X, y = spiral(43, 3)
    alone = build(backend, "SGD", regularize=False)
    alone.train(X, y, epochs=1, batch_size=32, shuffle=False, verbose=False)

    def work(rank, group):
        model = build(backend, "SGD", regularize=False)
        model.train(X, y, epochs=1, batch_size=32, shuffle=False, verbose=False,
                    comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model)

    for params in together(3, work):
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)


def test_one_allreduce_per_step_and_one_broadcast_per_state(backend):
    X, y = spiral(20, 3)
    comms = {}

    def work(rank, group):
        model = build(backend, "Adam")
        comms[rank] = comm_of(group, rank, model)
        model.train(X, y, epochs=2, batch_size=16, verbose=False, comm=comms[rank])
        model.train(X, y, epochs=1, batch_size=16, verbose=False, comm=comms[rank])
        return model.optimizer.iterations

    steps = together(2, work)
    assert steps == [12, 12]  # 60 samples in 4 batches, 3 epochs
    for comm in comms.values():
        assert comm.calls["allreduce"] == 12
        # params; then params and Adam's two moment buffers at the second call
        assert comm.calls["broadcast"] == 1 + 3
        assert comm.calls["allgather"] == 2 * 2  # settings and rank 0's host state, per call


def test_parameters_and_shuffling_come_from_rank_0(backend):
    X, y = spiral(30, 3)
    alone = build(backend, seed=11)
    alone.train(X, y, epochs=2, batch_size=16, verbose=False)

    def work(rank, group):
        model = build(backend, seed=11 if rank == 0 else 100 + rank)  # other weights, order
        model.train(X, y, epochs=2, batch_size=16, verbose=False, comm=comm_of(group, rank, model))
        return flat(model)

    for params in together(3, work):
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)


DIFFERENCES = {
    "samples": lambda rank: ({"X": spiral(20 + rank, 3)}, "samples"),
    "batch size": lambda rank: ({"batch_size": 16 + rank}, "batch size"),
    "epochs": lambda rank: ({"epochs": 2 + rank}, "epochs"),
    "parameters": lambda rank: ({"hidden": 16 + rank}, "parameter count"),
    "dtype": lambda rank: ({"dtype": "float64" if rank else "float32"}, "dtype"),
    "epochs trained": lambda rank: ({"before": rank}, "epochs trained"),
    "an optimizer setting": lambda rank: (
        {"optimizer": xpnn.Adam(beta_1=0.5 if rank else 0.9)},
        "optimizer Adam beta_1",
    ),
    "an optimizer": lambda rank: (
        {"optimizer": xpnn.RMSprop() if rank else xpnn.Adam()},
        "optimizer",
    ),
    "a layer setting": lambda rank: (
        {"regularize": not rank},
        "layer 0 Dense weight_regularizer_l1",
    ),
}


@pytest.mark.parametrize("difference", list(DIFFERENCES))
def test_differing_settings_raise_on_every_rank(backend, difference):
    def work(rank, group):
        changes, _ = DIFFERENCES[difference](rank if rank == 1 else 0)
        X, y = changes.get("X", spiral(20, 3))
        model = build(
            backend,
            hidden=changes.get("hidden", 16),
            dtype=changes.get("dtype", "float64"),
            regularize=changes.get("regularize", True),
        )
        if "optimizer" in changes:
            model.set(optimizer=changes["optimizer"])
            model.finalize()
        if changes.get("before"):
            model.train(X, y, epochs=changes["before"], verbose=False)
        before = flat(model)
        try:
            model.train(X, y, epochs=changes.get("epochs", 2),
                        batch_size=changes.get("batch_size", 16), verbose=False,
                        comm=comm_of(group, rank, model))  # fmt: skip
        except ValueError as error:
            assert np.array_equal(flat(model), before)  # raised before any step
            return error
        return None

    name = DIFFERENCES[difference](1)[1]
    errors = together(3, work)
    for error in errors:
        assert isinstance(error, ValueError), errors
        assert f"differ in {name}: rank 0 has" in str(error) and "rank 1 has" in str(error)


def test_an_argument_error_on_one_rank_raises_on_every_rank(backend):
    X, y = spiral(20, 3)

    def work(rank, group):
        model = build(backend)
        try:
            model.train(X, y, epochs=0 if rank == 2 else 1, verbose=False,
                        comm=comm_of(group, rank, model))  # fmt: skip
        except ValueError as error:
            return error
        return None

    errors = together(3, work)
    assert "epochs must be" in str(errors[2])
    for error in errors[:2]:
        assert "rank 2 could not start: ValueError: epochs must be" in str(error)


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(backend):
    X, y = spiral(43, 3)

    def work(rank, group):
        model = build(backend)
        if rank == 1:
            inject_nan(model, at_call=6)  # epoch 2, step 1 (step 5 of each epoch: no share)
        try:
            model.train(X, y, epochs=3, batch_size=32, verbose=False,
                        comm=comm_of(group, rank, model))  # fmt: skip
        except xpnn.NonFiniteLossError as error:
            return (error.epoch, error.step), flat(model), model.optimizer.iterations
        return None

    results = together(3, work)
    on_host = xpnn.get_backend(backend).on_host
    for where, params, iterations in results:
        # On the host at the step, its update not taken; on a device at the report (after the
        # last epoch), which names the epoch and goes back to the last good report: the start.
        assert where == ((2, 1) if on_host else (2, None))
        assert iterations == (5 if on_host else 0)
        assert np.array_equal(params, results[0][1])
        assert np.all(np.isfinite(params))


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step_and_resumes(
    backend, monkeypatch, tmp_path
):
    X, y = spiral(43, 3)  # 129 samples: 17 steps of 8 per epoch
    path = tmp_path / "stopped.safetensors"
    stops = {}
    original = distributed.ReplicaTrainer.interruption

    def interruption(self):
        stops[self.group.rank] = original(self)
        return stops[self.group.rank]

    monkeypatch.setattr(distributed.ReplicaTrainer, "interruption", interruption)
    alone = build(backend)
    alone.train(X, y, epochs=2, batch_size=8, verbose=False)

    def work(rank, group):
        model = build(backend)
        comm = comm_of(group, rank, model)
        if rank == 2:  # Ctrl-C on rank 2 after its third step
            post = model.optimizer.post_update_params

            def post_update_params():
                post()
                if model.optimizer.iterations == 3:
                    stops[2].requested = True

            model.optimizer.post_update_params = post_update_params
        model.train(X, y, epochs=2, batch_size=8, verbose=False, checkpoint=path, comm=comm)
        stopped = model.optimizer.iterations, flat(model)
        comm.allgather(None)  # rank 0 has written the checkpoint
        loaded = xpnn.Model.load(path, backend=backend, dtype="float64")
        model.train(X, y, epochs=2, batch_size=8, verbose=False, comm=comm)  # ends epoch 1
        loaded.train(X, y, epochs=2, batch_size=8, verbose=False, comm=comm)  # from the file
        return stopped, model.epochs_trained, flat(model), flat(loaded)

    on_host = xpnn.get_backend(backend).on_host
    results = together(3, work)
    for (iterations, params), epochs, resumed, from_file in results:
        assert iterations == (4 if on_host else distributed.STOP_CHECK_EVERY)
        assert np.array_equal(params, results[0][0][1])
        assert epochs == 2
        np.testing.assert_allclose(resumed, flat(alone), rtol=0, atol=1e-12)
        np.testing.assert_allclose(from_file, flat(alone), rtol=0, atol=1e-12)


def test_only_rank_0_prints_and_writes_checkpoints_and_a_resumed_run_matches(
    backend, tmp_path, capsys, monkeypatch
):
    import xpnn.io

    X, y = spiral(30, 3)
    path = tmp_path / "run.safetensors"
    writers = []
    save_model = xpnn.io.save_model

    def counted(model, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return save_model(model, *args, **kwargs)

    monkeypatch.setattr(xpnn.io, "save_model", counted)
    alone = build(backend)
    alone.train(X, y, epochs=4, batch_size=16, verbose=False)
    writers.clear()

    def work(rank, group):
        threading.current_thread().name = f"rank {rank}"
        model = build(backend)
        model.train(X, y, epochs=2, batch_size=16, checkpoint=path, print_every=1,
                    verbose="lines", comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model)

    together(3, work)
    out = capsys.readouterr().out
    assert out.count("epoch: 1,") == 1 and out.count("epoch: 2,") == 1
    assert writers == ["rank 0", "rank 0"]

    def resume(rank, group):
        model = xpnn.Model.load(path, backend=backend, dtype="float64")
        model.train(X, y, epochs=2, batch_size=16, verbose=False, comm=comm_of(group, rank, model))
        return flat(model)

    for params in together(3, resume):
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)


def test_dropout_draws_other_masks_on_each_rank_from_seed_and_rank(backend):
    X, y = spiral(20, 3)  # 60 samples: 30 per rank, one step

    def work(rank, group):
        model = build_dropout(backend)
        model.train(X, y, epochs=1, verbose=False, comm=comm_of(group, rank, model))
        return xpnn.to_numpy(model.layers[2].binary_mask), flat(model)

    first, again = together(2, work), together(2, work)
    assert not np.array_equal(first[0][0], first[1][0])  # each rank its own mask
    assert np.array_equal(first[0][1], first[1][1])  # the parameters still agree
    for (mask, params), (mask_again, params_again) in zip(first, again):
        assert np.array_equal(mask, mask_again) and np.array_equal(params, params_again)


@pytest.mark.parametrize("size", [2, 3])
def test_evaluate_over_ranks_equals_one_process(backend, size):
    X, y = spiral(43, 3)
    model = build(backend)
    model.train(X, y, epochs=2, batch_size=32, verbose=False)
    expected = model.evaluate(X, y, batch_size=16)

    def work(rank, group):
        replica = build(backend)
        replica.set_parameters(model.get_parameters())
        return replica.evaluate(X, y, batch_size=16, comm=comm_of(group, rank, replica))

    for figures in together(size, work):
        assert figures.keys() == expected.keys()
        for name, value in expected.items():
            assert figures[name] == pytest.approx(value, rel=1e-12, abs=0)


def test_comm_must_be_a_communicator(backend):
    model = build(backend)
    X, y = spiral(10, 3)
    with pytest.raises(TypeError, match="comm must be an mpi4py"):
        model.train(X, y, verbose=False, comm="world")
    with pytest.raises(TypeError, match="comm must be an mpi4py"):
        model.evaluate(X, y, comm=3)


# -- the ranks' data: the same on every rank, or each its own part (shard=True) ----------------


def part(data, sizes, rank):
    """Rank ``rank``'s part of ``data`` cut in ``sizes``, in order."""
    low = sum(sizes[:rank])
    return data[low : low + sizes[rank]]


@pytest.mark.parametrize("which", ["X", "y", "validation X", "validation y"])
def test_ranks_given_other_data_are_refused_before_any_step(backend, which):
    """Same shapes and counts, other contents on one rank: refused on every rank, naming the
    argument and saying what xpnn expects (the same data everywhere, or shard=True)."""
    X, y = spiral(20, 3)
    X_val, y_val = spiral(5, 3, seed=1)

    def work(rank, group):
        data = {"X": X.copy(), "y": y.copy(), "validation X": X_val.copy(),
                "validation y": y_val.copy()}  # fmt: skip
        if rank == 2:
            array = data[which]
            array[3] = (array[3] + 1) % 3 if which.endswith("y") else array[3] + 1e-9
        model = build(backend)
        before = flat(model)
        try:
            model.train(data["X"], data["y"], epochs=1, batch_size=16, verbose=False,
                        validation_data=(data["validation X"], data["validation y"]),
                        comm=comm_of(group, rank, model))  # fmt: skip
        except ValueError as error:
            assert np.array_equal(flat(model), before)
            return str(error)
        return None

    argument = "validation_data" if which.startswith("validation") else "X, y"
    for message in together(3, work):
        assert message is not None and message.startswith(f"{argument}: rank 2 was given other")
        assert "the same on every rank" in message and "shard=True" in message


def test_evaluate_refuses_ranks_given_other_data(backend):
    X, y = spiral(10, 3)

    def work(rank, group):
        model = build(backend)
        mine = X + (1e-9 if rank == 1 else 0)
        with pytest.raises(ValueError, match="X, y: rank 1 was given other data"):
            model.evaluate(mine, y, comm=comm_of(group, rank, model))

    together(2, work)


@pytest.mark.parametrize(("sizes", "batch_size"), [([30, 30], 16), ([20, 20, 20], 15)])
def test_shard_with_equal_parts_equals_one_process_on_the_interleaved_data(
    backend, sizes, batch_size
):
    """Equal parts, K dividing the batch: each global batch is every rank's next
    batch_size / K samples, and one process on the data in that order (no shuffling) takes
    the same steps: same parameters, same History (validation parts too)."""
    X, y = spiral(20, 3)
    X_val, y_val = spiral(11, 3, seed=1)
    val_sizes = [33 - 11 * (len(sizes) - 1)] + [11] * (len(sizes) - 1)  # unequal parts
    order = np.concatenate(distributed_batches(sizes, batch_size))
    options = dict(epochs=3, batch_size=batch_size, shuffle=False, verbose=False)
    alone = build(backend)
    expected = alone.train(X[order], y[order], validation_data=(X_val, y_val), **options)

    def work(rank, group):
        model = build(backend)
        validation = (part(X_val, val_sizes, rank), part(y_val, val_sizes, rank))
        history = model.train(part(X, sizes, rank), part(y, sizes, rank), shard=True,
                              validation_data=validation, comm=comm_of(group, rank, model),
                              **options)  # fmt: skip
        return flat(model), history

    results = together(len(sizes), work)
    for params, history in results:
        assert np.array_equal(params, results[0][0])
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(history[name], expected[name], rtol=1e-12, atol=0)


def distributed_batches(sizes, batch_size):
    """The documented rule, written out: step t takes positions [t*b, (t+1)*b) of each part
    (b = batch_size / K), rank by rank; as indices into the parts concatenated."""
    b = batch_size // len(sizes)
    offsets = np.cumsum([0, *sizes])
    return [np.concatenate([offsets[r] + np.arange(t * b, min((t + 1) * b, n))
                            for r, n in enumerate(sizes)])
            for t in range(-(-sizes[0] // b))]  # fmt: skip


@pytest.mark.parametrize("sizes", [[50, 40, 30], [7, 1], [1, 1, 58]])
def test_shard_with_unequal_shuffled_parts_equals_one_process_in_the_defined_order(backend, sizes):
    """Unequal parts, shuffled: the run is one process's trained batch by batch on the order
    sharding defines (``part_orders`` from the model's generator, ``one_process_batches``)."""
    X, y = spiral(sum(sizes) // 3 + 1, 3)
    X, y = X[: sum(sizes)], y[: sum(sizes)]

    def work(rank, group):
        model = build(backend)
        history = model.train(part(X, sizes, rank), part(y, sizes, rank), epochs=3,
                              batch_size=32, shard=True, verbose=False,
                              comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model), history["data_loss"], model.optimizer.iterations

    results = together(len(sizes), work)
    alone, losses = build(backend), []
    for _ in range(3):
        orders = sharding.part_orders(alone.rng, sizes)
        batches = sharding.one_process_batches(sizes, 32, orders)
        assert len(batches) == -(-sum(sizes) // 32)  # as many steps as one process takes
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(sum(sizes)))
        sums = [len(b) * alone.train(X[b], y[b], shuffle=False, verbose=False)["data_loss"][0]
                for b in batches]  # fmt: skip
        losses.append(sum(sums) / sum(sizes))
    for params, loss, iterations in results:
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)
        assert iterations == alone.optimizer.iterations
        # The History's data loss: the epoch's mean over every part.
        np.testing.assert_allclose(loss, losses, rtol=1e-12, atol=0)


def test_shard_orders_are_one_process_order_restricted_to_each_part(backend):
    sizes = [9, 9, 4]
    orders = sharding.part_orders(np.random.default_rng(7), sizes)
    whole = np.random.default_rng(7).permutation(22)
    assert np.array_equal(orders[0], whole[whole < 9])
    assert np.array_equal(orders[2], whole[whole >= 18] - 18)
    assert all(np.array_equal(np.sort(o), np.arange(n)) for o, n in zip(orders, sizes))
    # One rank in shard mode is one process, bit for bit.
    X, y = spiral(43, 3)
    alone = build(backend)
    alone.train(X, y, epochs=2, batch_size=32, verbose=False)

    def work(rank, group):
        model = build(backend)
        model.train(X, y, epochs=2, batch_size=32, verbose=False, shard=True,
                    comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model)

    assert np.array_equal(together(1, work)[0], flat(alone))


def test_shard_refuses_a_batch_smaller_than_the_ranks_and_mixed_modes(backend):
    X, y = spiral(10, 3)

    def work(rank, group, batch_size, shard):
        model = build(backend)
        before = flat(model)
        try:
            model.train(X, y, batch_size=batch_size, shard=shard(rank), verbose=False,
                        comm=comm_of(group, rank, model))  # fmt: skip
        except ValueError as error:
            assert np.array_equal(flat(model), before)
            return str(error)

    for message in together(3, lambda r, g: work(r, g, 2, lambda r: True)):
        assert "batch_size is 2: with shard=True" in message and "number of ranks, 3" in message
    for message in together(2, lambda r, g: work(r, g, 8, lambda r: r == 1)):
        assert "differ in shard: rank 0 has False, rank 1 has True" in message
    with pytest.raises(ValueError, match="shard=True shares the data among processes"):
        build(backend).train(X, y, shard=True, verbose=False)

    def not_a_bool(rank, group):  # on one rank only: the others must not wait for it
        model = build(backend)
        with pytest.raises((TypeError, ValueError), match="shard must be True or False"):
            model.train(X, y, shard="yes" if rank == 1 else True, batch_size=8, verbose=False,
                        comm=comm_of(group, rank, model))  # fmt: skip
        with pytest.raises((TypeError, ValueError), match="shard must be True or False"):
            model.evaluate(X, y, shard=1 if rank == 0 else False, comm=comm_of(group, rank, model))

    together(3, not_a_bool)


def test_shard_ctrl_c_resumes_in_process_and_from_rank_0s_checkpoint(
    backend, tmp_path, monkeypatch
):
    """Ctrl-C inside an epoch of shard training: every rank finishes the epoch exactly, in
    the same processes or from rank 0's checkpoint (which keeps rank 0's order only)."""
    sizes = [50, 40, 39]
    X, y = spiral(43, 3)
    path = tmp_path / "stopped.safetensors"
    options = dict(epochs=2, batch_size=8, verbose=False, shard=True)
    stops = {}
    original = distributed.ReplicaTrainer.interruption

    def interruption(self):
        stops[self.group.rank] = original(self)
        return stops[self.group.rank]

    monkeypatch.setattr(distributed.ReplicaTrainer, "interruption", interruption)

    def work(rank, group, stop_at):
        model = build(backend)
        comm = comm_of(group, rank, model)
        mine = part(X, sizes, rank), part(y, sizes, rank)
        if stop_at:
            if rank == 2:  # Ctrl-C on rank 2 after its third step
                post = model.optimizer.post_update_params

                def post_update_params():
                    post()
                    if model.optimizer.iterations == stop_at:
                        stops[2].requested = True

                model.optimizer.post_update_params = post_update_params
            model.train(*mine, checkpoint=path, comm=comm, **options)
            stopped = model.network.epoch_in_progress is not None
            comm.allgather(None)  # rank 0 has written the checkpoint
            other = [50, 40, 38]  # one sample fewer: refused on every rank
            with pytest.raises(ValueError, match="train on the same parts on the same ranks"):
                model.train(part(X, other, rank), part(y, other, rank), comm=comm, **options)
            loaded = xpnn.Model.load(path, backend=backend, dtype="float64")
            model.train(*mine, comm=comm, **options)
            loaded.train(*mine, comm=comm, **options)
            return stopped, flat(model), flat(loaded)
        model.train(*mine, comm=comm, **options)
        return flat(model)

    expected = together(3, lambda r, g: work(r, g, None))[0]
    for stopped, resumed, from_file in together(3, lambda r, g: work(r, g, 3)):
        assert stopped
        np.testing.assert_allclose(resumed, expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(from_file, expected, rtol=0, atol=1e-12)
    # One process given the parts together finishes the epoch from the file with each sample
    # taken once: its epoch in progress lists the samples taken first.
    alone = xpnn.Model.load(path, backend=backend, dtype="float64")
    unfinished = alone.network.epoch_in_progress
    assert np.array_equal(np.sort(unfinished.order), np.arange(129))
    taken = unfinished.order[: unfinished.done]
    assert [int(np.sum((taken >= low) & (taken < low + n))) for low, n in
            [(0, 50), (50, 40), (90, 39)]] == sharding.cuts(unfinished.steps, sizes, 8)  # fmt: skip


def unwritable_after_first_save(model, path):
    """After the model's first checkpoint, a directory where the file was: every later write
    of ``path`` fails (a real error from ``save``, at a known point, not a timed one)."""
    checkpoint = model.save

    def replaced(given):
        checkpoint(given)
        if not path.is_dir():
            path.unlink()
            path.mkdir()

    model.save = replaced


def test_a_checkpoint_failure_on_rank_0_raises_on_every_rank(backend, tmp_path):
    """Rank 0 cannot write its second checkpoint (epoch 2): every rank raises there, after
    the same step, whether or not rank 0's script catches its error; none is left waiting."""
    X, y = spiral(20, 3)
    path = tmp_path / "run.safetensors"

    def work(rank, group):
        model = build(backend)
        comm = comm_of(group, rank, model)
        if rank == 0:
            unwritable_after_first_save(model, path)
        try:
            model.train(X, y, epochs=4, batch_size=16, checkpoint=path, verbose=False, comm=comm)
        except (ValueError, distributed.OtherRankFailed) as error:
            raised = error
        comm.allgather(None)  # rank 0 caught its error and goes on: the others are here too
        return raised, model.optimizer.iterations, model.epochs_trained

    results = together(3, work)
    assert "it is a directory" in str(results[0][0])
    for error, _, _ in results[1:]:
        assert isinstance(error, distributed.OtherRankFailed)
        assert "rank 0 could not write the checkpoint" in str(error)
        assert "it is a directory" in str(error) and "at step 8" in str(error)
    assert [(i, e) for _, i, e in results] == [(8, 2)] * 3


def test_evaluate_over_ranks_without_an_accuracy_metric(backend):
    X, y = spiral(13, 3)

    expected = build_without_metric(backend).evaluate(X, y, batch_size=8)
    assert "accuracy" not in expected

    def work(rank, group):
        model = build_without_metric(backend)
        return model.evaluate(X, y, batch_size=8, comm=comm_of(group, rank, model))

    for figures in together(3, work):
        assert figures.keys() == expected.keys()
        for name, value in expected.items():
            assert figures[name] == pytest.approx(value, rel=1e-12, abs=0)


def test_ranks_holding_other_optimizer_state_arrays_are_refused(backend):
    """Same settings, step count and epochs; only rank 1 holds Adam's state arrays (as a model
    loaded from a checkpoint with them does): refused before rank 0's state is broadcast."""
    X, y = spiral(10, 3)

    def work(rank, group):
        model = build(backend, "Adam")
        if rank == 1:
            model.train(X, y, epochs=1, verbose=False)  # makes the arrays; then back to none
            model.set_parameters(build(backend, "Adam").get_parameters())
            model.optimizer.iterations, model.epochs_trained = 0, 0
            model.optimizer.current_learning_rate = model.optimizer.learning_rate
        states = agreement.optimizer_states(model.network.parameters, model.optimizer)
        try:
            model.train(X, y, epochs=1, verbose=False, comm=comm_of(group, rank, model))
        except ValueError as error:
            return states, str(error)

    (none, first), (some, second) = together(2, work)
    assert none == [] and len(some) == 2
    for message in (first, second):
        assert "differ in optimizer state: rank 0 has [], rank 1 has [" in message


@pytest.mark.parametrize("size", [2, 3])
def test_evaluate_with_shard_equals_one_process_over_the_parts_together(backend, size):
    X, y = spiral(11, 3)  # 33 samples in unequal parts
    sizes = [33 - 10 * (size - 1)] + [10] * (size - 1)
    model = build(backend)
    model.train(X, y, epochs=2, batch_size=16, verbose=False)
    expected = model.evaluate(X, y, batch_size=8)

    def work(rank, group):
        replica = build(backend)
        replica.set_parameters(model.get_parameters())
        return replica.evaluate(part(X, sizes, rank), part(y, sizes, rank), batch_size=8,
                                shard=True, comm=comm_of(group, rank, replica))  # fmt: skip

    for figures in together(size, work):
        for name, value in expected.items():
            assert figures[name] == pytest.approx(value, rel=1e-12, abs=0)


def test_an_epoch_in_progress_resumes_in_shard_mode_only_where_its_steps_took_those_samples():
    """Shard training finishes an epoch Ctrl-C stopped only if the samples it took are, rank by
    rank, those its steps would have taken of these parts; the order it keeps always is."""
    sizes, batch_size = [50, 40, 39], 8
    order = np.random.default_rng(3).permutation(129)
    kept = sharding.steps_order(order, sizes, batch_size)
    for steps in range(1, 17):
        assert sharding.taken_by_steps(kept, sizes, batch_size, steps)
    # One process's unshuffled order took rank 0's samples first: not shard mode's steps.
    assert not sharding.taken_by_steps(np.arange(129), sizes, batch_size, 3)
    assert not sharding.taken_by_steps(kept, [50, 40, 38], batch_size, 3)


def test_the_first_report_says_where_the_ranks_compute(backend, capsys):
    """Rank 0's header carries the communicator's placement (every rank's device and the
    transport, as ``communicator`` lays them out on CuPy); nothing where it has none."""
    X, y = spiral(10, 3)
    said = "ranks on devices: node:0,1; transport='host' as asked"

    def work(rank, group, placement):
        model = build(backend, "SGD")
        comm = comm_of(group, rank, model)
        comm.placement = placement
        model.train(X, y, epochs=1, batch_size=10, verbose=rank == 0, comm=comm)

    together(2, lambda rank, group: work(rank, group, said))
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("xpnn: training on ") and header.endswith(f"per epoch; {said}")
    together(2, lambda rank, group: work(rank, group, None))
    assert capsys.readouterr().out.splitlines()[0].endswith("per epoch")
