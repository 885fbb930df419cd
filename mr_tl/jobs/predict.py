"""The batch prediction job: the top classes of every image, as a map-only MapReduce job.

Run through ``python -m mr_tl.predict`` (which also keeps the single-image form)::

    python -m mr_tl.predict -r hadoop --model classifier.onnx hdfs:///data/packed -o hdfs:///data/predictions
    python -m mr_tl.predict -r hadoop --run runs/caltech hdfs:///data/features -o hdfs:///data/predictions

``--model CLASSIFIER PACKED...``: packed images through the classifier
``mr_tl.export`` wrote (trunk, normalization, head, and the flip averaging
if the run's features were made with it), preprocessed as its sidecar says,
``--batch-size`` images per onnxruntime call: the same code path as
featurize (mr_tl.jobs.packed_images), so an image predict rejects is one
featurize rejects, with the same reason.

``--run RUN FEATURES...``: the cheap path for images already featurized.
The run's head (with its feature normalization, ``RunDir.load_classifier``)
is applied to the feature records in numpy, no trunk at all; text or
Parquet features (mr_tl.jobs.feature_input).  Features made by another
model, preprocessing or augmentation than the head's are refused
(``mr_tl.evaluate.check_same_maker``), as are other classes or dimensions.

Output: ``P ID LABEL SPLIT SHA256 TOP`` per image (mr_tl.records.PredictionRecord:
the ``--top`` most probable classes with their probabilities) and
``R ID LABEL SPLIT SHA256 REASON DETAIL`` per rejected image, counted per
reason (``mr_tl rejected/<reason>``).  When the job has ended the command
checks, as featurize does (mr_tl.jobs.accounting): the lines read are
those the pack manifest (or the features' summary) recorded, predicted +
rejected = input, and a check job over the output finds every record the
tasks wrote and no id twice.  Then it writes ``OUT/_labels.json``,
``OUT/_summary.json`` (counts, reasons, every rejected image, the
classifier's sha256 and class names) and, last, ``OUT/_COMPLETE``; with
``--parquet PATH`` also a Parquet dataset of the predictions
(mr_tl.predictions), converted by the driver from the complete text output.
"""

import json
import logging
import os
import time

import numpy as np
from mrjob.step import MRStep

from mr_tl import feature_store, labels, storage
from mr_tl.digest import file_digest
from mr_tl.errors import InputError, ModelError, MrTlError, RecordError
from mr_tl.jobs import accounting
from mr_tl.jobs.base import summed_counters
from mr_tl.jobs.compat import add_to_command_line
from mr_tl.jobs.feature_input import FeatureInputJob
from mr_tl.jobs.packed_images import PackedImageJob
from mr_tl.records import PredictionRecord, decode_vector, feature_line_head, top_classes

log = logging.getLogger("mr_tl")

DONE = "predicted"
BATCH = 512   # feature vectors per head evaluation (--run)


class MRPredict(PackedImageJob, FeatureInputJob):
    """Packed images (``--model``) or feature records (``--run``) -> prediction and rejected records."""


    MODEL_HELP = "the classifier .onnx written by python -m mr_tl.export (its sidecar .json is shipped with it)"
    DONE = DONE

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--run", help="a training run: apply its head to FEATURES (no trunk)")
        self.add_file_arg("--head", help="head.npz to apply (default: RUN/head.npz)")
        self.add_file_arg("--labels", help="class names of the head (default: RUN/labels.json)")
        self.add_passthru_arg("--top", type=int, default=5, help="classes per image, most probable first (default 5)")
        self.add_passthru_arg("--parquet", metavar="PATH",
                              help="also write the predictions as a Parquet dataset folder at PATH")

    def load_args(self, args):
        super().load_args(args)
        o = self.options
        if o.run and not o.run_mapper and not o.run_reducer and not o.run_combiner:
            for name, default in (("head", "head.npz"), ("labels", "labels.json")):
                if not getattr(o, name):
                    setattr(o, name, os.path.join(o.run, default))
                    add_to_command_line(self, ["--" + name, getattr(o, name)])

    def steps(self):
        if self.options.head:
            return [self.feature_step(mapper_init=self.head_init, mapper_final=self.head_final)]
        return [MRStep(mapper_init=self.mapper_init, mapper=self.mapper, mapper_final=self.mapper_final)]

    # -- tasks: --model ----------------------------------------------------------

    def mapper_init(self):
        super().mapper_init()
        self.classes = None

    def compute(self, batch):
        if self.classes is None:
            meta = self.featurizer.session.get_modelmeta().custom_metadata_map
            self.classes = json.loads(meta["mr_tl.classes"])
        return self.featurizer(batch)

    def output_record(self, image, digest, row):
        return PredictionRecord(image.id, image.label, image.split, digest,
                                tuple(top_classes(row, self.classes, self.options.top)))

    # -- tasks: --run --------------------------------------------------------------

    def head_init(self):
        from mr_tl.head import SoftmaxHead
        from mr_tl.normalization import Normalizer
        from mr_tl.records import load_npz

        meta, arrays = load_npz(self.options.head)
        self.head = SoftmaxHead(arrays["W"], arrays["b"])
        self.normalizer = Normalizer.from_arrays(meta.get("normalization", "none"), arrays)
        self.classes = labels.read(self.options.labels)
        self.tally = accounting.TaskTally(self)
        self.rows = []   # (RecordHead, vector)

    def map_feature_line(self, line):
        """Input: one feature/rejected record. Output: its prediction (batched), or the rejected record."""
        self.tally.read(line)
        try:
            head = feature_line_head(line)
            if head.kind == "R":
                self.tally.rejected(head.reason)
                yield self.tally.out(line.rstrip("\r\n"))
                return
            x = decode_vector(line.rsplit("\t", 1)[1], self.head.n_features, head.id)
        except RecordError as e:
            # the features were checked against their summary before the job: a line that is no record
            # means they changed since; say which and where (the counts will not add up)
            self.increment_counter(accounting.COUNTERS, "unreadable lines", 1)
            self.set_status("unreadable line in %s: %s" % (self.input_name(), e))
            return
        self.rows.append((head, x))
        if len(self.rows) >= BATCH:
            yield from self._predict_rows()

    def _predict_rows(self):
        if not self.rows:
            return
        X = self.normalizer.apply(np.stack([x for _, x in self.rows]))
        probabilities = self.head.predict_proba(X)
        for (head, _), row in zip(self.rows, probabilities):
            yield self.tally.out(PredictionRecord(head.id, head.label, head.split, head.sha256,
                                                  tuple(top_classes(row, self.classes, self.options.top))))
        self.tally.done(DONE, len(self.rows))
        self.rows = []

    def head_final(self):
        yield from self._predict_rows()
        self.tally.flush()

    # -- driver ---------------------------------------------------------------------

    def check_inputs(self):
        o = self.options
        if bool(o.model) == bool(o.run):
            raise InputError("give either --model CLASSIFIER (packed images in) or --run RUN_DIR (feature records "
                             "in), not %s" % ("both" if o.model else "neither"))
        self.check_output_dir()
        if o.top < 1:
            raise InputError("--top must be at least 1, found %d" % o.top)
        if o.parquet and storage.exists(self.driver_fs(), o.parquet):
            raise InputError("%s already exists; remove it or choose another --parquet" % o.parquet)
        if not o.args:
            raise InputError("give at least one input: pack output folders (with --model) or features folders "
                             "(with --run)")
        self.started = time.time()
        if o.model:
            self.check_classifier()
        else:
            self.check_run()

    def check_classifier(self):
        from mr_tl.export import classes_of
        from mr_tl.model import graph

        self.spec = self.check_model()
        try:
            self.classifier_classes = classes_of(graph.load(self.options.model, load_weights=False))
            head = json.loads(graph.metadata(graph.load(self.options.model, load_weights=False)).get(
                "mr_tl.head", "{}"))
        except (ModelError, ValueError) as e:
            raise InputError("%s: %s" % (self.options.model, e)) from None
        if self.spec.output_dim != len(self.classifier_classes):
            raise InputError("%s gives %d values per image but names %d classes: is it a classifier written by "
                             "python -m mr_tl.export?" % (self.options.model, self.spec.output_dim,
                                                         len(self.classifier_classes)))
        self.expand_packed_inputs()
        if self.classes != self.classifier_classes:
            log.info("note: the packed images' classes differ from the classifier's; their labels are kept as "
                     "packed (the pack's labels.json names them)")
        self.expected = None   # from the pack manifest, after the job
        self.description = {"file": os.path.basename(self.options.model), "sha256": self.spec.model_sha256,
                            "classes": self.classifier_classes,
                            "made_by": (head.get("features") or {}).get("made_by")}

    def check_run(self):
        from mr_tl.evaluate import check_same_maker
        from mr_tl.run_dir import RunDir

        o = self.options
        run = RunDir(o.run)
        try:
            self.classifier_classes = run.classes()
            head, head_meta, _ = run.load_classifier()
        except MrTlError as e:
            raise InputError(str(e)) from None
        if os.path.abspath(o.head) != os.path.abspath(run.file("head.npz")):
            raise InputError("--head is taken from --run; give the run directory only")
        features = feature_store.open_inputs(self.driver_fs(), o.args)
        if features.dim != head.n_features:
            raise InputError("the features have %d values per image, but the head expects %d: were they made "
                             "with another model than the one the head was trained on?"
                             % (features.dim, head.n_features))
        check_same_maker(head_meta, features, o.args)
        self.classes = features.classes
        featurized, rejected, digest = features.expected()
        written = sum(featurized.values()) + (rejected if features.data_format == "text" else 0)
        self.expected = accounting.Expected(written, digest, "the features' %s" % feature_store.SUMMARY,
                                            "a part file was changed, removed or cut after it was written",
                                            "the feature records")
        o.input_format = features.data_format
        o.args = features.files
        add_to_command_line(self, ["--input-format", o.input_format])
        self.description = {"run": o.run, "file": "head.npz", "sha256": file_digest(o.head),
                            "classes": self.classifier_classes,
                            "made_by": (head_meta.get("features") or {}).get("made_by")}

    def report(self, runner):
        o = self.options
        counters = summed_counters(runner)
        tally = accounting.JobTally.from_counters(counters, (DONE,))
        if o.model:
            pack = storage.pack_accounting(self.args_before_expansion, self.driver_fs())
            expected = accounting.pack_expected(pack)
        else:
            pack, expected = None, self.expected
        found, rejected_heads = self.check_output(runner)
        problems = accounting.check(tally, expected, found, DONE)
        unreadable = counters.get(accounting.COUNTERS, {}).get("unreadable lines", 0)
        if unreadable:
            problems.append("%d input lines are not feature records" % unreadable)
        rejected = accounting.rejected_list(rejected_heads)
        seconds = round(time.time() - self.started, 1)
        accounting.log_result(tally, DONE, seconds, o.output_dir, rejected, pack)
        accounting.fail_unless_complete(o.output_dir, problems)
        from mr_tl.predictions import SUMMARY_FORMAT

        summary = {"format": SUMMARY_FORMAT, "data": "text", "top": o.top, "seconds": seconds,
                   "input": {"images": tally.read, "expected": expected and expected.images,
                             "from": "packed images" if o.model else "feature records"},
                   "records": {"predicted": tally.done[DONE], "rejected": tally.rejected,
                               "digest": tally.written.hexdigest()},
                   "reasons": tally.reasons, "rejected_images": rejected, "classifier": self.description,
                   "pack": pack and pack["accounting"]}
        feature_store.write_metadata(runner.fs, runner.get_output_dir(), self.classifier_classes, summary)
        if o.parquet:
            from mr_tl.predictions import text_to_parquet

            n = text_to_parquet(self.driver_fs(), o.output_dir, o.parquet)
            log.info("  and %d predictions as Parquet in %s", n, o.parquet)

    def check_output(self, runner):
        """:class:`accounting.OutputFound` of the output folder (None if it holds nothing), and the heads of
        its rejected records."""
        from mr_tl.jobs.check_records import MRCheckRecords, parse_output

        kinds, digest, duplicates, rejected = parse_output(self.output_check_lines(MRCheckRecords, runner))
        if kinds is None:
            return None, rejected
        others = sum(n for k, n in kinds.items() if k not in ("P", "R"))
        return accounting.OutputFound(kinds.get("P", 0) + others, kinds.get("R", 0), digest, duplicates), rejected


if __name__ == "__main__":
    MRPredict.run()
