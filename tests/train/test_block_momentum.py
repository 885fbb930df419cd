"""Block momentum (BMUF) as the reducer's outer optimizer, through the train driver."""

import numpy as np

from mr_tl import averaging
from mr_tl.head import SoftmaxHead
from mr_tl.records import load_npz
from mr_tl.rounds import RoundParams, simulate_round, split_by_worker
from mr_tl.run import RunDir
from mr_tl.train import assign_workers, initial_state

from .test_train import checkpoint_files, head_bytes


def test_one_worker_block_momentum_zero_equals_plain_averaging(synth, train_cli, tmp_path, all_bytes):
    common = ("-r", "inline", synth.path, "--workers", 1, "--averaging-frequency", 3, "--epochs", 2, "--lr", 0.05)
    assert train_cli(*common, "-o", tmp_path / "avg").code == 0
    result = train_cli(*common, "-o", tmp_path / "bm", "--outer-optimizer", "block-momentum",
                       "--block-momentum", 0, "--block-lr", 1)
    assert result.code == 0, result.err
    _, plain_head = load_npz(str(tmp_path / "avg" / "head.npz"))
    _, bm_head = load_npz(str(tmp_path / "bm" / "head.npz"))  # its meta names the outer optimizer
    assert bm_head["W"].tobytes() == plain_head["W"].tobytes() and bm_head["b"].tobytes() == plain_head["b"].tobytes()
    for r in RunDir(str(tmp_path / "avg")).checkpoint_rounds():
        _, plain = load_npz(str(tmp_path / "avg" / "checkpoints" / ("round-%06d.npz" % r)))
        _, bm = load_npz(str(tmp_path / "bm" / "checkpoints" / ("round-%06d.npz" % r)))
        for name in ("W", "b", "vW", "vb"):
            assert bm[name].tobytes() == plain[name].tobytes(), (r, name)
        assert not np.any(bm["G_W"]) or r == 0 or np.array_equal(bm["start_W"], bm["W"])


def test_default_block_momentum_is_one_minus_one_over_workers(synth, train_cli, tmp_path):
    result = train_cli("-r", "inline", synth.path, "-o", tmp_path / "run", "--workers", 4, "--epochs", 1,
                       "--outer-optimizer", "block-momentum")
    assert result.code == 0, result.err
    config = RunDir(str(tmp_path / "run")).read_json("config.json")
    assert config["training"]["block_momentum"] == 0.75 and config["training"]["block_lr"] == 1.0


def test_block_momentum_resume_is_bit_identical(synth, train_cli, tmp_path, all_bytes):
    args = ("-r", "inline", synth.path, "--workers", 4, "--averaging-frequency", 2, "--epochs", 3, "--lr", 0.05,
            "--outer-optimizer", "block-momentum")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert train_cli(*args, "-o", whole).code == 0
    assert train_cli(*args, "-o", part, "--stop-after-rounds", 2).code == 0
    result = train_cli(*args, "-o", part, "--resume")
    assert result.code == 0, result.err
    assert "resuming after round 2" in result.out
    assert head_bytes(part) == head_bytes(whole)
    assert checkpoint_files(all_bytes, part) == checkpoint_files(all_bytes, whole)
    # the outer state really is carried: the checkpoints hold it and it is not zero
    _, state = load_npz(str(whole / "checkpoints" / "round-000003.npz"))
    assert np.any(state["G_W"]) and not np.array_equal(state["start_W"], state["W"])


def test_resume_refuses_another_block_momentum(synth, train_cli, tmp_path):
    args = ("-r", "inline", synth.path, "-o", tmp_path / "run", "--workers", 2, "--epochs", 2,
            "--outer-optimizer", "block-momentum")
    assert train_cli(*args, "--stop-after-rounds", 1).code == 0
    result = train_cli(*args, "--resume", "--block-momentum", 0.9)
    assert result.code == 2 and "block_momentum was 0.5, now 0.9" in result.err


def test_the_driver_equals_the_in_process_rounds(synth, train_cli, tmp_path):
    """bench/scaling.py sweeps with rounds.simulate_round; it must be the driver's arithmetic."""
    workers = 4
    args = ("-r", "local", synth.path, "-o", tmp_path / "run", "--workers", workers, "--averaging-frequency", 2,
            "--epochs", 1, "--lr", 0.05, "--outer-optimizer", "block-momentum")
    assert train_cli(*args).code == 0
    run = RunDir(str(tmp_path / "run"))
    config = run.read_json("config.json")
    ids, X, y = synth.split("train")
    data = split_by_worker(X, y, ids, assign_workers(ids, workers, 42), workers)
    arrays = initial_state(X.shape[1], len(synth.classes), config["training"])
    for r in range(config["rounds"]):
        params = RoundParams(workers=workers, epoch=0, first_batch=2 * r, averaging_frequency=2, lr=0.05,
                             outer_optimizer="block-momentum", block_momentum=config["training"]["block_momentum"])
        arrays, _ = simulate_round(arrays, data, params)
        _, saved = run.load_checkpoint(r + 1)
        for name in arrays:
            assert saved[name].tobytes() == arrays[name].tobytes(), (r, name)


def test_block_momentum_keeps_accuracy_with_many_workers(synth_accuracy):
    """Eight workers, one round per epoch: plain averaging lags one worker, block momentum does not."""
    ids, X, y = synth_accuracy.split("train")
    _, X_test, y_test = synth_accuracy.split("test")
    n_classes = len(synth_accuracy.classes)

    def accuracy(workers, outer, epochs=20):
        eta = averaging.default_block_momentum(workers) if outer == "block-momentum" else 0.0
        config = {"seed": 42, "outer_optimizer": outer, "block_momentum": eta, "block_lr": 1.0, "workers": workers}
        data = split_by_worker(X, y, ids, assign_workers(ids, workers, 42), workers)
        arrays = initial_state(X.shape[1], n_classes, config)
        for epoch in range(epochs):
            params = RoundParams(workers=workers, epoch=epoch, averaging_frequency=0, lr=0.01,
                                 outer_optimizer=outer, block_momentum=eta)
            arrays, _ = simulate_round(arrays, data, params)
        return float(np.mean(SoftmaxHead(arrays["W"], arrays["b"]).predict(X_test) == y_test))

    one = accuracy(1, "average")
    averaged = accuracy(8, "average")
    bmuf = accuracy(8, "block-momentum")
    print("one worker %.3f, 8 averaged %.3f, 8 with block momentum %.3f" % (one, averaged, bmuf))
    assert one - averaged > 0.02, (one, averaged)
    assert bmuf >= one - 0.01, (one, bmuf)
