"""python -m mr_tl.parquet: feature records <-> Parquet.

    python -m mr_tl.parquet features/ -o features.parquet
    python -m mr_tl.parquet hdfs:///data/features -o hdfs:///data/features.parquet
    python -m mr_tl.parquet --to-text features.parquet -o features-again/

Text -> Parquet writes a Parquet *dataset*: a folder with one
``part-NNNNN.parquet`` file per text part file (one row group each, written
while it streams: memory holds one part), plus ``_labels.json``,
``_summary.json`` and, last, ``_COMPLETE``; pandas (``pd.read_parquet``) and
Spark (``spark.read.parquet``) read the folder as it is, and train and
evaluate read it inside their tasks.  Rejected records are counted, not
written (Parquet holds vectors).  Parquet -> text writes one ``part-NNNNN``
per Parquet file.  The round trip is bit-exact (float32 values are copied,
never printed).  Inputs must be complete features folders; the output must
not exist (``--overwrite`` replaces all of it).

HDFS paths go through Hadoop's own file system commands (``hadoop fs -cat``
and ``-put``, via mrjob): pyarrow's HDFS client needs ``libhdfs.so``, which
not every installation has.
"""

import argparse
import os
import shutil
import sys
import tempfile

from mr_tl import feature_store, parquet_io, storage
from mr_tl.cli import run_command
from mr_tl.digest import MultisetHash
from mr_tl.errors import FeatureError, OutputExists
from mr_tl.records import FeatureRecord, parse_feature_line


def _local_lines(path):
    with open(path, "rb") as f:
        for line in f:
            try:
                yield line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise FeatureError("%s is not UTF-8 text (not a feature records file?)" % path) from None


def _source_lines(fs, path):
    return _local_lines(storage.local_path(path)) if not storage.is_remote(path) else storage.iter_lines(fs, [path])


class Output:
    """An output folder written in a temporary place and moved into place when complete."""

    def __init__(self, fs, path, overwrite):
        self.fs, self.path = fs, path
        if storage.exists(fs, path) and not overwrite:
            raise OutputExists("%s already exists (use --overwrite to replace it, or choose another -o)" % path)
        self.overwrite = overwrite
        self.local = None if storage.is_remote(path) else storage.local_path(path)
        parent = os.path.dirname(os.path.abspath(self.local)) if self.local else None
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=".mr_tl-parquet-", dir=parent)
        self.names = []

    def file(self, name):
        """A local path to write ``name`` to."""
        self.names.append(name)
        return os.path.join(self.tmp, name)

    def commit(self, classes, summary):
        """Write the side files (marker last) and put the folder in place, replacing an old one."""
        feature_store.write_metadata(None, self.tmp, classes, summary)
        if self.local:
            if os.path.exists(self.local):
                old = self.tmp + ".old"
                os.replace(self.local, old)
                os.replace(self.tmp, self.local)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.local)
            return
        storage.remove(self.fs, self.path)
        names = sorted(self.names) + [feature_store.LABELS, feature_store.SUMMARY]
        storage.put_files(self.fs, [os.path.join(self.tmp, n) for n in names], self.path)
        storage.put_file(self.fs, os.path.join(self.tmp, feature_store.MARKER),
                         storage.join(self.path, feature_store.MARKER))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def _carried(inputs):
    """What the inputs' summaries say of their making (one input: all of it)."""
    if len(inputs.folders) != 1:
        return {"sources": [f.path for f in inputs.folders]}
    keep = {k: v for k, v in inputs.folders[0].summary.items() if k not in ("format", "data", "dim", "records")}
    keep["source"] = inputs.folders[0].path
    return keep


def text_to_parquet(fs, inputs, output, overwrite=False):
    """Write the Parquet dataset of text features folders; returns the tally."""
    features = feature_store.open_inputs(fs, inputs)
    if features.data_format != "text":
        raise FeatureError("%s already hold Parquet; use --to-text to convert back" % ", ".join(inputs))
    out = Output(fs, output, overwrite)
    tally, rejected, every_line = feature_store.RecordTally(), 0, MultisetHash()
    try:
        for n, path in enumerate(features.files):
            writer = parquet_io.PartWriter(out.file("part-%05d.parquet" % n), features.dim, features.classes)
            for line_number, line in enumerate(_source_lines(fs, path), 1):
                if not line:
                    continue
                try:
                    record = parse_feature_line(line, features.dim)
                except ValueError as e:
                    raise FeatureError("line %d of %s: %s" % (line_number, path, e)) from None
                every_line.add(line)
                if isinstance(record, FeatureRecord):
                    writer.add(record)
                    tally.add(record, line)
                else:
                    rejected += 1
            writer.close()
        expected, expected_rejected, digest = features.expected()
        if tally.featurized != expected or rejected != expected_rejected:
            raise FeatureError("%s: the data files do not add up to their summary (%s featurized, %d rejected; "
                               "summary: %s, %d); was a part file removed, cut or edited after it was written?"
                               % (", ".join(inputs), tally.featurized, rejected, expected, expected_rejected))
        if every_line != digest:
            raise FeatureError("%s: the data files do not add up to their summary: the records differ from those "
                               "%s describes (same counts, other content); was a part file edited after it was "
                               "written?" % (", ".join(inputs), feature_store.SUMMARY))
        summary = feature_store.summary("parquet", tally, features.dim, rejected_not_written=rejected,
                                        **_carried(features))
        out.commit(features.classes, summary)
    except BaseException:
        out.abort()
        raise
    return tally, rejected, features


def parquet_to_text(fs, inputs, output, overwrite=False):
    """Write the text form of Parquet features folders; returns the tally."""
    features = feature_store.open_inputs(fs, inputs)
    if features.data_format != "parquet":
        raise FeatureError("--to-text needs Parquet features; %s hold text" % ", ".join(inputs))
    out = Output(fs, output, overwrite)
    tally = feature_store.RecordTally()
    try:
        with tempfile.TemporaryDirectory(prefix="mr_tl-parquet-in-") as tmp:
            for n, path in enumerate(features.files):
                local = path
                if storage.is_remote(path):
                    local = os.path.join(tmp, "in.parquet")
                    with open(local, "wb") as f:
                        for chunk in fs.cat(path):
                            f.write(chunk)
                with open(out.file("part-%05d" % n), "w", encoding="utf-8") as f:
                    for record in parquet_io.iter_records(storage.local_path(local), where=path):
                        line = record.to_line()
                        tally.add(record, line)
                        f.write(line + "\n")
        expected, _, digest = features.expected()
        if tally.featurized != expected or tally.digest != digest:
            raise FeatureError("%s: the Parquet files do not add up to their summary" % ", ".join(inputs))
        summary = feature_store.summary("text", tally, features.dim, **_carried(features))
        out.commit(features.classes, summary)
    except BaseException:
        out.abort()
        raise
    return tally, 0, features


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.parquet", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="features folders (text; Parquet with --to-text)")
    p.add_argument("-o", "--output", required=True, help="the folder to write (a Parquet dataset, or text with "
                                                         "--to-text); must not exist")
    p.add_argument("--to-text", action="store_true", help="convert Parquet back to text feature records")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (all of it) if it exists")
    p.add_argument("--hadoop-bin", help="hadoop command for hdfs:// paths (default: found like mrjob does)")
    return p


def convert(args):
    fs = storage.filesystem(args.hadoop_bin)
    convert_one = parquet_to_text if args.to_text else text_to_parquet
    tally, rejected, features = convert_one(fs, args.inputs, args.output, args.overwrite)
    total = sum(tally.featurized.values())
    print("wrote %d feature vectors (%d-d, %d classes)%s to %s"
          % (total, features.dim, len(features.classes),
             ", skipped %d rejected records" % rejected if rejected else "", args.output))


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_command(convert, args)


if __name__ == "__main__":
    main(sys.argv[1:])
