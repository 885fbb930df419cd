"""python -m mr_tl.predict: the top classes of images, one by one or as a MapReduce job.

Two forms, told apart by their options:

  single images   python -m mr_tl.predict CLASSIFIER IMAGE... [--top K] [--json]
  batch job       python -m mr_tl.predict -r RUNNER --model CLASSIFIER PACKED... -o OUT [--top K] [--parquet PATH]
                  python -m mr_tl.predict -r RUNNER --run RUN_DIR FEATURES... -o OUT [--top K] [--parquet PATH]

    python -m mr_tl.predict runs/demo/classifier.onnx photo1.jpg photo2.png
    python -m mr_tl.predict classifier.onnx *.jpg --top 3 --json
    python -m mr_tl.predict -r hadoop -c mrjob.conf --model classifier.onnx hdfs:///data/packed -o hdfs:///data/predictions
    python -m mr_tl.predict -r local --run runs/demo features/ -o predictions/

Single images: uses the preprocessing recorded in the classifier's sidecar.
An image that cannot be read is reported with its reason (exit status 1 at
the end); the others are still classified.

Batch job (any option of it -- --model, --run, -o, -r -- selects it): a
map-only job over packed images (--model: the exported classifier, trunk
included) or over feature records (--run: the run's head on features already
made, no trunk; text or Parquet).  One record per image (P id label split
sha256 [[class, probability], ...]), rejected images as R records with their
reason; OUT/_summary.json (counts, reasons, the classifier's sha256 and
classes) and OUT/_COMPLETE once predicted + rejected = input = the pack
manifest (or the features' summary).  Same probabilities as the single-image
form.  See mr_tl/jobs/predict.py.
"""

import argparse
import json
import sys

import numpy as np

from mr_tl.cli import run_command
from mr_tl.export import classes_of
from mr_tl.images import MAX_PIXELS, MIN_SIDE, ImageRejected, preprocess, read_file
from mr_tl.model import graph
from mr_tl.model.session import Featurizer
from mr_tl.threads import available_cores


class Classifier:
    """An exported classifier: images (file bytes) -> class probabilities."""

    def __init__(self, path, threads=None):
        self.model = Featurizer(path, threads=threads or available_cores())
        self.spec = self.model.spec
        self.classes = classes_of(graph.load(path, load_weights=False))

    def top(self, probabilities, k=5):
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.classes[i], float(probabilities[i])) for i in order]


# options that only the batch job has: any of them selects it
JOB_OPTIONS = ("--model", "--run", "-o", "--output-dir", "-r", "--runner")


def is_batch_job(argv):
    """Whether a command line is the batch job's (see the module docstring)."""
    return any(a in JOB_OPTIONS or a.split("=", 1)[0] in JOB_OPTIONS or (a.startswith("-r") and len(a) > 2
                                                                       and not a.startswith("--"))
               for a in argv)


def batch_job_help():
    """The batch job's own options, for the single form's --help."""
    from mr_tl.jobs.predict import MRPredict

    text = MRPredict(args=[]).arg_parser.format_help()
    return text.split("\n", 1)[1] if text.startswith("usage:") else text


def main(argv=None):
    run_command(_main, sys.argv[1:] if argv is None else list(argv))


def _main(argv):
    if is_batch_job(argv):
        from mr_tl.jobs.predict import MRPredict

        MRPredict(args=argv).execute()
        return
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        print("\nbatch job options (python -m mr_tl.predict -r RUNNER --model|--run ... -o OUT):" + batch_job_help())
        sys.exit(0)
    predict_images(build_parser().parse_args(argv))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.predict", description=__doc__.split("\n")[0],
                                usage="%(prog)s CLASSIFIER IMAGE... [--top K] [--json] [--batch-size N]\n"
                                      "       %(prog)s -r RUNNER --model CLASSIFIER PACKED... -o OUT [options]\n"
                                      "       %(prog)s -r RUNNER --run RUN_DIR FEATURES... -o OUT [options]",
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="classifier .onnx written by python -m mr_tl.export")
    p.add_argument("images", nargs="+")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="reject images with more pixels (default %d, as featurize)" % MAX_PIXELS)
    p.add_argument("--min-side", type=int, default=MIN_SIDE,
                   help="reject images with a side shorter than this (default %d, as featurize)" % MIN_SIDE)
    return p


def predict_images(args):
    """The single-image form: print the top classes of every image; exit status 1 if one could not be read."""
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
            batch.append((path, preprocess(read_file(path), classifier.spec, args.max_pixels, args.min_side)))
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
