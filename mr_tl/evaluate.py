"""python -m mr_tl.evaluate -r RUNNER --run RUN_DIR FEATURES... [--split test]

    python -m mr_tl.evaluate -r local --run runs/demo features/ --split test
    python -m mr_tl.evaluate -r hadoop --run runs/caltech hdfs:///data/features --split test

Mappers score the trained head on their share of the feature records of one
split and emit partial counts (confusion matrix, top-5 hits, summed loss);
the combiner and the reducer add them up.  The command then reports
accuracy, macro precision / recall / F1 (as scikit-learn's ``average="macro"``),
top-5 accuracy and a per-class table, and writes
``RUN_DIR/evaluation/SPLIT/{metrics.json, per_class.csv, confusion.csv}``
(and ``confusion.png`` with the plots extra).
"""

import csv
import io
import json
import os

import numpy as np
from mrjob.protocol import RawProtocol, RawValueProtocol

from mr_tl import storage

# Losses are summed as integers of this unit so the total does not depend on
from mr_tl.errors import InputError, RunError
from mr_tl.head import SoftmaxHead, log_softmax
from mr_tl.job import MRTLJob
from mr_tl.metrics import confusion_matrix, per_class, summarize, top_k_hits
from mr_tl.records import SPLITS, FeatureRecord, decode_arrays, encode_arrays, load_npz, parse_feature_line
from mr_tl.run import RunDir

# the order partial sums arrive in (float addition is not associative).
LOSS_UNIT = 1e-9
BATCH = 512


# A per-example loss is capped here before it is turned into units (a head
# that assigns a class probability below e^-1e6 is simply wrong).
MAX_LOSS = 1e6


def partial_counts(head, X, y, k=5):
    """Counts for one batch: confusion matrix, top-k hits, loss in LOSS_UNITs (a Python int)."""
    with np.errstate(over="ignore", invalid="ignore"):
        logits = head.logits(X)
        log_p = log_softmax(logits)
    losses = np.nan_to_num(-log_p[np.arange(len(y)), y].astype(np.float64), nan=MAX_LOSS, posinf=MAX_LOSS)
    units = np.rint(np.minimum(losses, MAX_LOSS) / LOSS_UNIT).astype(np.int64)  # < 2**60 each
    return (confusion_matrix(y, logits.argmax(axis=1), head.n_classes), top_k_hits(logits, y, k),
            sum(int(u) for u in units))


class MREvaluate(MRTLJob):
    """Feature records -> summed evaluation counts.

    Input: feature/rejected record lines (featurize output).
    Mapper output: ``counts``, one partial-count line per task.
    Reducer output: one line, the totals (``encode_arrays``: confusion matrix; meta: examples,
    top-k hits, loss units, rejected records seen).
    """

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = RawValueProtocol
    JOBCONF = {"mapreduce.job.reduces": "1"}

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--head", help="head.npz to score (default: RUN_DIR/head.npz)")
        self.add_passthru_arg("--split", default="test", choices=SPLITS, help="split to score (default test)")
        self.add_passthru_arg("--top-k", type=int, default=5, help="k of top-k accuracy (default 5)")
        self.add_passthru_arg("--run", help="the training run directory")

    def mapper_init(self):
        _, arrays = load_npz(self.options.head)
        self.head = SoftmaxHead(arrays["W"], arrays["b"])
        n = self.head.n_classes
        self.totals = {"cm": np.zeros((n, n), dtype=np.int64), "hits": 0, "loss_units": 0, "rejected": 0}
        self.rows, self.labels = [], []

    def _score_pending(self):
        if self.rows:
            cm, hits, loss_units = partial_counts(self.head, np.stack(self.rows),
                                                  np.asarray(self.labels, dtype=np.int64), self.options.top_k)
            self.totals["cm"] += cm
            self.totals["hits"] += hits
            self.totals["loss_units"] += loss_units
            self.rows, self.labels = [], []

    def mapper(self, _, line):
        """Input: one feature record line. Output: nothing until mapper_final."""
        record = parse_feature_line(line, dim=self.head.n_features)
        if not isinstance(record, FeatureRecord):
            if record.split == self.options.split:
                self.totals["rejected"] += 1
            return
        if record.split != self.options.split:
            return
        if record.label >= self.head.n_classes:
            raise ValueError("image %r has label %d, the head knows %d classes"
                             % (record.id, record.label, self.head.n_classes))
        self.rows.append(record.features)
        self.labels.append(record.label)
        if len(self.rows) >= BATCH:
            self._score_pending()

    def mapper_final(self):
        """Output: ``counts``, the task's totals."""
        self._score_pending()
        t = self.totals
        self.increment_counter("mr_tl", "examples scored", int(t["cm"].sum()))
        yield "counts", encode_arrays({"hits": t["hits"], "loss_units": t["loss_units"],
                                       "rejected": t["rejected"]}, {"cm": t["cm"]})

    def _sum(self, lines):
        total_meta, cm = {"hits": 0, "loss_units": 0, "rejected": 0}, None
        for line in lines:
            meta, arrays = decode_arrays(line)
            cm = arrays["cm"] if cm is None else cm + arrays["cm"]
            for k in total_meta:
                total_meta[k] += int(meta[k])
        return total_meta, cm

    def combiner(self, key, lines):
        """Input/output: partial-count lines, summed."""
        meta, cm = self._sum(lines)
        yield key, encode_arrays(meta, {"cm": cm})

    def reducer(self, key, lines):
        """Input: partial-count lines. Output: the totals, one line."""
        meta, cm = self._sum(lines)
        yield None, encode_arrays(meta, {"cm": cm})

    # -- driver ------------------------------------------------------------------

    def load_args(self, args):
        super().load_args(args)
        o = self.options
        if o.run and not o.head and not o.run_mapper and not o.run_reducer and not o.run_combiner:
            o.head = os.path.join(o.run, "head.npz")
            self._cl_args = list(self._cl_args) + ["--head", o.head]

    def check_inputs(self):
        o = self.options
        if not o.run:
            raise InputError("--run RUN_DIR is required (the training run to evaluate)")
        if not o.args:
            raise InputError("give the feature records to score (featurize output, or .parquet via "
                                "python -m mr_tl.parquet --to-text)")
        run = RunDir(o.run)
        try:
            self.classes = run.classes()
            if not os.path.isfile(o.head):
                raise RunError("%s does not exist: has training finished?" % o.head)
            meta, arrays = load_npz(o.head)
        except (RunError, OSError, ValueError) as e:
            raise InputError(str(e)) from None
        if arrays["W"].shape[1] != len(self.classes):
            raise InputError("head has %d classes, labels.json lists %d" % (arrays["W"].shape[1], len(self.classes)))
        fs = self.driver_fs()
        dim = storage.first_feature_dim(fs, storage.expand_inputs(o.args, storage.FEATURES_PATTERN))
        if dim is not None and dim != arrays["W"].shape[0]:
            raise InputError("the features have %d values per image, but the head expects %d: were they made "
                                "with another model than the one the head was trained on?" % (dim, arrays["W"].shape[0]))
        labels_text = storage.find_labels(o.args, fs)
        if labels_text is not None and json.loads(labels_text)["classes"] != self.classes:
            raise InputError("the features' labels differ from the run's labels.json: the head was trained "
                                "on other classes (or in another order)")
        o.args = storage.expand_inputs(o.args, storage.FEATURES_PATTERN)

    def report(self, runner):
        lines = list(storage.cat_lines(runner))
        if len(lines) != 1:
            raise InputError("evaluation reducer wrote %d lines, expected 1" % len(lines))
        meta, arrays = decode_arrays(lines[0])
        cm = arrays["cm"]
        if cm.sum() == 0:
            raise InputError("the %s split has no featurized examples in these features" % self.options.split)
        k = self.options.top_k
        result = summarize(cm, meta["hits"], meta["loss_units"] * LOSS_UNIT, k=k)
        result["split"] = self.options.split
        result["rejected_images"] = meta["rejected"]
        write_report(self.options.run, self.options.split, result, cm, self.classes)
        print(format_report(result, cm, self.classes, k))


def write_report(run_dir, split, result, cm, classes):
    out_dir = os.path.join(run_dir, "evaluation", split)
    os.makedirs(out_dir, exist_ok=True)
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
        from mr_tl.report import plot_confusion
    except ImportError:
        return
    plot_confusion(cm, classes, os.path.join(out_dir, "confusion.png"))


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


if __name__ == "__main__":
    MREvaluate.run()
