"""Training at I/O speed: what MapReduce rounds cost, and what averaging does to accuracy.

    python bench/train.py            # Caltech-scale: 30,607 x 4096 features, 257 classes
    python bench/train.py --quick    # 4,000 x 4096, 40 classes (a few minutes)

Measures, in one run on this machine:
  * feature parsing speed (MB/s of featurize text records into arrays);
  * per-round fixed overhead of the local runner (a round over a tiny data set);
  * one epoch through the local runner (``--averaging-frequency epoch``) vs one
    numpy process reading the same file and running the same SGD, both with
    the same BLAS threads;
  * the I/O trade-off: bytes the rounds of one epoch re-read for averaging
    frequency 5, 20 and epoch, and the measured time of one K=5 round;
  * test accuracy after each epoch for averaging frequency {5, 20, epoch} x
    workers {1, 2, 4}, computed with mr_tl.rounds.simulate_round (the same
    arithmetic as the MapReduce rounds, bit for bit; tests/train checks that).
Ends with one JSON line of the figures.

The features are generated, not real (bench/synthetic.py): a rough stand-in
for fc2 activations.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from synthetic import synthetic_features  # noqa: E402

from mr_tl.features import read_lines  # noqa: E402
from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order, run_minibatches  # noqa: E402
from mr_tl.records import FeatureRecord  # noqa: E402
from mr_tl.rounds import RoundParams, simulate_round, split_by_worker  # noqa: E402
from mr_tl.train import assign_workers, initial_state, rounds_per_epoch  # noqa: E402

PY = sys.executable


def make_features(out_dir, n, dim, classes, seed=0):
    """Write synthetic features (bench/synthetic.py) as featurize records + _labels.json; returns the file."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "part-00000")
    with open(path, "w", encoding="utf-8") as f:
        for ids, labels, splits, X in synthetic_features(n, dim, classes, seed):
            f.write("".join(FeatureRecord(i, int(label), s, row).to_line() + "\n"
                            for i, label, s, row in zip(ids, labels, splits, X)))
    with open(os.path.join(out_dir, "_labels.json"), "w") as f:
        json.dump({"format": "mr_tl.labels/1", "classes": ["c%03d" % c for c in range(classes)]}, f)
    return path


def parse_speed(path):
    size = os.path.getsize(path)
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        features = read_lines(f)
    seconds = time.perf_counter() - t0
    return features, size / seconds / 1e6, seconds


def reference_epoch(path, batch_size=32, seed=42):
    """One process: read the file, one epoch of SGD over the train split (1 worker). Prints JSON."""
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        features = read_lines(f, splits=("train",))
    t_read = time.perf_counter() - t0
    order_by_id = sorted(range(len(features)), key=features.ids.__getitem__)
    X, y = features.X[order_by_id], features.labels[order_by_id]
    head = SoftmaxHead.xavier(X.shape[1], int(y.max()) + 1, seed)
    opt = Nesterovs()
    state = opt.init_state(head)
    run_minibatches(head, state, opt, X, y, epoch_order(len(y), seed, 0, 0), 0, -(-len(y) // batch_size), batch_size)
    print(json.dumps({"read_s": t_read, "total_s": time.perf_counter() - t0}))


def threads_env(threads):
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MR_TL_THREADS"):
        env[name] = str(threads)
    return env


def run_train(features_dir, run_dir, workers, frequency, epochs=1, extra=()):
    cmd = [PY, "-m", "mr_tl.train", "-r", "local", features_dir, "-o", run_dir, "--workers", str(workers),
           "--averaging-frequency", str(frequency), "--epochs", str(epochs)] + list(extra)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=threads_env(1))
    total = time.perf_counter() - t0
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rounds = [json.loads(line) for line in f]
    return total, [r["seconds"] for r in rounds]


def accuracy_sweep(features, epochs, frequencies=(5, 20, 0), workers_list=(1, 2, 4), seed=42):
    train = features.select("train")
    test = features.select("test")
    classes = int(features.labels.max()) + 1
    out = {}
    for workers in workers_list:
        worker_of = assign_workers(train.ids, workers, seed)
        data = split_by_worker(train.X, train.labels, train.ids, worker_of, workers)
        sizes = [len(y) for _, y in data]
        for k in frequencies:
            config = {"seed": seed, "outer_optimizer": "average", "block_momentum": 0.0, "block_lr": 1.0,
                      "workers": workers}
            arrays = initial_state(train.dim, classes, config)
            per_epoch = rounds_per_epoch(sizes, 32, k)
            curve = []
            t0 = time.perf_counter()
            for epoch in range(epochs):
                for j in range(per_epoch):
                    params = RoundParams(workers=workers, epoch=epoch, first_batch=j * k, averaging_frequency=k,
                                         seed=seed)
                    arrays, _ = simulate_round(arrays, data, params)
                head = SoftmaxHead(arrays["W"], arrays["b"])
                curve.append(round(float(np.mean(head.predict(test.X) == test.labels)), 4))
            name = "K=%s,W=%d" % (k or "epoch", workers)
            out[name] = {"rounds_per_epoch": per_epoch, "test_accuracy_by_epoch": curve,
                         "seconds": round(time.perf_counter() - t0, 1)}
            print("  %-14s rounds/epoch %4d  test accuracy by epoch %s" % (name, per_epoch, curve), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4,000 examples, 40 classes, 3 epochs")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the accuracy sweep (default 5, quick 3)")
    p.add_argument("--reference-epoch", metavar="FILE", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference_epoch:
        return reference_epoch(args.reference_epoch)
    n, dim, classes = (4000, 4096, 40) if args.quick else (30607, 4096, 257)
    epochs = args.epochs or (3 if args.quick else 5)
    figures = {"examples": n, "dim": dim, "classes": classes}
    with tempfile.TemporaryDirectory(prefix="mr_tl-bench-train-") as tmp:
        feat_dir = os.path.join(tmp, "features")
        t0 = time.perf_counter()
        path = make_features(feat_dir, n, dim, classes)
        print("generated %d x %d features, %d classes: %.0f MB in %.1f s"
              % (n, dim, classes, os.path.getsize(path) / 1e6, time.perf_counter() - t0), flush=True)

        features, mb_s, parse_s = parse_speed(path)
        figures["parse_MB_per_s"] = round(mb_s, 1)
        print("feature parsing: %.0f MB/s (%.1f s for the file)" % (mb_s, parse_s), flush=True)

        # per-round fixed overhead: a local-runner round over a tiny data set
        tiny_dir = os.path.join(tmp, "tiny")
        make_features(tiny_dir, 200, 64, 4)
        _, seconds = run_train(tiny_dir, os.path.join(tmp, "run-tiny"), 2, 5, epochs=4)
        overhead = float(np.median(seconds))
        figures["round_overhead_s"] = round(overhead, 3)
        print("per-round fixed overhead, local runner (2 tasks, tiny data): median %.2f s over %d rounds"
              % (overhead, len(seconds)), flush=True)

        # one epoch: local runner vs one numpy process, same SGD, 1 BLAS thread each
        ref = json.loads(subprocess.run([PY, os.path.abspath(__file__), "--reference-epoch", path], check=True,
                                        capture_output=True, text=True, env=threads_env(1)).stdout)
        total, seconds = run_train(feat_dir, os.path.join(tmp, "run-epoch"), 1, "epoch")
        figures.update({"numpy_epoch_s": round(ref["total_s"], 2), "numpy_read_s": round(ref["read_s"], 2),
                        "local_epoch_round_s": round(seconds[0], 2), "local_epoch_command_s": round(total, 2),
                        "epoch_ratio_local_vs_numpy": round(seconds[0] / ref["total_s"], 2)})
        print("one epoch, 1 worker: numpy process %.1f s (%.1f s of it reading); local runner round %.1f s "
              "(ratio %.2f); whole train command %.1f s incl. reading features and writing worker files"
              % (ref["total_s"], ref["read_s"], seconds[0], seconds[0] / ref["total_s"], total), flush=True)

        # the I/O trade-off of frequent averaging
        train = features.select("train")
        data_bytes = os.path.getsize(path) * len(train) / len(features)
        _, k5 = run_train(feat_dir, os.path.join(tmp, "run-k5"), 2, 5, epochs=1, extra=["--stop-after-rounds", "3"])
        for k in (5, 20, 0):
            sizes = np.bincount(assign_workers(train.ids, 2, 42), minlength=2)
            r = rounds_per_epoch(sizes, 32, k)
            figures["epoch_rounds_K%s_W2" % (k or "epoch")] = r
            figures["epoch_GB_read_K%s_W2" % (k or "epoch")] = round(r * data_bytes / 1e9, 2)
            print("K=%-5s 2 workers: %4d rounds per epoch, each re-reads %.0f MB: %.1f GB per epoch"
                  % (k or "epoch", r, data_bytes / 1e6, r * data_bytes / 1e9), flush=True)
        if k5:  # the first round also pays for the page cache
            figures["local_round_K5_W2_s"] = round(float(np.median(k5)), 2)
            print("measured: a K=5 round with 2 workers takes %.2f s (median of %d) on the local runner"
                  % (np.median(k5), len(k5)), flush=True)

        print("test accuracy by epoch (in-process rounds, same arithmetic as MapReduce):", flush=True)
        figures["accuracy"] = accuracy_sweep(features, epochs)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
