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

When the job ends the command checks that featurized + rejected = input,
writes ``OUT/_summary.json`` (counts, reasons, every rejected image) and
``OUT/_labels.json`` (copied from the pack), and prints the summary.
"""

import gzip
import json
import logging
import os
import shutil
import tempfile
import time

from mrjob.protocol import RawValueProtocol

from mr_tl import storage
from mr_tl.errors import InputError, ModelError, RecordError
from mr_tl.featurizer import Featurizer, external_data_files, shared_featurizer
from mr_tl.images import MAX_PIXELS, MIN_SIDE, ImageRejected, preprocess
from mr_tl.job import MRTLJob, task_threads, threads_in_task
from mr_tl.model.spec import ModelSpec, load_model_spec, sidecar_path
from mr_tl.records import FeatureRecord, PackedImage, RejectedRecord, feature_line_head

log = logging.getLogger(__name__)

COUNTERS = "mr_tl"
REJECTED = "mr_tl rejected"


class MRFeaturize(MRTLJob):
    """Packed images -> feature records.

    Input: packed image lines ``ID LABEL SPLIT BASE64`` (mr_tl.records.PackedImage).
    Output: ``F ID LABEL SPLIT BASE64(float32)`` per featurized image and
    ``R ID LABEL SPLIT REASON DETAIL`` per rejected one.
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
            self._cl_args = list(self._cl_args) + ["--spec", self.options.spec]

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
        self.pending = []  # (PackedImage, input array)

    def mapper(self, _, line):
        """Input: one packed image line. Output: feature/rejected record lines (batched)."""
        self.increment_counter(COUNTERS, "input", 1)
        try:
            image = PackedImage.from_line(line)
        except RecordError as e:
            # not even an id to report: count it and say where
            self.increment_counter(REJECTED, "bad-record", 1)
            self.increment_counter(COUNTERS, "rejected", 1)
            yield None, RejectedRecord("?line:%s" % line[:60], None, None, "bad-record", str(e)).to_line()
            return
        try:
            x = preprocess(image.data, self.featurizer.spec, self.options.max_pixels, self.options.min_side)
        except ImageRejected as e:
            self.increment_counter(REJECTED, e.reason, 1)
            self.increment_counter(COUNTERS, "rejected", 1)
            yield None, RejectedRecord(image.id, image.label, image.split, e.reason, e.detail).to_line()
            return
        self.pending.append((image, x))
        if len(self.pending) >= self.options.batch_size:
            yield from self._flush()

    def mapper_final(self):
        yield from self._flush()

    def _flush(self):
        if not self.pending:
            return
        import numpy as np

        features = self.featurizer(np.stack([x for _, x in self.pending]))
        for (image, _), vector in zip(self.pending, features):
            yield None, FeatureRecord(image.id, image.label, image.split, vector).to_line()
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
        local_out = o.output_dir[len("file://"):] if o.output_dir.startswith("file://") else o.output_dir
        if not storage.is_uri(local_out) and os.path.exists(local_out) and os.listdir(local_out):
            # mrjob's local runners would overwrite it without a word (Hadoop refuses too)
            raise InputError("output folder %s already exists; remove it or choose another -o" % o.output_dir)
        try:
            spec = load_model_spec(o.model) if o.spec == sidecar_path(o.model) else ModelSpec.load(o.spec)
            # the graph loads and matches its sidecar
            alias = self._runner_class().alias
            if alias == "inline":
                # the tasks run in this process: load the session they will use, once
                shared_featurizer(o.model, spec, o.threads or task_threads(alias))
            else:
                Featurizer(o.model, spec, threads=1, verify_hash=False, check_only=True)
        except ModelError as e:
            raise InputError(str(e)) from None
        self.args_before_expansion = list(o.args)
        o.args = storage.expand_inputs(o.args, storage.PACKED_SUFFIX)
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
        counters = {}
        for step in runner.counters():
            for group, names in step.items():
                for name, n in names.items():
                    counters.setdefault(group, {})[name] = counters.get(group, {}).get(name, 0) + n
        main = counters.get(COUNTERS, {})
        reasons = dict(sorted(counters.get(REJECTED, {}).items()))
        # read the output back: the counters could lie (a lost task), the records cannot
        featurized, rejected, ids, per_split = 0, [], set(), {}
        duplicates = 0
        for line in storage.cat_lines(runner):
            kind, image_id, label, split, reason, detail = feature_line_head(line)
            if image_id in ids:
                duplicates += 1
            ids.add(image_id)
            if kind == "F":
                featurized += 1
                per_split[split] = per_split.get(split, 0) + 1
            else:
                rejected.append({"id": image_id, "label": label, "split": split, "reason": reason, "detail": detail})
        expected = storage.expected_images(self.args_before_expansion, runner.fs)
        read = main.get("input", 0)
        summary = {
            "input": read, "expected_from_manifest": expected,
            "featurized": featurized, "featurized_per_split": dict(sorted(per_split.items())),
            "rejected": len(rejected), "reasons": reasons,
            "duplicates": duplicates, "seconds": round(time.time() - self.started, 1),
            "model": os.path.basename(self.options.model), "rejected_images": rejected,
        }
        storage.write_side_file(runner, "_summary.json", json.dumps(summary, indent=1, ensure_ascii=False))
        labels = storage.find_labels(self.args_before_expansion, runner.fs)
        if labels is not None:
            storage.write_side_file(runner, "_labels.json", labels)
        log.info("featurized %d, rejected %d%s of %d images in %.1f s -> %s",
                 featurized, len(rejected),
                 " (%s)" % ", ".join("%s %d" % kv for kv in reasons.items()) if reasons else "",
                 read, summary["seconds"], self.options.output_dir)
        for r in rejected[:20]:
            log.info("  rejected %s: %s %s", r["id"], r["reason"], r["detail"])
        if len(rejected) > 20:
            log.info("  ... %d more in %s/_summary.json", len(rejected) - 20, self.options.output_dir)
        if duplicates:
            raise InputError("%d image ids appear more than once in the output" % duplicates)
        if featurized + len(rejected) != read or (expected is not None and read != expected):
            raise InputError("counts do not add up: featurized %d + rejected %d != input %d (manifest: %s)"
                                % (featurized, len(rejected), read, expected))


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
