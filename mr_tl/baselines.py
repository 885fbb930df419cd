"""python -m mr_tl.baselines PACKED_DIR: what a head on features has to beat.

* majority class: always predict the most frequent training class;
* raw pixels: the same softmax head and optimizer, trained (in one process)
  on the images themselves, shrunk to 16x16 RGB and standardized; the
  learning rate is picked on the val split.

If transfer learning works, the head on network features beats both by far.
"""

import argparse
import glob
import io
import json
import os
import sys

import numpy as np
from PIL import Image, ImageOps

from mr_tl import labels
from mr_tl.cli import run_command
from mr_tl.errors import InputError
from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order, run_minibatches
from mr_tl.images import ImageRejected, probe
from mr_tl.records import PackedImage


def raw_pixels(packed_dir, side=16):
    """``{split: (X, y)}`` of every decodable packed image as flattened RGB pixels."""
    data = {}
    for path in sorted(glob.glob(os.path.join(packed_dir, "*.tsv"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                image = PackedImage.from_line(line)
                try:
                    probe(image.data)
                    pic = ImageOps.exif_transpose(Image.open(io.BytesIO(image.data))).convert("RGB")
                except (ImageRejected, OSError):
                    continue
                x = np.asarray(pic.resize((side, side), Image.BILINEAR), dtype=np.float32).reshape(-1) / 255.0
                xs, ys = data.setdefault(image.split, ([], []))
                xs.append(x)
                ys.append(image.label)
    return {s: (np.stack(xs), np.asarray(ys, dtype=np.int64)) for s, (xs, ys) in data.items()}


def majority_accuracy(y_train, y_test):
    majority = np.bincount(y_train).argmax()
    return float(np.mean(y_test == majority))


def train_head(X, y, n_classes, lr, epochs=60, batch_size=32, seed=42):
    """A softmax head trained in one process with the reference optimizer."""
    head = SoftmaxHead.xavier(X.shape[1], n_classes, seed)
    optimizer = Nesterovs(lr, 0.8)
    state = optimizer.init_state(head)
    for epoch in range(epochs):
        order = epoch_order(len(y), seed, epoch, 0)
        run_minibatches(head, state, optimizer, X, y, order, 0, -(-len(y) // batch_size), batch_size)
    return head


def raw_pixel_accuracy(splits, n_classes, lrs=(0.001, 0.01, 0.1)):
    """Test accuracy of the raw-pixel head whose learning rate did best on val."""
    X_train, y_train = splits["train"]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-6
    norm = {s: ((X - mean) / std, y) for s, (X, y) in splits.items()}
    tune = norm.get("val", norm["train"])
    best = max(lrs, key=lambda lr: np.mean(train_head(*norm["train"], n_classes, lr).predict(tune[0]) == tune[1]))
    head = train_head(*norm["train"], n_classes, best)
    X_test, y_test = norm["test"]
    return float(np.mean(head.predict(X_test) == y_test)), best


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.baselines", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("packed_dir", help="output folder of python -m mr_tl.pack")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    run_command(baselines, args)


def baselines(args):
    n_classes = len(labels.read(os.path.join(args.packed_dir, "labels.json")))
    splits = raw_pixels(args.packed_dir)
    if "test" not in splits or "train" not in splits:
        raise InputError("the pack needs train and test images")
    result = {"majority_accuracy": majority_accuracy(splits["train"][1], splits["test"][1])}
    result["raw_pixel_accuracy"], result["raw_pixel_lr"] = raw_pixel_accuracy(splits, n_classes)
    if args.json:
        print(json.dumps(result))
    else:
        print("baselines on the test split: majority class %.4f, raw-pixel softmax %.4f (lr %g)"
              % (result["majority_accuracy"], result["raw_pixel_accuracy"], result["raw_pixel_lr"]))


if __name__ == "__main__":
    main(sys.argv[1:])
