"""Block momentum (BMUF) as the reducer's outer optimizer, through the train driver."""

import numpy as np

from mr_tl.feature_store import read_folder
from mr_tl.jobs.round_runner import MAP_ONLY_MAX_TASKS, MapReduceRunner
from mr_tl.jobs.train_round import MRTrainRound
from mr_tl.records import load_npz
from mr_tl.run_dir import RunDir
from mr_tl.training.hyperparameters import Hyperparameters
from mr_tl.training.in_process import InProcessRunner
from mr_tl.training.loop import Schedule, Trainer

from .test_train import checkpoint_files, head_bytes


def test_one_worker_block_momentum_zero_equals_plain_averaging(synth, train_cli, tmp_path, all_bytes):
    common = ("-r", "inline", synth.path, "--workers", 1, "--averaging-frequency", 3, "--epochs", 2, "--lr", 0.05)
    assert train_cli(*common, "-o", tmp_path / "avg", "--outer-optimizer", "average").code == 0
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


def test_the_driver_equals_the_in_process_rounds(synth, train_cli, tmp_path, all_bytes):
    """Benchmarks and tests train with the in-process runner; it must be the MapReduce jobs' arithmetic."""
    args = ("--workers", 4, "--averaging-frequency", 2, "--epochs", 2, "--lr", 0.05, "--outer-optimizer",
            "block-momentum", "--validate-every", 2)
    assert train_cli("-r", "local", synth.path, "-o", tmp_path / "jobs", *args).code == 0
    hyper = Hyperparameters(workers=4, averaging_frequency=2, lr=0.05, outer_optimizer="block-momentum")
    Trainer(InProcessRunner(read_folder(synth.path)), str(tmp_path / "memory"), hyper,
            Schedule(epochs=2, validate_every=2), out=lambda m: None).run_all()
    assert checkpoint_files(all_bytes, tmp_path / "memory") == checkpoint_files(all_bytes, tmp_path / "jobs")
    memory, jobs = (load_npz(str(tmp_path / run / "head.npz"))[1] for run in ("memory", "jobs"))
    assert {k: v.tobytes() for k, v in memory.items()} == {k: v.tobytes() for k, v in jobs.items()}
    assert without_seconds(tmp_path / "memory") == without_seconds(tmp_path / "jobs")


def test_a_round_finished_by_the_reducer_or_by_the_driver_is_the_same_bits(synth, tmp_path, all_bytes):
    """Up to MAP_ONLY_MAX_TASKS tasks the round job is map-only and the driver adds up the contributions;
    with more, the reducer does (here forced with ``map_only_max_tasks=0``; 2 tasks for 4 workers, so the
    combiner runs too): the same checkpoints, head and validation."""
    hyper = Hyperparameters(workers=4, averaging_frequency=2, lr=0.05, outer_optimizer="block-momentum")
    for name, limit in (("driver", MAP_ONLY_MAX_TASKS), ("reducer", 0)):
        runner = MapReduceRunner([synth.path], ["-r", "inline"], str(tmp_path / name / "data"), out=lambda m: None,
                                 map_only_max_tasks=limit)
        Trainer(runner, str(tmp_path / name), hyper, Schedule(epochs=2, tasks=2, validate_every=2),
                out=lambda m: None).run_all()
    assert checkpoint_files(all_bytes, tmp_path / "driver") == checkpoint_files(all_bytes, tmp_path / "reducer")
    assert head_bytes(tmp_path / "driver") == head_bytes(tmp_path / "reducer")
    assert without_seconds(tmp_path / "driver") == without_seconds(tmp_path / "reducer")
    assert any("val_accuracy" in m for m in RunDir(str(tmp_path / "driver")).read_metrics())


def test_a_map_only_round_job_has_no_reduce_phase_on_hadoop():
    """mrjob puts ``-D mapreduce.job.reduces=0`` before the job's own -D: the job's must not say 1."""
    job = MRTrainRound(args=["--map-only", "--workers", "2"])
    assert [sorted(k for k, v in step.items() if v and k in ("mapper", "combiner", "reducer")) for step in
            (s.description(0) for s in job.steps())] == [["mapper"]]
    assert job.jobconf()["mapreduce.job.reduces"] == "0"
    assert MRTrainRound(args=["--workers", "2"]).jobconf()["mapreduce.job.reduces"] == "1"


def test_in_process_normalization_statistics_equal_the_jobs(synth, train_cli, tmp_path, all_bytes):
    """The in-process scan once left out the moments of the last train examples (under 256): not any more."""
    args = ("--workers", 3, "--averaging-frequency", "epoch", "--epochs", 1, "--normalization", "zscore",
            "--lr", 0.05, "--outer-optimizer", "block-momentum")
    assert train_cli("-r", "inline", synth.path, "-o", tmp_path / "jobs", *args).code == 0
    hyper = Hyperparameters(workers=3, averaging_frequency=0, lr=0.05, outer_optimizer="block-momentum",
                            normalization="zscore")
    Trainer(InProcessRunner(read_folder(synth.path)), str(tmp_path / "memory"), hyper, Schedule(epochs=1),
            out=lambda m: None).run_all()
    assert (tmp_path / "memory" / "normalization.npz").read_bytes() == \
        (tmp_path / "jobs" / "normalization.npz").read_bytes()
    assert checkpoint_files(all_bytes, tmp_path / "memory") == checkpoint_files(all_bytes, tmp_path / "jobs")


def without_seconds(run):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in RunDir(str(run)).read_metrics()]


def test_block_momentum_keeps_accuracy_with_many_workers(synth_accuracy, tmp_path):
    """Eight workers, one round per epoch: plain averaging lags one worker, block momentum does not."""
    features = read_folder(synth_accuracy.path)
    test = features.select("test")

    def accuracy(workers, outer, epochs=20):
        hyper = Hyperparameters(workers=workers, averaging_frequency=0, lr=0.01, outer_optimizer=outer)
        run = str(tmp_path / ("%d-%s" % (workers, outer)))
        Trainer(InProcessRunner(features), run, hyper, Schedule(epochs=epochs), out=lambda m: None).run_all()
        head, _, normalizer = RunDir(run).load_classifier()
        return float(np.mean(head.predict(normalizer.apply(test.X)) == test.labels))

    one = accuracy(1, "average")
    averaged = accuracy(8, "average")
    bmuf = accuracy(8, "block-momentum")
    print("one worker %.3f, 8 averaged %.3f, 8 with block momentum %.3f" % (one, averaged, bmuf))
    assert one - averaged > 0.02, (one, averaged)
    assert bmuf >= one - 0.01, (one, bmuf)
