"""python -m mr_tl.train -r RUNNER FEATURES... -o RUN_DIR: train a softmax head, one MapReduce job per round.

    python -m mr_tl.train -r local features/ -o runs/demo --epochs 20 --workers 2
    python -m mr_tl.train -r hadoop -c mrjob.conf hdfs:///data/features -o runs/caltech \\
        --workers 8 --averaging-frequency 5 --epochs 10 --validate-every 10

The reference recipe (Deeplearning4j ParameterAveragingTrainingMaster) is
the default: seed 42, Xavier init, Nesterovs lr 0.01 momentum 0.8, batch 32
per worker, averaging every 5 minibatches.  ``--averaging-frequency epoch``
averages once per pass over each worker's data (far fewer jobs); with many
workers, ``--outer-optimizer block-momentum`` keeps the accuracy of one
worker (see the README).

What happens:
1. The features (text records or Parquet, local or hdfs://) are read once
   and checked (dimension, finite values, labels, duplicates, non-empty
   splits).  The train split is dealt to ``--workers`` workers (a seeded
   shuffle, dealt round-robin, so worker sizes differ by at most one) and
   written as gzip worker files: gzip files are never split, so each file is
   exactly one map task on Hadoop, Spark and mrjob's local runners alike.
2. Each round runs mr_tl.train_round: every worker runs
   ``--averaging-frequency`` minibatches from the current state, one
   reducer averages parameters and optimizer state (and applies the outer
   optimizer).  Every round re-reads the worker files: the price of
   stateless MapReduce tasks (see bench/train.py for what it costs).
3. After every round: a checkpoint (atomic, checksummed) in
   RUN_DIR/checkpoints, a line in RUN_DIR/metrics.jsonl, a progress line.
   ``--resume`` continues from the last good checkpoint, bit-identically, and
   refuses if the configuration or the features changed.
4. At the end: RUN_DIR/head.npz, config.json, labels.json.

Options this command does not know are passed to mrjob (e.g. ``-c
mrjob.conf``, ``--hadoop-streaming-jar``, ``--num-cores``, ``-D k=v``).
"""

import argparse
import gzip
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from mrjob.step import StepFailedException

from mr_tl import __version__, averaging, storage
from mr_tl.cli import fail
from mr_tl.errors import FeatureError, InputError, RunError, TrainingError
from mr_tl.features import is_parquet, read_parquet, read_sources
from mr_tl.head import SoftmaxHead, log_softmax
from mr_tl.job import split_runner_args
from mr_tl.metrics import confusion_matrix, summarize, top_k_hits
from mr_tl.records import FeatureRecord, decode_arrays, save_npz
from mr_tl.run import RunDir
from mr_tl.seeding import rng

# Options whose change would change the result: --resume refuses if any differ.
TRAINING_KEYS = ("seed", "workers", "averaging_frequency", "batch_size", "lr", "momentum", "l2",
                 "outer_optimizer", "block_momentum", "block_lr")




# -- features -------------------------------------------------------------------


def load_features(fs, inputs, labels_path=None):
    """All feature records of ``inputs`` (text or Parquet) and the class names."""
    classes = None
    if labels_path:
        text = storage.read_text(fs, labels_path)
        if text is None:
            raise FeatureError("labels file %s does not exist" % labels_path)
        classes = json.loads(text)["classes"]
    if len(inputs) == 1 and is_parquet(inputs[0]):
        source = inputs[0]
        if storage.is_uri(source) and not source.startswith("file://"):
            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "features.parquet")
                with open(local, "wb") as f:
                    for chunk in fs.cat(source):
                        f.write(chunk)
                features = read_parquet(local)
        else:
            features = read_parquet(source)
        if classes is not None:
            features.classes = classes
    else:
        if classes is None:
            classes = labels_of_inputs(fs, inputs)
        files = storage.list_data_files(fs, inputs, storage.FEATURES_PATTERN)
        with storage.local_copies(fs, files) as copies:
            features = read_sources([(path, storage.iter_lines(fs, [copy])) for path, copy in zip(files, copies)],
                                    classes=classes)
    if not features.classes:
        raise FeatureError("the features name no classes; give --labels")
    if len(features) == 0:
        raise FeatureError("%s holds no feature vectors" % ", ".join(inputs))
    too_big = int(features.labels.max()) if len(features) else -1
    if too_big >= len(features.classes):
        raise FeatureError("label %d found but the labels file lists %d classes" % (too_big, len(features.classes)))
    return features


def labels_of_inputs(fs, inputs):
    """The class names beside the inputs; all inputs must agree."""
    found = []
    for path in inputs:
        text = storage.find_labels([path], fs)
        if text is None:
            raise FeatureError("no _labels.json beside %s (featurize writes one); give --labels" % path)
        found.append((path, json.loads(text)["classes"]))
    for path, classes in found[1:]:
        if classes != found[0][1]:
            raise FeatureError("the inputs name different classes: %s has %d (%s, ...), %s has %d (%s, ...); "
                               "were they packed from different image folders?"
                               % (found[0][0], len(found[0][1]), ", ".join(found[0][1][:3]),
                                  path, len(classes), ", ".join(classes[:3])))
    return found[0][1]


def fingerprint(features):
    """sha256 of the training examples (ids, labels, vectors) in id order."""
    h = hashlib.sha256()
    h.update(json.dumps(features.classes).encode("utf-8"))
    for i in sorted(range(len(features)), key=features.ids.__getitem__):
        h.update(features.ids[i].encode("utf-8") + b"\0%d\0" % features.labels[i])
        h.update(np.ascontiguousarray(features.X[i], dtype="<f4").tobytes())
    return h.hexdigest()


def assign_workers(ids, n_workers, seed):
    """Worker of each example: a seeded shuffle of the ids, dealt round-robin."""
    order = np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
    shuffled = order[rng(seed, "partition").permutation(len(ids))]
    worker = np.empty(len(ids), dtype=np.int64)
    worker[shuffled] = np.arange(len(ids)) % n_workers
    return worker


def write_worker_files(train, n_workers, n_tasks, seed, out_dir):
    """Gzip files ``task-NNNNN.gz`` (lines ``WORKER <TAB> feature record``); returns paths and sizes."""
    os.makedirs(out_dir, exist_ok=True)
    worker_of = assign_workers(train.ids, n_workers, seed)
    sizes = np.bincount(worker_of, minlength=n_workers)
    paths = []
    for task in range(n_tasks):
        first, last = task * n_workers // n_tasks, (task + 1) * n_workers // n_tasks
        path = os.path.join(out_dir, "task-%05d.gz" % task)
        rows = sorted((int(worker_of[i]), train.ids[i], i) for i in range(len(train))
                      if first <= worker_of[i] < last)
        with open(path, "wb") as raw:
            # mtime=0 and no file name: the same examples give the same bytes
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as z:
                for worker, image_id, i in rows:
                    record = FeatureRecord(image_id, int(train.labels[i]), "train", train.X[i])
                    z.write(("%d\t%s\n" % (worker, record.to_line())).encode("utf-8"))
        paths.append(path)
    return paths, sizes


# -- schedule -------------------------------------------------------------------


def rounds_per_epoch(worker_sizes, batch_size, averaging_frequency):
    """Rounds needed for the largest worker to see all its examples once."""
    batches = max(-(-int(n) // batch_size) for n in worker_sizes)
    return 1 if not averaging_frequency else max(1, -(-batches // averaging_frequency))


def parse_frequency(text):
    if text == "epoch":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of minibatches or 'epoch', found %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("averaging frequency must be at least 1 (or 'epoch')")
    return value


# -- scoring in the driver ------------------------------------------------------


def score(head, features):
    """Accuracy, macro P/R/F1, top-5 and mean loss of ``head`` on ``features``."""
    logits = head.logits(features.X)
    log_p = log_softmax(logits)
    y = features.labels
    loss_sum = -float(np.sum(log_p[np.arange(len(y)), y], dtype=np.float64))
    return summarize(confusion_matrix(y, logits.argmax(axis=1), head.n_classes),
                     top_k_hits(logits, y, 5), loss_sum)


# -- the driver -----------------------------------------------------------------


def initial_state(n_features, n_classes, config):
    head = SoftmaxHead.xavier(n_features, n_classes, config["seed"])
    arrays = {"W": head.W, "b": head.b, "vW": np.zeros_like(head.W), "vb": np.zeros_like(head.b)}
    outer = averaging.OuterOptimizer(config["outer_optimizer"], config["block_momentum"], config["block_lr"],
                                     config["workers"])
    arrays.update(outer.initial_state(arrays))
    return arrays


def job_args(config, runner_args, state_path, epoch, first_batch, inputs, tasks):
    # the driver wrote the worker files itself: no existence check per file (on Hadoop
    # each would be a `hadoop fs -ls`, a JVM start, per worker and round)
    args = list(runner_args) + ["--no-check-input-paths"] + [
        "--state", state_path, "--workers", str(config["workers"]), "--tasks", str(tasks),
        "--seed", str(config["seed"]),
        "--epoch", str(epoch), "--first-batch", str(first_batch),
        "--averaging-frequency", str(config["averaging_frequency"]), "--batch-size", str(config["batch_size"]),
        "--lr", repr(config["lr"]), "--momentum", repr(config["momentum"]), "--l2", repr(config["l2"]),
        "--outer-optimizer", config["outer_optimizer"], "--block-momentum", repr(config["block_momentum"]),
        "--block-lr", repr(config["block_lr"]),
    ]
    return args + list(inputs)


def _runner_hadoop_bin(runner_args):
    """The hadoop command of the rounds' runner (``-c mrjob.conf``, ``--hadoop-bin``), for the driver's own
    hdfs:// reads and writes: the same Hadoop as the jobs."""
    from mr_tl.job import runner_hadoop_bin
    from mr_tl.train_round import MRTrainRound

    return runner_hadoop_bin(MRTrainRound(args=list(runner_args)))


def run_round(runner_args, config, state_path, epoch, first_batch, inputs, tasks, will_retry=False):
    """Run one train_round job; returns ``(meta, arrays)`` of the next state.

    ``will_retry``: the driver runs the round again if this job fails, so a failed job's temp dirs
    (local, and on HDFS) are removed; mrjob keeps them by default (cleanup_on_failure), which is
    right for the last failure only.
    """
    from mr_tl.train_round import MRTrainRound

    job = MRTrainRound(args=job_args(config, runner_args, state_path, epoch, first_batch, inputs, tasks))
    with job.make_runner() as runner:
        try:
            runner.run()
        except StepFailedException:
            if will_retry:
                runner.cleanup(["TMP"])
            raise
        lines = list(storage.cat_lines(runner))
    if len(lines) != 1:
        raise TrainingError("the round's reducer wrote %d lines, expected 1" % len(lines))
    return decode_arrays(lines[0])


def _fmt_seconds(s):
    s = int(s)
    return "%dh%02dm" % (s // 3600, s % 3600 // 60) if s >= 3600 else "%dm%02ds" % (s // 60, s % 60)


def mean_losses(losses_by_worker):
    """Per-minibatch loss averaged over the workers that ran that minibatch (NaN if one diverged)."""
    lists = [[float("nan") if x is None else x for x in l] for _, l in sorted(losses_by_worker.items())]
    steps = max((len(l) for l in lists), default=0)
    return [float(np.mean([l[k] for l in lists if k < len(l)])) for k in range(steps)]


def train(args, runner_args, out=print):
    run = RunDir(args.output)
    fs = storage.filesystem(args.hadoop_bin or _runner_hadoop_bin(runner_args))
    features = load_features(fs, args.features, args.labels)
    train_set = features.select("train")
    val_set = features.select("val")
    if len(train_set) == 0:
        raise FeatureError("the train split is empty")
    if args.validate_every and len(val_set) == 0:
        raise FeatureError("--validate-every needs a val split, but it is empty")
    if args.early_stopping and not args.validate_every:
        raise FeatureError("--early-stopping needs --validate-every")
    if args.workers > len(train_set):
        raise FeatureError("%d workers but only %d training examples" % (args.workers, len(train_set)))
    classes = features.classes
    dim = features.dim

    config = {k: getattr(args, k) for k in TRAINING_KEYS}
    if config["block_momentum"] is None:
        config["block_momentum"] = (averaging.default_block_momentum(args.workers)
                                    if args.outer_optimizer == "block-momentum" else 0.0)
    averaging.OuterOptimizer(config["outer_optimizer"], config["block_momentum"], config["block_lr"], args.workers)
    data_fp = fingerprint(train_set)
    tasks = args.tasks or args.workers
    if not 1 <= tasks <= args.workers:
        raise FeatureError("--tasks must be between 1 and --workers (%d)" % args.workers)

    # -- resume or start ---------------------------------------------------------
    start_round, arrays = 0, None
    if os.path.exists(run.file("config.json")):
        previous = run.read_json("config.json")
        if not args.resume:
            raise RunError("%s already holds a run (use --resume to continue it, or another -o)" % args.output)
        changed = {k: (previous["training"].get(k), config[k]) for k in TRAINING_KEYS
                   if previous["training"].get(k) != config[k]}
        if changed:
            raise RunError("cannot resume: the configuration differs from the run's: %s" % ", ".join(
                "%s was %r, now %r" % (k, a, b) for k, (a, b) in sorted(changed.items())))
        if previous["features"]["fingerprint"] != data_fp:
            raise RunError("cannot resume: the training features differ from the run's (%d examples, "
                           "fingerprint %s...; now %d, %s...)" % (previous["features"]["train_examples"],
                                                                   previous["features"]["fingerprint"][:12],
                                                                   len(train_set), data_fp[:12]))
        found = run.latest_good_checkpoint(warn=out)
        if found is not None:
            start_round, meta, arrays = found
            out("resuming after round %d" % start_round)
    elif args.resume:
        out("nothing to resume in %s; starting a new run" % args.output)

    sizes = np.bincount(assign_workers(train_set.ids, args.workers, args.seed), minlength=args.workers)
    per_epoch = rounds_per_epoch(sizes, args.batch_size, args.averaging_frequency)
    total_rounds = per_epoch * args.epochs
    if start_round > total_rounds:
        raise RunError("cannot resume with --epochs %d (%d rounds): the run is already at round %d; "
                       "its head is the checkpoint of that round" % (args.epochs, total_rounds, start_round))

    # nothing is written before this point: every check above leaves RUN_DIR as it was
    os.makedirs(args.output, exist_ok=True)
    data_dir = args.work_dir or os.path.join(args.output, "data")
    local_data = data_dir if not storage.is_uri(data_dir) else tempfile.mkdtemp(prefix="mr_tl-workers-")
    paths, _ = write_worker_files(train_set, args.workers, tasks, args.seed, local_data)
    if storage.is_uri(data_dir):
        paths = storage.put_files(fs, paths, data_dir)
        shutil.rmtree(local_data)

    run_config = {
        "training": config,
        "epochs": args.epochs, "tasks": tasks, "rounds_per_epoch": per_epoch, "rounds": total_rounds,
        "validate_every": args.validate_every, "early_stopping": args.early_stopping,
        "runner": args.runner, "mr_tl_version": __version__,
        "features": {"inputs": args.features, "fingerprint": data_fp, "dim": dim, "classes": len(classes),
                     "train_examples": len(train_set), "val_examples": len(val_set),
                     "test_examples": len(features) - len(train_set) - len(val_set)},
        "worker_examples": [int(n) for n in sizes],
    }
    run.write_json("config.json", run_config)
    run.write_json("labels.json", {"format": "mr_tl.labels/1", "classes": classes})

    if arrays is None:
        arrays = initial_state(dim, len(classes), config)
        run.write_checkpoint(0, {"round": 0, "epoch": 0, "iteration": 0}, arrays)
        run.rewrite_metrics([])
    else:
        # drop metric lines past the checkpoint we resume from (their rounds will be redone);
        # restore its own line from the checkpoint if the driver died before appending it
        kept = [m for m in run.read_metrics() if m["round"] <= start_round]
        if start_round > 0 and (not kept or kept[-1]["round"] != start_round) and "metrics" in meta:
            kept.append(meta["metrics"])
        run.rewrite_metrics(kept)
    iteration = next((m["iteration"] for m in reversed(run.read_metrics())), 0)

    best = {"accuracy": -1.0, "round": start_round, "waited": 0}
    for m in run.read_metrics():
        if m.get("val_accuracy") is not None and m["val_accuracy"] > best["accuracy"]:
            best = {"accuracy": m["val_accuracy"], "round": m["round"], "waited": 0}
        elif m.get("val_accuracy") is not None:
            best["waited"] += 1

    out("training %d -> %d classes: %d examples on %d workers (%s per round), %d rounds (%d epochs x %d), runner %s"
        % (dim, len(classes), len(train_set), args.workers,
           "one pass" if not args.averaging_frequency else "%d minibatches of %d" % (args.averaging_frequency,
                                                                                      args.batch_size),
           total_rounds, args.epochs, per_epoch, args.runner))
    state_dir = tempfile.mkdtemp(prefix="mr_tl-state-")
    started = time.time()
    durations = []
    try:
        for r in range(start_round, total_rounds):
            epoch, j = divmod(r, per_epoch)
            state_path = os.path.join(state_dir, "state-%06d.npz" % r)
            save_npz(state_path, {"round": r}, arrays)
            t0 = time.time()
            for attempt in range(1, args.round_retries + 2):
                try:
                    meta, new_arrays = run_round(runner_args, config, state_path, epoch,
                                                 j * (args.averaging_frequency or 0), paths, tasks,
                                                 will_retry=attempt <= args.round_retries)
                    break
                except StepFailedException as e:
                    # A round is a pure function of (state, data, round): running it
                    # again after a lost task gives the same bits.
                    if attempt > args.round_retries:
                        raise TrainingError("round %d failed %d times (%s); the last good checkpoint (round %d) "
                                            "is kept; fix the cause and continue with --resume"
                                            % (r + 1, attempt, e, r)) from None
                    out("round %d failed (%s); running it again (attempt %d of %d)"
                        % (r + 1, e, attempt + 1, args.round_retries + 1))
            os.unlink(state_path)
            losses = mean_losses({int(w): l for w, l in meta["losses"].items()})
            bad = [name for name, a in new_arrays.items() if not np.all(np.isfinite(a))]
            if bad or not all(math.isfinite(x) for x in losses):
                raise TrainingError("training diverged in round %d (loss %s, non-finite %s); the last good "
                                    "checkpoint (round %d) is kept; try a lower --lr"
                                    % (r + 1, losses[-1] if losses else "?", ", ".join(bad) or "losses", r))
            arrays = new_arrays
            iteration += len(losses)
            seconds = time.time() - t0
            durations.append(seconds)
            record = {"round": r + 1, "epoch": epoch + 1, "iteration": iteration, "losses": losses,
                      "loss": float(np.mean(losses)) if losses else None, "examples": meta["examples"],
                      "seconds": round(seconds, 3)}
            head = SoftmaxHead(arrays["W"], arrays["b"])
            line = "round %d/%d  epoch %d/%d  loss %.4f" % (r + 1, total_rounds, epoch + 1, args.epochs,
                                                           float("nan") if record["loss"] is None
                                                           else record["loss"])
            stop = False
            if args.validate_every and ((r + 1) % args.validate_every == 0 or r + 1 == total_rounds):
                val = score(head, val_set)
                tr = score(head, train_set)
                record.update({"val_accuracy": val["accuracy"], "val_loss": val["loss"],
                               "train_accuracy": tr["accuracy"], "train_loss": tr["loss"]})
                line += "  val acc %.4f" % val["accuracy"]
                if val["accuracy"] > best["accuracy"]:
                    best = {"accuracy": val["accuracy"], "round": r + 1, "waited": 0}
                else:
                    best["waited"] += 1
                    stop = bool(args.early_stopping) and best["waited"] >= args.early_stopping
            # the checkpoint holds only what is deterministic (no timings): same run, same bytes
            run.write_checkpoint(r + 1, {"round": r + 1, "epoch": epoch + 1, "iteration": iteration,
                                         "metrics": {k: v for k, v in record.items() if k != "seconds"}}, arrays)
            run.append_metrics(record)
            recent = durations[-10:]
            eta = (total_rounds - r - 1) * sum(recent) / len(recent)
            out("%s  %.1f s/round  ETA %s" % (line, seconds, _fmt_seconds(eta)))
            if args.stop_after_rounds and r + 1 - start_round >= args.stop_after_rounds and r + 1 < total_rounds:
                out("stopping after %d rounds as asked; continue with --resume" % args.stop_after_rounds)
                return run
            if stop:
                out("early stopping: no better validation accuracy for %d validations; best was round %d (%.4f)"
                    % (args.early_stopping, best["round"], best["accuracy"]))
                break
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)

    final_round = total_rounds
    if args.early_stopping and best["round"] > 0:
        final_round = best["round"]
        _, arrays = run.load_checkpoint(final_round)
    head_meta = {"classes": classes, "n_features": dim, "round": final_round, "features": run_config["features"],
                 "training": config}
    run.write_head(arrays["W"], arrays["b"], head_meta)
    out("done in %s: %s/head.npz (round %d)" % (_fmt_seconds(time.time() - started), args.output, final_round))
    return run


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.train", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features", nargs="+", help="featurize output folders/files, or one .parquet")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory to create or resume")
    p.add_argument("-r", "--runner", default="local", choices=("inline", "local", "hadoop", "spark", "emr", "dataproc"),
                   help="mrjob runner for the rounds (default local)")
    p.add_argument("--labels", help="labels.json (default: _labels.json beside the features)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training data (default 10)")
    p.add_argument("--workers", type=int, default=2, help="workers, i.e. parallel SGD replicas (default 2)")
    p.add_argument("--tasks", type=int, default=0,
                   help="map tasks to spread the workers over (default: one per worker); does not change results")
    p.add_argument("--averaging-frequency", type=parse_frequency, default=5, metavar="K|epoch",
                   help="minibatches per worker between averagings (default 5, as the reference); "
                        "'epoch' = once per pass")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size per worker (default 32)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.8, help="Nesterov momentum (default 0.8)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 regularization (default 0)")
    p.add_argument("--seed", type=int, default=42, help="seed of init, partition and shuffles (default 42)")
    p.add_argument("--outer-optimizer", choices=("average", "block-momentum"), default="average",
                   help="what the reducer does with the workers' mean (default average)")
    p.add_argument("--block-momentum", type=float, default=None,
                   help="block momentum eta (default 1 - 1/workers)")
    p.add_argument("--block-lr", type=float, default=1.0, help="block learning rate zeta (default 1)")
    p.add_argument("--validate-every", type=int, default=0, metavar="N",
                   help="score the val split every N rounds (and the last)")
    p.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                   help="stop after PATIENCE validations without a better val accuracy; keep the best head")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last good checkpoint")
    p.add_argument("--stop-after-rounds", type=int, default=0, metavar="N",
                   help="stop after N rounds of this invocation, without writing the head (continue with --resume)")
    p.add_argument("--round-retries", type=int, default=2, metavar="N",
                   help="run a failed round job again up to N times (default 2); rounds are deterministic, "
                        "so a retried round gives the same result")
    p.add_argument("--work-dir", help="where the worker files go (default RUN_DIR/data; e.g. hdfs:///tmp/run1)")
    p.add_argument("--hadoop-bin", help="hadoop command for hdfs:// paths in the driver")
    p.add_argument("-v", "--verbose", action="store_true", help="show mrjob's log")
    return p


def main(argv=None):
    from mr_tl.train_round import MRTrainRound

    parser = build_parser()
    own, runner_args = split_runner_args(sys.argv[1:] if argv is None else list(argv), parser, MRTrainRound)
    args = parser.parse_args(own)
    if args.epochs < 1 or args.workers < 1 or args.batch_size < 1 or args.lr <= 0 or not 0 <= args.momentum < 1:
        parser.error("need --epochs, --workers, --batch-size >= 1, --lr > 0 and 0 <= --momentum < 1")
    runner_args = ["-r", args.runner] + runner_args
    if args.hadoop_bin:
        runner_args += ["--hadoop-bin", args.hadoop_bin]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        logging.getLogger("mrjob").setLevel(logging.ERROR)
    try:
        train(args, runner_args, out=lambda m: print(m, flush=True))
    except (FeatureError, RunError, InputError, TrainingError) as e:
        fail(str(e), code=1 if isinstance(e, TrainingError) else 2)


if __name__ == "__main__":
    main(sys.argv[1:])
