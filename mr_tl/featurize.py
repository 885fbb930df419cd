"""python -m mr_tl.featurize -r RUNNER --model MODEL PACKED... -o OUT [--augment flip] [--reuse OLD_FEATURES]

Map-only job: packed images in, one feature record per image out.

    python -m mr_tl.featurize -r local --model models/efficientnet-lite0-features.onnx packed/ -o features/
    python -m mr_tl.featurize -r hadoop --model vgg16-fc2.onnx hdfs:///data/packed -o hdfs:///data/features
    python -m mr_tl.featurize -r hadoop --model vgg16-fc2.onnx hdfs:///data/packed -o hdfs:///data/features-2 \\
        --reuse hdfs:///data/features

Each map task loads the onnxruntime session once (``mapper_init``), decodes
and batches its images (``--batch-size``), runs the graph per batch and
flushes the last batch in ``mapper_final``.  The model and its sidecar are
shipped to the tasks by the job.  An image that cannot be decoded becomes a
rejected record with its reason (and a counter per reason), never a crash.

``--augment flip``: each image's features are the mean of the trunk's
outputs for the image and its horizontal mirror (float32); recorded in the
summary's ``model`` entry, so a head trained on them is only ever applied to
flip-averaged features (evaluate, predict) and ``mr_tl.export`` builds the
averaging into the classifier.

``--reuse OLD_FEATURES`` (a complete text features folder; repeatable): an
image whose bytes (sha256) have a feature record in OLD_FEATURES made by the
same model, preprocessing and augmentation is not run through the trunk
again.  The job then has two steps: a join (map: packed lines and old
records keyed by the sha256 of the image; reduce: an image with an old
record becomes that record under its current id, label and split, any other
packed line is passed on) and the featurize map step, which runs the trunk
on what was passed on.  The output is the same records, byte for byte, as a
full run; OLD_FEATURES of another model, preprocessing, augmentation or
rejection limits are refused before anything runs, and old records that do
not add up to their own summary fail the job.

With ``-r local`` the packed lines are first dealt into one part per core
with equal image counts (``balanced_parts``): mrjob's local runner would cut
them into pieces of equal bytes, and images differ in size.  On Hadoop the
input splits are HDFS blocks or whole shards, as usual.

Every record carries the sha256 of the image file it was made from.  The
map tasks add every input line and every output line to two
:class:`~mr_tl.digest.MultisetHash` digests (reported as counters).  When the
job ends, the command checks, without reading vectors
(mr_tl.jobs.accounting):

* the input lines are exactly those the pack manifest recorded (its
  per-shard ``lines_digest``): a shard changed after packing is refused;
* featurized (+ reused) + rejected = input = the images the manifest lists;
* a scan job over the output (ids only cross the shuffle) finds every record
  the tasks wrote (same counts, same digest) and no id twice;

then writes ``OUT/_labels.json`` (from the pack; all inputs must agree),
``OUT/_summary.json`` (counts, reasons, every rejected image, the model and
its preprocessing and augmentation, how many records were reused, the
pack's own accounting) and, last, ``OUT/_COMPLETE``.  Train, evaluate and
parquet read only complete folders.
"""

import hashlib
import logging
import os
import time

from mrjob.protocol import RawProtocol
from mrjob.step import MRStep

from mr_tl import augment as augmentation
from mr_tl import feature_store, storage
from mr_tl.digest import MultisetHash
from mr_tl.errors import InputError, RecordError
from mr_tl.jobs import accounting
from mr_tl.jobs.base import summed_counters
from mr_tl.jobs.jobconf import ONE_SPLIT_PER_FILE, REDUCES
from mr_tl.jobs.packed_images import PackedImageJob, balanced_parts  # noqa: F401  (balanced_parts: used here before)
from mr_tl.model.spec import made_by
from mr_tl.records import NO_DIGEST, FeatureRecord, PackedImage, packed_line_head, relabeled_feature_line

log = logging.getLogger(__name__)

COUNTERS = accounting.COUNTERS
REJECTED = accounting.REJECTED
INPUT_DIGEST = accounting.INPUT_DIGEST
OUTPUT_DIGEST = accounting.OUTPUT_DIGEST
REUSE_DIGEST = "mr_tl reuse digest"   # the old records the join read (checked against their summary)

# the join's values: an old feature record, a packed line; its reducer's keys
OLD, PACKED = "A", "B"
REUSED, NEW = "reused", "new"
# what must be the same for an old feature vector to be reused
MAKER_KEYS = ("sha256", "output", "dim", "cut_at", "preprocessing", "augment")


class MRFeaturize(PackedImageJob):
    """Packed images -> feature records.

    Input: packed image lines ``ID LABEL SPLIT BASE64`` (mr_tl.records.PackedImage), and with
    ``--reuse`` also the feature records of OLD_FEATURES.
    Output: ``F ID LABEL SPLIT SHA256 BASE64(float32)`` per featurized image and
    ``R ID LABEL SPLIT SHA256 REASON DETAIL`` per rejected one.
    """

    COMMAND_DOC = globals()["__doc__"]   # the module docstring (in a class body __doc__ is the class's)

    INTERNAL_PROTOCOL = RawProtocol   # the join's key (sha256) and value (tag + line)
    MODEL_HELP = "feature-extractor .onnx (its sidecar .json is shipped with it)"
    DONE = "featurized"

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--augment", choices=augmentation.AUGMENTS, default="none",
                              help="none (default), or flip: the mean of the features of each image and of its "
                                   "horizontal mirror (the trunk runs twice per image)")
        self.add_passthru_arg("--reuse", action="append", default=[], metavar="OLD_FEATURES",
                              help="a complete features folder made by the same model, preprocessing and "
                                   "augmentation: images whose bytes have a record there are not run through "
                                   "the trunk again (repeatable)")
        self.add_passthru_arg("--join-reducers", type=int, default=0,
                              help="reducers of --reuse's join step (default: one per packed input file)")

    def steps(self):
        featurize = MRStep(mapper_init=self.mapper_init, mapper=self.mapper, mapper_final=self.mapper_final)
        if not self.options.reuse:
            return [featurize]
        # one map task per input file, and in the featurize step one per join reducer (each of its output
        # files): as many featurize tasks as a full run has shards, and no task per sliver of a file
        # (mrjob's local runner would cut every file into pieces, each a process that imports mr_tl)
        join = dict(ONE_SPLIT_PER_FILE)
        if self.options.join_reducers:
            join[REDUCES] = str(self.options.join_reducers)
        return [MRStep(mapper_init=self.join_init, mapper=self.join_mapper, mapper_final=self.join_final,
                       reducer=self.join_reducer, jobconf=join),
                MRStep(mapper_init=self.mapper_init, mapper=self.reuse_mapper, mapper_final=self.mapper_final,
                       jobconf=ONE_SPLIT_PER_FILE)]

    # -- tasks --------------------------------------------------------------

    def compute(self, batch):
        return augmentation.apply(self.options.augment, self.featurizer, batch, self.spec.layout)

    def output_record(self, image, digest, row):
        return FeatureRecord(image.id, image.label, image.split, row, digest)

    def join_init(self):
        self.tally = accounting.TaskTally(self)
        self.old_digest = MultisetHash()

    def join_mapper(self, _, line):
        """Input: a packed image line or an old feature/rejected record. Output: ``sha256 <TAB> tag line``."""
        line = line.rstrip("\r\n")
        fields = line.split("\t", 7)
        if (fields[0] == "F" and len(fields) == 6) or (fields[0] == "R" and len(fields) == 7):
            # a record of OLD_FEATURES (a packed line has 4 fields)
            self.old_digest.add(line)
            self.increment_counter(COUNTERS, "old records", 1)
            if fields[0] == "F" and fields[4] != NO_DIGEST:
                yield fields[4], OLD + "\t" + line
            return
        self.tally.read(line)
        try:
            key = hashlib.sha256(PackedImage.from_line(line).data).hexdigest()
        except RecordError:
            key = "~" + hashlib.sha256(line.encode("utf-8")).hexdigest()   # no old record has this key
        yield key, PACKED + "\t" + line

    def join_final(self):
        self.tally.flush()
        for name, lane in self.old_digest.counters().items():
            self.increment_counter(REUSE_DIGEST, name, lane)

    def join_reducer(self, key, values):
        """Input: the packed lines and old records of one image content. Output: ``reused <TAB> F record``
        per packed line when there is an old record, else ``new <TAB> packed line``."""
        old, packed = None, []
        for value in values:
            tag, line = value.split("\t", 1)
            if tag == OLD:
                old = line if old is None else min(old, line)   # one, whatever the order
            else:
                packed.append(line)
        for line in packed:
            if old is None:
                yield NEW, line
                continue
            try:
                image_id, label, split = packed_line_head(line)
            except RecordError:
                yield NEW, line
                continue
            yield REUSED, relabeled_feature_line(old, image_id, label, split)

    def reuse_mapper(self, key, line):
        """Input: the join's output. Output: reused records as they are, feature/rejected records of the rest."""
        if key == REUSED:
            self.tally.done("reused")
            yield self.tally.out(line)
        else:
            yield from self.map_packed_line(line)

    # -- driver -------------------------------------------------------------

    def check_inputs(self):
        o = self.options
        if not o.model:
            raise InputError("--model is required (an .onnx feature extractor with its sidecar .json)")
        self.check_output_dir()
        if not o.args:
            raise InputError("give at least one packed input (a pack output folder or its .tsv shards)")
        self.spec = self.check_model()
        self.expand_packed_inputs(balance=not o.reuse)
        self.old_features = self.check_reuse() if o.reuse else None
        if self.old_features is not None:
            if not o.join_reducers:
                o.join_reducers = max(1, len(o.args))
            o.args = o.args + self.old_features.files
        self.started = time.time()

    def check_reuse(self):
        """The OLD_FEATURES of ``--reuse`` (FeatureInputs), once they are known to be made as this run makes
        features (InputError naming what differs if not)."""
        old = feature_store.open_inputs(self.driver_fs(), self.options.reuse)
        if old.data_format != "text":
            raise InputError("--reuse needs text features; convert %s with python -m mr_tl.parquet --to-text"
                             % ", ".join(self.options.reuse))
        mine = self.model_description()
        for folder in old.folders:
            theirs = folder.summary.get("model")
            if not isinstance(theirs, dict):
                raise InputError("%s does not say what model made its features (its %s has no model entry): "
                                 "it cannot be reused" % (folder.path, feature_store.SUMMARY))
            for key in MAKER_KEYS:
                if theirs.get(key, "none" if key == "augment" else None) != mine[key]:
                    raise InputError("--reuse %s: those features were made with another %s (%s: %r; this run: %r); "
                                     "nothing of them can be reused: featurize without --reuse"
                                     % (folder.path, key.replace("_", " "), key, theirs.get(key), mine[key]))
            limits = folder.summary.get("limits")
            if limits is not None and limits != self.limits():
                raise InputError("--reuse %s: those features were made with other rejection limits (%r; this run: "
                                 "%r): give the same --max-pixels and --min-side" % (folder.path, limits,
                                                                                  self.limits()))
        return old

    def limits(self):
        return {"max_pixels": self.options.max_pixels, "min_side": self.options.min_side}

    def report(self, runner):
        counters = summed_counters(runner)
        tally = accounting.JobTally.from_counters(counters, ("featurized", "reused") if self.options.reuse
                                                  else ("featurized",))
        pack = storage.pack_accounting(self.args_before_expansion, self.driver_fs())
        # the output as it is on disk: ids only cross the shuffle, nothing comes back but counts
        rejected_heads = []
        scan, duplicates = self.scan_output(runner, rejected_heads)
        found = None if scan is None else accounting.OutputFound(scan.total_featurized, scan.total_rejected,
                                                                 scan.digest, duplicates)
        problems = accounting.check(tally, accounting.pack_expected(pack), found, "featurized")
        problems += self.check_reused(counters)
        rejected_list = accounting.rejected_list(rejected_heads)
        seconds = round(time.time() - self.started, 1)
        accounting.log_result(tally, "featurized", seconds, self.options.output_dir, rejected_list, pack)
        accounting.fail_unless_complete(self.options.output_dir, problems)
        summary_extra = {"input": {"images": tally.read, "expected_from_manifest": pack and pack["images"]},
                         "reasons": tally.reasons, "model": self.model_description(), "limits": self.limits(),
                         "pack": pack and pack["accounting"]}
        if self.options.reuse:
            summary_extra["reuse"] = {"from": list(self.options.reuse), "reused": tally.done["reused"],
                                      "featurized": tally.done["featurized"]}
        records = {"featurized": dict(scan.featurized), "rejected": tally.rejected, "digest": tally.written.hexdigest()}
        summary = feature_store.summary("text", records, self.spec.output_dim, seconds=seconds,
                                        rejected_images=rejected_list, **summary_extra)
        feature_store.write_metadata(runner.fs, runner.get_output_dir(), self.classes, summary)

    def check_reused(self, counters):
        """Problems of the old records the join read (none without --reuse)."""
        if self.old_features is None:
            return []
        featurized, rejected, digest = self.old_features.expected()
        read = counters.get(COUNTERS, {}).get("old records", 0)
        if read != sum(featurized.values()) + rejected or \
                MultisetHash.from_counters(counters.get(REUSE_DIGEST, {})) != digest:
            return ["the features given to --reuse (%s) do not add up to their summary (%d records read, %d "
                    "listed, or other content): were they changed after they were written?"
                    % (", ".join(self.options.reuse), read, sum(featurized.values()) + rejected)]
        return []

    def model_description(self):
        """What made these features (a head trained on them refuses features made another way)."""
        return made_by(self.spec, os.path.basename(self.options.model), self.options.augment)

    def scan_output(self, runner, rejected_heads):
        from mr_tl.jobs.scan import MRScanFeatures, parse_output

        lines = self.output_check_lines(MRScanFeatures, runner, ["--dim", str(self.spec.output_dim),
                                                                 "--classes", str(len(self.classes))])
        return parse_output(lines, rejected_heads)


if __name__ == "__main__":
    MRFeaturize.run()
