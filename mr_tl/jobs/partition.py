"""Feature records -> round records: the worker files of a training run.

Run by the train driver once per run (and reused by ``--resume``); not meant
to be run by hand.

Input: a feature set (text feature/rejected records, or Parquet files with
``--input-format parquet``).

Mapper: a training example goes to the worker ``worker_of(id, --seed,
--workers)`` (mr_tl.training.partition), a validation example to the worker
its id would have; both are keyed by that worker's round task (``--tasks``
of them, contiguous blocks of workers).  Test examples and rejected records
are dropped (counted).  Output: ``TASKKEY <TAB> T <TAB> WORKER <TAB> <feature
record>`` or ``TASKKEY <TAB> V <TAB> <feature record>``.

Reducer (one per round task, values sorted): writes the round records as
they come, sorted by kind, worker and id, so the files are the same bytes on
every run; counts them and adds the training records to a
:class:`~mr_tl.digest.MultisetHash` reported as counters, which the driver
compares with the scan's fingerprint of the training split.  On Hadoop and
Spark the output is gzip (never split: one file, one round map task); the
keys are chosen so Hadoop's partitioner gives each round task a reducer, i.e.
a file, of its own.  mrjob's local runners write plain files and the round
job reads each as one task (mr_tl.jobs.compat).
"""

from mrjob.protocol import RawProtocol, RawValueProtocol

from mr_tl.digest import MultisetHash
from mr_tl.errors import RecordError
from mr_tl.jobs.compat import key_for_reducer
from mr_tl.jobs.feature_input import FeatureInputJob
from mr_tl.jobs.jobconf import REDUCES
from mr_tl.records import feature_line_head, train_line, val_line
from mr_tl.training.partition import task_of_worker, worker_of

COUNTERS = "mr_tl partition"
GZIP = {"mapreduce.output.fileoutputformat.compress": "true",
        "mapreduce.output.fileoutputformat.compress.codec": "org.apache.hadoop.io.compress.GzipCodec"}


class MRPartition(FeatureInputJob):
    """Feature records -> round records, one reducer per round task (see the module docstring)."""

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = RawValueProtocol
    SORT_VALUES = True

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--seed", type=int, default=42, help="seed of the worker assignment")
        self.add_passthru_arg("--workers", type=int, default=1, help="workers of the run")
        self.add_passthru_arg("--tasks", type=int, default=1, help="round tasks the workers are spread over")

    def jobconf(self):
        conf = dict(super().jobconf())
        conf[REDUCES] = str(self.options.tasks)
        # Sort on the task key, the kind, the worker, "F" and the id (mrjob's SORT_VALUES alone
        # sorts on the first field of the value only; ids are unique, so this orders every record).
        conf["stream.num.map.output.key.fields"] = "5"
        conf.update(GZIP)
        return conf

    def steps(self):
        return [self.feature_step(mapper_init=self.mapper_init, reducer=self.reducer)]

    def mapper_init(self):
        self.keys = {}

    def _key(self, task):
        if task not in self.keys:
            self.keys[task] = key_for_reducer("t%05d" % task, task, self.options.tasks)
        return self.keys[task]

    def map_feature_line(self, line):
        """Output: ``TASKKEY <TAB> T|V ...`` round records (see the module docstring)."""
        o = self.options
        try:
            head = feature_line_head(line)
        except RecordError:
            self.increment_counter(COUNTERS, "unreadable lines", 1)
            return
        if head.kind != "F" or head.split == "test":
            self.increment_counter(COUNTERS, "skipped (%s)" % ("rejected" if head.kind != "F" else "test"), 1)
            return
        worker = worker_of(head.id, o.seed, o.workers)
        key = self._key(task_of_worker(worker, o.workers, o.tasks))
        line = line.rstrip("\r\n")
        yield key, train_line(worker, line) if head.split == "train" else val_line(line)

    def reducer(self, key, values):
        """Output: the round records of one round task, in sorted order."""
        digest = MultisetHash()
        train = val = 0
        for value in values:
            if value.startswith("T\t"):
                digest.add(value.split("\t", 2)[2])
                train += 1
            else:
                val += 1
            yield None, value
        self.increment_counter(COUNTERS, "train records", train)
        self.increment_counter(COUNTERS, "val records", val)
        for name, lane in digest.counters().items():
            self.increment_counter(COUNTERS, name, lane)


if __name__ == "__main__":
    MRPartition.run()
