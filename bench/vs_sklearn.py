"""mr_tl's softmax head vs scikit-learn's LogisticRegression on the same features.

    python bench/vs_sklearn.py [--quick]

On the real EfficientNet-Lite0 features of the hard demo set (cached by
bench/scaling.py) and on Caltech-scale generated features, train:
  * mr_tl's head with the reference recipe (Xavier, Nesterovs lr 0.01
    momentum 0.8, batch 32), one worker in one process (the arithmetic of a
    MapReduce round, mr_tl.rounds), for E epochs;
  * the same through mrjob's local runner (python -m mr_tl.train -r local),
    on the real features only, to show the job overhead;
  * scikit-learn's LogisticRegression (lbfgs, multinomial, C=1.0,
    max_iter=200), the usual single-machine baseline.
Prints test accuracy and seconds of each, and one JSON line.
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

from scaling import by_split, real_features  # noqa: E402
from synthetic import synthetic_arrays  # noqa: E402

from mr_tl.head import SoftmaxHead  # noqa: E402
from mr_tl.records import FeatureRecord  # noqa: E402
from mr_tl.rounds import RoundParams, simulate_round, split_by_worker  # noqa: E402
from mr_tl.train import assign_workers, initial_state  # noqa: E402


def mr_tl_head(data, epochs):
    ids, X, y = data["train"]
    _, X_test, y_test = data["test"]
    n_classes = int(max(y.max(), y_test.max())) + 1
    t0 = time.perf_counter()
    config = {"seed": 42, "outer_optimizer": "average", "block_momentum": 0.0, "block_lr": 1.0, "workers": 1}
    arrays = initial_state(X.shape[1], n_classes, config)
    worker_data = split_by_worker(X, y, ids, assign_workers(ids, 1, 42), 1)
    for epoch in range(epochs):
        arrays, _ = simulate_round(arrays, worker_data, RoundParams(workers=1, epoch=epoch, averaging_frequency=0))
    seconds = time.perf_counter() - t0
    accuracy = float(np.mean(SoftmaxHead(arrays["W"], arrays["b"]).predict(X_test) == y_test))
    return accuracy, seconds


def mr_tl_local_runner(data, epochs):
    """The same training through python -m mr_tl.train -r local (features written as featurize does)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "features")
        os.makedirs(folder)
        n_classes = 0
        with open(os.path.join(folder, "part-00000"), "w", encoding="utf-8") as f:
            for split in ("train", "test"):
                ids, X, y = data[split]
                n_classes = max(n_classes, int(y.max()) + 1)
                for i, row, label in zip(ids, X, y):
                    f.write(FeatureRecord(i, int(label), split, row).to_line() + "\n")
        with open(os.path.join(folder, "_labels.json"), "w") as f:
            json.dump({"format": "mr_tl.labels/1", "classes": ["c%d" % i for i in range(n_classes)]}, f)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mr_tl.train", "-r", "local", folder, "-o", os.path.join(tmp, "run"),
                        "--workers", "1", "--averaging-frequency", "epoch", "--epochs", str(epochs)],
                       check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        from mr_tl.records import load_npz

        _, head = load_npz(os.path.join(tmp, "run", "head.npz"))
    _, X_test, y_test = data["test"]
    return float(np.mean(SoftmaxHead(head["W"], head["b"]).predict(X_test) == y_test)), seconds


def sklearn_lr(data):
    from sklearn.linear_model import LogisticRegression

    _, X, y = data["train"]
    _, X_test, y_test = data["test"]
    t0 = time.perf_counter()
    model = LogisticRegression(C=1.0, max_iter=200).fit(X, y)
    seconds = time.perf_counter() - t0
    return float(model.score(X_test, y_test)), seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    figures = {}
    caltech_size = (6000, 4096, 60) if args.quick else (30607, 4096, 257)
    sets = [("real (Lite0, hard demo)", by_split(*real_features(80 if args.quick else 150)), 20, True),
            ("Caltech-scale generated", by_split(*synthetic_arrays(*caltech_size)), 10, False)]
    for name, data, epochs, with_runner in sets:
        acc, sec = mr_tl_head(data, epochs)
        row = {"mr_tl_accuracy": round(acc, 4), "mr_tl_seconds": round(sec, 2), "epochs": epochs}
        print("%s, %d train / %d test examples:" % (name, len(data["train"][2]), len(data["test"][2])), flush=True)
        print("  mr_tl head, %d epochs, one process:  accuracy %.4f  %.1f s" % (epochs, acc, sec), flush=True)
        if with_runner:
            acc_r, sec_r = mr_tl_local_runner(data, epochs)
            row.update({"mr_tl_local_runner_accuracy": round(acc_r, 4), "mr_tl_local_runner_seconds": round(sec_r, 1)})
            print("  mr_tl head, local runner (%d jobs):   accuracy %.4f  %.1f s" % (epochs, acc_r, sec_r), flush=True)
        acc_s, sec_s = sklearn_lr(data)
        row.update({"sklearn_accuracy": round(acc_s, 4), "sklearn_seconds": round(sec_s, 2)})
        print("  scikit-learn LogisticRegression:     accuracy %.4f  %.1f s" % (acc_s, sec_s), flush=True)
        figures[name] = row
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
