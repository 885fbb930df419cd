"""python -m mr_tl.predict classifier.onnx IMAGE...: top-k classes of images.

    python -m mr_tl.predict runs/demo/classifier.onnx photo1.jpg photo2.png
    python -m mr_tl.predict classifier.onnx *.jpg --top 3 --json

Uses the preprocessing recorded in the classifier's sidecar.  An image that
cannot be read is reported with its reason (exit status 1 at the end); the
others are still classified.
"""

import argparse
import json
import sys

import numpy as np

from mr_tl.cli import run_command
from mr_tl.export import classes_of
from mr_tl.featurizer import Featurizer
from mr_tl.images import ImageRejected, preprocess, read_file
from mr_tl.model import graph
from mr_tl.threads import available_cores


class Classifier:
    """An exported classifier: images (file bytes) -> class probabilities."""

    def __init__(self, path, threads=None):
        self.model = Featurizer(path, threads=threads or available_cores())
        self.spec = self.model.spec
        self.classes = classes_of(graph.load(path, load_weights=False))

    def predict_proba(self, images):
        """``images``: list of file bytes -> ``(N, classes)`` probabilities."""
        return self.model(np.stack([preprocess(data, self.spec) for data in images]))

    def top(self, probabilities, k=5):
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.classes[i], float(probabilities[i])) for i in order]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.predict", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="classifier .onnx written by python -m mr_tl.export")
    p.add_argument("images", nargs="+")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    run_command(predict_images, args)


def predict_images(args):
    """The command's body: print the top classes of every image; exit status 1 if one could not be read."""
    classifier = Classifier(args.model)
    failed = 0
    batch = []

    def flush():
        if not batch:
            return
        probabilities = classifier.model(np.stack([x for _, x in batch]))
        for (path, _), row in zip(batch, probabilities):
            top = classifier.top(row, args.top)
            if args.json:
                print(json.dumps({"image": path, "top": [{"class": c, "probability": p} for c, p in top]},
                                 ensure_ascii=False))
            else:
                print(path)
                for name, prob in top:
                    print("  %6.2f%%  %s" % (100 * prob, name))
        batch.clear()

    for path in args.images:
        try:
            batch.append((path, preprocess(read_file(path), classifier.spec)))
        except ImageRejected as e:
            failed += 1
            if args.json:
                print(json.dumps({"image": path, "error": e.reason, "detail": e.detail}, ensure_ascii=False))
            else:
                print("%s\n  rejected: %s" % (path, e), file=sys.stderr)
        if len(batch) >= args.batch_size:
            flush()
    flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
