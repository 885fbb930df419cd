"""The train driver (python -m mr_tl.train): fidelity, determinism, resume, accuracy, metrics, errors."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order
from mr_tl.records import FeatureRecord, load_npz, parse_feature_line
from mr_tl.run_dir import RunDir
from mr_tl.training.partition import workers_of

from .conftest import TRAINED_RUN_ARGS

TRAINED = ("W", "b", "vW", "vb")


def checkpoint(run_dir, r):
    return RunDir(str(run_dir)).load_checkpoint(r)


def metrics(run_dir):
    with open(os.path.join(str(run_dir), "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def without_seconds(records):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in records]


def checkpoint_files(all_bytes, run_dir):
    return {k: v for k, v in all_bytes(str(run_dir)).items() if k.startswith("checkpoints" + os.sep)}


def head_bytes(run_dir):
    with open(os.path.join(str(run_dir), "head.npz"), "rb") as f:
        return f.read()


def head_accuracy(run_dir, X, y):
    _, a = load_npz(os.path.join(str(run_dir), "head.npz"))
    return float(np.mean(np.argmax(X @ a["W"] + a["b"], axis=1) == y))


def train_split_by_id(features_dir):
    """The train split of a featurize-style folder, in id order (as one worker holds it).

    Decoded here from the record format (F, id, label, split, base64 float32 LE), not by mr_tl.
    """
    rows = []
    for path in sorted(glob.glob(os.path.join(features_dir, "part-*"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = parse_feature_line(line)
                if isinstance(record, FeatureRecord) and record.split == "train":
                    rows.append((record.id, record.label, record.features))
    rows.sort(key=lambda r: r[0])
    with open(os.path.join(features_dir, "_labels.json"), encoding="utf-8") as f:
        n_classes = len(json.load(f)["classes"])
    return np.stack([r[2] for r in rows]).astype(np.float32), np.array([r[1] for r in rows]), n_classes


# -- (1) fidelity -------------------------------------------------------------------------------


def assert_plain_sgd_fidelity(train_cli, features_dir, run_dir, lr=0.05, momentum=0.8, batch_size=32, epochs=3,
                              seed=7, l2=0.001):
    result = train_cli("-r", "inline", features_dir, "-o", run_dir, "--workers", 1, "--averaging-frequency", "epoch",
                       "--epochs", epochs, "--batch-size", batch_size, "--lr", lr, "--momentum", momentum,
                       "--seed", seed, "--l2", l2)
    assert result.code == 0, result.err
    X, y, n_classes = train_split_by_id(features_dir)

    # the plain loop: Xavier, then Nesterovs over every minibatch of every epoch
    head = SoftmaxHead.xavier(X.shape[1], n_classes, seed)
    opt = Nesterovs(lr, momentum)
    state = opt.init_state(head)
    _, arrays = checkpoint(run_dir, 0)
    assert arrays["W"].tobytes() == head.W.tobytes() and arrays["b"].tobytes() == head.b.tobytes()
    n = len(y)
    for epoch in range(epochs):
        order = epoch_order(n, seed, epoch, worker=0)
        losses = []
        for k in range(-(-n // batch_size)):
            idx = order[k * batch_size:(k + 1) * batch_size]
            loss, grads = head.loss_and_grad(X[idx], y[idx], l2)
            dW, db = grads["W"], grads["b"]
            opt.step(head, state, {"W": dW, "b": db})
            losses.append(loss)
        meta, arrays = checkpoint(run_dir, epoch + 1)
        mine = {"W": head.W, "b": head.b, "vW": state["vW"], "vb": state["vb"]}
        for name in TRAINED:
            assert arrays[name].dtype == np.float32
            assert arrays[name].tobytes() == mine[name].tobytes(), "%s differs after epoch %d" % (name, epoch + 1)
        assert meta["metrics"]["losses"] == losses
    _, final = load_npz(os.path.join(str(run_dir), "head.npz"))
    assert final["W"].tobytes() == head.W.tobytes() and final["b"].tobytes() == head.b.tobytes()


def test_one_worker_epoch_averaging_is_plain_numpy_sgd_bit_for_bit(synth, train_cli, tmp_path):
    # 300 examples, batch 32: the last minibatch of every epoch holds 12
    assert_plain_sgd_fidelity(train_cli, synth.path, tmp_path / "run")


def test_fidelity_on_real_efficientnet_features(real_features, train_cli, tmp_path):
    assert_plain_sgd_fidelity(train_cli, real_features, tmp_path / "run", lr=0.01, batch_size=8, epochs=2, l2=0.0)


# -- (2), (3) determinism across runners and task layouts -------------------------------------------


def test_inline_and_local_runners_write_identical_checkpoints(synth, train_cli, tmp_path, all_bytes):
    args = ("--workers", 2, "--averaging-frequency", 5, "--batch-size", 16, "--epochs", 1, "--lr", 0.05)
    # 150 examples per worker, batch 16 -> 10 minibatches -> 2 rounds of 5
    runs = {}
    for runner in ("inline", "local"):
        runs[runner] = tmp_path / runner
        result = train_cli("-r", runner, synth.path, "-o", runs[runner], *args)
        assert result.code == 0, result.err
    inline, local = (checkpoint_files(all_bytes, runs[r]) for r in ("inline", "local"))
    assert len(inline) == 6  # rounds 0, 1, 2 and their checksums
    assert inline == local
    assert head_bytes(runs["inline"]) == head_bytes(runs["local"])
    assert without_seconds(metrics(runs["inline"])) == without_seconds(metrics(runs["local"]))
    # the second round started mid-epoch and ran the remaining 5 minibatches
    assert [m["iteration"] for m in metrics(runs["inline"])] == [5, 10]


def test_tasks_do_not_change_the_checkpoints(synth, train_cli, tmp_path, all_bytes, monkeypatch):
    from mr_tl.jobs import round_runner

    reduced = []   # contribution lines the driver averages after each (map-only) round job
    real_next_state = round_runner.next_state

    def counting_next_state(lines, *args):
        lines = list(lines)
        reduced.append(len(lines))
        return real_next_state(iter(lines), *args)

    monkeypatch.setattr(round_runner, "next_state", counting_next_state)
    args = ("--workers", 4, "--averaging-frequency", 2, "--batch-size", 16, "--epochs", 1, "--lr", 0.05)
    found = {}
    for tasks in (4, 3, 2, 1):
        run = tmp_path / ("tasks%d" % tasks)
        del reduced[:]
        result = train_cli("-r", "inline", synth.path, "-o", run, "--tasks", tasks, *args)
        assert result.code == 0, result.err
        # every worker's examples are in one worker file (one round map task)
        files = glob.glob(str(run / "data" / "workers" / "part-*"))
        holders = {}
        for path in files:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.startswith("T\t"):
                        holders.setdefault(int(line.split("\t")[1]), set()).add(path)
        assert sorted(holders) == [0, 1, 2, 3] and all(len(h) == 1 for h in holders.values())
        found[tasks] = (checkpoint_files(all_bytes, run), head_bytes(run))
        if tasks == 1:  # a task holding several workers adds them up before it writes: one node leaves it
            assert reduced == [1] * 3, reduced
    assert len(found[4][0]) == 2 * 4  # ~75 examples per worker, 5 minibatches, K=2: 3 rounds
    for tasks in (3, 2, 1):
        assert found[tasks] == found[4], "--tasks %d changed the result" % tasks


def test_tasks_out_of_range_is_refused(synth, train_cli, tmp_path):
    result = train_cli("-r", "inline", synth.path, "-o", tmp_path / "run", "--workers", 2, "--tasks", 3)
    assert result.code == 2
    assert "--tasks must be between 1 and --workers (2)" in result.err
    assert not os.path.exists(tmp_path / "run")


def test_block_momentum_zero_is_plain_averaging_in_the_driver(synth, train_cli, tmp_path):
    common = ("--workers", 3, "--averaging-frequency", 3, "--epochs", 1, "--lr", 0.05)
    plain, bm = tmp_path / "plain", tmp_path / "bm"
    assert train_cli("-r", "inline", synth.path, "-o", plain, *common, "--outer-optimizer", "average").code == 0
    result = train_cli("-r", "inline", synth.path, "-o", bm, *common, "--outer-optimizer", "block-momentum",
                       "--block-momentum", 0, "--block-lr", 1)
    assert result.code == 0, result.err
    rounds = RunDir(str(plain)).checkpoint_rounds()
    assert rounds == RunDir(str(bm)).checkpoint_rounds() and len(rounds) == 3
    for r in rounds:
        a, b = checkpoint(plain, r)[1], checkpoint(bm, r)[1]
        for name in TRAINED:
            assert a[name].tobytes() == b[name].tobytes()
        assert "G_W" in b and "start_W" in b


def test_default_block_momentum_is_recorded_in_the_config(synth, train_cli, tmp_path):
    result = train_cli("-r", "inline", synth.path, "-o", tmp_path / "run", "--workers", 4, "--epochs", 1,
                       "--averaging-frequency", "epoch", "--outer-optimizer", "block-momentum")
    assert result.code == 0, result.err
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["training"]["block_momentum"] == pytest.approx(0.75)
    assert config["training"]["outer_optimizer"] == "block-momentum"


# -- (4) resume -----------------------------------------------------------------------------------------


RESUME_ARGS = ("--workers", 1, "--averaging-frequency", 1, "--batch-size", 25, "--epochs", 1, "--lr", 0.05)
# 300 examples, batch 25, K=1: 12 rounds


def test_resume_after_sigkill_is_bit_identical(synth, train_cli, tmp_path, all_bytes):
    whole = tmp_path / "whole"
    result = train_cli("-r", "inline", synth.path, "-o", whole, *RESUME_ARGS)
    assert result.code == 0, result.err
    assert RunDir(str(whole)).checkpoint_rounds() == list(range(13))

    killed = tmp_path / "killed"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "mr_tl.train", "-r", "inline", synth.path, "-o", str(killed),
                             *[str(a) for a in RESUME_ARGS]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    marker = killed / "checkpoints" / "round-000002.npz.sha256"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the driver finished before it could be killed"
    assert not (killed / "head.npz").exists()
    done = RunDir(str(killed)).checkpoint_rounds()
    assert 2 <= done[-1] < 12

    result = train_cli("-r", "inline", synth.path, "-o", killed, *RESUME_ARGS, "--resume")
    assert result.code == 0, result.err
    assert re.search(r"^resuming after round (\d+)$", result.out, re.M)
    assert head_bytes(killed) == head_bytes(whole)
    assert checkpoint_files(all_bytes, killed) == checkpoint_files(all_bytes, whole)
    assert without_seconds(metrics(killed)) == without_seconds(metrics(whole))


def test_resume_with_more_epochs_continues_the_run(synth, train_cli, tmp_path, all_bytes):
    args = ("--workers", 2, "--averaging-frequency", "epoch", "--lr", 0.05)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert train_cli("-r", "inline", synth.path, "-o", whole, *args, "--epochs", 4).code == 0
    assert train_cli("-r", "inline", synth.path, "-o", part, *args, "--epochs", 2).code == 0
    result = train_cli("-r", "inline", synth.path, "-o", part, *args, "--epochs", 4, "--resume")
    assert result.code == 0, result.err
    assert "resuming after round 2" in result.out
    assert head_bytes(part) == head_bytes(whole)
    assert checkpoint_files(all_bytes, part) == checkpoint_files(all_bytes, whole)
    assert [m["round"] for m in metrics(part)] == [1, 2, 3, 4]
    assert without_seconds(metrics(part)) == without_seconds(metrics(whole))


def test_stop_after_rounds_then_resume_is_bit_identical(synth, train_cli, tmp_path, all_bytes):
    args = ("--workers", 2, "--averaging-frequency", 3, "--epochs", 1, "--lr", 0.05)  # 5 minibatches: 2 rounds/epoch
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert train_cli("-r", "inline", synth.path, "-o", whole, *args, "--epochs", 2).code == 0
    result = train_cli("-r", "inline", synth.path, "-o", part, *args, "--epochs", 2, "--stop-after-rounds", 3)
    assert result.code == 0, result.err
    assert "stopping after 3 rounds" in result.out
    assert not (part / "head.npz").exists() and RunDir(str(part)).checkpoint_rounds() == [0, 1, 2, 3]
    workers = part / "data" / "workers"
    dealt = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in workers.iterdir()}
    assert "_partition.json" in dealt and any(n.startswith("part-") for n in dealt)
    result = train_cli("-r", "inline", synth.path, "-o", part, *args, "--epochs", 2, "--resume")
    assert result.code == 0, result.err
    # the partition job's worker files were reused as they were (seed, workers and fingerprint agree)
    assert "reusing the worker files in %s" % workers in result.out
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in workers.iterdir()} == dealt
    assert head_bytes(part) == head_bytes(whole)
    assert checkpoint_files(all_bytes, part) == checkpoint_files(all_bytes, whole)


def test_resume_deals_the_worker_files_again_when_their_manifest_is_damaged(synth, train_cli, tmp_path, all_bytes):
    args = ("--workers", 2, "--averaging-frequency", 3, "--lr", 0.05, "--epochs", 2)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert train_cli("-r", "inline", synth.path, "-o", whole, *args).code == 0
    assert train_cli("-r", "inline", synth.path, "-o", part, *args, "--stop-after-rounds", 2).code == 0
    manifest = part / "data" / "workers" / "_partition.json"
    manifest.write_text(manifest.read_text()[:20])   # cut short, as by a crash while it was written
    result = train_cli("-r", "inline", synth.path, "-o", part, *args, "--resume")
    assert result.code == 0, result.err
    assert "reusing the worker files" not in result.out
    assert json.loads(manifest.read_text())["workers"] == 2
    assert head_bytes(part) == head_bytes(whole)
    assert checkpoint_files(all_bytes, part) == checkpoint_files(all_bytes, whole)


def test_resume_with_fewer_epochs_does_not_mislabel_the_head(synth, train_cli, tmp_path, snapshot):
    args = ("--workers", 1, "--averaging-frequency", "epoch", "--lr", 0.05)
    run = tmp_path / "run"
    assert train_cli("-r", "inline", synth.path, "-o", run, *args, "--epochs", 4).code == 0
    before = snapshot(str(run))
    result = train_cli("-r", "inline", synth.path, "-o", run, *args, "--epochs", 2, "--resume")
    if result.code == 2:  # refusing is fine, if nothing changes
        assert "round" in result.err and snapshot(str(run)) == before
    else:
        meta, head = load_npz(str(run / "head.npz"))
        _, claimed = checkpoint(run, meta["round"])
        assert head["W"].tobytes() == claimed["W"].tobytes()
        assert json.load(open(run / "config.json"))["rounds"] == len(metrics(run))


def test_resume_restores_a_metrics_line_lost_in_a_crash(trained_run, synth, train_cli, tmp_path, copy_tree):
    """Killed between writing checkpoint 6 and appending its metrics line: the line comes back."""
    run = copy_tree(trained_run, tmp_path / "run")
    original = metrics(run)
    with open(os.path.join(run, "metrics.jsonl"), "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(m) + "\n" for m in original[:-1]))
    result = train_cli("-r", "inline", synth.path, "-o", run, *TRAINED_RUN_ARGS, "--resume")
    assert result.code == 0, result.err
    assert without_seconds(metrics(run)) == without_seconds(original)


def test_resume_refuses_a_different_learning_rate(trained_run, synth, train_cli, tmp_path, copy_tree, snapshot):
    run = copy_tree(trained_run, tmp_path / "run")
    before = snapshot(run)
    args = list(TRAINED_RUN_ARGS)
    args[args.index("--lr") + 1] = "0.1"
    result = train_cli("-r", "inline", synth.path, "-o", run, *args, "--resume")
    assert result.code == 2
    assert "cannot resume" in result.err and "lr was 0.05, now 0.1" in result.err
    assert result.err.startswith("error: ") and "Traceback" not in result.err
    assert snapshot(run) == before


def test_resume_refuses_different_features(trained_run, synth, train_cli, write_features_fn, tmp_path, copy_tree,
                                           snapshot):
    run = copy_tree(trained_run, tmp_path / "run")
    before = snapshot(run)
    X = synth.X.copy()
    first_train = synth.splits.index("train")
    X[first_train, 0] += np.float32(0.5)
    other = write_features_fn(str(tmp_path / "other"), synth.ids, synth.labels, synth.splits, X, synth.classes)
    result = train_cli("-r", "inline", other, "-o", run, *TRAINED_RUN_ARGS, "--resume")
    assert result.code == 2
    assert "cannot resume: the training features differ" in result.err
    assert snapshot(run) == before


def test_an_existing_run_needs_resume(trained_run, synth, train_cli, tmp_path, copy_tree, snapshot):
    run = copy_tree(trained_run, tmp_path / "run")
    before = snapshot(run)
    result = train_cli("-r", "inline", synth.path, "-o", run, *TRAINED_RUN_ARGS)
    assert result.code == 2 and "already holds a run" in result.err and "--resume" in result.err
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "no-checksum"])
def test_resume_skips_a_damaged_last_checkpoint(damage, trained_run, synth, train_cli, tmp_path, copy_tree, all_bytes):
    run = copy_tree(trained_run, tmp_path / "run")
    last = os.path.join(run, "checkpoints", "round-000006.npz")
    original_files = checkpoint_files(all_bytes, run)
    if damage == "flip-byte":
        with open(last, "r+b") as f:
            f.seek(os.path.getsize(last) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        os.truncate(last, 100)
    else:
        os.unlink(last + ".sha256")
    os.unlink(os.path.join(run, "head.npz"))
    result = train_cli("-r", "inline", synth.path, "-o", run, *TRAINED_RUN_ARGS, "--resume")
    assert result.code == 0, result.err
    assert "warning: skipping checkpoint of round 6" in result.out
    assert ("corrupt" if damage != "no-checksum" else "no checksum") in result.out
    assert "resuming after round 5" in result.out
    assert head_bytes(run) == head_bytes(trained_run)
    assert checkpoint_files(all_bytes, run) == original_files
    assert len(metrics(run)) == 6


# -- (5) accuracy ---------------------------------------------------------------------------------------------


def test_workers_reach_the_accuracy_of_one_worker(synth_accuracy, train_cli, tmp_path):
    """Averaging every 5 minibatches: 2 and 4 workers end within 1 point of one worker (1000 test images)."""
    args = ("--recipe", "reference", "--averaging-frequency", 5, "--epochs", 10, "--batch-size", 64, "--lr", 0.2,
            "--l2", 0.001)
    _, X_test, y_test = synth_accuracy.split("test")
    assert len(y_test) == 1000
    acc = {}
    for workers in (1, 2, 4):
        run = tmp_path / ("w%d" % workers)
        result = train_cli("-r", "inline", synth_accuracy.path, "-o", run, "--workers", workers, *args)
        assert result.code == 0, result.err
        acc[workers] = head_accuracy(run, X_test, y_test)
    assert acc[1] > 0.93, acc  # learnt (5 classes: chance is 0.2)
    for workers in (2, 4):
        assert abs(acc[workers] - acc[1]) <= 0.01, acc


# -- (6) metrics, progress, validation ---------------------------------------------------------------------------


def test_metrics_progress_and_validation(synth, train_cli, tmp_path):
    run = tmp_path / "run"
    # 2 workers x ~150 examples (147, 153), batch 32: 5 minibatches per epoch; K=2 -> rounds of 2, 2, 1
    result = train_cli("-r", "inline", synth.path, "-o", run, "--workers", 2, "--averaging-frequency", 2,
                       "--epochs", 2, "--lr", 0.05, "--validate-every", 4)
    assert result.code == 0, result.err
    lines = metrics(run)
    assert [m["round"] for m in lines] == [1, 2, 3, 4, 5, 6]
    assert [m["epoch"] for m in lines] == [1, 1, 1, 2, 2, 2]
    assert [len(m["losses"]) for m in lines] == [2, 2, 1, 2, 2, 1]
    assert [m["iteration"] for m in lines] == [2, 4, 5, 7, 9, 10]
    assert [m["examples"] for m in lines] == [128, 128, 44] * 2
    for m in lines:
        assert m["loss"] == pytest.approx(np.mean(m["losses"]))
        assert all(np.isfinite(m["losses"]))
        assert isinstance(m["seconds"], float) and m["seconds"] >= 0
    assert lines[-1]["loss"] < lines[0]["losses"][0]  # it learns

    # validation on rounds 4 and 6 (the last), and only there
    assert [m["round"] for m in lines if "val_accuracy" in m] == [4, 6]
    _, val_X, val_y = synth.split("val")
    _, tr_X, tr_y = synth.split("train")
    for m in lines:
        if "val_accuracy" in m:
            _, arrays = checkpoint(run, m["round"])
            logits = val_X @ arrays["W"] + arrays["b"]
            assert m["val_accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == val_y))
            tr_logits = tr_X @ arrays["W"] + arrays["b"]
            assert m["train_accuracy"] == pytest.approx(np.mean(tr_logits.argmax(axis=1) == tr_y))
            z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
            nll = -(z[np.arange(len(val_y)), val_y] - np.log(np.exp(z).sum(axis=1)))
            assert m["val_loss"] == pytest.approx(nll.mean(), rel=1e-5)

    # progress: one line per round, then the end
    progress = [line for line in result.out.splitlines() if line.startswith("round ")]
    assert len(progress) == 6
    for r, (line, m) in enumerate(zip(progress, lines), 1):
        assert line.startswith("round %d/6  epoch %d/2  loss %.4f" % (r, m["epoch"], m["loss"]))
        assert ("val acc" in line) == (r in (4, 6))
        if "val_accuracy" in m:
            assert line.split("  ")[3] == "val acc %.4f" % m["val_accuracy"]
        assert re.search(r"s/round  ETA \d+m\d\ds$", line)
    assert re.search(r"^done in \d+m\d\ds: .*head\.npz \(round 6\)$", result.out, re.M)
    config = json.load(open(run / "config.json"))
    train_ids, _, _ = synth.split("train")
    sizes = np.bincount(workers_of(train_ids, 42, 2), minlength=2).tolist()
    assert config["rounds"] == 6 and config["rounds_per_epoch"] == 3 and config["worker_examples"] == sizes


def test_a_zero_loss_is_printed_as_zero(train_cli, write_features_fn, tmp_path):
    g = np.random.default_rng(0)
    X = np.concatenate([g.normal(size=(40, 2)) + [100, 0], g.normal(size=(40, 2)) - [100, 0]]).astype(np.float32)
    y = np.repeat([0, 1], 40)
    ids = ["%d/%03d.jpg" % (c, i) for i, c in enumerate(y)]
    path = write_features_fn(str(tmp_path / "f"), ids, y, ["train"] * 80, X, ["left", "right"])
    result = train_cli("-r", "inline", path, "-o", tmp_path / "run", "--recipe", "reference", "--workers", 1,
                       "--epochs", 1, "--averaging-frequency", "epoch")
    assert result.code == 0, result.err
    assert metrics(tmp_path / "run")[0]["loss"] == 0.0  # float32 log-softmax of a 100-sigma margin
    assert "loss 0.0000" in result.out and "loss nan" not in result.out


# -- divergence ------------------------------------------------------------------------------------------------------


def scaled_copy(synth, write_features_fn, path, scale):
    return write_features_fn(path, synth.ids, synth.labels, synth.splits, synth.X, synth.classes, scale=scale)


def assert_nothing_trained(run):
    rd = RunDir(str(run))
    assert rd.checkpoint_rounds() == [0]
    rd.load_checkpoint(0)  # still verifies
    assert not os.path.exists(os.path.join(str(run), "head.npz"))
    assert metrics(run) == []


def test_non_finite_parameters_stop_with_a_clear_error(synth, train_cli, write_features_fn, tmp_path):
    """x 1e36 and lr 1e4: the first minibatch's loss is finite (~1e36), the update overflows W to inf."""
    path = scaled_copy(synth, write_features_fn, str(tmp_path / "f"), 1e36)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see test_a_numpy_warning_in_an_inline_task_is_not_a_crash
        result = train_cli("-r", "inline", path, "-o", run, "--workers", 1, "--averaging-frequency", 1,
                           "--lr", 1e4, "--epochs", 1)
    assert result.code == 1, result.err
    assert "training diverged in round 1" in result.err and "checkpoint (round 0) is kept" in result.err
    assert "non-finite W" in result.err
    assert_nothing_trained(run)


def test_a_non_finite_loss_stops_with_a_clear_error(synth, train_cli, write_features_fn, tmp_path):
    path = scaled_copy(synth, write_features_fn, str(tmp_path / "f"), 1e30)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_cli("-r", "inline", path, "-o", run, "--workers", 2, "--epochs", 2)
    assert result.code == 1
    assert "training diverged in round" in result.err
    assert_nothing_trained(run)


def test_a_diverged_run_keeps_its_last_good_checkpoint(synth, write_features_fn, run_module, tmp_path):
    """Whatever the message, a NaN round (x 1e30) must not leave a head or a bad checkpoint behind."""
    path = scaled_copy(synth, write_features_fn, str(tmp_path / "f"), 1e30)
    run = tmp_path / "run"
    result = run_module("mr_tl.train", "-r", "inline", path, "-o", run, "--workers", 2, "--epochs", 2,
                        env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert result.returncode == 1
    assert_nothing_trained(run)


def test_a_numpy_warning_in_an_inline_task_is_not_a_crash(synth, write_features_fn, run_module, tmp_path):
    path = scaled_copy(synth, write_features_fn, str(tmp_path / "f"), 1e36)
    result = run_module("mr_tl.train", "-r", "inline", path, "-o", tmp_path / "run", "--workers", 1,
                        "--averaging-frequency", 1, "--lr", 1e4, "--epochs", 1,
                        env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert result.returncode == 1
    assert "training diverged in round 1" in result.stderr and "Traceback" not in result.stderr


# -- input errors ------------------------------------------------------------------------------------------------------


def test_empty_train_split_is_an_error(synth, train_cli, write_features_fn, tmp_path):
    keep = [i for i, s in enumerate(synth.splits) if s != "train"]
    path = write_features_fn(str(tmp_path / "f"), [synth.ids[i] for i in keep], synth.labels[keep],
                             [synth.splits[i] for i in keep], synth.X[keep], synth.classes)
    result = train_cli("-r", "inline", path, "-o", tmp_path / "run", "--epochs", 1)
    assert result.code == 2
    assert result.err.strip() == "error: the train split is empty"
    assert not os.path.exists(tmp_path / "run")


def test_more_workers_than_examples_is_an_error(train_cli, write_features_fn, tmp_path):
    X = np.eye(3, 4, dtype=np.float32)
    path = write_features_fn(str(tmp_path / "f"), ["a", "b", "c"], np.array([0, 1, 0]), ["train"] * 3, X, ["x", "y"])
    result = train_cli("-r", "inline", path, "-o", tmp_path / "run", "--workers", 4, "--epochs", 1)
    assert result.code == 2
    assert "4 workers but only 3 training examples" in result.err
    assert not os.path.exists(tmp_path / "run")


def test_a_label_beyond_the_labels_file_is_an_error(train_cli, write_features_fn, tmp_path):
    X = np.eye(4, dtype=np.float32)
    path = write_features_fn(str(tmp_path / "f"), ["a", "b", "c", "d"], np.array([0, 1, 2, 3]), ["train"] * 4, X,
                             ["x", "y", "z"])
    result = train_cli("-r", "inline", path, "-o", tmp_path / "run", "--workers", 1, "--epochs", 1)
    assert result.code == 2
    assert "label 3" in result.err and "3 classes" in result.err
    assert not os.path.exists(tmp_path / "run")


def test_inputs_with_different_labels_are_an_error(synth, train_cli, write_features_fn, tmp_path):
    X = np.eye(32, dtype=np.float32)[:2]
    other = write_features_fn(str(tmp_path / "other"), ["o1", "o2"], np.array([0, 1]), ["train"] * 2, X,
                              list(reversed(synth.classes)))
    result = train_cli("-r", "inline", synth.path, other, "-o", tmp_path / "run", "--epochs", 1)
    assert result.code == 2
    assert "the inputs name different classes" in result.err


def test_missing_labels_file_is_an_error(synth, train_cli, tmp_path, copy_tree):
    path = copy_tree(synth.path, tmp_path / "f")
    os.unlink(os.path.join(path, "_labels.json"))
    result = train_cli("-r", "inline", path, "-o", tmp_path / "run", "--epochs", 1)
    assert result.code == 2
    assert "no _labels.json beside" in result.err


def test_bad_options_are_refused(synth, train_cli, tmp_path):
    for bad in (("--averaging-frequency", "0"), ("--averaging-frequency", "often"), ("--lr", "0"),
                ("--momentum", "1"), ("--workers", "0")):
        result = train_cli("-r", "inline", synth.path, "-o", tmp_path / "run", *bad)
        assert result.code == 2, bad
        assert "error:" in result.err
    assert not os.path.exists(tmp_path / "run")


def test_averaging_every_two_epochs(synth, train_cli, tmp_path, all_bytes):
    """``--averaging-frequency 2epochs``: a round is two passes; one worker gives plain SGD's every other epoch."""
    common = ("-r", "inline", synth.path, "--workers", 1, "--epochs", 4, "--lr", 0.05)
    assert train_cli(*common, "-o", tmp_path / "each", "--averaging-frequency", "epoch").code == 0
    result = train_cli(*common, "-o", tmp_path / "two", "--averaging-frequency", "2epochs")
    assert result.code == 0, result.err
    assert "2 rounds (4 epochs)" in result.out
    two = RunDir(str(tmp_path / "two"))
    assert two.checkpoint_rounds() == [0, 1, 2]
    for round_two, round_each in ((1, 2), (2, 4)):
        assert checkpoint(tmp_path / "two", round_two)[1]["W"].tobytes() == \
            checkpoint(tmp_path / "each", round_each)[1]["W"].tobytes()
    assert [m["epoch"] for m in metrics(tmp_path / "two")] == [2, 4]
    assert json.load(open(tmp_path / "two" / "config.json"))["training"]["averaging_frequency"] == "2epochs"
    # several workers: the same in the jobs as in process (the local runner, with validation)
    args = ("--workers", 3, "--epochs", 3, "--averaging-frequency", "2epochs", "--validate-every", 1)
    assert train_cli("-r", "local", synth.path, "-o", tmp_path / "local", *args).code == 0
    assert train_cli("-r", "inline", synth.path, "-o", tmp_path / "inline", *args).code == 0
    assert checkpoint_files(all_bytes, tmp_path / "local") == checkpoint_files(all_bytes, tmp_path / "inline")
    assert [m["epoch"] for m in metrics(tmp_path / "local")] == [2, 3]


def test_a_hidden_layer_trains_the_same_in_jobs_and_in_process_and_exports(synth, train_cli, tmp_path, all_bytes,
                                                                           tiny_vgg16_fc2):
    args = ("--workers", 2, "--epochs", 2, "--hidden", 8, "--lr", 0.05, "--outer-optimizer", "block-momentum",
            "--normalization", "zscore", "--validate-every", 1)
    assert train_cli("-r", "local", synth.path, "-o", tmp_path / "local", *args).code == 0
    assert train_cli("-r", "inline", synth.path, "-o", tmp_path / "inline", *args).code == 0
    assert checkpoint_files(all_bytes, tmp_path / "local") == checkpoint_files(all_bytes, tmp_path / "inline")
    head, meta, normalizer = RunDir(str(tmp_path / "local")).load_classifier()
    assert head.hidden == 8 and meta["training"]["hidden"] == 8
    _, arrays = checkpoint(tmp_path / "local", 2)
    assert {"W1", "b1", "vW1", "vb1", "start_W1", "G_W1"} <= set(arrays)
    _, X_val, y_val = synth.split("val")
    assert [m["val_accuracy"] for m in metrics(tmp_path / "local")][-1] == pytest.approx(
        float(np.mean(head.predict(normalizer.apply(X_val)) == y_val)))
