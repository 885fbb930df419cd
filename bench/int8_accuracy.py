"""What int8 featurizing costs in accuracy: the trained head on fp32 vs int8 features.

    python bench/int8_accuracy.py [--quick]

The real-weights demo task: the hard demo set (``mr_tl.demo_data --hard``,
10 classes) packed with mr_tl.pack, featurized by the real ImageNet
EfficientNet-Lite0 in fp32 and by its int8 version
(``python -m mr_tl.model quantize``, calibrated on 64 of the training
images), then the same head trained on each (reference recipe, one worker,
one round per epoch, 20 epochs) by the real training loop
(``Trainer(InProcessRunner(features), ...)``, the MapReduce rounds'
arithmetic bit for bit) and its head scored on the test split.  Also reports the
cosine similarity of int8 vs fp32 features and the featurizing speed of
both.  Target: accuracy change <= 0.5 point.  Ends with one JSON line.
"""

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from common import emit_json, feature_set, machine_info, train_in_process  # noqa: E402

from mr_tl.demo_data import CLASSES, generate  # noqa: E402
from mr_tl.images import preprocess  # noqa: E402
from mr_tl.model.quantize import quantize_model  # noqa: E402
from mr_tl.model.session import Featurizer  # noqa: E402
from mr_tl.pack import pack  # noqa: E402
from mr_tl.records import PackedImage  # noqa: E402
from mr_tl.threads import available_cores  # noqa: E402
from mr_tl.training.hyperparameters import Hyperparameters  # noqa: E402

MODEL = os.path.join(os.path.dirname(HERE), "models", "efficientnet-lite0-features.onnx")


def featurize(model, packed):
    featurizer = Featurizer(model, threads=available_cores())
    images = []
    for shard in sorted(glob.glob(os.path.join(packed, "*.tsv"))):
        with open(shard, encoding="utf-8") as f:
            images += [PackedImage.from_line(line) for line in f]
    inputs = np.stack([preprocess(i.data, featurizer.spec) for i in images])
    t0 = time.perf_counter()
    X = np.concatenate([featurizer(inputs[k:k + 16]) for k in range(0, len(inputs), 16)])
    speed = len(images) / (time.perf_counter() - t0)
    return [i.id for i in images], [i.split for i in images], np.array([i.label for i in images]), X, speed


def test_accuracy(ids, splits, y, X, epochs=20):
    """Test accuracy of the head the real loop trains (reference recipe, 1 worker, one round per epoch)."""
    data = feature_set(ids, y, splits, X, list(CLASSES))
    test = data.select("test")
    r = train_in_process(data, Hyperparameters(workers=1, averaging_frequency=0), epochs,
                         score={"test": (test.X, test.labels)})
    return r["final"]["test"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="60 instead of 150 images per class")
    args = p.parse_args()
    if not os.path.exists(MODEL):
        sys.exit("models/efficientnet-lite0-features.onnx is missing: run scripts/setup")
    per_class = 60 if args.quick else 150
    with tempfile.TemporaryDirectory() as tmp:
        generate(os.path.join(tmp, "images"), CLASSES, per_class, 0, 160, hard=True)
        pack(os.path.join(tmp, "images"), os.path.join(tmp, "packed"))
        train_shards = sorted(glob.glob(os.path.join(tmp, "packed", "train-*.tsv")))
        t0 = time.perf_counter()
        int8 = os.path.join(tmp, "lite0-int8.onnx")
        quantize_model(MODEL, train_shards, int8, samples=64, seed=42)
        quantize_s = time.perf_counter() - t0
        ids, splits, y, X32, speed32 = featurize(MODEL, os.path.join(tmp, "packed"))
        ids8, _, _, X8, speed8 = featurize(int8, os.path.join(tmp, "packed"))
    assert ids == ids8
    cosine = np.sum(X32 * X8, axis=1) / (np.linalg.norm(X32, axis=1) * np.linalg.norm(X8, axis=1) + 1e-12)
    acc32, acc8 = test_accuracy(ids, splits, y, X32), test_accuracy(ids, splits, y, X8)
    figures = {"benchmark": "int8_accuracy", "quick": args.quick, "images": len(ids),
               "fp32_accuracy": round(acc32, 4), "int8_accuracy": round(acc8, 4),
               "change_pt": round(100 * (acc8 - acc32), 2), "cosine_mean": round(float(cosine.mean()), 4),
               "cosine_min": round(float(cosine.min()), 4), "fp32_img_s": round(speed32, 1),
               "int8_img_s": round(speed8, 1), "speedup": round(speed8 / speed32, 2),
               "quantize_s": round(quantize_s, 1)}
    print("EfficientNet-Lite0 on the hard demo set (%d images, %d test):" % (len(ids), splits.count("test")))
    print("  test accuracy of the head: fp32 %.4f, int8 %.4f (change %+.2f points)" % (acc32, acc8,
                                                                                      figures["change_pt"]))
    print("  feature cosine int8 vs fp32: mean %.4f, min %.4f" % (cosine.mean(), cosine.min()))
    print("  featurize speed: fp32 %.1f img/s, int8 %.1f img/s (%.2fx)" % (speed32, speed8, speed8 / speed32))
    figures["machine"] = machine_info()
    emit_json(figures)


if __name__ == "__main__":
    main()
