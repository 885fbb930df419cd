"""Accuracy as workers grow: plain averaging vs block momentum (BMUF) in the reducer.

    python bench/scaling.py            # full: 20 epochs real, 10 epochs Caltech-scale
    python bench/scaling.py --quick    # a few minutes

Two data sets:
  * real: ImageNet EfficientNet-Lite0 features (1280-d) of the hard demo set
    (``mr_tl.demo_data --hard``: 10 classes of small low-contrast objects among
    random strokes), packed with mr_tl.pack (70/15/15 stratified);
  * Caltech-scale: 30,607 x 4096 generated features, 257 classes
    (bench/synthetic.py).
For workers {1, 2, 4, 8} x outer optimizer {average, block-momentum} x
averaging frequency {5, epoch} it reports test accuracy after E epochs and
how many rounds it took to get within 1 point of one worker's final
accuracy.  Rounds run in this process with mr_tl.rounds.simulate_round: the
same arithmetic as the MapReduce rounds, bit for bit
(tests/train/test_block_momentum.py checks that against the local runner).
Ends with one JSON line.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from synthetic import synthetic_arrays  # noqa: E402

from mr_tl import averaging  # noqa: E402
from mr_tl.head import SoftmaxHead  # noqa: E402
from mr_tl.rounds import RoundParams, simulate_round, split_by_worker  # noqa: E402
from mr_tl.train import assign_workers, initial_state, rounds_per_epoch  # noqa: E402

CACHE = os.path.join(os.path.expanduser("~/.cache"), "mr_tl", "bench")
MODEL = os.path.join(os.path.dirname(HERE), "models", "efficientnet-lite0-features.onnx")


def real_features(per_class, seed=0):
    """``{split: (ids, X, y)}`` of Lite0 features of the hard demo set (cached)."""
    import glob

    from mr_tl.demo_data import CLASSES, generate
    from mr_tl.featurizer import Featurizer
    from mr_tl.threads import available_cores
    from mr_tl.images import preprocess
    from mr_tl.model.spec import sha256_file
    from mr_tl.pack import pack
    from mr_tl.records import PackedImage

    key = "scaling-lite0-hard-%d-%d-%s.npz" % (per_class, seed, sha256_file(MODEL)[:12])
    path = os.path.join(CACHE, key)
    if not os.path.exists(path):
        import tempfile

        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            generate(os.path.join(tmp, "images"), CLASSES, per_class, seed, 160, hard=True)
            pack(os.path.join(tmp, "images"), os.path.join(tmp, "packed"))
            featurizer = Featurizer(MODEL, threads=available_cores())
            ids, splits, labels, rows = [], [], [], []
            for shard in sorted(glob.glob(os.path.join(tmp, "packed", "*.tsv"))):
                with open(shard, encoding="utf-8") as f:
                    images = [PackedImage.from_line(line) for line in f]
                for start in range(0, len(images), 32):
                    batch = images[start:start + 32]
                    rows.append(featurizer(np.stack([preprocess(i.data, featurizer.spec) for i in batch])))
                    ids += [i.id for i in batch]
                    splits += [i.split for i in batch]
                    labels += [i.label for i in batch]
        os.makedirs(CACHE, exist_ok=True)
        np.savez(path, ids=np.array(ids), splits=np.array(splits), labels=np.array(labels), X=np.concatenate(rows))
        print("featurized %d hard demo images with EfficientNet-Lite0 in %.0f s" % (len(ids), time.time() - t0))
    with np.load(path, allow_pickle=False) as z:
        ids, splits, labels, X = list(z["ids"]), list(z["splits"]), z["labels"], z["X"]
    return ids, labels.astype(np.int64), splits, X


def by_split(ids, labels, splits, X):
    out = {}
    for name in ("train", "test"):
        keep = [i for i, s in enumerate(splits) if s == name]
        out[name] = ([str(ids[i]) for i in keep], X[keep], labels[keep])
    return out


def sweep(name, data, epochs, workers_list=(1, 2, 4, 8), frequencies=(5, 0), seed=42):
    """Test accuracy by epoch for every (K, W, outer); prints a table, returns the figures."""
    train_ids, X, y = data["train"]
    _, X_test, y_test = data["test"]
    n_classes = int(max(y.max(), y_test.max())) + 1
    results = {}
    print("\n%s: %d train / %d test examples, %d-d, %d classes, %d epochs" % (
        name, len(y), len(y_test), X.shape[1], n_classes, epochs), flush=True)
    print("  %-7s %-3s %-15s %8s %13s %s" % ("K", "W", "outer", "acc@E", "rounds/epoch", "accuracy by epoch"))
    for k in frequencies:
        for workers in workers_list:
            worker_data = split_by_worker(X, y, train_ids, assign_workers(train_ids, workers, seed), workers)
            per_epoch = rounds_per_epoch([len(t) for _, t in worker_data], 32, k)
            for outer in ("average", "block-momentum"):
                if workers == 1 and outer == "block-momentum":
                    continue  # eta = 1 - 1/1 = 0: identical to averaging (a test proves it)
                eta = averaging.default_block_momentum(workers) if outer == "block-momentum" else 0.0
                config = {"seed": seed, "outer_optimizer": outer, "block_momentum": eta, "block_lr": 1.0,
                          "workers": workers}
                arrays = initial_state(X.shape[1], n_classes, config)
                curve = []
                t0 = time.time()
                for epoch in range(epochs):
                    for j in range(per_epoch):
                        params = RoundParams(workers=workers, epoch=epoch, first_batch=j * k, averaging_frequency=k,
                                             seed=seed, outer_optimizer=outer, block_momentum=eta)
                        arrays, _ = simulate_round(arrays, worker_data, params)
                    head = SoftmaxHead(arrays["W"], arrays["b"])
                    curve.append(round(float(np.mean(head.predict(X_test) == y_test)), 4))
                key = "K=%s,W=%d,%s" % (k or "epoch", workers, outer)
                results[key] = {"K": k or "epoch", "workers": workers, "outer": outer, "rounds_per_epoch": per_epoch,
                                "accuracy_by_epoch": curve, "seconds": round(time.time() - t0, 1)}
                print("  %-7s %-3d %-15s %8.4f %13d %s" % (k or "epoch", workers, outer, curve[-1], per_epoch,
                                                          " ".join("%.3f" % a for a in curve)), flush=True)
    # rounds to get within 1 point of one worker's final accuracy (same K)
    print("  rounds to reach within 1 point of one worker's accuracy after %d epochs:" % epochs)
    for key, r in results.items():
        target = results["K=%s,W=1,average" % r["K"]]["accuracy_by_epoch"][-1] - 0.01
        reached = next((e + 1 for e, a in enumerate(r["accuracy_by_epoch"]) if a >= target), None)
        r["rounds_to_within_1pt_of_one_worker"] = reached and reached * r["rounds_per_epoch"]
        r["gap_to_one_worker_pt"] = round(100 * (target + 0.01 - r["accuracy_by_epoch"][-1]), 2)
        print("    %-32s %s" % (key, "never" if reached is None else "%d rounds (epoch %d)"
                                 % (reached * r["rounds_per_epoch"], reached)))
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller data and fewer epochs")
    p.add_argument("--skip-real", action="store_true", help="only the Caltech-scale generated features")
    args = p.parse_args()
    figures = {}
    t0 = time.time()
    if not args.skip_real:
        if not os.path.exists(MODEL):
            sys.exit("models/efficientnet-lite0-features.onnx is missing: run scripts/setup")
        ids, labels, splits, X = real_features(80 if args.quick else 150)
        figures["real"] = sweep("real: EfficientNet-Lite0 features of the hard demo set", by_split(ids, labels, splits, X),
                                epochs=10 if args.quick else 20)
    n, dim, classes = (6000, 4096, 60) if args.quick else (30607, 4096, 257)
    figures["caltech_scale"] = sweep("Caltech-scale generated features", by_split(*synthetic_arrays(n, dim, classes)),
                                     epochs=4 if args.quick else 10, workers_list=(1, 2, 4, 8))
    figures["seconds"] = round(time.time() - t0)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
