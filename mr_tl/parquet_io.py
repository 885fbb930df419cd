"""Feature records as Parquet: the schema, a streaming writer, readers (pyarrow).

Schema (pandas and Spark read it as it is)::

    id          string
    label       int32
    label_name  string
    split       string
    sha256      string                       the image file's digest ("-" unknown)
    features    fixed_size_list<float32>[D]

with the class names also in the schema metadata (``mr_tl.labels``).  A
features folder in Parquet form holds one file per part of its text form
(``part-NNNNN.parquet``), each written as one row group while it streams
(memory: one part), plus the side files of mr_tl.feature_store.  Every
reader checks the schema and gives :class:`mr_tl.records.FeatureRecord`\\ s,
so a job reads Parquet and text alike (mr_tl.jobs.feature_input).
"""

import json

import numpy as np

from mr_tl.errors import FeatureError
from mr_tl.records import NO_DIGEST, SPLITS, FeatureRecord

LABELS_KEY = b"mr_tl.labels"
COLUMNS = ("id", "label", "label_name", "split", "sha256", "features")
ROWS_PER_BATCH = 4096


def schema(dim, classes):
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("label", pa.int32()), ("label_name", pa.string()),
                      ("split", pa.string()), ("sha256", pa.string()),
                      ("features", pa.list_(pa.float32(), dim))],
                     metadata={LABELS_KEY: json.dumps(list(classes), ensure_ascii=False).encode("utf-8")})


class PartWriter:
    """Writes the feature records of one part as one Parquet file, one row group, in batches."""

    def __init__(self, path, dim, classes):
        import pyarrow.parquet as pq

        self.dim, self.classes = dim, list(classes)
        self.schema = schema(dim, classes)
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._rows = []
        self._batches = []
        self.count = 0

    def add(self, record):
        if record.features.size != self.dim:
            raise FeatureError("feature vector of %r has %d values, the others have %d"
                               % (record.id, record.features.size, self.dim))
        self._rows.append(record)
        self.count += 1
        if len(self._rows) >= ROWS_PER_BATCH:
            self._batches.append(self._batch())

    def _batch(self):
        import pyarrow as pa

        rows, self._rows = self._rows, []
        flat = pa.array(np.concatenate([np.asarray(r.features, dtype=np.float32) for r in rows]), type=pa.float32())
        return pa.record_batch([
            pa.array([r.id for r in rows], type=pa.string()),
            pa.array([r.label for r in rows], type=pa.int32()),
            pa.array([self.classes[r.label] if r.label < len(self.classes) else "" for r in rows], type=pa.string()),
            pa.array([r.split for r in rows], type=pa.string()),
            pa.array([r.sha256 for r in rows], type=pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, self.dim),
        ], schema=self.schema)

    def close(self):
        """Write the part's row group and close the file."""
        import pyarrow as pa

        if self._rows:
            self._batches.append(self._batch())
        if self._batches:
            self._writer.write_table(pa.Table.from_batches(self._batches, self.schema),
                                     row_group_size=max(1, self.count))
        self._batches = []
        self._writer.close()


def _open(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise FeatureError("%s is not a readable Parquet file: %s" % (path, e)) from None
    s = f.schema_arrow
    missing = {"id", "label", "split", "features"} - set(s.names)
    if missing:
        raise FeatureError("%s lacks column(s) %s" % (path, ", ".join(sorted(missing))))
    column = s.field("features").type
    if not (pa.types.is_fixed_size_list(column) and pa.types.is_float32(column.value_type)):
        raise FeatureError("%s: column 'features' must be fixed_size_list<float32>, found %s" % (path, column))
    if not pa.types.is_integer(s.field("label").type):
        raise FeatureError("%s: column 'label' must be integers, found %s" % (path, s.field("label").type))
    return f


def classes_in(path):
    """The class names in a Parquet file's metadata, or None."""
    meta = _open(path).schema_arrow.metadata or {}
    return json.loads(meta[LABELS_KEY]) if LABELS_KEY in meta else None


def iter_records(path, where=None):
    """Every row of a Parquet file as a FeatureRecord, a batch at a time (bounded memory)."""
    f = _open(path)
    where = where or path
    dim = f.schema_arrow.field("features").type.list_size
    has_digest = "sha256" in f.schema_arrow.names
    columns = ["id", "label", "split", "features"] + (["sha256"] if has_digest else [])
    for batch in f.iter_batches(batch_size=ROWS_PER_BATCH, columns=columns):
        cols = {name: batch.column(name) for name in columns}
        for name in columns:
            if cols[name].null_count:
                raise FeatureError("%s: column %r has %d null values" % (where, name, cols[name].null_count))
        X = cols["features"].flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        digests = cols["sha256"].to_pylist() if has_digest else [NO_DIGEST] * len(X)
        for image_id, label, split, x, digest in zip(cols["id"].to_pylist(), cols["label"].to_pylist(),
                                                     cols["split"].to_pylist(), X, digests):
            if split not in SPLITS:
                raise FeatureError("%s: image %r has split %r (expected train/val/test)" % (where, image_id, split))
            if label < 0:
                raise FeatureError("%s: image %r has label %d (labels are >= 0)" % (where, image_id, label))
            yield FeatureRecord(image_id, int(label), split, x, digest)


def iter_feature_lines(path, where=None):
    """The canonical feature record line of every row (what a job reads from text)."""
    for record in iter_records(path, where):
        yield record.to_line()


def read_feature_set(paths, splits=None):
    """A :class:`mr_tl.feature_set.FeatureSet` of Parquet files (in memory: tests, benchmarks, small data)."""
    from mr_tl.feature_set import collect

    paths = [paths] if isinstance(paths, str) else list(paths)
    classes = classes_in(paths[0]) if paths else None
    return collect(((p, iter_records(p)) for p in paths), splits=splits, classes=classes)
