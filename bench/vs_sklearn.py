"""mr_tl's softmax head vs scikit-learn's LogisticRegression on the same features.

    python bench/vs_sklearn.py [--quick]          # head (reference recipe) vs scikit-learn, real + Caltech-scale
    python bench/vs_sklearn.py --tune [--quick]   # what gets the head within 0.5 pt of scikit-learn (issue 15)

Default: on the real EfficientNet-Lite0 features of the Tux Paint stamps (bench/scaling.py's
loader, bench/accuracy.py's cache; mr_tl.pack's 70/15/15 split, seed 42) and on Caltech-scale
generated features (bench/synthetic.py: 30,607 x 4096, 257 classes, 21,494 train), train:
  * mr_tl's head with the reference recipe (Xavier, Nesterovs lr 0.01 momentum 0.8, batch 32),
    one worker, one round per epoch, E epochs, with the real loop
    (``Trainer(InProcessRunner(features), ...)``, the MapReduce rounds' arithmetic);
  * the same through mrjob's local runner (python -m mr_tl.train -r local on a complete
    features folder), on the real features only, to show the job overhead;
  * scikit-learn's LogisticRegression (lbfgs, multinomial), C picked on the val split from
    C_GRID, the usual single-machine baseline.
Prints test accuracy and seconds of each.

``--tune`` (Caltech-scale only): the head in at most 20 round jobs, with options that exist
(``--normalization``, ``--lr``, ``--l2``, ``--averaging-frequency`` in epochs, block momentum,
``--workers``), chosen on the *validation* split only.  Stage 1 runs every CANDIDATES entry on data
seed 0; stage 2 runs the reference and the best ``--finalists`` by val accuracy on data seeds
0..``--seeds``-1 (each seed: other generated data and split, training seed 42 + seed), beside
scikit-learn (C on val) on the same data; reports val and test accuracy, mean +- sd over the seeds,
and the gap to scikit-learn.  Ends with one JSON line.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from common import emit_json, feature_set, machine_info, train_in_process  # noqa: E402
from synthetic import synthetic_arrays  # noqa: E402

from mr_tl.training.hyperparameters import Hyperparameters, resolve  # noqa: E402

C_GRID = (0.01, 0.1, 1.0, 10.0)
# (name, Hyperparameters fields); workers and outer optimizer are added from --tune-workers
CANDIDATES = [
    ("reference: none, lr 0.01, l2 0, epoch", {}),
    ("lr 0.003", {"lr": 0.003}),
    ("lr 0.03", {"lr": 0.03}),
    ("momentum 0.9", {"momentum": 0.9}),
    ("2epochs", {"averaging_frequency": -2}),
    ("4epochs", {"averaging_frequency": -4}),
    ("lr 0.03, 2epochs", {"lr": 0.03, "averaging_frequency": -2}),
    ("l2 1e-4, 2epochs", {"l2": 1e-4, "averaging_frequency": -2}),
    ("zscore, 2epochs", {"normalization": "zscore", "averaging_frequency": -2}),
    # l2 near scikit-learn's C picked on val: its objective C * sum(loss) + |W|^2 / 2 is the head's
    # mean loss + l2 / 2 |W|^2 with l2 = 1 / (C n); C = 0.1 is l2 2.4e-3 for 4,176 examples, 4.7e-4 for 21,494
    ("l2 1e-3", {"l2": 1e-3}),
    ("l2 3e-3", {"l2": 3e-3}),
    ("lr 0.03, l2 1e-3", {"lr": 0.03, "l2": 1e-3}),
    ("l2 1e-3, 2epochs", {"l2": 1e-3, "averaging_frequency": -2}),
    ("lr 0.03, l2 3e-3, 2epochs", {"lr": 0.03, "l2": 3e-3, "averaging_frequency": -2}),
    ("lr 0.03, l2 1e-2, 2epochs", {"lr": 0.03, "l2": 1e-2, "averaging_frequency": -2}),
    ("lr 0.03, l2 3e-3, 4epochs", {"lr": 0.03, "l2": 3e-3, "averaging_frequency": -4}),
    ("lr 0.03, l2 3e-3, batch 16, 2epochs", {"lr": 0.03, "l2": 3e-3, "batch_size": 16, "averaging_frequency": -2}),
    # the same, with l2 scaled to the Caltech-scale train split (21,494 examples): 3e-3 * 4,176 / 21,494
    ("lr 0.03, l2 6e-4, 2epochs", {"lr": 0.03, "l2": 6e-4, "averaging_frequency": -2}),
]


def blas_one_thread():
    """One BLAS thread for the classifiers: on a loaded 2-core machine OpenBLAS' spinning threads make
    them far slower (bench/accuracy.py measured 50x for lbfgs)."""
    import sklearn.linear_model  # noqa: F401  (loads scipy's OpenBLAS too, so the limit reaches it)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def split_arrays(data, name):
    part = data.select(name)
    return part.X, part.labels


def mr_tl_head(data, hyper, epochs):
    """``(val accuracy, test accuracy, seconds, rounds)`` of the head trained by the real loop."""
    r = train_in_process(data, hyper, epochs, score={s: split_arrays(data, s) for s in ("val", "test")})
    return r["final"]["val"], r["final"]["test"], r["seconds"], r["rounds"]


def mr_tl_local_runner(data, epochs):
    """The same training through python -m mr_tl.train -r local, on a complete features folder."""
    from feature_folders import write_feature_folder

    from mr_tl.run_dir import RunDir

    records = list(data.records())
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_feature_folder(os.path.join(tmp, "features"), records, data.classes, parts=2)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mr_tl.train", "-r", "local", folder, "-o", os.path.join(tmp, "run"),
                        "--workers", "1", "--averaging-frequency", "epoch", "--epochs", str(epochs)],
                       check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        head, _, normalizer = RunDir(os.path.join(tmp, "run")).load_classifier()
    X, y = split_arrays(data, "test")
    return float(np.mean(head.predict(normalizer.apply(X)) == y)), seconds


def sklearn_lr(data):
    """``(val accuracy, test accuracy, C, seconds)`` of LogisticRegression, C picked on val (ascending C,
    warm-started)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    X, y = split_arrays(data, "train")
    Xv, yv = split_arrays(data, "val")
    Xt, yt = split_arrays(data, "test")
    t0 = time.perf_counter()
    model = LogisticRegression(max_iter=300, warm_start=True)
    best = None
    for C in C_GRID:
        model.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        val = float(model.score(Xv, yv))
        if best is None or val > best[0]:
            best = (val, float(model.score(Xt, yt)), C)
    return best + (time.perf_counter() - t0,)


def caltech(seed, quick):
    n, dim, classes = (6000, 4096, 60) if quick else (30607, 4096, 257)
    return feature_set(*synthetic_arrays(n, dim, classes, seed))


def compare(args):
    import scaling

    figures = {}
    ids_classes = scaling.real_datasets(1)
    caltech_set = caltech(0, args.quick)
    sets = [("real (Lite0 %s, Tux Paint, split seed 42)" % ids_classes[1], ids_classes[0][0], 20, True),
            ("Caltech-scale generated", caltech_set, 10, False)]
    for name, data, epochs, with_runner in sets:
        hyper = Hyperparameters(workers=1, averaging_frequency=0)
        _, acc, sec, _ = mr_tl_head(data, hyper, epochs)
        row = {"mr_tl_accuracy": round(acc, 4), "mr_tl_seconds": round(sec, 2), "epochs": epochs}
        print("%s, %d train / %d val / %d test examples:" % (name, data.splits.count("train"),
                                                             data.splits.count("val"), data.splits.count("test")))
        print("  mr_tl head, %d epochs, one process (real loop): accuracy %.4f  %.1f s" % (epochs, acc, sec),
              flush=True)
        if with_runner:
            acc_r, sec_r = mr_tl_local_runner(data, epochs)
            row.update({"mr_tl_local_runner_accuracy": round(acc_r, 4), "mr_tl_local_runner_seconds": round(sec_r, 1)})
            print("  mr_tl head, local runner (%d round jobs):  accuracy %.4f  %.1f s" % (epochs, acc_r, sec_r),
                  flush=True)
        limit = blas_one_thread()
        _, acc_s, C, sec_s = sklearn_lr(data)
        limit.unregister()
        row.update({"sklearn_accuracy": round(acc_s, 4), "sklearn_C": C, "sklearn_seconds": round(sec_s, 2)})
        print("  scikit-learn LogisticRegression (C=%g on val): accuracy %.4f  %.1f s" % (C, acc_s, sec_s), flush=True)
        figures[name] = row
    return figures


def stats(values):
    values = np.asarray(values, dtype=np.float64)
    return [round(float(values.mean()), 4), round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4)]


def tune(args):
    """Issue 15: the head within 0.5 pt of scikit-learn in <= 20 round jobs, chosen on val."""
    workers = args.tune_workers
    rounds = 20

    def hyper_of(fields, seed):
        fields = dict({"workers": workers, "averaging_frequency": 0, "seed": 42 + seed,
                       "outer_optimizer": "block-momentum" if workers > 1 else "average"}, **fields)
        return Hyperparameters(**fields)

    def epochs_of(hyper):   # at most `rounds` round jobs
        return rounds * max(1, hyper.passes_per_round)

    candidates = [c for c in CANDIDATES if not args.candidates or c[0] in args.candidates.split(";")]
    figures = {"workers": workers, "rounds": rounds, "candidates": {}, "final": {}}
    data = caltech(0, args.quick)
    print("stage 1: data seed 0, %d workers (%s), <= %d round jobs, val accuracy" % (
        workers, "block momentum" if workers > 1 else "one worker", rounds), flush=True)
    stage1 = {}
    for name, fields in candidates:
        hyper = hyper_of(fields, 0)
        val, test, sec, n_rounds = mr_tl_head(data, hyper, epochs_of(hyper))
        stage1[name] = {"val": val, "test": test, "seconds": sec, "rounds": n_rounds, "fields": fields}
        print("  %-40s val %.4f  test %.4f  %2d rounds  %.0f s" % (name, val, test, n_rounds, sec), flush=True)
    figures["candidates"] = stage1
    ranked = sorted(stage1, key=lambda n: -stage1[n]["val"])
    finalists = [CANDIDATES[0][0]] + [n for n in ranked if n != CANDIDATES[0][0]][:args.finalists]
    print("stage 2: %s on data seeds 0..%d, beside scikit-learn" % ("; ".join(finalists), args.seeds - 1), flush=True)
    rows = {name: {"val": [], "test": []} for name in finalists}
    sk = {"val": [], "test": [], "C": [], "seconds": []}
    for seed in range(args.seeds):
        data = caltech(seed, args.quick) if seed else data
        for name in finalists:
            if seed == 0 and name in stage1:
                val, test = stage1[name]["val"], stage1[name]["test"]
            else:
                hyper = hyper_of(dict(candidates)[name] if name in dict(candidates) else {}, seed)
                val, test, _, _ = mr_tl_head(data, hyper, epochs_of(hyper))
            rows[name]["val"].append(val)
            rows[name]["test"].append(test)
            print("  seed %d  %-40s val %.4f  test %.4f" % (seed, name, val, test), flush=True)
        limit = blas_one_thread()
        val, test, C, sec = sklearn_lr(data)
        limit.unregister()
        for key, value in (("val", val), ("test", test), ("C", C), ("seconds", round(sec, 1))):
            sk[key].append(value)
        print("  seed %d  %-40s val %.4f  test %.4f  (C=%g, %.0f s)" % (seed, "scikit-learn LR", val, test, C, sec),
              flush=True)
    print("\nmean +- sd over %d seeds (test gap to scikit-learn LR, points):" % args.seeds)
    sk_test = np.asarray(sk["test"])
    for name in finalists:
        r = rows[name]
        gap = stats(100 * (sk_test - np.asarray(r["test"])))
        figures["final"][name] = {"val": stats(r["val"]), "test": stats(r["test"]), "gap_pt": gap,
                                  "val_by_seed": r["val"], "test_by_seed": r["test"]}
        print("  %-40s val %.4f +- %.4f  test %.4f +- %.4f  gap %+.2f +- %.2f" % (
            name, *stats(r["val"]), *stats(r["test"]), *gap))
    figures["sklearn"] = {"val": stats(sk["val"]), "test": stats(sk["test"]), "C": sk["C"], "seconds": sk["seconds"],
                          "test_by_seed": sk["test"]}
    print("  %-40s val %.4f +- %.4f  test %.4f +- %.4f  C %s" % ("scikit-learn LR (C on val)", *stats(sk["val"]),
                                                               *stats(sk["test"]), sk["C"]))
    best = max(finalists, key=lambda n: figures["final"][n]["val"][0])
    figures["chosen_on_val"] = best
    figures["chosen_gap_pt"] = figures["final"][best]["gap_pt"][0]
    figures["target_met"] = figures["chosen_gap_pt"] <= 0.5
    print("chosen on val: %s: test gap %.2f pt (target <= 0.5)" % (best, figures["chosen_gap_pt"]))
    return figures


def one(args):
    """One candidate (or ``sklearn``) on one data seed: for running the pieces of a tune in parallel."""
    data = caltech(args.seed, args.quick)
    if args.one == "sklearn":
        limit = blas_one_thread()
        val, test, C, sec = sklearn_lr(data)
        limit.unregister()
        print("seed %d  scikit-learn LR  val %.4f  test %.4f  (C=%g, %.0f s)" % (args.seed, val, test, C, sec))
        return {"name": "sklearn", "seed": args.seed, "val": val, "test": test, "C": C, "seconds": round(sec, 1)}
    if args.one.startswith("recipe:"):  # a recipe as the train command resolves it (its candidates, the best on val)
        recipe = resolve(args.one.split(":", 1)[1], {"seed": 42 + args.seed})
        epochs = 20 * max(1, recipe.shared.passes_per_round)
        val, test, sec, rounds = mr_tl_head(data, recipe, epochs)
        print("seed %d  %s (%d candidates, %d workers)  val %.4f  test %.4f  %d rounds  %.0f s"
              % (args.seed, args.one, len(recipe), recipe.shared.workers, val, test, rounds, sec))
        return {"name": args.one, "seed": args.seed, "val": val, "test": test, "rounds": rounds, "seconds": sec,
                "candidates": len(recipe), "workers": recipe.shared.workers}
    fields = dict(CANDIDATES)[args.one]
    hyper = Hyperparameters(**dict({"workers": args.tune_workers, "averaging_frequency": 0, "seed": 42 + args.seed,
                                    "outer_optimizer": "block-momentum" if args.tune_workers > 1 else "average"},
                                   **fields))
    val, test, sec, rounds = mr_tl_head(data, hyper, 20 * max(1, hyper.passes_per_round))
    print("seed %d  %s  val %.4f  test %.4f  %d rounds  %.0f s" % (args.seed, args.one, val, test, rounds, sec))
    return {"name": args.one, "seed": args.seed, "val": val, "test": test, "rounds": rounds, "seconds": sec}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="Caltech-scale: 6,000 x 4096, 60 classes")
    p.add_argument("--tune", action="store_true", help="the issue-15 search (Caltech-scale)")
    p.add_argument("--tune-workers", type=int, default=4, help="workers of the tuned head (default 4)")
    p.add_argument("--seeds", type=int, default=3, help="data seeds of stage 2 (default 3)")
    p.add_argument("--finalists", type=int, default=2, help="best stage-1 candidates taken to stage 2 (default 2)")
    p.add_argument("--candidates", help="only these CANDIDATES names, ';'-separated")
    p.add_argument("--one", metavar="NAME", help="only this CANDIDATES entry, 'sklearn', or 'recipe:NAME' (a recipe "
                                                 "of mr_tl.train, e.g. recipe:default) on --seed (Caltech-scale)")
    p.add_argument("--seed", type=int, default=0, help="data seed of --one (default 0)")
    args = p.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    t0 = time.time()
    figures = {"benchmark": "vs_sklearn", "quick": args.quick, "C_grid": C_GRID, "machine": machine_info()}
    if args.one:
        figures["one"] = one(args)
    elif args.tune:
        figures["tune"] = tune(args)
    else:
        figures.update(compare(args))
    figures["seconds"] = round(time.time() - t0)
    emit_json(figures)


if __name__ == "__main__":
    main()
