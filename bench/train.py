"""Training at I/O speed: what MapReduce rounds cost, and what averaging does to accuracy.

    python bench/train.py            # Caltech-scale: 30,607 x 4096 features, 257 classes
    python bench/train.py --quick    # 4,000 x 4096, 40 classes (a few minutes)

Measures, in one run on this machine:
  * feature parsing speed (MB/s of featurize text records into arrays,
    mr_tl.feature_set.read_folder);
  * per-round fixed overhead of the local runner (a round over a tiny data set);
  * one epoch through the local runner (``python -m mr_tl.train -r local
    --averaging-frequency epoch``, 1 worker) vs one numpy process reading the
    same features folder and running the same SGD, both with 1 BLAS thread;
    and what the command spends before its first round (the scan and
    partition jobs, timed from mrjob's log);
  * the I/O trade-off: the bytes of the worker files every round re-reads,
    rounds per epoch for averaging frequency 5, 20 and epoch, and the
    measured time of one K=5 round;
  * test accuracy after each epoch for averaging frequency {5, 20, epoch} x
    workers {1, 2, 4} (plain averaging): trained by the real loop
    (``Trainer(InProcessRunner(features), ...)``, the MapReduce rounds'
    arithmetic bit for bit) and read from each epoch's checkpoint.
Ends with one JSON line of the figures.

The features are generated, not real (bench/synthetic.py): a rough stand-in
for fc2 activations, written as a complete features folder (mr_tl.feature_store).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from common import emit_json, feature_set, machine_info, train_in_process  # noqa: E402
from synthetic import write_feature_folder  # noqa: E402

from mr_tl.feature_set import read_folder  # noqa: E402
from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order, run_minibatches  # noqa: E402
from mr_tl.training.hyperparameters import Hyperparameters  # noqa: E402
from mr_tl.training.partition import rounds_per_epoch, workers_of  # noqa: E402

PY = sys.executable


def parse_speed(folder):
    files = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.startswith("part-")]
    size = sum(os.path.getsize(p) for p in files)
    t0 = time.perf_counter()
    features = read_folder(folder)
    seconds = time.perf_counter() - t0
    return features, size, size / seconds / 1e6, seconds


def reference_epoch(folder, batch_size=32, seed=42):
    """One process: read the folder, one epoch of SGD over the train split (1 worker). Prints JSON."""
    t0 = time.perf_counter()
    features = read_folder(folder, splits=("train",))
    t_read = time.perf_counter() - t0
    order_by_id = sorted(range(len(features)), key=features.ids.__getitem__)  # a worker's rows are in id order
    X, y = features.X[order_by_id], features.labels[order_by_id]
    head = SoftmaxHead.xavier(X.shape[1], len(features.classes), seed)
    opt = Nesterovs()
    state = opt.init_state(head)
    run_minibatches(head, state, opt, X, y, epoch_order(len(y), seed, 0, 0), 0, -(-len(y) // batch_size), batch_size)
    print(json.dumps({"read_s": t_read, "total_s": time.perf_counter() - t0}))


def threads_env(threads):
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MR_TL_THREADS"):
        env[name] = str(threads)
    return env


# mrjob's log (-v): one "Creating temp directory .../<job>.<user>.<time>" line per job
JOB_START = re.compile(r"Creating temp directory \S*/(scan|partition|train_round)\.")


def run_train(features_dir, run_dir, workers, frequency, epochs=1, extra=()):
    """``python -m mr_tl.train -r local``; returns ``(total s, [round s], {phase: s})``.

    Phases come from the time each job's temp directory appears in mrjob's log: ``scan``
    and ``partition`` (the one-off jobs), ``start`` (until the scan job starts: imports, reading
    the folder's side files).
    """
    cmd = [PY, "-m", "mr_tl.train", "-r", "local", features_dir, "-o", run_dir, "--workers", str(workers),
           "--averaging-frequency", str(frequency), "--epochs", str(epochs), "-v"] + list(extra)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=threads_env(1))
    starts, tail = {}, []
    for line in proc.stderr:
        m = JOB_START.search(line)
        if m and m.group(1) not in starts:
            starts[m.group(1)] = time.perf_counter() - t0
        tail = (tail + [line])[-40:]
    if proc.wait() != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), "".join(tail)))
    total = time.perf_counter() - t0
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rounds = [json.loads(line) for line in f]
    phases = {}
    if "scan" in starts and "partition" in starts and "train_round" in starts:
        phases = {"start": starts["scan"], "scan": starts["partition"] - starts["scan"],
                  "partition": starts["train_round"] - starts["partition"]}
    return total, [r["seconds"] for r in rounds], phases


def worker_file_bytes(run_dir):
    folder = os.path.join(run_dir, "data", "workers")
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder) if n.startswith("part-"))


def accuracy_sweep(features, epochs, frequencies=(5, 20, 0), workers_list=(1, 2, 4)):
    test = features.select("test")
    out = {}
    for workers in workers_list:
        for k in frequencies:
            hyper = Hyperparameters(workers=workers, averaging_frequency=k)
            r = train_in_process(features, hyper, epochs, score={"test": (test.X, test.labels)})
            name = "K=%s,W=%d" % (k or "epoch", workers)
            out[name] = {"rounds_per_epoch": r["rounds_per_epoch"], "test_accuracy_by_epoch": r["accuracy"]["test"],
                         "seconds": r["seconds"]}
            print("  %-14s rounds/epoch %4d  test accuracy by epoch %s  (%.0f s)"
                  % (name, r["rounds_per_epoch"], r["accuracy"]["test"], r["seconds"]), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4,000 examples, 40 classes, 3 epochs")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the accuracy sweep (default 5, quick 3)")
    p.add_argument("--reference-epoch", metavar="FOLDER", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference_epoch:
        return reference_epoch(args.reference_epoch)
    n, dim, classes = (4000, 4096, 40) if args.quick else (30607, 4096, 257)
    epochs = args.epochs or (3 if args.quick else 5)
    figures = {"benchmark": "train", "quick": args.quick, "examples": n, "dim": dim, "classes": classes,
               "machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="mr_tl-bench-train-") as tmp:
        feat_dir = os.path.join(tmp, "features")
        t0 = time.perf_counter()
        written = write_feature_folder(feat_dir, n, dim, classes, parts=2)
        print("generated %d x %d features, %d classes: a features folder of %.0f MB in %.1f s"
              % (n, dim, classes, written["bytes"] / 1e6, time.perf_counter() - t0), flush=True)

        features, size, mb_s, parse_s = parse_speed(feat_dir)
        figures["parse_MB_per_s"] = round(mb_s, 1)
        print("feature parsing: %.0f MB/s (%.1f s for %.0f MB)" % (mb_s, parse_s, size / 1e6), flush=True)

        # per-round fixed overhead: a local-runner round over a tiny data set
        tiny_dir = os.path.join(tmp, "tiny")
        write_feature_folder(tiny_dir, 200, 64, 4, parts=2)
        _, seconds, _ = run_train(tiny_dir, os.path.join(tmp, "run-tiny"), 2, 5, epochs=4)
        overhead = float(np.median(seconds))
        figures["round_overhead_s"] = round(overhead, 3)
        print("per-round fixed overhead, local runner (2 tasks, tiny data): median %.2f s over %d rounds"
              % (overhead, len(seconds)), flush=True)

        # one epoch: local runner vs one numpy process, same SGD, 1 BLAS thread each
        ref = json.loads(subprocess.run([PY, os.path.abspath(__file__), "--reference-epoch", feat_dir], check=True,
                                        capture_output=True, text=True, env=threads_env(1)).stdout)
        total, seconds, phases = run_train(feat_dir, os.path.join(tmp, "run-epoch"), 1, "epoch")
        figures.update({"numpy_epoch_s": round(ref["total_s"], 2), "numpy_read_s": round(ref["read_s"], 2),
                        "local_epoch_round_s": round(seconds[0], 2), "local_epoch_command_s": round(total, 2),
                        "epoch_ratio_local_vs_numpy": round(seconds[0] / ref["total_s"], 2),
                        "local_phases_s": {k: round(v, 2) for k, v in phases.items()}})
        print("one epoch, 1 worker: numpy process %.1f s (%.1f s of it reading); local runner round %.1f s "
              "(ratio %.2f); whole train command %.1f s (start %.1f s, scan job %.1f s, partition job %.1f s, "
              "then the round, checkpoint, head)"
              % (ref["total_s"], ref["read_s"], seconds[0], seconds[0] / ref["total_s"], total,
                 phases.get("start", float("nan")), phases.get("scan", float("nan")),
                 phases.get("partition", float("nan"))), flush=True)

        # the I/O trade-off of frequent averaging: every round re-reads its tasks' worker files
        run_k5 = os.path.join(tmp, "run-k5")
        _, k5, _ = run_train(feat_dir, run_k5, 2, 5, epochs=1, extra=["--stop-after-rounds", "3"])
        data_bytes = worker_file_bytes(run_k5)
        train = features.select("train")
        sizes = np.bincount(workers_of(train.ids, 42, 2), minlength=2)
        figures["worker_files_MB_W2"] = round(data_bytes / 1e6, 1)
        for k in (5, 20, 0):
            r = rounds_per_epoch(sizes, 32, k)
            figures["epoch_rounds_K%s_W2" % (k or "epoch")] = r
            figures["epoch_GB_read_K%s_W2" % (k or "epoch")] = round(r * data_bytes / 1e9, 2)
            print("K=%-5s 2 workers: %4d rounds per epoch, each re-reads %.0f MB of worker files: %.1f GB per epoch"
                  % (k or "epoch", r, data_bytes / 1e6, r * data_bytes / 1e9), flush=True)
        if k5:  # the first round also pays for the page cache
            figures["local_round_K5_W2_s"] = round(float(np.median(k5)), 2)
            print("measured: a K=5 round with 2 workers takes %.2f s (median of %d) on the local runner"
                  % (np.median(k5), len(k5)), flush=True)

        print("test accuracy by epoch (the real loop, in-process runner: the MapReduce arithmetic):", flush=True)
        figures["accuracy"] = accuracy_sweep(feature_set(features.ids, features.labels, features.splits, features.X,
                                                         features.classes), epochs)
    emit_json(figures)


if __name__ == "__main__":
    main()
