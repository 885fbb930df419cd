"""featurize --reuse and the batch predict job, against a full featurize with the same trunk (issue 18).

    python bench/predict_reuse.py --quick           # inline runner, 120 images (a few minutes)
    python bench/predict_reuse.py                   # inline and local runners, 300 images

On N generated 224x224 JPEGs (bench/featurize.py's images, packed into one
shard) and the full random-weights VGG16 cut at fc2 (bench/featurize.py's
cached build, weights beside the graph; 15.5 GMAC per image: a heavy trunk,
as the reference recipe's), each runner measures, end to end (the command's
process, its jobs and its output checks):

(a) full     ``featurize PACKED`` of all N images;
(b) reuse    ``featurize PACKED --reuse OLD`` where OLD holds the features of 90 % of the
             same images (featurized beforehand from a pack of those images alone; their
             ids do not matter, --reuse matches image bytes): 10 % go through the trunk;
(c) predict  ``predict --model CLASSIFIER PACKED``, the classifier exported from a
             seeded random head on the same trunk.

and prints (a)/(b) (target: at least 5) and the predict throughput over
featurize's, (a)/(c) (target: at least 0.9).  It checks that (b)'s records
equal (a)'s, byte for byte, and that (b) ran exactly the new images through
the trunk.  Only ratios measured in the same run mean anything; the last
line printed is one JSON object with every figure.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from featurize import ensure_vgg16, make_pack, write_images  # noqa: E402  (bench/featurize.py)

PYTHON = sys.executable
REUSED_FRACTION = 0.9


def log(*args):
    print(*args, flush=True)


def timed(args):
    """Run ``python -m ARGS``; seconds, end to end."""
    t = time.perf_counter()
    proc = subprocess.run([PYTHON, "-m"] + [str(a) for a in args], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(map(str, args)), proc.stderr[-4000:]))
    return seconds


def records(folder):
    lines = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("part-"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                lines += f.read().splitlines()
    return sorted(lines)


def old_features(work, model, n, reused):
    """The features of the first ``reused`` of the ``n`` images, from a pack of those alone."""
    from mr_tl.pack import SplitSize, pack

    images = os.path.join(work, "old-images")
    write_images(images, n, 224, 0)           # the same seeded images as make_pack's ...
    kept = sorted(os.path.join(d, f) for d, _, fs in os.walk(images) for f in fs)
    dropped = [path for i, path in enumerate(kept) if i * (n - reused) // n != (i + 1) * (n - reused) // n]
    for path in dropped:                      # ... less every tenth (so no class folder is left empty)
        os.unlink(path)
    assert len(kept) - len(dropped) == reused
    packed = os.path.join(work, "old-packed")
    pack(images, packed, val=SplitSize(0), test=SplitSize(0), seed=0)
    out = os.path.join(work, "old-features")
    timed(["mr_tl.featurize", "-r", "inline", "-q", "--model", model, packed, "-o", out])
    return out


def make_classifier(work, model, features):
    from mr_tl import labels
    from mr_tl.run_dir import RunDir, atomic_write

    run = RunDir(os.path.join(work, "run"))
    with open(os.path.join(features, "_labels.json"), encoding="utf-8") as f:
        classes = json.load(f)["classes"]
    with open(os.path.join(features, "_summary.json"), encoding="utf-8") as f:
        made_by = json.load(f)["model"]
    g = np.random.default_rng(0)
    os.makedirs(run.path, exist_ok=True)
    atomic_write(run.file("labels.json"), labels.dumps(classes))
    run.write_head({"W": (g.standard_normal((4096, len(classes))) * 0.01).astype(np.float32),
                    "b": np.zeros(len(classes), dtype=np.float32)}, {"features": {"made_by": made_by}})
    out = os.path.join(work, "classifier.onnx")
    timed(["mr_tl.export", "--trunk", model, "--run", run.path, "-o", out])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="120 images, inline runner only")
    p.add_argument("--images", type=int, help="images (default 300; 120 with --quick)")
    p.add_argument("--runners", help="comma-separated (default inline,local; inline with --quick)")
    args = p.parse_args(argv)
    n = args.images or (120 if args.quick else 300)
    runners = (args.runners or ("inline" if args.quick else "inline,local")).split(",")
    reused = int(round(n * REUSED_FRACTION))
    info = common.machine_info()
    log("machine: %s" % json.dumps(info, sort_keys=True))
    model = ensure_vgg16()
    log("trunk: %s (full random-weights VGG16 cut at fc2)" % model)
    work = tempfile.mkdtemp(prefix="mr_tl-bench-reuse-")
    result = {"images": n, "reused_images": reused, "trunk": "vgg16-random-fc2", "runners": {}, "machine": info}
    try:
        packed = make_pack(work, "packed", n)
        old = old_features(work, model, n, reused)
        log("%d images, old features of %d of them" % (n, reused))
        classifier = None
        for runner in runners:
            out = {k: os.path.join(work, "%s-%s" % (runner, k)) for k in ("full", "reuse", "predict")}
            full = timed(["mr_tl.featurize", "-r", runner, "-q", "--model", model, packed, "-o", out["full"]])
            reuse = timed(["mr_tl.featurize", "-r", runner, "-q", "--model", model, packed, "-o", out["reuse"],
                           "--reuse", old])
            with open(os.path.join(out["reuse"], "_summary.json"), encoding="utf-8") as f:
                counts = json.load(f)["reuse"]
            same = records(out["full"]) == records(out["reuse"])
            if classifier is None:
                classifier = make_classifier(work, model, out["full"])
            predict = timed(["mr_tl.predict", "-r", runner, "-q", "--model", classifier, packed, "-o",
                             out["predict"]])
            figures = {"full_s": round(full, 2), "reuse_s": round(reuse, 2), "predict_s": round(predict, 2),
                       "reuse_speedup": round(full / reuse, 2), "predict_vs_featurize": round(full / predict, 3),
                       "featurize_img_s": round(n / full, 3), "predict_img_s": round(n / predict, 3),
                       "through_trunk": counts["featurized"], "reused": counts["reused"],
                       "reuse_equals_full": same}
            result["runners"][runner] = figures
            log("%-6s full featurize %.1f s (%.2f img/s) | --reuse %.1f s (%d through the trunk, %d reused, same "
                "records: %s): %.2fx faster | predict %.1f s (%.2f img/s): %.3f of featurize's throughput"
                % (runner, full, n / full, reuse, counts["featurized"], counts["reused"], same, full / reuse,
                   predict, n / predict, full / predict))
            for folder in out.values():
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
