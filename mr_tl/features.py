"""Feature sets in memory, and their Parquet form.

Featurize writes text records (``part-*`` files, see mr_tl.records); this
module reads them (or Parquet) into arrays for the train driver, the
benchmarks and ``python -m mr_tl.parquet``, checking them on the way in:
one dimension, finite values, labels in range, no duplicate ids.

Parquet schema (pyarrow; readable by pandas as it is)::

    id          string
    label       int32
    label_name  string
    split       string
    features    fixed_size_list<float32>[D]

with the class names also in the schema metadata (``mr_tl.labels``), so a
Parquet file alone is enough to train.
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np

from mr_tl.errors import FeatureError, RecordError
from mr_tl.records import SPLITS, FeatureRecord, RejectedRecord, parse_feature_line

PARQUET_LABELS_KEY = b"mr_tl.labels"




@dataclass
class FeatureSet:
    """Feature records of one or more splits as arrays (rows in input order)."""

    ids: list
    labels: np.ndarray           # int64 (n,)
    splits: list
    X: np.ndarray                # float32 (n, dim)
    classes: list = field(default_factory=list)
    rejected: int = 0

    def __len__(self):
        return len(self.ids)

    @property
    def dim(self):
        return self.X.shape[1]

    def select(self, split):
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return FeatureSet([self.ids[i] for i in keep], self.labels[keep], [split] * len(keep), self.X[keep],
                          self.classes)


class _Collector:
    """Accumulates records with the checks every consumer needs."""

    def __init__(self, splits=None, classes=None, where=""):
        self.splits = set(splits) if splits else None
        self.classes = classes
        self.where = where
        self.ids, self.labels, self.split_of, self.rows = [], [], [], []
        self.seen = set()
        self.dim = None
        self.rejected = 0

    def add(self, record):
        if isinstance(record, RejectedRecord):
            self.rejected += 1
            return
        if self.splits is not None and record.split not in self.splits:
            return
        if record.id in self.seen:
            raise FeatureError("image id %r appears twice%s" % (record.id, self.where))
        self.seen.add(record.id)
        if self.dim is None:
            self.dim = record.features.size
        elif record.features.size != self.dim:
            raise FeatureError("feature vector of %r has %d values, the others have %d%s"
                               % (record.id, record.features.size, self.dim, self.where))
        if not np.all(np.isfinite(record.features)):
            raise FeatureError("feature vector of %r has non-finite values (NaN or inf)%s" % (record.id, self.where))
        if self.classes is not None and record.label >= len(self.classes):
            raise FeatureError("image %r has label %d but there are only %d classes%s"
                               % (record.id, record.label, len(self.classes), self.where))
        self.ids.append(record.id)
        self.labels.append(record.label)
        self.split_of.append(record.split)
        self.rows.append(record.features)

    def result(self):
        X = np.stack(self.rows) if self.rows else np.zeros((0, self.dim or 0), dtype=np.float32)
        return FeatureSet(self.ids, np.asarray(self.labels, dtype=np.int64), self.split_of, X,
                          list(self.classes or []), self.rejected)


def read_lines(lines, splits=None, classes=None, where=""):
    """A FeatureSet from feature-record lines (``splits`` keeps only those splits)."""
    return read_sources([(where, lines)], splits, classes)


def read_sources(sources, splits=None, classes=None):
    """A FeatureSet from several ``(name, lines)`` sources; errors name the source and its line."""
    collector = _Collector(splits, classes)
    for name, lines in sources:
        collector.where = " of %s" % name if name and not name.startswith(" ") else name
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                collector.add(parse_feature_line(line))
            except RecordError as e:
                raise FeatureError("line %d%s: %s" % (n, collector.where, e)) from None
    return collector.result()


def write_parquet(feature_set, path):
    """Write a FeatureSet as Parquet (schema in the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(feature_set) == 0:
        raise FeatureError("no feature vectors to write (%d rejected records, no featurized image)"
                           % feature_set.rejected)
    classes = feature_set.classes
    dim = feature_set.dim
    flat = pa.array(np.ascontiguousarray(feature_set.X, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table({
        "id": pa.array(feature_set.ids, type=pa.string()),
        "label": pa.array(feature_set.labels, type=pa.int32()),
        "label_name": pa.array([classes[i] if i < len(classes) else "" for i in feature_set.labels],
                               type=pa.string()),
        "split": pa.array(feature_set.splits, type=pa.string()),
        "features": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    table = table.replace_schema_metadata({PARQUET_LABELS_KEY: json.dumps(classes).encode("utf-8")})
    pq.write_table(table, path, compression="zstd")


def read_parquet(path, splits=None):
    """A FeatureSet from a Parquet file written by :func:`write_parquet` (or any file of that schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise FeatureError("%s is not a readable Parquet file: %s" % (path, e)) from None
    missing = {"id", "label", "split", "features"} - set(table.column_names)
    if missing:
        raise FeatureError("%s lacks column(s) %s" % (path, ", ".join(sorted(missing))))
    column = table.column("features").combine_chunks()
    if not pa.types.is_fixed_size_list(column.type) or not pa.types.is_float32(column.type.value_type):
        raise FeatureError("%s: column 'features' must be fixed_size_list<float32>, found %s" % (path, column.type))
    if not pa.types.is_integer(table.schema.field("label").type):
        raise FeatureError("%s: column 'label' must be integers, found %s" % (path, table.schema.field("label").type))
    for name in ("id", "label", "split", "features"):
        nulls = table.column(name).null_count
        if nulls:
            raise FeatureError("%s: column %r has %d null values" % (path, name, nulls))
    dim = column.type.list_size
    X = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    if X.shape[0] != table.num_rows:
        raise FeatureError("%s: %d feature vectors for %d rows" % (path, X.shape[0], table.num_rows))
    meta = table.schema.metadata or {}
    classes = json.loads(meta[PARQUET_LABELS_KEY]) if PARQUET_LABELS_KEY in meta else None
    collector = _Collector(splits, classes, " in %s" % path)
    for image_id, label, split, row in zip(table.column("id").to_pylist(), table.column("label").to_pylist(),
                                          table.column("split").to_pylist(), X):
        if split not in SPLITS:
            raise FeatureError("%s: image %r has split %r (expected train/val/test)" % (path, image_id, split))
        if label < 0:
            raise FeatureError("%s: image %r has label %d (labels are >= 0)" % (path, image_id, label))
        collector.add(FeatureRecord(image_id, int(label), split, row))
    return collector.result()


def is_parquet(path):
    return path.endswith((".parquet", ".parq")) or (os.path.isdir(path) and any(
        n.endswith(".parquet") for n in os.listdir(path)))
