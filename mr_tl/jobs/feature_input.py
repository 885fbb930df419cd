"""The input side of every job that reads a feature set: text record files or Parquet files.

Text feature files (``part-*`` of featurize) are read line by line, split
wherever Hadoop likes.  Parquet files are read whole by one map task each
(mrjob's ``mapper_raw``: Hadoop copies the file to the task), row group by
row group, and each row becomes the same canonical feature line
(``FeatureRecord.to_line()``) a text file would hold; so a job sees lines
either way and gives the same results for both forms of the same data.
"""

from mrjob.compat import jobconf_from_env
from mrjob.step import MRStep

from mr_tl.jobs.base import MRTLJob

INPUT_FORMATS = ("text", "parquet")


def check_runner_reads(runner_alias, input_format):
    """InputError if that runner cannot read features of that format (mrjob's Spark runner cannot hand
    a task a whole file, which Parquet needs)."""
    from mr_tl.errors import InputError

    if input_format == "parquet" and runner_alias == "spark":
        raise InputError("-r spark cannot read Parquet features (mrjob's Spark runner has no whole-file input); "
                         "convert them with python -m mr_tl.parquet --to-text, or use -r hadoop")


class FeatureInputJob(MRTLJob):
    """Base of jobs whose input is a feature set; subclasses implement :meth:`map_feature_line`."""

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--input-format", choices=INPUT_FORMATS, default="text",
                              help="text feature records (default) or Parquet files (one map task per file)")

    def feature_step(self, **kwargs):
        """The first step: a mapper over feature lines, plus ``kwargs`` (mapper_init, reducer, ...)."""
        if self.options.input_format == "parquet":
            return MRStep(mapper_raw=self._parquet_mapper, **kwargs)
        return MRStep(mapper=self._text_mapper, **kwargs)

    def _text_mapper(self, _, line):
        """Input: one feature/rejected record line."""
        yield from self.map_feature_line(line) or ()

    def _parquet_mapper(self, path, uri):
        """Input: one whole Parquet file (a local copy at ``path``)."""
        from mr_tl import parquet_io

        self._input_uri = uri
        for line in parquet_io.iter_feature_lines(path, where=uri):
            yield from self.map_feature_line(line) or ()

    def input_name(self):
        """The file the task is reading (for messages)."""
        return getattr(self, "_input_uri", None) or jobconf_from_env("mapreduce.map.input.file", "?")

    def map_feature_line(self, line):
        """Handle one feature/rejected record line; return (or yield) output pairs, or None."""
        raise NotImplementedError
