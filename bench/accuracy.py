"""Resize policy, pad colour, feature normalization and flip TTA, measured on real drawings (issue 15).

    python bench/accuracy.py            # 20 seeded splits, every policy and pad colour
    python bench/accuracy.py --quick    # 3 splits, center-crop vs letterbox (default pad colour) only

Data: Debian's Tux Paint stamps laid out by ``scripts/fetch-tuxpaint``
(run for you into ~/.cache/mr_tl/tuxpaint/images if missing; ``--images``
for another class-folder set).  Trunk: the real ImageNet EfficientNet-Lite0
(models/efficientnet-lite0-features.onnx, 1280-d), run in this process with
mr_tl.model.session.Featurizer on mr_tl.images.preprocess, i.e. exactly what
the featurize job computes for a sidecar with that policy.  Every image is
featurized once per policy, and once more mirrored (the network input
flipped left-right) for TTA; features are cached in
~/.cache/mr_tl/bench/<version>/accuracy/ (keyed by the model, the images
and the source of mr_tl/images.py).

For each of N seeded stratified 70/15/15 splits (mr_tl.pack's own split,
``assign_splits``: each image's split drawn from the seed and its bytes;
seeds 42, 43, ... or from ``--first-seed``) and each pipeline

    policy       center-crop (the default before issue 15), squash, letterbox with pad white/mean/edge-mean
                 (edge-mean: the default since, chosen by this benchmark),
                 and "alpha-white": white for images with transparency, edge-mean (or mean) otherwise
    features     raw | z-score (fitted on train) | ssr: signed square root -> L2 -> z-score (fitted on train)
                 | ssr-l2: signed square root -> L2 (per image, no statistics)
    TTA          none | flip: mean of the features of the image and of its mirror

two classifiers are trained on train and scored on test:
  * scikit-learn LogisticRegression (lbfgs), C picked on the val split from a grid;
  * mr_tl's head, the reference recipe (Xavier, Nesterovs lr 0.01 momentum
    0.8, batch 32, 1 worker, 20 epochs) trained by the real loop
    (``Trainer(InProcessRunner(features), ...)``: the arithmetic of the
    MapReduce rounds, bit for bit) on the normalized features.
On raw features of center-crop, squash and letterbox edge-mean, mr_tl's head
is also trained with the **default recipe** (``resolve("default")``: what
``python -m mr_tl.train`` does without flags: its candidates side by side,
the best on val kept; ``--default-candidates`` tries another grid), 20
epochs.  Prints mean +- sd over the splits and the gain over today's default
with its paired sd, then one JSON line.  ``default_gain_pt``: the paired test
gain of the new default pipeline (letterbox edge-mean, raw features, the
default recipe) over the default before issue 15 (center-crop, raw
features, the reference recipe); ``best_single_pass`` and its gain: the
best single-trunk-pass pipeline of the reference-recipe head by mean
*validation* accuracy (the test split plays no part in either choice).
"""

import argparse
import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import cache_dir, emit_json, feature_set, machine_info, train_in_process  # noqa: E402

from mr_tl.images import ImageRejected, letterbox_box, preprocess, probe  # noqa: E402
from mr_tl.model.session import Featurizer  # noqa: E402
from mr_tl.model.spec import load_model_spec, sha256_file  # noqa: E402
from mr_tl.pack import SplitSize, assign_splits, find_images  # noqa: E402
from mr_tl.training.hyperparameters import RECIPES, Hyperparameters, resolve  # noqa: E402

MODEL = os.path.join(REPO, "models", "efficientnet-lite0-features.onnx")
TUXPAINT = os.path.join(os.path.expanduser("~"), ".cache", "mr_tl", "tuxpaint", "images")
POLICIES = {  # name -> spec changes (explicit: the sidecar of models/ is center-crop if built before issue 15,
    # letterbox edge-mean since)
    "center-crop": {"resize": "center-crop", "resize_shorter": 256},
    "squash": {"resize": "squash"},
    "letterbox-white": {"resize": "letterbox", "pad_colour": "white"},
    "letterbox-mean": {"resize": "letterbox", "pad_colour": "mean"},
    "letterbox-edge-mean": {"resize": "letterbox", "pad_colour": "edge-mean"},
}
# per image: the white-padded features if the image has transparency, else the other rule's
ALPHA_WHITE = {"letterbox-alpha-white-else-edge-mean": "letterbox-edge-mean"}
QUICK_POLICIES = ("center-crop", "letterbox-edge-mean")
NORMS = ("raw", "z", "ssr", "ssr-l2")
# pipelines also trained with the default recipe (raw features); the new default pipeline, and the old one
DEFAULT_RECIPE_POLICIES = ("center-crop", "squash", "letterbox-edge-mean")
NEW_DEFAULT, OLD_DEFAULT = "letterbox-edge-mean raw [default recipe]", "center-crop raw"
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
EPOCHS = 20


# -- data and features ---------------------------------------------------------------------------------

def load_images(images_dir):
    """``(classes, ids, labels, data, has_alpha, rejected)`` of every image mr_tl.pack would accept."""
    from PIL import Image

    listing = find_images(images_dir)
    classes = listing.classes
    ids, labels, blobs, alpha, rejected = [], [], [], [], []
    for rel, label, path in listing.items:
        with open(path, "rb") as f:
            data = f.read()
        try:
            probe(data)
        except ImageRejected as e:
            rejected.append((rel, e.reason))
            continue
        image = Image.open(io.BytesIO(data))
        ids.append(rel)
        labels.append(label)
        blobs.append(data)
        # the modes mr_tl.images composites on white
        alpha.append(image.mode in ("RGBA", "LA", "PA", "La", "RGBa")
                     or (image.mode == "P" and "transparency" in image.info))
    return classes, ids, np.asarray(labels, np.int64), blobs, np.asarray(alpha), rejected


def featurize(policy, base_spec, blobs, key, threads):
    """``(X, X_mirror, pad colours)`` for one policy (cached)."""
    path = os.path.join(cache_dir("accuracy"), "%s-%s.npz" % (policy, key))
    if os.path.exists(path):
        with np.load(path) as z:
            return z["X"], z["X_mirror"], z["pad"]
    spec = dataclasses.replace(base_spec, **POLICIES[policy])
    featurizer = Featurizer(MODEL, spec=spec, threads=threads, verify_hash=False)
    t0 = time.time()
    rows, mirrored, pads = [], [], []
    for start in range(0, len(blobs), 32):
        batch = np.stack([preprocess(data, spec) for data in blobs[start:start + 32]])
        rows.append(featurizer(batch))
        mirrored.append(featurizer(np.ascontiguousarray(batch[..., ::-1])))  # NCHW: flip the width axis
        for data, x in zip(blobs[start:start + 32], batch):
            pads.append(_pad_of(data, x, spec))
    X, X_mirror, pad = np.concatenate(rows), np.concatenate(mirrored), np.asarray(pads, np.float32)
    np.savez(path, X=X, X_mirror=X_mirror, pad=pad)
    print("  featurized %d images (+ mirrored) with %s in %.0f s" % (len(blobs), policy, time.time() - t0),
          flush=True)
    return X, X_mirror, pad


def _pad_of(data, x, spec):
    """``[r, g, b, fraction of the input that is padding]`` of one letterboxed input (zeros otherwise)."""
    if spec.resize != "letterbox":
        return [0, 0, 0, 0]
    from PIL import Image, ImageOps

    size = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size
    left, top, new_w, new_h = letterbox_box(size, spec.input_size)
    height, width = spec.input_size
    if (new_w, new_h) == (width, height):
        return [0, 0, 0, 0]
    # the bottom-right pixel is always padding (an odd pixel of padding goes to the right or bottom)
    pixel = x[:, -1, -1] * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    return list(np.round(pixel)) + [1 - new_w * new_h / (width * height)]


# -- pipelines --------------------------------------------------------------------------------------------

def splits_for(seed, ids, labels, classes, digests):
    """``{name: index array}`` by mr_tl.pack's stratified split (70/15/15) with this seed
    (``digests``: sha256 hex of each image's bytes, from which pack draws its split)."""
    images = [(i, int(label), d) for i, label, d in zip(ids, labels, digests)]
    split, _, _, _ = assign_splits(images, classes, seed, SplitSize(0.15), SplitSize(0.15))
    names = np.array([split[i] for i in ids])
    return {s: np.flatnonzero(names == s) for s in ("train", "val", "test")}


def normalize(X, train, norm):
    """Features normalized with statistics of the train rows only."""
    X = X.astype(np.float64)
    if norm == "raw":
        return X
    if norm in ("ssr", "ssr-l2"):
        X = np.sign(X) * np.sqrt(np.abs(X))
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if norm == "ssr-l2":  # per image only: no statistics, could live in the trunk graph
            return X
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    return (X - mean) / np.where(std > 1e-8, std, 1.0)


def sklearn_accuracy(X, y, idx):
    """``(val accuracy, test accuracy, C)`` of LogisticRegression with C picked on val."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    best = None
    # ascending C, each fit starting from the previous optimum (same optima, far fewer lbfgs iterations)
    model = LogisticRegression(max_iter=1000, warm_start=True)
    for C in C_GRID:
        model.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X[idx["train"]], y[idx["train"]])
        val = model.score(X[idx["val"]], y[idx["val"]])
        if best is None or val > best[0]:  # ties keep the smaller C
            best = (val, model.score(X[idx["test"]], y[idx["test"]]), C)
    return best


def mr_tl_accuracy(X, y, idx, ids, classes, hyper=None):
    """``(val accuracy, test accuracy)`` of mr_tl's head trained EPOCHS epochs by the real training loop
    on these, already normalized, features; ``hyper``: Hyperparameters or Candidates (default: the
    reference recipe with 1 worker, one round per epoch)."""
    keep = np.concatenate([idx["train"], idx["val"]])
    splits = ["train"] * len(idx["train"]) + ["val"] * len(idx["val"])
    features = feature_set([ids[i] for i in keep], y[keep], splits, X[keep].astype(np.float32), classes)
    r = train_in_process(features, hyper or Hyperparameters(workers=1, averaging_frequency=0), EPOCHS,
                         score={s: (X[idx[s]].astype(np.float32), y[idx[s]]) for s in ("val", "test")})
    return r["final"]["val"], r["final"]["test"]


def pipeline_name(policy, norm, tta, default_recipe):
    return "%s %s%s%s" % (policy, norm, " +flipTTA" if tta else "", " [default recipe]" if default_recipe else "")


def stats(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 splits, center-crop vs letterbox edge-mean only")
    p.add_argument("--images", default=TUXPAINT, help="class-folder image set (default: the Tux Paint stamps)")
    p.add_argument("--splits", type=int, help="seeded splits (default 20, --quick 3)")
    p.add_argument("--first-seed", type=int, default=42, help="seed of the first split (default 42)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    p.add_argument("--default-candidates", default=RECIPES["default"]["candidates"],
                   help="the default recipe's candidates grid for its rows (default: the recipe's, %(default)r)")
    p.add_argument("--only", help="run only these pipelines (comma-separated names as printed, e.g. "
                                  "'squash raw [default recipe]'; the old and the new default always run)")
    args = p.parse_args()
    default_hyper = resolve("default", {"candidates": args.default_candidates})
    n_splits = args.splits or (3 if args.quick else 20)
    t_start = time.time()
    info = machine_info()
    print("machine: %s, %s cores, onnxruntime %s, numpy %s" % (info["cpu"], info["cores"],
                                                               info["versions"]["onnxruntime"],
                                                               info["versions"]["numpy"]), flush=True)
    if not os.path.exists(MODEL):
        sys.exit("models/efficientnet-lite0-features.onnx is missing: run scripts/setup")
    if not os.path.isdir(args.images):
        if args.images != TUXPAINT:
            sys.exit("error: %s is not a folder" % args.images)
        subprocess.run([os.path.join(REPO, "scripts", "fetch-tuxpaint"), args.images], check=True)
    classes, ids, y, blobs, has_alpha, rejected = load_images(args.images)
    counts = np.bincount(y, minlength=len(classes))
    print("images: %d in %d classes (%s); %d rejected; %d with transparency"
          % (len(ids), len(classes), ", ".join("%s %d" % (c, n) for c, n in zip(classes, counts)),
             len(rejected), int(has_alpha.sum())), flush=True)

    base_spec = load_model_spec(MODEL)
    digest = hashlib.sha256()
    for i, data in zip(ids, blobs):
        digest.update(i.encode() + b"\0" + hashlib.sha256(data).digest())
    key = "%s-%s-%s" % (base_spec.model_sha256[:12], digest.hexdigest()[:12],
                        sha256_file(os.path.join(REPO, "mr_tl", "images.py"))[:12])
    policies = QUICK_POLICIES if args.quick else tuple(POLICIES)
    features = {}
    for policy in policies:
        X, X_mirror, pad = featurize(policy, base_spec, blobs, key, args.threads)
        features[policy] = (X, X_mirror)
        if pad[:, 3].any():
            padded = pad[:, 3] > 0
            off_white = np.abs(pad[padded, :3] - 255).max(axis=1) > 8
            print("  %s: %d of %d images padded (mean %.0f %% of the input); pad not white (> 8 levels off) "
                  "for %d of them" % (policy, padded.sum(), len(pad), 100 * pad[padded, 3].mean(), off_white.sum()),
                  flush=True)
    if not args.quick:
        for name, other in ALPHA_WHITE.items():
            pick = has_alpha[:, None]
            features[name] = tuple(np.where(pick, w, o) for w, o in zip(features["letterbox-white"], features[other]))

    pipelines = []
    for policy in features:
        for norm in NORMS:
            for tta in (False, True):
                if not tta or policy == "center-crop" or policy.startswith("letterbox-") and policy in POLICIES:
                    pipelines.append((policy, norm, tta, False))
        if policy in DEFAULT_RECIPE_POLICIES:
            pipelines.append((policy, "raw", False, True))
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")} | {OLD_DEFAULT, NEW_DEFAULT}
        pipelines = [pl for pl in pipelines if pipeline_name(*pl) in wanted]
    split_seeds = [args.first_seed + k for k in range(n_splits)]
    digests = [hashlib.sha256(data).hexdigest() for data in blobs]
    splits = [splits_for(seed, ids, y, classes, digests) for seed in split_seeds]
    print("%d splits (seeds %d..%d): train/val/test %d/%d/%d images; %d pipelines x 2 classifiers"
          % (n_splits, split_seeds[0], split_seeds[-1], len(splits[0]["train"]), len(splits[0]["val"]),
             len(splits[0]["test"]), len(pipelines)), flush=True)

    # The classifiers are small (405 x 1280): one BLAS thread.  OpenBLAS' threads spinning against
    # other processes on a loaded 2-core machine made lbfgs 50 times slower.
    import sklearn.linear_model  # noqa: F401  (loads scipy's own OpenBLAS, so that the limit reaches it)
    from threadpoolctl import threadpool_limits

    blas_limit = threadpool_limits(limits=1)
    results = {}
    for policy, norm, tta, default_recipe in pipelines:
        X, X_mirror = features[policy]
        X_used = (X + X_mirror) / 2 if tta else X
        name = pipeline_name(policy, norm, tta, default_recipe)
        r = {"policy": policy, "norm": norm, "tta": tta, "recipe": "default" if default_recipe else "reference",
             "sk_val": [], "sk_test": [], "sk_C": [], "mr_val": [], "mr_test": []}
        t0 = time.time()
        for idx in splits:
            Xn = normalize(X_used, idx["train"], norm)
            sv, st, C = sklearn_accuracy(Xn, y, idx)
            mv, mt = mr_tl_accuracy(Xn, y, idx, ids, classes, default_hyper if default_recipe else None)
            r["sk_val"].append(sv)
            r["sk_test"].append(st)
            r["sk_C"].append(C)
            r["mr_val"].append(mv)
            r["mr_test"].append(mt)
        r["seconds"] = round(time.time() - t0, 1)
        results[name] = r
        print("  %-52s sklearn %.4f  mr_tl %.4f  (%.0f s)" % (name, np.mean(r["sk_test"]), np.mean(r["mr_test"]),
                                                            r["seconds"]), flush=True)

    blas_limit.unregister()
    default = results["center-crop raw"]
    n_test = len(splits[0]["test"])
    print("\nTest accuracy, mean +- sd over %d splits (%d test images each: one image = %.2f pt); gain = paired "
          "difference to today's default (center-crop raw), mean +- sd over the splits, in points"
          % (n_splits, n_test, 100.0 / n_test))
    print("%-52s %17s %15s %17s %15s %8s" % ("pipeline", "sklearn LR", "gain", "mr_tl head", "gain", "C (mode)"))
    rows = {}
    for name, r in results.items():
        sk, mr = stats(r["sk_test"]), stats(r["mr_test"])
        sk_gain = stats(100 * (np.array(r["sk_test"]) - default["sk_test"]))
        mr_gain = stats(100 * (np.array(r["mr_test"]) - default["mr_test"]))
        C_mode = max(set(r["sk_C"]), key=r["sk_C"].count)
        print("%-52s %8.4f +- %.4f %+6.2f +- %4.2f %8.4f +- %.4f %+6.2f +- %4.2f %8g"
              % (name, sk[0], sk[1], sk_gain[0], sk_gain[1], mr[0], mr[1], mr_gain[0], mr_gain[1], C_mode))
        rows[name] = {"policy": r["policy"], "norm": r["norm"], "tta": r["tta"], "recipe": r["recipe"],
                      "sklearn_test": [round(v, 4) for v in sk], "sklearn_gain_pt": [round(v, 2) for v in sk_gain],
                      "mr_tl_test": [round(v, 4) for v in mr], "mr_tl_gain_pt": [round(v, 2) for v in mr_gain],
                      "sklearn_val_mean": round(float(np.mean(r["sk_val"])), 4),
                      "mr_tl_val_mean": round(float(np.mean(r["mr_val"])), 4), "sklearn_C": r["sk_C"],
                      "sklearn_test_by_split": [round(v, 4) for v in r["sk_test"]],
                      "mr_tl_test_by_split": [round(v, 4) for v in r["mr_test"]]}

    def effect(a, b):
        """Paired test gain of pipeline ``a`` over ``b``, per classifier: points (mean, sd over the splits)
        and in how many splits ``a`` was better, equal, worse."""
        out = {}
        for clf, key in (("sklearn", "sk_test"), ("mr_tl", "mr_test")):
            d = 100 * (np.array(results[a][key]) - results[b][key])
            out[clf] = [round(v, 2) for v in stats(d)] + ["%d/%d/%d" % ((d > 1e-9).sum(), (abs(d) <= 1e-9).sum(),
                                                                       (d < -1e-9).sum())]
        return out

    comparisons = []
    lb = [p for p in POLICIES if p.startswith("letterbox-") and p in features]
    for norm in NORMS:
        comparisons += [("%s %s" % (p, norm), "center-crop %s" % norm) for p in lb + ["squash"]]
    if "letterbox-edge-mean" in features:  # the pad colour rules and squash against the default rule
        comparisons += [("%s raw" % p, "letterbox-edge-mean raw") for p in features
                        if p not in ("center-crop", "letterbox-edge-mean")]
    comparisons += [("%s raw [default recipe]" % p, "%s raw" % p) for p in DEFAULT_RECIPE_POLICIES]
    comparisons += [(NEW_DEFAULT, OLD_DEFAULT)]
    for p in ["center-crop"] + lb:
        comparisons += [("%s %s" % (p, norm), "%s raw" % p) for norm in NORMS[1:]]
        comparisons += [("%s %s +flipTTA" % (p, norm), "%s %s" % (p, norm)) for norm in NORMS]
    effects = {}
    print("\nEffects (paired test gain in points, mean +- sd over the splits, se = sd / sqrt(%d); splits "
          "better/equal/worse):" % n_splits)
    print("%-44s %-30s %24s %24s" % ("pipeline", "over", "sklearn LR", "mr_tl head"))
    for a, b in comparisons:
        if a in results and b in results:
            e = effects["%s | %s" % (a, b)] = effect(a, b)
            print("%-44s %-30s %+6.2f +- %4.2f %9s %+6.2f +- %4.2f %9s" % (a, b, *e["sklearn"], *e["mr_tl"]))

    single = [n for n in results if not results[n]["tta"] and results[n]["recipe"] == "reference"]
    best = max(single, key=lambda n: (np.mean(results[n]["mr_val"]), np.mean(results[n]["sk_val"])))
    best_sk = max(single, key=lambda n: (np.mean(results[n]["sk_val"]), np.mean(results[n]["mr_val"])))
    best_any = max((n for n in results if results[n]["recipe"] == "reference"),
                   key=lambda n: np.mean(results[n]["mr_val"]))
    new_default = effects["%s | %s" % (NEW_DEFAULT, OLD_DEFAULT)]["mr_tl"]
    print("\nnew default pipeline (%s) over the old (%s, reference recipe): test %+.2f +- %.2f pt (splits "
          "better/equal/worse %s)" % (NEW_DEFAULT, OLD_DEFAULT, *new_default))
    print("\nbest single-trunk-pass pipeline by mean val accuracy, mr_tl head: %s: test %+.2f +- %.2f pt over "
          "today's default" % (best, *rows[best]["mr_tl_gain_pt"]))
    print("best single-trunk-pass pipeline by mean val accuracy, sklearn:    %s: test %+.2f +- %.2f pt"
          % (best_sk, *rows[best_sk]["sklearn_gain_pt"]))
    print("best pipeline with TTA allowed (2 trunk passes), mr_tl head:    %s: test %+.2f +- %.2f pt"
          % (best_any, *rows[best_any]["mr_tl_gain_pt"]))
    emit_json({"benchmark": "accuracy", "quick": args.quick, "images": len(ids), "classes": len(classes),
               "per_class": dict(zip(classes, counts.tolist())), "rejected": len(rejected),
               "with_transparency": int(has_alpha.sum()), "splits": n_splits, "test_images": n_test,
               "epochs": EPOCHS, "C_grid": C_GRID, "rows": rows, "default_candidates": args.default_candidates,
               "default_gain_pt": new_default[0], "default_gain_sd_pt": new_default[1],
               "best_single_pass": best, "best_single_pass_gain_pt": rows[best]["mr_tl_gain_pt"][0],
               "best_single_pass_sklearn": best_sk,
               "default_gain_pt_sklearn": rows[best_sk]["sklearn_gain_pt"][0],
               "effects_pt": effects, "best_with_tta": best_any,
               "best_with_tta_gain_pt": rows[best_any]["mr_tl_gain_pt"][0],
               "seconds": round(time.time() - t_start), "machine": info})


if __name__ == "__main__":
    main()
