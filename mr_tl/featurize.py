"""python -m mr_tl.featurize -r RUNNER --model MODEL PACKED... -o OUT

Map-only job: packed images in, one feature record per image out.

    python -m mr_tl.featurize -r local --model models/efficientnet-lite0-features.onnx packed/ -o features/
    python -m mr_tl.featurize -r hadoop --model vgg16-fc2.onnx hdfs:///data/packed -o hdfs:///data/features

Each map task loads the onnxruntime session once (``mapper_init``), decodes
and batches its images (``--batch-size``), runs the graph per batch and
flushes the last batch in ``mapper_final``.  The model and its sidecar are
shipped to the tasks by the job.  An image that cannot be decoded becomes a
rejected record with its reason (and a counter per reason), never a crash.

With ``-r local`` the packed lines are first dealt into one part per core
with equal image counts (``balanced_parts``): mrjob's local runner would cut
them into pieces of equal bytes, and images differ in size.  On Hadoop the
input splits are HDFS blocks or whole shards, as usual.

Every record carries the sha256 of the image file it was made from.  The
map tasks add every input line and every output line to two
:class:`~mr_tl.digest.MultisetHash` digests (reported as counters).  When the
job ends, the command checks, without reading vectors:

* the input lines are exactly those the pack manifest recorded (its
  per-shard ``lines_digest``): a shard changed after packing is refused;
* featurized + rejected = input = the images the manifest lists;
* a scan job over the output (ids only cross the shuffle) finds every record
  the tasks wrote (same counts, same digest) and no id twice;

then writes ``OUT/_labels.json`` (from the pack; all inputs must agree),
``OUT/_summary.json`` (counts, reasons, every rejected image, the model and
its preprocessing, the pack's own accounting) and, last, ``OUT/_COMPLETE``.
Train, evaluate and parquet read only complete folders.
"""

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import time

from mrjob.protocol import RawValueProtocol
from mrjob.step import StepFailedException

from mr_tl import feature_store, labels, storage
from mr_tl.digest import MultisetHash
from mr_tl.errors import InputError, JobFailed, ModelError, OutputExists, RecordError
from mr_tl.featurizer import Featurizer, external_data_files, shared_featurizer
from mr_tl.images import MAX_PIXELS, MIN_SIDE, ImageRejected, preprocess
from mr_tl.jobs.base import MRTLJob, summed_counters
from mr_tl.jobs.compat import add_to_command_line, runner_alias, runner_command_line
from mr_tl.model.spec import ModelSpec, load_model_spec, made_by, sidecar_path
from mr_tl.records import FeatureRecord, PackedImage, RejectedRecord
from mr_tl.threads import task_threads, threads_in_task

log = logging.getLogger(__name__)

COUNTERS = "mr_tl"
REJECTED = "mr_tl rejected"


INPUT_DIGEST = "mr_tl input digest"
OUTPUT_DIGEST = "mr_tl output digest"


class MRFeaturize(MRTLJob):
    """Packed images -> feature records.

    Input: packed image lines ``ID LABEL SPLIT BASE64`` (mr_tl.records.PackedImage).
    Output: ``F ID LABEL SPLIT SHA256 BASE64(float32)`` per featurized image and
    ``R ID LABEL SPLIT SHA256 REASON DETAIL`` per rejected one.
    """

    INPUT_PROTOCOL = RawValueProtocol
    OUTPUT_PROTOCOL = RawValueProtocol

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--model", help="feature-extractor .onnx (its sidecar .json is shipped with it)")
        self.add_file_arg("--spec", help="sidecar of --model (default: the .json beside it)")
        self.add_passthru_arg("--batch-size", type=int, default=8,
                              help="images per onnxruntime call (default 8)")
        self.add_passthru_arg("--max-pixels", type=int, default=MAX_PIXELS,
                              help="reject images with more pixels (default %d)" % MAX_PIXELS)
        self.add_passthru_arg("--min-side", type=int, default=MIN_SIDE,
                              help="reject images with a side shorter than this (default %d)" % MIN_SIDE)

    def load_args(self, args):
        super().load_args(args)
        # ship the sidecar with the model unless the user named one (file
        # options are shipped from the command line, so extend that too)
        if self.options.model and not self.options.spec and not self.options.run_mapper:
            self.options.spec = sidecar_path(self.options.model)
            add_to_command_line(self, ["--spec", self.options.spec])

    def files(self):
        """Also ship the model's external-data files (weights stored beside the graph), under the
        names the graph refers to, so tasks find them next to their copy of the model."""
        files = list(super().files())
        if self.options.model and not self.options.run_mapper and os.path.isfile(self.options.model):
            try:
                shipped = external_data_files(self.options.model)
            except ModelError as e:
                raise InputError(str(e)) from None
            for path, location in shipped:
                if os.path.basename(location) != location:
                    raise InputError("%s keeps weights in %r; the featurize job ships external data only "
                                        "as plain file names beside the graph" % (self.options.model, location))
                files.append("%s#%s" % (path, location))
        return files

    # -- tasks --------------------------------------------------------------

    def mapper_init(self):
        spec = ModelSpec.load(self.options.spec)
        # reused across tasks that share a process (the inline runner)
        self.featurizer = shared_featurizer(self.options.model, spec, threads_in_task(self.options.threads))
        self.pending = []  # (PackedImage, its sha256, input array)
        self.input_digest, self.output_digest = MultisetHash(), MultisetHash()

    def _out(self, record):
        line = record.to_line()
        self.output_digest.add(line)
        return None, line

    def mapper(self, _, line):
        """Input: one packed image line. Output: feature/rejected record lines (batched)."""
        self.increment_counter(COUNTERS, "input", 1)
        self.input_digest.add(line.rstrip("\r\n"))
        try:
            image = PackedImage.from_line(line)
        except RecordError as e:
            # not even an id to report: count it and say where
            self.increment_counter(REJECTED, "bad-record", 1)
            self.increment_counter(COUNTERS, "rejected", 1)
            yield self._out(RejectedRecord("?line:%s" % line[:60], None, None, "bad-record", str(e)))
            return
        digest = hashlib.sha256(image.data).hexdigest()
        try:
            x = preprocess(image.data, self.featurizer.spec, self.options.max_pixels, self.options.min_side)
        except ImageRejected as e:
            self.increment_counter(REJECTED, e.reason, 1)
            self.increment_counter(COUNTERS, "rejected", 1)
            yield self._out(RejectedRecord(image.id, image.label, image.split, e.reason, e.detail, digest))
            return
        self.pending.append((image, digest, x))
        if len(self.pending) >= self.options.batch_size:
            yield from self._flush()

    def mapper_final(self):
        yield from self._flush()
        for group, digest in ((INPUT_DIGEST, self.input_digest), (OUTPUT_DIGEST, self.output_digest)):
            for name, lane in digest.counters().items():
                self.increment_counter(group, name, lane)

    def _flush(self):
        if not self.pending:
            return
        import numpy as np

        features = self.featurizer(np.stack([x for _, _, x in self.pending]))
        for (image, digest, _), vector in zip(self.pending, features):
            yield self._out(FeatureRecord(image.id, image.label, image.split, vector, digest))
        self.increment_counter(COUNTERS, "featurized", len(self.pending))
        self.set_status("featurized a batch of %d" % len(self.pending))
        self.pending = []

    # -- driver -------------------------------------------------------------

    def check_inputs(self):
        o = self.options
        if not o.model:
            raise InputError("--model is required (an .onnx feature extractor with its sidecar .json)")
        if not o.output_dir:
            raise InputError("-o/--output-dir is required")
        if not o.args:
            raise InputError("give at least one packed input (a pack output folder or its .tsv shards)")
        if o.batch_size < 1:
            raise InputError("--batch-size must be at least 1, found %d" % o.batch_size)
        check_output_free(o.output_dir, runner_alias(self), self.driver_fs)
        try:
            spec = load_model_spec(o.model) if o.spec == sidecar_path(o.model) else ModelSpec.load(o.spec)
            # the graph loads and matches its sidecar
            alias = runner_alias(self)
            if alias == "inline":
                # the tasks run in this process: load the session they will use, once
                shared_featurizer(o.model, spec, o.threads or task_threads(alias))
            else:
                Featurizer(o.model, spec, threads=1, verify_hash=False, check_only=True)
        except ModelError as e:
            raise InputError(str(e)) from None
        self.spec = spec
        self.args_before_expansion = list(o.args)
        o.args = storage.expand_inputs(o.args, storage.PACKED_SUFFIX)
        # every input must carry the same class list: label numbers mean classes by position
        self.classes = labels.agreed(storage.labels_beside(self.driver_fs(), self.args_before_expansion))
        if alias == "local" and not any(storage.is_uri(a) or a.endswith((".gz", ".bz2")) for a in o.args):
            # mrjob's local runner cuts inputs into pieces of equal *bytes*: with images of different
            # sizes the tasks get unequal work and a core idles at the end (9 % of the time on
            # bench/featurize.py's images).  Pieces of equal image counts instead, one per core.
            self.balanced_dir = tempfile.mkdtemp(prefix="mr_tl-featurize-")
            o.args = balanced_parts(o.args, o.num_cores or os.cpu_count() or 1, self.balanced_dir)
        self.started = time.time()

    def run_job(self):
        try:
            super().run_job()
        finally:
            if getattr(self, "balanced_dir", None):
                shutil.rmtree(self.balanced_dir, ignore_errors=True)

    def report(self, runner):
        counters = summed_counters(runner)
        main = counters.get(COUNTERS, {})
        reasons = dict(sorted(counters.get(REJECTED, {}).items()))
        read, featurized, rejected = main.get("input", 0), main.get("featurized", 0), main.get("rejected", 0)
        written = MultisetHash.from_counters(counters.get(OUTPUT_DIGEST, {}))
        pack = storage.pack_accounting(self.args_before_expansion, self.driver_fs())
        summary_extra = {"input": {"images": read, "expected_from_manifest": pack and pack["images"]},
                         "reasons": reasons, "model": self.model_description(),
                         "pack": pack and pack["accounting"]}
        problems = []
        if pack is not None and read != pack["images"]:
            problems.append("the tasks read %d images, the pack manifest lists %d" % (read, pack["images"]))
        elif pack is not None and pack["lines_digest"] is not None and \
                MultisetHash.from_counters(counters.get(INPUT_DIGEST, {})) != pack["lines_digest"]:
            problems.append("the packed shards are not what the pack manifest recorded (a shard was changed "
                            "after packing: check the sha256 of each shard in manifest.json)")
        if featurized + rejected != read:
            problems.append("featurized %d + rejected %d != input %d" % (featurized, rejected, read))
        # the output as it is on disk: ids only cross the shuffle, nothing comes back but counts
        rejected_heads = []
        scan, duplicates = self.scan_output(runner, rejected_heads)
        if scan is None or scan.total_featurized != featurized or scan.total_rejected != rejected \
                or scan.digest != written:
            problems.append("the output holds %s records, the tasks wrote %d featurized and %d rejected"
                            % ("no" if scan is None else "%d featurized and %d rejected" % (
                                scan.total_featurized, scan.total_rejected), featurized, rejected)
                            + ("" if scan is None or scan.total_featurized != featurized
                               or scan.total_rejected != rejected else " (same counts, other content)"))
        if duplicates:
            problems.append("%d image ids appear more than once in the output, e.g. %r"
                            % (len(duplicates), duplicates[0][0]))
        rejected_list = [{"id": h.id, "label": h.label, "split": h.split, "reason": h.reason, "detail": h.detail}
                         for h in sorted(rejected_heads, key=lambda h: h.id)]
        seconds = round(time.time() - self.started, 1)
        log.info("featurized %d, rejected %d%s of %d images in %.1f s -> %s", featurized, rejected,
                 " (%s)" % ", ".join("%s %d" % kv for kv in reasons.items()) if reasons else "", read, seconds,
                 self.options.output_dir)
        for r in rejected_list[:20]:
            log.info("  rejected %s: %s %s", r["id"], r["reason"], r["detail"])
        if len(rejected_list) > 20:
            log.info("  ... %d more in %s/_summary.json", len(rejected_list) - 20, self.options.output_dir)
        if pack is not None:
            a = pack["accounting"]
            log.info("  (pack: %d files found, %d packed, %d rejected, %d skipped; see manifest.json)",
                     a["files_found"], a["images_packed"], a["images_rejected"], a["files_skipped"])
        if problems:
            raise JobFailed("the output in %s is not marked complete: %s" % (self.options.output_dir,
                                                                             "; ".join(problems)))
        tally = {"featurized": dict(scan.featurized), "rejected": rejected, "digest": written.hexdigest()}
        summary = feature_store.summary("text", tally, self.spec.output_dim, seconds=seconds,
                                        rejected_images=rejected_list, **summary_extra)
        feature_store.write_metadata(runner.fs, runner.get_output_dir(), self.classes, summary)

    def model_description(self):
        """What made these features (a head trained on them refuses features made another way)."""
        return made_by(self.spec, os.path.basename(self.options.model))

    def scan_output(self, runner, rejected_heads):
        from mr_tl.jobs.scan import MRScanFeatures, parse_output

        args = runner_command_line(self) + ["--no-check-input-paths", "--dim", str(self.spec.output_dim),
                                            "--classes", str(len(self.classes))]
        job = MRScanFeatures(args=args + [storage.join(runner.get_output_dir(), storage.FEATURES_PATTERN)])
        with job.make_runner() as scan_runner:
            try:
                scan_runner.run()
            except StepFailedException as e:
                raise JobFailed("the check of the output failed: %s" % e) from None
            return parse_output(storage.cat_lines(scan_runner), rejected_heads)


def check_output_free(output_dir, alias, driver_fs):
    """OutputExists if ``output_dir`` is there already: mrjob's inline and local runners would write
    their part files into it (over files of the same name, beside the others) without a word.
    Local paths and ``file://`` URIs are checked here for every runner, other URIs (``hdfs://``)
    through the driver's file system; a path without a scheme on a cluster runner is the
    cluster's (HDFS), and Hadoop refuses an existing output folder itself."""
    if storage.is_remote(output_dir):
        if storage.exists(driver_fs(), output_dir):
            raise OutputExists("output folder %s already exists; remove it or choose another -o" % output_dir)
        return
    if not storage.is_uri(output_dir) and alias not in ("inline", "local"):
        return
    local = storage.local_path(output_dir)
    if os.path.lexists(local) and not os.path.isdir(local):
        raise OutputExists("-o %s is a file, not a folder; choose another -o" % output_dir)
    if os.path.isdir(local) and os.listdir(local):
        raise OutputExists("output folder %s already exists; remove it or choose another -o" % output_dir)


def balanced_parts(paths, parts, folder):
    """The lines of ``paths``, in order, dealt into ``parts`` files of (nearly) equal line counts in
    ``folder``; returns their paths.  The files are gzip at level 0 (stored, so writing them costs
    a copy): mrjob and Hadoop never cut a compressed file, so each one is exactly one map task."""
    def lines():
        for path in paths:
            with open(path, "rb") as f:
                for line in f:
                    # a file's last line may lack its newline: it must not run into the next file's first
                    yield line if line.endswith(b"\n") else line + b"\n"

    total = sum(1 for _ in lines())
    parts = max(1, min(parts, total))
    out, source, written = [], lines(), 0
    for i in range(parts):
        out.append(os.path.join(folder, "part-%05d%s.gz" % (i, storage.PACKED_SUFFIX)))
        with gzip.open(out[-1], "wb", compresslevel=0) as f:
            for _ in range(total * (i + 1) // parts - written):
                f.write(next(source))
                written += 1
    return out


if __name__ == "__main__":
    MRFeaturize.run()
