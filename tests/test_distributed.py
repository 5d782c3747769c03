"""Data-parallel training, its logic run in-process: K ranks as K threads (tests/thread_ranks.py).

These run in every test session, without mpi4py, on every backend; tests/test_mpi.py runs the
same rules under ``mpiexec`` in the mpi session.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import spiral
from replicas import CASES, build, build_dropout, flat, inject_nan
from thread_ranks import Raised, ThreadCommunicator, ThreadGroup, run_ranks

import xpnn
from xpnn import distributed


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
    alone = build(backend, "sgd")
    expected = alone.train(X, y, **options)
    assert len(expected["epoch"]) < 30  # it did stop early

    def work(rank, group):
        model = build(backend, "sgd")
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


def test_weights_by_share_not_by_rank_count(backend):
    # The last batch splits 1 / 0 / 0: dividing each gradient by the number of ranks would
    # shrink that step's gradient threefold; the result would be far from one process's.
    X, y = spiral(43, 3)
    alone = build(backend, "sgd", regularize=False)
    alone.train(X, y, epochs=1, batch_size=32, shuffle=False, verbose=False)

    def work(rank, group):
        model = build(backend, "sgd", regularize=False)
        model.train(X, y, epochs=1, batch_size=32, shuffle=False, verbose=False,
                    comm=comm_of(group, rank, model))  # fmt: skip
        return flat(model)

    for params in together(3, work):
        np.testing.assert_allclose(params, flat(alone), rtol=0, atol=1e-12)


def test_one_allreduce_per_step_and_one_broadcast_per_state(backend):
    X, y = spiral(20, 3)
    comms = {}

    def work(rank, group):
        model = build(backend, "adam")
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
}


@pytest.mark.parametrize("difference", list(DIFFERENCES))
def test_differing_settings_raise_on_every_rank(backend, difference):
    def work(rank, group):
        changes, _ = DIFFERENCES[difference](rank if rank == 1 else 0)
        X, y = changes.get("X", spiral(20, 3))
        model = build(
            backend, hidden=changes.get("hidden", 16), dtype=changes.get("dtype", "float64")
        )
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
