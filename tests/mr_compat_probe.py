"""A probe job of the mrjob compatibility tests (tests/test_mrjob_compat.py); one job per module, as mrjob
runs the module itself in every task."""

from mrjob.protocol import RawValueProtocol

from mr_tl.jobs import compat
from mr_tl.jobs.jobconf import ONE_SPLIT_PER_FILE


class MRTaskOfEachLine(compat.HookedMRJob):
    """Emits, for every input line, the map task that read it (``mapreduce.task.partition``)."""

    INPUT_PROTOCOL = RawValueProtocol
    OUTPUT_PROTOCOL = RawValueProtocol

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--shipped")
        self.add_passthru_arg("--one-split", action="store_true")
        self.add_passthru_arg("--fail-on", help="fail the task that reads a line starting with this")

    def jobconf(self):
        conf = dict(super().jobconf())
        if self.options.one_split:
            conf.update(ONE_SPLIT_PER_FILE)
        return conf

    def mapper(self, _, line):
        from mrjob.compat import jobconf_from_env

        if self.options.fail_on and line.startswith(self.options.fail_on):
            raise RuntimeError("task failure on purpose")
        shipped = open(self.options.shipped).read() if self.options.shipped else ""
        yield None, "%s\t%s\t%s" % (jobconf_from_env("mapreduce.task.partition"), line[:1], shipped)

    def adjust_runner_kwargs(self, kwargs):
        kwargs["cmdenv"] = dict(kwargs.get("cmdenv") or {}, MR_TL_COMPAT_PROBE="1")
        return kwargs


if __name__ == "__main__":
    MRTaskOfEachLine.run()
