"""An evaluation's files and text: RUN_DIR/evaluation/SPLIT/{metrics.json, per_class.csv, confusion.csv}."""

import csv
import io
import json
import os
import shutil
import tempfile

from mr_tl.metrics import per_class
from mr_tl.run_dir import replace_dir


def evaluation_dir(run_dir, split):
    return os.path.join(run_dir, "evaluation", split)


def write_report(run_dir, split, result, cm, classes):
    """Write the evaluation of ``split`` into RUN_DIR/evaluation/SPLIT, all of it or nothing: the files
    are written into a hidden folder beside it, which then replaces the folder (an older evaluation of
    the split only once the new one is complete)."""
    final = evaluation_dir(run_dir, split)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    out_dir = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=".%s-" % split)
    try:
        _write_files(out_dir, result, cm, classes)
        replace_dir(out_dir, final)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return final


def _write_files(out_dir, result, cm, classes):
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    precision, recall, f1, support = per_class(cm)
    with open(os.path.join(out_dir, "per_class.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "class", "precision", "recall", "f1", "support"])
        for i, name in enumerate(classes):
            w.writerow([i, name, "%.6f" % precision[i], "%.6f" % recall[i], "%.6f" % f1[i], int(support[i])])
    with open(os.path.join(out_dir, "confusion.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted"] + list(classes))
        for name, row in zip(classes, cm):
            w.writerow([name] + [int(x) for x in row])
    try:
        from mr_tl.plots import plot_confusion

        plot_confusion(cm, classes, os.path.join(out_dir, "confusion.png"))
    except ImportError:  # matplotlib is optional
        pass


def format_report(result, cm, classes, k=5, max_rows=30):
    buf = io.StringIO()
    buf.write("%s split: %d examples%s\n" % (result["split"], result["examples"],
                                            " (%d images rejected at featurize)" % result["rejected_images"]
                                            if result["rejected_images"] else ""))
    for name in ("accuracy", "precision", "recall", "f1", "top%d_accuracy" % k, "loss"):
        buf.write("  %-15s %.4f\n" % (name, result[name]))
    precision, recall, f1, support = per_class(cm)
    width = min(30, max(len(c) for c in classes))
    buf.write("  %-*s %9s %9s %9s %8s\n" % (width, "class", "precision", "recall", "f1", "support"))
    for i in range(min(len(classes), max_rows)):
        buf.write("  %-*s %9.3f %9.3f %9.3f %8d\n" % (width, classes[i][:width], precision[i], recall[i], f1[i],
                                                     support[i]))
    if len(classes) > max_rows:
        buf.write("  ... %d more classes in per_class.csv\n" % (len(classes) - max_rows))
    return buf.getvalue().rstrip("\n")
