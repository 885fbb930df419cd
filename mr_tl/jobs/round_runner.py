"""The training loop's runner that runs everything as MapReduce jobs, on any mrjob runner.

* ``scan``: the scan job (mr_tl.jobs.scan) reads the features once; only its
  small output (counts, worker sizes, digests, moment sums, duplicate ids)
  comes back to the driver.
* ``prepare``: the partition job (mr_tl.jobs.partition) writes the worker
  files into ``WORK_DIR/workers`` where the jobs run (a local folder, or
  HDFS); the driver checks its counters against the scan and then writes
  ``_partition.json`` (seed, workers, tasks, fingerprint, file names) last.
  ``--resume`` reuses the files when that manifest matches.
* ``run_round``: one round job (mr_tl.jobs.train_round) over the worker files;
  the state travels as a small .npz shipped with the job.  With up to
  ``MAP_ONLY_MAX_TASKS`` round tasks the job is map-only and the driver adds
  up the tasks' contributions itself (the reducer's function, the same bits):
  that saves the reduce phase, a Python task start and a shuffle per round
  (bench/round_cost.py).  With more tasks the reducer does it and the next
  state comes back as its one line, so the driver reads one model, not one
  per task.

The driver handles the model, counts and file names only.
"""

import json
import os
import shutil
import tempfile

from mrjob.step import StepFailedException

from mr_tl import feature_store, storage
from mr_tl.digest import MultisetHash
from mr_tl.errors import JobFailed
from mr_tl.jobs.base import runner_hadoop_bin, summed_counters
from mr_tl.jobs.feature_input import check_runner_reads
from mr_tl.jobs.partition import COUNTERS as PARTITION_COUNTERS
from mr_tl.jobs.partition import MRPartition
from mr_tl.jobs.scan import MRScanFeatures, parse_output
from mr_tl.jobs.train_round import RUN_PREFIX, MRTrainRound, next_state
from mr_tl.records import decode_arrays, save_npz
from mr_tl.training.loop import RoundFailed, RoundRunner

PARTITION_FORMAT = "mr_tl.partition/1"
# Up to this many round tasks, the driver finishes the round from the mappers' lines (map-only job).
MAP_ONLY_MAX_TASKS = 8
PARTITION_MANIFEST = "_partition.json"


class MapReduceRunner(RoundRunner):
    """Scan, partition and rounds as jobs of mrjob runner ``runner_args`` (see the module docstring)."""

    def __init__(self, inputs, runner_args, work_dir, hadoop_bin=None, out=print, map_only_max_tasks=None):
        """``map_only_max_tasks``: rounds with at most this many tasks are map-only (0: never; None:
        ``MAP_ONLY_MAX_TASKS``)."""
        self.map_only_max_tasks = MAP_ONLY_MAX_TASKS if map_only_max_tasks is None else map_only_max_tasks
        self.inputs = list(inputs)
        self.runner_args = list(runner_args) + (["--hadoop-bin", hadoop_bin] if hadoop_bin else [])
        self.name = self._runner_name()
        self.fs = storage.filesystem(hadoop_bin or runner_hadoop_bin(MRScanFeatures(args=self.runner_args)))
        self.work_dir = work_dir
        self.out = out
        self.features = feature_store.open_inputs(self.fs, self.inputs)
        self.input_format = self.features.data_format
        check_runner_reads(self.name, self.input_format)
        self.files = self.features.files
        self._tmp = tempfile.mkdtemp(prefix="mr_tl-rounds-")

    def _runner_name(self):
        args = self.runner_args
        for i, a in enumerate(args):
            if a in ("-r", "--runner") and i + 1 < len(args):
                return args[i + 1]
            if a.startswith("--runner="):
                return a.split("=", 1)[1]
        return "local"

    def describe(self):
        makers = [f.summary.get("model") for f in self.features.folders]
        made_by = makers[0] if makers and all(m == makers[0] for m in makers) else None
        return {"inputs": self.inputs, "format": self.input_format, "files": len(self.files), "made_by": made_by}

    # -- what the features are -------------------------------------------------------

    def classes(self):
        return self.features.classes

    def dim(self):
        return self.features.dim

    # -- running jobs ----------------------------------------------------------------------

    def _feature_job(self, job_class, args, output_dir=None):
        """A job over the features (scan, partition): the runner's options, the inputs' format and files.
        The driver listed the inputs itself: no existence check per file (on Hadoop each would be a
        ``hadoop fs -ls``, a JVM start)."""
        extra = ["--output-dir", output_dir] if output_dir else []
        return job_class(args=self.runner_args + ["--no-check-input-paths", "--input-format", self.input_format]
                         + extra + list(args) + self.files)

    def scan(self, hyper, n_classes, dim):
        job = self._feature_job(MRScanFeatures, ["--seed", str(hyper.seed), "--workers", str(hyper.workers),
                                         "--normalization", hyper.normalization, "--classes", str(n_classes),
                                         "--dim", str(dim)])
        with job.make_runner() as runner:
            try:
                runner.run()
            except StepFailedException as e:
                raise JobFailed("the scan of the features failed: %s" % e) from None
            scan, duplicates = parse_output(storage.cat_lines(runner))
        if scan is not None and not scan.unreadable:
            self.features.verify(scan)
        return scan, duplicates

    def _partition_manifest(self, hyper, tasks, scan):
        return {"format": PARTITION_FORMAT, "seed": hyper.seed, "workers": hyper.workers, "tasks": tasks,
                "fingerprint": scan.fingerprint(), "train_records": scan.featurized["train"],
                "val_records": scan.featurized["val"]}

    def prepare(self, hyper, tasks, scan, run_arrays):
        self.run_arrays = run_arrays
        folder = storage.join(self.work_dir, "workers")
        wanted = self._partition_manifest(hyper, tasks, scan)
        text = storage.read_text(self.fs, storage.join(folder, PARTITION_MANIFEST))
        try:
            found = json.loads(text) if text is not None else None
        except ValueError:   # half-written: the worker files are made again
            found = None
        if isinstance(found, dict) and isinstance(found.get("files"), list):
            names = set(storage.file_names(self.fs, folder))
            if {k: found.get(k) for k in wanted} == wanted and set(found.get("files", [])) <= names:
                self.worker_files = [storage.join(folder, n) for n in found["files"]]
                self.out("reusing the worker files in %s" % folder)
                return
        storage.remove(self.fs, folder)
        job = self._feature_job(MRPartition, ["--seed", str(hyper.seed), "--workers", str(hyper.workers),
                                      "--tasks", str(tasks)], output_dir=folder)
        with job.make_runner() as runner:
            try:
                runner.run()
            except StepFailedException as e:
                raise JobFailed("the partition job failed: %s" % e) from None
            counters = summed_counters(runner).get(PARTITION_COUNTERS, {})
        written = (counters.get("train records", 0), counters.get("val records", 0))
        if written != (wanted["train_records"], wanted["val_records"]) \
                or MultisetHash.from_counters(counters).hexdigest() != wanted["fingerprint"]:
            raise JobFailed("the partition job wrote %d training and %d validation records, the scan counted %d "
                            "and %d%s; the worker files in %s are not used"
                            % (written + (wanted["train_records"], wanted["val_records"],
                                          "" if written != (wanted["train_records"], wanted["val_records"])
                                          else " but their content differs", folder)))
        names = [n for n in storage.file_names(self.fs, folder) if n.startswith("part-")]
        if not storage.is_remote(folder):
            names = [n for n in names if os.path.getsize(os.path.join(storage.local_path(folder), n)) > 0]
        storage.write_text(self.fs, storage.join(folder, PARTITION_MANIFEST),
                           json.dumps(dict(wanted, files=names), indent=1) + "\n")
        self.worker_files = [storage.join(folder, n) for n in names]

    def run_round(self, state, candidates, tasks, spec):
        map_only = tasks <= self.map_only_max_tasks
        path = os.path.join(self._tmp, "state.npz")
        arrays = dict(state)
        arrays.update({RUN_PREFIX + k: v for k, v in self.run_arrays.items()})
        save_npz(path, {}, arrays)
        args = ["--state", path, *candidates.to_args(), "--tasks", str(tasks), "--epoch", str(spec.epoch),
                "--first-batch", str(spec.first_batch), "--passes", str(spec.passes)]
        if spec.score:
            args.append("--score")
        if not spec.train:
            args.append("--no-train")
        if map_only:
            args.append("--map-only")
        job = MRTrainRound(args=self.runner_args + ["--no-check-input-paths"] + args + self.worker_files)
        with job.make_runner() as runner:
            try:
                runner.run()
            except StepFailedException as e:
                # a failed job's temp dirs (local, and on HDFS) are removed: the round runs again
                runner.cleanup(["TMP"])
                raise RoundFailed(str(e)) from None
            if map_only:   # the mappers' lines: the driver averages
                new_arrays, meta = next_state(storage.cat_lines(runner), state, candidates, spec,
                                              self.run_arrays.get("worker_sizes"))
            else:          # the reducer's one line
                lines = list(storage.cat_lines(runner))
                if len(lines) != 1:
                    raise JobFailed("the round's reducer wrote %d lines, expected 1" % len(lines))
                meta, new_arrays = decode_arrays(lines[0])
        return (new_arrays if spec.train else state), meta

    def close(self):
        shutil.rmtree(self._tmp, ignore_errors=True)
