"""python -m mr_tl.report RUN_DIR: the training monitor, after the fact.

Writes ``RUN_DIR/report/``:

* ``loss.png``: loss vs iteration, raw (every minibatch, averaged over
  workers) and smoothed, as the Deeplearning4j UI shows it;
* ``accuracy.png``: train and validation accuracy at each validation round;
* ``index.html``: one static page with both, the run's configuration and the
  evaluation results if ``mr_tl.evaluate`` has been run.

PNGs need matplotlib (``pip install 'mr_tl[plots]'``); without it the page
is written with the tables only.  For a live view while training runs, use
``python -m mr_tl.monitor RUN_DIR``.
"""

import argparse
import html
import json
import os
import sys

from mr_tl.cli import fail
from mr_tl.errors import RunError
from mr_tl.plots import plot_accuracy, plot_loss
from mr_tl.run import RunDir


def _table(rows):
    return "<table>" + "".join("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(str(k)), html.escape(str(v)))
                               for k, v in rows) + "</table>"


def write_report(run_dir, out_dir=None):
    """Write the report; returns the path of index.html."""
    run = RunDir(run_dir)
    config = run.read_json("config.json")
    metrics = run.read_metrics()
    out_dir = out_dir or os.path.join(run_dir, "report")
    os.makedirs(out_dir, exist_ok=True)
    images, note = [], ""
    try:
        plot_loss(metrics, os.path.join(out_dir, "loss.png"))
        images.append("loss.png")
        if any(m.get("val_accuracy") is not None for m in metrics):
            plot_accuracy(metrics, os.path.join(out_dir, "accuracy.png"))
            images.append("accuracy.png")
    except ImportError:
        note = "<p>Plots need matplotlib: <code>pip install 'mr_tl[plots]'</code>.</p>"
    evaluations = []
    eval_root = os.path.join(run_dir, "evaluation")
    if os.path.isdir(eval_root):
        for split in sorted(os.listdir(eval_root)):
            path = os.path.join(eval_root, split, "metrics.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    evaluations.append((split, json.load(f)))
    training = config["training"]
    last = metrics[-1] if metrics else {}
    parts = ["<!doctype html><meta charset=utf-8><title>mr_tl run %s</title>" % html.escape(run_dir),
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}</style>",
             "<h1>Training run %s</h1>" % html.escape(os.path.basename(os.path.abspath(run_dir))),
             "<p>%d of %d rounds, iteration %s, last loss %s</p>" % (
                 len(metrics), config["rounds"], last.get("iteration", 0),
                 "%.4f" % last["loss"] if last.get("loss") is not None else "-"),
             note] + ['<p><img src="%s" alt="%s"></p>' % (i, i) for i in images]
    for split, result in evaluations:
        parts.append("<h2>Evaluation: %s split</h2>" % html.escape(split))
        parts.append(_table([(k, "%.4f" % v if isinstance(v, float) else v) for k, v in sorted(result.items())]))
        if os.path.isfile(os.path.join(eval_root, split, "confusion.png")):
            parts.append('<p><img src="../evaluation/%s/confusion.png" width="600"></p>' % html.escape(split))
    parts.append("<h2>Configuration</h2>")
    parts.append(_table(sorted(training.items()) + [
        ("epochs", config["epochs"]), ("rounds per epoch", config["rounds_per_epoch"]),
        ("runner", config["runner"]), ("features", ", ".join(config["features"]["inputs"])),
        ("train / val / test examples", "%(train_examples)d / %(val_examples)d / %(test_examples)d"
         % config["features"]), ("feature dimension", config["features"]["dim"]),
        ("classes", config["features"]["classes"])]))
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.report", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", help="folder for the report (default RUN_DIR/report)")
    args = p.parse_args(argv)
    try:
        path = write_report(args.run_dir, args.output)
    except RunError as e:
        fail(str(e))
    print("wrote %s" % path)


if __name__ == "__main__":
    main(sys.argv[1:])
