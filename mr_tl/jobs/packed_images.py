"""The base of the jobs that run an ONNX graph over packed images: featurize (the trunk) and predict (a
classifier).

Input: packed image lines ``ID LABEL SPLIT BASE64`` (mr_tl.records.PackedImage).
Each map task loads the onnxruntime session once (``mapper_init``; shared by
the tasks of one process), decodes and batches its images (``--batch-size``),
runs the graph per batch and flushes the last batch in ``mapper_final``.  The
model, its sidecar and its external weights are shipped to the tasks.  An
image that cannot be decoded becomes a rejected record ``R ...`` with its
reason (a counter per reason), never a crash; every line read and written is
accounted for (mr_tl.jobs.accounting).  A subclass says what a batch becomes
(:meth:`PackedImageJob.compute`) and what one image's record is
(:meth:`PackedImageJob.output_record`).
"""

import gzip
import hashlib
import os
import shutil
import tempfile

from mrjob.protocol import RawValueProtocol

from mr_tl import labels, storage
from mr_tl.errors import InputError, ModelError, OutputExists, RecordError
from mr_tl.images import MAX_PIXELS, MIN_SIDE, ImageRejected, preprocess
from mr_tl.jobs.accounting import TaskTally
from mr_tl.jobs.base import MRTLJob
from mr_tl.jobs.compat import add_to_command_line, runner_alias
from mr_tl.model.session import Featurizer, external_data_files, shared_featurizer
from mr_tl.model.spec import ModelSpec, load_model_spec, sidecar_path
from mr_tl.records import PackedImage, RejectedRecord
from mr_tl.threads import task_threads, threads_in_task


def bad_record(line, error):
    """The rejected record of an input line that is not a packed image (not even an id to report)."""
    return RejectedRecord("?line:%s" % line[:60], None, None, "bad-record", str(error))


class PackedImageJob(MRTLJob):
    """Packed images -> one record per image through an ONNX graph (see the module docstring)."""

    INPUT_PROTOCOL = RawValueProtocol
    OUTPUT_PROTOCOL = RawValueProtocol
    MODEL_HELP = "the .onnx graph (its sidecar .json is shipped with it)"
    DONE = "done"   # the counter of images the graph ran on

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--model", help=self.MODEL_HELP)
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
                    raise InputError("%s keeps weights in %r; the job ships external data only "
                                     "as plain file names beside the graph" % (self.options.model, location))
                files.append("%s#%s" % (path, location))
        return files

    # -- tasks --------------------------------------------------------------

    def compute(self, batch):
        """``(N, ...)`` preprocessed images -> N rows (what :meth:`output_record` gets)."""
        return self.featurizer(batch)

    def output_record(self, image, digest, row):
        """The record of one image (a PackedImage, the sha256 of its bytes) and its row of :meth:`compute`."""
        raise NotImplementedError

    @property
    def featurizer(self):
        """The onnxruntime session of ``--model``, created on first use (a task that only passes records
        on never loads it) and reused across tasks that share a process (the inline runner)."""
        if self._featurizer is None:
            self._featurizer = shared_featurizer(self.options.model, self.spec, threads_in_task(self.options.threads))
        return self._featurizer

    def mapper_init(self):
        self.spec = ModelSpec.load(self.options.spec)
        self._featurizer = None
        self.pending = []  # (PackedImage, its sha256, input array)
        self.tally = TaskTally(self)

    def mapper(self, _, line):
        """Input: one packed image line. Output: records (batched)."""
        self.tally.read(line)
        yield from self.map_packed_line(line)

    def map_packed_line(self, line):
        """One packed image line, already counted as read: its rejected record, or a batch's records."""
        try:
            image = PackedImage.from_line(line)
        except RecordError as e:
            # not even an id to report: count it and say where
            self.tally.rejected("bad-record")
            yield self.tally.out(bad_record(line, e))
            return
        digest = hashlib.sha256(image.data).hexdigest()
        try:
            x = preprocess(image.data, self.spec, self.options.max_pixels, self.options.min_side)
        except ImageRejected as e:
            self.tally.rejected(e.reason)
            yield self.tally.out(RejectedRecord(image.id, image.label, image.split, e.reason, e.detail, digest))
            return
        self.pending.append((image, digest, x))
        if len(self.pending) >= self.options.batch_size:
            yield from self._flush()

    def mapper_final(self):
        yield from self._flush()
        self.tally.flush()

    def _flush(self):
        if not self.pending:
            return
        import numpy as np

        rows = self.compute(np.stack([x for _, _, x in self.pending]))
        for (image, digest, _), row in zip(self.pending, rows):
            yield self.tally.out(self.output_record(image, digest, row))
        self.tally.done(self.DONE, len(self.pending))
        self.set_status("%s a batch of %d" % (self.DONE, len(self.pending)))
        self.pending = []

    # -- driver -------------------------------------------------------------

    def check_output_dir(self):
        o = self.options
        if not o.output_dir:
            raise InputError("-o/--output-dir is required")
        check_output_free(o.output_dir, runner_alias(self), self.driver_fs)

    def check_model(self):
        """The model's spec, once the graph is known to load and match its sidecar (InputError if not)."""
        o = self.options
        try:
            spec = load_model_spec(o.model) if o.spec == sidecar_path(o.model) else ModelSpec.load(o.spec)
            alias = runner_alias(self)
            if alias == "inline":
                # the tasks run in this process: load the session they will use, once
                shared_featurizer(o.model, spec, o.threads or task_threads(alias))
            else:
                Featurizer(o.model, spec, threads=1, verify_hash=False, check_only=True)
        except ModelError as e:
            raise InputError(str(e)) from None
        return spec

    def expand_packed_inputs(self, balance=True):
        """Expand the packed inputs into their shards; read the class list they agree on
        (``self.classes``); with ``-r local``, deal them into balanced parts (:func:`balanced_parts`)."""
        o = self.options
        if o.batch_size < 1:
            raise InputError("--batch-size must be at least 1, found %d" % o.batch_size)
        self.args_before_expansion = list(o.args)
        o.args = storage.expand_inputs(o.args, storage.PACKED_SUFFIX)
        # every input must carry the same class list: label numbers mean classes by position
        self.classes = labels.agreed(storage.labels_beside(self.driver_fs(), self.args_before_expansion))
        if balance and runner_alias(self) == "local" and not any(
                storage.is_uri(a) or a.endswith((".gz", ".bz2")) for a in o.args):
            # mrjob's local runner cuts inputs into pieces of equal *bytes*: with images of different
            # sizes the tasks get unequal work and a core idles at the end (9 % of the time on
            # bench/featurize.py's images).  Pieces of equal image counts instead, one per core.
            self.balanced_dir = tempfile.mkdtemp(prefix="mr_tl-%s-" % type(self).__name__.lower())
            o.args = balanced_parts(o.args, o.num_cores or os.cpu_count() or 1, self.balanced_dir)

    def run_job(self):
        try:
            super().run_job()
        finally:
            if getattr(self, "balanced_dir", None):
                shutil.rmtree(self.balanced_dir, ignore_errors=True)


def check_output_free(output_dir, alias, driver_fs):
    """OutputExists if ``output_dir`` is there already: mrjob's inline and local runners would write
    their part files into it (over files of the same name, beside the others) without a word.
    Local paths and ``file://`` URIs are checked here for every runner, other URIs (``hdfs://``)
    through the driver's file system; a path without a scheme is refused with ``-r hadoop``
    (InputError): Hadoop would resolve it against whatever its default file system and working
    folder are."""
    if storage.is_remote(output_dir):
        if storage.exists(driver_fs(), output_dir):
            raise OutputExists("output folder %s already exists; remove it or choose another -o" % output_dir)
        return
    if not storage.is_uri(output_dir) and alias not in ("inline", "local"):
        if alias != "hadoop":
            return   # Spark's (and the cloud runners') default file system decides
        # Hadoop would resolve it against its default file system and working folder (a scratch
        # folder in standalone mode): say where, before any upload or job
        raise InputError("-o %s: with -r %s give the output as a URI: hdfs:///path on a cluster, "
                         "file:///absolute/path on standalone Hadoop" % (output_dir, alias))
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
