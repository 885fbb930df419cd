"""python -m mr_tl.parquet: feature records <-> Parquet.

    python -m mr_tl.parquet features/ -o features.parquet
    python -m mr_tl.parquet hdfs:///data/features -o hdfs:///data/features.parquet
    python -m mr_tl.parquet --to-text features.parquet -o features-again/

Text -> Parquet keeps every featurized image (rejected records are counted,
not written: Parquet holds vectors).  Parquet -> text writes one
``part-00000`` file plus ``_labels.json``, readable by train and evaluate.
The round trip is bit-exact (float32 values are copied, never printed).

HDFS paths go through Hadoop's own file system commands (``hadoop fs -cat``
and ``-put``, via mrjob): pyarrow's HDFS client needs ``libhdfs.so``, which
Apache does not publish on Maven Central, so it is not assumed to exist.
"""

import argparse
import json
import os
import sys
import tempfile

from mr_tl import storage
from mr_tl.cli import fail
from mr_tl.errors import FeatureError, InputError, PackError
from mr_tl.features import read_parquet, read_sources, write_parquet
from mr_tl.records import FeatureRecord


def load_labels_text(fs, paths, explicit=None):
    text = storage.read_text(fs, explicit) if explicit else storage.find_labels(paths, fs)
    if text is None:
        return None
    obj = json.loads(text)
    return [str(c) for c in obj["classes"]]


def text_to_parquet(fs, inputs, output, labels_path=None):
    files = storage.list_data_files(fs, inputs, storage.FEATURES_PATTERN)
    classes = load_labels_text(fs, inputs, labels_path)
    with storage.local_copies(fs, files) as copies:
        features = read_sources([(path, storage.iter_lines(fs, [copy])) for path, copy in zip(files, copies)],
                                classes=classes)
    features.classes = classes or []
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "features.parquet")
        write_parquet(features, local)
        storage.put_file(fs, local, output)
    return features


def parquet_to_text(fs, source, out_dir):
    with tempfile.TemporaryDirectory() as tmp:
        local = source
        if storage.is_uri(source) and not source.startswith("file://"):
            local = os.path.join(tmp, "in.parquet")
            with open(local, "wb") as f:
                for chunk in fs.cat(source):
                    f.write(chunk)
        features = read_parquet(local)
        part = os.path.join(tmp, "part-00000")
        with open(part, "w", encoding="utf-8") as f:
            for image_id, label, split, row in zip(features.ids, features.labels, features.splits, features.X):
                f.write(FeatureRecord(image_id, int(label), split, row).to_line() + "\n")
        labels = os.path.join(tmp, "_labels.json")
        with open(labels, "w", encoding="utf-8") as f:
            json.dump({"format": "mr_tl.labels/1", "classes": features.classes}, f, ensure_ascii=False)
        join = (lambda a, b: a.rstrip("/") + "/" + b) if storage.is_uri(out_dir) else os.path.join
        storage.put_file(fs, part, join(out_dir, "part-00000"))
        storage.put_file(fs, labels, join(out_dir, "_labels.json"))
    return features


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.parquet", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="feature folders/files (or one .parquet with --to-text)")
    p.add_argument("-o", "--output", required=True, help="the .parquet file (or folder with --to-text) to write")
    p.add_argument("--to-text", action="store_true", help="convert Parquet back to text feature records")
    p.add_argument("--labels", help="labels.json to use (default: _labels.json beside the features)")
    p.add_argument("--hadoop-bin", help="hadoop command for hdfs:// paths (default: found like mrjob does)")
    args = p.parse_args(argv)
    fs = storage.filesystem(args.hadoop_bin)
    try:
        if args.to_text:
            if len(args.inputs) != 1:
                fail("--to-text takes one Parquet file")
            features = parquet_to_text(fs, args.inputs[0], args.output)
        else:
            features = text_to_parquet(fs, args.inputs, args.output, args.labels)
    except (FeatureError, InputError, PackError) as e:
        fail(str(e))
    print("wrote %d feature vectors (%d-d, %d classes)%s to %s"
          % (len(features), features.dim, len(features.classes),
             ", skipped %d rejected records" % features.rejected if features.rejected else "", args.output))


if __name__ == "__main__":
    main(sys.argv[1:])
