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

``RUN_DIR/report/`` is the run's own view of its files and holds nothing else:
each report replaces all of it (written beside it, then swapped in, so it is
never half old, half new).  Another folder given with ``-o`` must not exist
(``--overwrite`` replaces all of it).
"""

import argparse
import html
import json
import os
import shutil
import sys
import tempfile

from mr_tl.cli import run_command
from mr_tl.errors import OutputExists, RunError
from mr_tl.plots import plot_accuracy, plot_loss
from mr_tl.run_dir import RunDir, replace_dir


def _table(rows):
    return "<table>" + "".join("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(str(k)), html.escape(str(v)))
                               for k, v in rows) + "</table>"


def _evaluations(eval_root):
    """``[(split, metrics)]`` of the evaluations in RUN_DIR/evaluation (unreadable ones are skipped)."""
    found = []
    if os.path.isdir(eval_root):
        for split in sorted(os.listdir(eval_root)):
            if split.startswith("."):
                continue
            try:
                with open(os.path.join(eval_root, split, "metrics.json"), encoding="utf-8") as f:
                    result = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(result, dict):
                found.append((split, result))
    return found


def write_report(run_dir, out_dir=None, overwrite=False):
    """Write the report (see the module docstring); returns the path of index.html."""
    run = RunDir(run_dir)
    config = run.read_config()
    metrics = run.read_metrics()
    own = os.path.join(run_dir, "report")
    out_dir = out_dir or own
    if os.path.lexists(out_dir) and os.path.abspath(out_dir) != os.path.abspath(own):
        if not os.path.isdir(out_dir) or os.path.islink(out_dir):
            raise OutputExists("-o %s exists and is not a folder; choose another -o" % out_dir)
        if os.listdir(out_dir) and not overwrite:
            raise OutputExists("%s already exists (use --overwrite to replace it, or choose another -o)" % out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".report-")
    try:
        _write_into(tmp, run_dir, config, metrics)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(out_dir, "index.html")


def _write_into(out_dir, run_dir, config, metrics):
    images, note = [], ""
    try:
        plot_loss(metrics, os.path.join(out_dir, "loss.png"))
        images.append("loss.png")
        if any(m.get("val_accuracy") is not None for m in metrics):
            plot_accuracy(metrics, os.path.join(out_dir, "accuracy.png"))
            images.append("accuracy.png")
    except ImportError:
        note = "<p>Plots need matplotlib: <code>pip install 'mr_tl[plots]'</code>.</p>"
    eval_root = os.path.join(run_dir, "evaluation")
    evaluations = _evaluations(eval_root)
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
        ("runner", config["runner"]), ("features", ", ".join(map(str, config["features"].get("inputs") or []))),
        ("train / val / test examples", "%(train_examples)d / %(val_examples)d / %(test_examples)d"
         % config["features"]), ("feature dimension", config["features"]["dim"]),
        ("classes", config["features"]["classes"])]))
    with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.report", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", help="folder for the report (default RUN_DIR/report, replaced each time); "
                                          "must not exist")
    p.add_argument("--overwrite", action="store_true", help="replace the -o folder (all of it) if it exists")
    args = p.parse_args(argv)
    run_command(_report_command, args)


def _report_command(args):
    if not os.path.isdir(args.run_dir):
        raise RunError("%s is not a training run directory (python -m mr_tl.train ... -o RUN_DIR)" % args.run_dir)
    print("wrote %s" % write_report(args.run_dir, args.output, args.overwrite))


if __name__ == "__main__":
    main(sys.argv[1:])
