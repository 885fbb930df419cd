"""A predictions folder (the predict job's output), and its Parquet form.

::

    PREDICTIONS/part-*          P and R records (mr_tl.records.PredictionRecord, RejectedRecord)
    PREDICTIONS/_labels.json    the classifier's class names
    PREDICTIONS/_summary.json   input / predicted / rejected counts, reasons, every rejected image,
                                the classifier's sha256 and class names, the digest of the records
    PREDICTIONS/_COMPLETE       written last, once every count added up

``--parquet PATH`` writes the same predictions as a Parquet dataset (one
``part-NNNNN.parquet`` per text part, the side files, ``_COMPLETE`` last),
written like ``mr_tl.parquet`` writes features: by the driver, after the
job, one part in memory at a time.  Not in the tasks: a Hadoop Streaming
task writes lines to its standard output, and the streaming jar has no
Parquet output format (a task writing files to HDFS itself would need
libhdfs or a ``hadoop`` command on every node, and would escape Hadoop's
output commit, so a retried attempt could leave two copies).  Rejected
images are not rows (no classes to give): they are counted and listed in
the Parquet folder's ``_summary.json``.

Schema::

    id                 string
    label              int32    (the packed label; null if unknown)
    split              string
    sha256             string   the image file's digest
    top_classes        list<string>     most probable first
    top_labels         list<int32>      their numbers in _labels.json
    top_probabilities  list<float32>
"""

import json
import os

from mr_tl import feature_store, storage
from mr_tl.errors import FeatureError
from mr_tl.records import PredictionRecord, parse_prediction_line

SUMMARY_FORMAT = "mr_tl.predictions-summary/1"
ROWS_PER_BATCH = 4096


def schema(classes):
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("label", pa.int32()), ("split", pa.string()), ("sha256", pa.string()),
                      ("top_classes", pa.list_(pa.string())), ("top_labels", pa.list_(pa.int32())),
                      ("top_probabilities", pa.list_(pa.float32()))],
                     metadata={b"mr_tl.labels": json.dumps(list(classes), ensure_ascii=False).encode("utf-8")})


def _write_part(path, records, classes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = {name: i for i, name in enumerate(classes)}
    s = schema(classes)
    with pq.ParquetWriter(path, s, compression="zstd") as writer:
        for start in range(0, max(1, len(records)), ROWS_PER_BATCH):
            rows = records[start:start + ROWS_PER_BATCH]
            writer.write_batch(pa.record_batch([
                pa.array([r.id for r in rows], type=pa.string()),
                pa.array([r.label for r in rows], type=pa.int32()),
                pa.array([r.split for r in rows], type=pa.string()),
                pa.array([r.sha256 for r in rows], type=pa.string()),
                pa.array([[c for c, _ in r.top] for r in rows], type=pa.list_(pa.string())),
                pa.array([[number[c] for c, _ in r.top] for r in rows], type=pa.list_(pa.int32())),
                pa.array([[p for _, p in r.top] for r in rows], type=pa.list_(pa.float32())),
            ], schema=s))


def text_to_parquet(fs, folder, output):
    """Write the Parquet dataset of a complete predictions folder; returns the number of predictions."""
    from mr_tl.parquet import Output

    summary_text = storage.read_text(fs, storage.join(folder, feature_store.SUMMARY))
    if summary_text is None or not storage.exists(fs, storage.join(folder, feature_store.MARKER)):
        raise FeatureError("%s is not a complete predictions folder" % folder)
    summary = json.loads(summary_text)
    classes = summary["classifier"]["classes"]
    parts = [storage.join(folder, n) for n in storage.file_names(fs, folder) if n.startswith("part-")]
    out = Output(fs, output, overwrite=False)
    predicted = 0
    try:
        for n, path in enumerate(parts):
            records = []
            for line in storage.iter_lines(fs, [path]):
                if line:
                    record = parse_prediction_line(line)
                    if isinstance(record, PredictionRecord):
                        records.append(record)
            _write_part(out.file("part-%05d.parquet" % n), records, classes)
            predicted += len(records)
        if predicted != summary["records"]["predicted"]:
            raise FeatureError("%s holds %d predictions, its summary says %d"
                               % (folder, predicted, summary["records"]["predicted"]))
        carried = {k: v for k, v in summary.items() if k not in ("data", "records")}
        carried.update(data="parquet", source=folder,
                       records={"predicted": predicted, "rejected_not_written": summary["records"]["rejected"]})
        out.commit(classes, carried)
    except BaseException:
        out.abort()
        raise
    return predicted


def read_parquet(path):
    """Every prediction of a Parquet predictions folder (or file) as PredictionRecords (tests, small data)."""
    import pyarrow.parquet as pq

    files = [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".parquet")] \
        if os.path.isdir(path) else [path]
    out = []
    for f in files:
        table = pq.read_table(f)
        for row in table.to_pylist():
            out.append(PredictionRecord(row["id"], row["label"], row["split"], row["sha256"],
                                        tuple(zip(row["top_classes"], row["top_probabilities"]))))
    return out
