"""python -m mr_tl.evaluate -r RUNNER --run RUN_DIR FEATURES... [--split test]

    python -m mr_tl.evaluate -r local --run runs/demo features/ --split test
    python -m mr_tl.evaluate -r hadoop --run runs/caltech hdfs:///data/features --split test

Mappers score the trained head (with the run's feature normalization) on
their share of the feature records of one split and emit partial counts
(confusion matrix, top-k hits, summed loss, and anything wrong: unreadable
lines, non-finite vectors, labels out of range); records of other splits are
dropped before their vectors are decoded.  The combiner and the reducer add
the counts up.  The command refuses features that are incomplete, made by
another model or preprocessing than the head's, or of other classes; after
the job it checks that every record of the split was scored (the count in
the features' summary), then reports accuracy, macro precision / recall / F1
(as scikit-learn's ``average="macro"``), top-k accuracy and a per-class
table, and writes ``RUN_DIR/evaluation/SPLIT/{metrics.json, per_class.csv,
confusion.csv}`` (and ``confusion.png`` with the plots extra).

The mappers also count every record of every split and add every line to a
:class:`~mr_tl.digest.MultisetHash` (no vector of another split is decoded),
so the features are checked against their ``_summary.json`` as a whole: a
part file removed, cut at a line boundary or edited is refused, whichever
split it held.  An existing evaluation of the split is not replaced unless
``--overwrite`` is given; the new one is written in full or not at all.
"""

import os

import numpy as np
from mrjob.protocol import RawProtocol, RawValueProtocol

from mr_tl import feature_store
from mr_tl.digest import MultisetHash
from mr_tl.errors import FeatureError, InputError, JobFailed, MrTlError, OutputExists, RecordError
from mr_tl.evaluation import evaluation_dir, format_report, write_report
from mr_tl.jobs.compat import add_to_command_line, runner_alias
from mr_tl.jobs.feature_input import FeatureInputJob, check_runner_reads
from mr_tl.jobs.jobconf import REDUCES
from mr_tl.metrics import ScoreCounts, score_head
from mr_tl.records import SPLITS, decode_arrays, decode_vector, encode_arrays, feature_line_head
from mr_tl.run_dir import RunDir

BATCH = 512
PROBLEMS = ("unreadable", "non_finite", "bad_label")


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def check_same_maker(head_meta, features, where):
    """InputError if the features were made by another model, preprocessing or augmentation than
    those the head was trained on (as far as both record it)."""
    trained_on = (head_meta.get("features") or {}).get("made_by")
    made_by = [f.summary.get("model") for f in features.folders]
    if not trained_on:
        return
    from mr_tl.model.spec import describe_difference

    for folder, model in zip(features.folders, made_by):
        if not model:
            continue
        for key, what in (("sha256", "model"), ("preprocessing", "preprocessing"), ("augment", "augmentation")):
            if model.get(key) != trained_on.get(key):
                raise InputError("%s were made with another %s than the features the head was trained on "
                                 "(%s %s); featurize them with the same model, sidecar and --augment"
                                 % (folder.path, what, key, describe_difference(model.get(key), trained_on.get(key))))


class RecordCount:
    """What the mappers counted of all the records (for FeatureInputs.verify)."""

    def __init__(self, featurized, rejected, digest):
        self.featurized, self.total_rejected, self.digest = featurized, rejected, digest


class MREvaluate(FeatureInputJob):
    """Feature records -> summed evaluation counts.

    Input: feature/rejected record lines (or Parquet files with ``--input-format parquet``).
    Mapper output: ``counts``, one partial-count line per task.
    Reducer output: one line, the totals (``encode_arrays``: confusion matrix; meta: top-k hits,
    loss units, rejected records of the split, problems seen and an example of each).
    """

    COMMAND_DOC = globals()["__doc__"]   # the module docstring (in a class body __doc__ is the class's)

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = RawValueProtocol
    JOBCONF = {REDUCES: "1"}

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--head", help="head.npz to score (default: RUN_DIR/head.npz)")
        self.add_passthru_arg("--split", default="test", choices=SPLITS, help="split to score (default test)")
        self.add_passthru_arg("--top-k", type=int, default=5, help="k of top-k accuracy (default 5)")
        self.add_passthru_arg("--run", help="the training run directory")
        self.add_passthru_arg("--overwrite", action="store_true",
                              help="replace an existing evaluation of the split (RUN_DIR/evaluation/SPLIT)")

    def steps(self):
        return [self.feature_step(mapper_init=self.mapper_init, mapper_final=self.mapper_final,
                                  combiner=self.combiner, reducer=self.reducer)]

    # -- tasks ---------------------------------------------------------------------

    def mapper_init(self):
        from mr_tl.head import head_from_arrays
        from mr_tl.normalization import Normalizer
        from mr_tl.records import load_npz

        meta, arrays = load_npz(self.options.head)
        self.head = head_from_arrays(arrays)
        self.normalizer = Normalizer.from_arrays(meta.get("normalization", "none"), arrays)
        n = self.head.n_classes
        self.counts = ScoreCounts(confusion=np.zeros((n, n), dtype=np.int64))
        # every record of every split, for the check against the features' summary
        self.meta = {"rejected": 0, "records": {s: 0 for s in SPLITS}, "records_rejected": 0}
        self.digest = MultisetHash()
        for name in PROBLEMS:
            self.meta[name], self.meta[name + "_example"] = 0, None
        self.rows, self.labels = [], []

    def _problem(self, name, example):
        self.meta[name] += 1
        self.meta[name + "_example"] = _min(self.meta[name + "_example"], example)

    def _score_pending(self):
        if self.rows:
            X = self.normalizer.apply(np.stack(self.rows))
            y = np.asarray(self.labels, dtype=np.int64)
            self.counts.add(score_head(self.head, X, y, self.options.top_k, with_confusion=True))
            self.rows, self.labels = [], []

    def map_feature_line(self, line):
        """Input: one feature record line. Output: nothing until mapper_final."""
        try:
            head = feature_line_head(line)
            self.digest.add(line)
            if head.kind == "R":
                self.meta["records_rejected"] += 1
            else:
                self.meta["records"][head.split] += 1
            if head.split != self.options.split:
                return          # other splits are dropped before their vectors are decoded
            if head.kind == "R":
                self.meta["rejected"] += 1
                return
            x = decode_vector(line.rsplit("\t", 1)[1], self.head.n_features, head.id)
        except RecordError as e:
            self._problem("unreadable", "%s: %s" % (self.input_name(), e))
            return
        if not np.all(np.isfinite(x)):
            self._problem("non_finite", head.id)
        elif head.label >= self.head.n_classes:
            self._problem("bad_label", head.id)
        else:
            self.rows.append(x)
            self.labels.append(head.label)
            if len(self.rows) >= BATCH:
                self._score_pending()

    def mapper_final(self):
        """Output: ``counts``, the task's totals."""
        self._score_pending()
        self.increment_counter("mr_tl", "examples scored", self.counts.examples)
        yield "counts", encode_arrays(dict(self.meta, scores=self.counts.to_meta(), digest=self.digest.lanes),
                                      {"cm": self.counts.confusion})

    def _sum(self, lines):
        total, counts = None, ScoreCounts()
        for line in lines:
            meta, arrays = decode_arrays(line)
            counts.add(ScoreCounts.from_meta(meta["scores"], arrays["cm"]))
            if total is None:
                total = {k: v for k, v in meta.items() if k != "scores"}
                continue
            total["rejected"] += meta["rejected"]
            total["records_rejected"] += meta["records_rejected"]
            for s in SPLITS:
                total["records"][s] += meta["records"][s]
            total["digest"] = MultisetHash(total["digest"]).update(MultisetHash(meta["digest"])).lanes
            for name in PROBLEMS:
                total[name] += meta[name]
                total[name + "_example"] = _min(total[name + "_example"], meta[name + "_example"])
        return encode_arrays(dict(total, scores=counts.to_meta()), {"cm": counts.confusion})

    def combiner(self, key, lines):
        """Input/output: partial-count lines, summed."""
        yield key, self._sum(lines)

    def reducer(self, key, lines):
        """Input: partial-count lines. Output: the totals, one line."""
        yield None, self._sum(lines)

    # -- driver ------------------------------------------------------------------

    def load_args(self, args):
        super().load_args(args)
        o = self.options
        if o.run and not o.head and not o.run_mapper and not o.run_reducer and not o.run_combiner:
            o.head = os.path.join(o.run, "head.npz")
            add_to_command_line(self, ["--head", o.head])

    def check_inputs(self):
        o = self.options
        if not o.run:
            raise InputError("--run RUN_DIR is required (the training run to evaluate)")
        if not o.args:
            raise InputError("give the features to score (featurize or parquet output folders)")
        if o.top_k < 1:
            raise InputError("--top-k must be at least 1, found %d" % o.top_k)
        run = RunDir(o.run)
        if not os.path.isfile(o.head):
            raise InputError("%s does not exist: has training finished?" % o.head)
        try:
            self.classes = run.classes()
            if os.path.abspath(o.head) == os.path.abspath(run.file("head.npz")):
                head, head_meta, _ = run.load_classifier()
            else:
                from mr_tl.head import head_from_arrays
                from mr_tl.records import load_npz

                head_meta, arrays = load_npz(o.head)
                head = head_from_arrays(arrays)
        except (MrTlError, OSError, ValueError, KeyError) as e:
            raise InputError(str(e)) from None
        if head.n_classes != len(self.classes):
            raise InputError("head has %d classes, labels.json lists %d" % (head.n_classes, len(self.classes)))
        features = feature_store.open_inputs(self.driver_fs(), o.args)
        if features.dim != head.n_features:
            raise InputError("the features have %d values per image, but the head expects %d: were they made "
                             "with another model than the one the head was trained on?"
                             % (features.dim, head.n_features))
        if features.classes != self.classes:
            raise InputError("the features' labels differ from the run's labels.json: the head was trained "
                             "on other classes (or in another order)")
        check_same_maker(head_meta, features, o.args)
        if features.expected()[0][o.split] == 0:
            raise InputError("the %s split has no featurized examples in these features" % o.split)
        out = evaluation_dir(o.run, o.split)
        if os.path.lexists(out) and not o.overwrite:
            raise OutputExists("%s already holds an evaluation of the %s split (use --overwrite to replace it)"
                               % (out, o.split))
        self.features = features
        check_runner_reads(runner_alias(self), features.data_format)
        o.input_format = features.data_format
        o.args = features.files
        add_to_command_line(self, ["--input-format", o.input_format])

    def report(self, runner):
        from mr_tl import storage

        lines = list(storage.cat_lines(runner))
        if len(lines) != 1:
            raise JobFailed("evaluation reducer wrote %d lines, expected 1" % len(lines))
        meta, arrays = decode_arrays(lines[0])
        counts = ScoreCounts.from_meta(meta["scores"], arrays["cm"])
        split = self.options.split
        problems = ["%d %s, e.g. %s" % (meta[name], what, meta[name + "_example"])
                    for name, what in (("unreadable", "line(s) that are not feature records"),
                                       ("non_finite", "feature vector(s) with NaN or inf values"),
                                       ("bad_label", "image(s) with a label beyond the head's classes"))
                    if meta[name]]
        if problems:
            raise FeatureError("the %s split cannot be scored: %s" % (split, "; ".join(problems)))
        # the features as a whole, against their summary (nothing missing, cut or changed in any split)
        self.features.verify(RecordCount(meta["records"], meta["records_rejected"], MultisetHash(meta["digest"])))
        expected, _, _ = self.features.expected()
        if counts.examples != expected[split]:
            raise FeatureError("scored %d examples of the %s split, but the features' summary lists %d: a part "
                               "file is missing or was cut" % (counts.examples, split, expected[split]))
        if counts.examples == 0:
            raise FeatureError("the %s split has no featurized examples in these features" % split)
        k = self.options.top_k
        result = counts.summary(k)
        result["split"] = split
        result["rejected_images"] = meta["rejected"]
        write_report(self.options.run, split, result, counts.confusion, self.classes)
        print(format_report(result, counts.confusion, self.classes, k))


if __name__ == "__main__":
    MREvaluate.run()
