"""Accuracy as workers grow: plain averaging vs block momentum (BMUF), and how often to average.

    python bench/scaling.py            # full: real 20 epochs x 10 splits, Caltech-scale 12 epochs
    python bench/scaling.py --quick    # a few minutes
    python bench/scaling.py --skip-real | --skip-caltech

Two data sets:
  * real: ImageNet EfficientNet-Lite0 features (1280-d) of the Tux Paint stamps
    (``scripts/fetch-tuxpaint``; 579 drawings, 10 classes), computed with the resize policy
    of models/efficientnet-lite0-features.json and cached by bench/accuracy.py (reused;
    computed here if missing); mr_tl.pack's stratified 70/15/15 split with seeds 42, 43, ...
    (``--splits``), test accuracy averaged over the splits (a split's test set is about 90 images);
  * Caltech-scale: 30,607 x 4096 generated features, 257 classes (bench/synthetic.py).
For workers {1, 2, 4, 8} x outer optimizer {average, block-momentum} x averaging frequency
{5 minibatches, epoch, 2epochs, 4epochs} (Caltech-scale: ``--caltech-schedules``) it trains with
the real loop -- ``Trainer(InProcessRunner(features), RUN_DIR, Hyperparameters(...),
Schedule(epochs)).run_all()``, the arithmetic of the MapReduce rounds bit for bit
(tests/train/test_block_momentum.py) -- and reads test accuracy from the checkpoint at the end of
every epoch (every N-th epoch with N epochs per round), through the run's normalizer.  The same
number of epochs for every schedule (20 real, 12 Caltech-scale: multiples of 4), so a schedule of
N epochs per round runs 1/N of the round jobs.  Reports test accuracy after the last epoch, the
round jobs it took, and how many rounds it took to get within 1 point of one worker's final
accuracy.  Ends with one JSON line.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import emit_json, feature_set, machine_info, train_in_process  # noqa: E402
from synthetic import synthetic_arrays  # noqa: E402

from mr_tl.training.hyperparameters import Hyperparameters, format_frequency, parse_frequency  # noqa: E402

MODEL = os.path.join(REPO, "models", "efficientnet-lite0-features.onnx")
SCHEDULES = ("5", "epoch", "2epochs", "4epochs")


def tuxpaint_features(images=None, policy=None):
    """``(classes, ids, labels, X, digests)`` of the Tux Paint stamps: Lite0 features with the model's
    own resize policy (or ``policy``, a bench/accuracy.py POLICIES name), from bench/accuracy.py's cache."""
    import hashlib
    import subprocess

    import accuracy

    from mr_tl.model.spec import load_model_spec, sha256_file

    images = images or accuracy.TUXPAINT
    if not os.path.isdir(images):
        subprocess.run([os.path.join(REPO, "scripts", "fetch-tuxpaint"), images], check=True)
    classes, ids, y, blobs, _, _ = accuracy.load_images(images)
    spec = load_model_spec(MODEL)
    if policy is None:
        policy = "center-crop" if spec.resize == "center-crop" else "squash" if spec.resize == "squash" else \
            "letterbox-%s" % (getattr(spec, "pad_colour", None) or "edge-mean")
    digest = hashlib.sha256()
    for i, data in zip(ids, blobs):
        digest.update(i.encode() + b"\0" + hashlib.sha256(data).digest())
    key = "%s-%s-%s" % (spec.model_sha256[:12], digest.hexdigest()[:12],
                        sha256_file(os.path.join(REPO, "mr_tl", "images.py"))[:12])
    X, _, _ = accuracy.featurize(policy, spec, blobs, key, threads=2)
    return classes, ids, y, X, [hashlib.sha256(data).hexdigest() for data in blobs], policy


def real_datasets(n_splits):
    """One FeatureSet per seeded split of the Tux Paint set, and the policy used."""
    import accuracy

    classes, ids, y, X, digests, policy = tuxpaint_features()
    sets = []
    for seed in range(42, 42 + n_splits):
        idx = accuracy.splits_for(seed, ids, y, classes, digests)
        splits = np.empty(len(ids), dtype=object)
        for name, rows in idx.items():
            splits[rows] = name
        sets.append(feature_set(ids, y, list(splits), X, classes))
    return sets, policy


def caltech_datasets(n, dim, classes, seed=0):
    ids, labels, splits, X = synthetic_arrays(n, dim, classes, seed)
    return [feature_set(ids, labels, splits, X)]


def sweep(name, datasets, epochs, workers_list, schedules, outers=("average", "block-momentum")):
    """Test accuracy by epoch for every (schedule, W, outer), averaged over the data sets (splits)."""
    first = datasets[0]
    n_train = sum(s == "train" for s in first.splits)
    n_test = sum(s == "test" for s in first.splits)
    print("\n%s: %d train / %d test examples, %d-d, %d classes, %d epochs, %d split%s" % (
        name, n_train, n_test, first.dim, len(first.classes), epochs, len(datasets),
        "s" if len(datasets) > 1 else ""), flush=True)
    print("  %-8s %-3s %-15s %8s %6s %7s  %s" % ("K", "W", "outer", "acc@E", "sd", "rounds", "accuracy by epoch"))
    results = {}
    for schedule in schedules:
        k = parse_frequency(schedule)
        for workers in workers_list:
            for outer in outers:
                if workers == 1 and (outer == "block-momentum" or k < 0):
                    # block momentum with eta = 1 - 1/1 = 0 is plain averaging (a test proves it), and one
                    # worker's N epochs per round are the same arithmetic as one round per epoch
                    if outer != outers[0] or k < 0:
                        continue
                    outer = "average"
                if outer == "average" and k < 0:
                    continue  # N epochs per round: with block momentum only (plain averaging: see K=epoch)
                hyper = Hyperparameters(workers=workers, averaging_frequency=k, outer_optimizer=outer)
                curves, finals, t0 = [], [], time.time()
                for data in datasets:
                    test = data.select("test")
                    r = train_in_process(data, hyper, epochs, score={"test": (test.X, test.labels)})
                    curves.append(r["accuracy"]["test"])
                    finals.append(r["final"]["test"])
                curve = [round(float(v), 4) for v in np.mean(curves, axis=0)]
                key = "K=%s,W=%d,%s" % (format_frequency(k), workers, outer)
                results[key] = {"K": format_frequency(k), "workers": workers, "outer": outer,
                                "rounds_per_epoch": r["rounds_per_epoch"], "rounds": r["rounds"],
                                "epochs": r["epochs"], "rounds_at": r["rounds_at"], "accuracy_by_epoch": curve,
                                "final_accuracy": round(float(np.mean(finals)), 4),
                                "final_sd": round(float(np.std(finals, ddof=1)), 4) if len(finals) > 1 else 0.0,
                                "final_by_split": finals, "seconds": round(time.time() - t0, 1)}
                print("  %-8s %-3d %-15s %8.4f %6.4f %7d  %s" % (
                    format_frequency(k), workers, outer, results[key]["final_accuracy"], results[key]["final_sd"],
                    r["rounds"], " ".join("%.3f" % a for a in curve)), flush=True)
    # rounds to get within 1 point of one worker's final accuracy
    one = next((r for r in results.values() if r["workers"] == 1), None)
    if one is not None:
        target = one["final_accuracy"] - 0.01
        print("  round jobs to get within 1 point of one worker's accuracy after %d epochs (%.4f):"
              % (epochs, one["final_accuracy"]))
        for key, r in results.items():
            reached = next((i for i, a in enumerate(r["accuracy_by_epoch"]) if a >= target), None)
            r["rounds_to_within_1pt_of_one_worker"] = None if reached is None else r["rounds_at"][reached]
            r["epochs_to_within_1pt_of_one_worker"] = None if reached is None else r["epochs"][reached]
            r["gap_to_one_worker_pt"] = round(100 * (one["final_accuracy"] - r["final_accuracy"]), 2)
            print("    %-32s %s" % (key, "never" if reached is None else "%d rounds (epoch %d)"
                                     % (r["rounds_at"][reached], r["epochs"][reached])))
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 splits of the real set; Caltech-scale 6,000 x 4096, "
                                                        "60 classes, 4 epochs")
    p.add_argument("--skip-real", action="store_true", help="only the Caltech-scale generated features")
    p.add_argument("--skip-caltech", action="store_true", help="only the real features")
    p.add_argument("--splits", type=int, help="seeded splits of the real set (default 10, quick 3)")
    p.add_argument("--workers", default="1,2,4,8", help="worker counts (default 1,2,4,8)")
    p.add_argument("--schedules", default=",".join(SCHEDULES), help="averaging frequencies of the real set")
    p.add_argument("--caltech-schedules", default=",".join(SCHEDULES),
                   help="averaging frequencies of the Caltech-scale set")
    p.add_argument("--caltech-outers", default="average,block-momentum")
    p.add_argument("--caltech-epochs", type=int, help="epochs on the Caltech-scale set (default 12, quick 4)")
    p.add_argument("--caltech-size", help="N,DIM,CLASSES of the generated set (default 30607,4096,257; quick "
                                          "6000,4096,60)")
    args = p.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    figures = {"benchmark": "scaling", "quick": args.quick, "machine": machine_info()}
    t0 = time.time()
    if not args.skip_real:
        if not os.path.exists(MODEL):
            sys.exit("models/efficientnet-lite0-features.onnx is missing: run scripts/setup")
        sets, policy = real_datasets(args.splits or (3 if args.quick else 10))
        figures["real_policy"] = policy
        figures["real"] = sweep("real: EfficientNet-Lite0 features (%s) of the Tux Paint stamps" % policy, sets,
                                20, workers, args.schedules.split(","))
    if not args.skip_caltech:
        n, dim, classes = (int(v) for v in args.caltech_size.split(",")) if args.caltech_size else \
            (6000, 4096, 60) if args.quick else (30607, 4096, 257)
        figures["caltech_size"] = [n, dim, classes]
        figures["caltech_scale"] = sweep("Caltech-scale generated features (%d x %d, %d classes)" % (n, dim, classes),
                                         caltech_datasets(n, dim, classes),
                                         args.caltech_epochs or (4 if args.quick else 12), workers,
                                         args.caltech_schedules.split(","), tuple(args.caltech_outers.split(",")))
    figures["seconds"] = round(time.time() - t0)
    emit_json(figures)


if __name__ == "__main__":
    main()
