"""Feature sets in memory: for tests, benchmarks, the in-process runner and small data.

The commands never hold a feature set in memory: their jobs read features
where they are (mr_tl.jobs).  This module reads text feature records (or
Parquet, via mr_tl.parquet_io) into arrays, checking them on the way in:
one dimension, finite values, labels in range, no duplicate ids.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from mr_tl.errors import FeatureError, RecordError
from mr_tl.records import NO_DIGEST, FeatureRecord, RejectedRecord, parse_feature_line


@dataclass
class FeatureSet:
    """Feature records of one or more splits as arrays (rows in input order)."""

    ids: list[str]
    labels: np.ndarray           # int64 (n,)
    splits: list[str]
    X: np.ndarray                # float32 (n, dim)
    classes: list[str] = field(default_factory=list)
    rejected: int = 0
    sha256s: list[str] | None = None  # digest of each image file ("-" unknown); None: all unknown

    def __len__(self) -> int:
        return len(self.ids)

    def records(self) -> Iterator[FeatureRecord]:
        """The rows as FeatureRecords, in order."""
        digests = self.sha256s or [NO_DIGEST] * len(self.ids)
        for image_id, label, split, x, digest in zip(self.ids, self.labels, self.splits, self.X, digests):
            yield FeatureRecord(image_id, int(label), split, x, digest)

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    def select(self, split: str) -> "FeatureSet":
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return FeatureSet([self.ids[i] for i in keep], self.labels[keep], [split] * len(keep), self.X[keep],
                          self.classes, 0, [self.sha256s[i] for i in keep] if self.sha256s else None)


class _Collector:
    """Accumulates records with the checks every consumer needs."""

    def __init__(self, splits: Iterable[str] | None = None, classes: Sequence[str] | None = None,
                 where: str = "") -> None:
        self.splits = set(splits) if splits else None
        self.classes = classes
        self.where = where
        self.ids: list[str] = []
        self.labels: list[int] = []
        self.split_of: list[str] = []
        self.rows: list[np.ndarray] = []
        self.digests: list[str] = []
        self.seen: set[str] = set()
        self.dim: int | None = None
        self.rejected = 0

    def add(self, record: FeatureRecord | RejectedRecord) -> None:
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
        self.digests.append(record.sha256)

    def result(self) -> FeatureSet:
        X = np.stack(self.rows) if self.rows else np.zeros((0, self.dim or 0), dtype=np.float32)
        return FeatureSet(self.ids, np.asarray(self.labels, dtype=np.int64), self.split_of, X,
                          list(self.classes or []), self.rejected, self.digests)


def read_lines(lines: Iterable[str | bytes], splits: Iterable[str] | None = None,
               classes: Sequence[str] | None = None, where: str = "") -> FeatureSet:
    """A FeatureSet from feature-record lines (``splits`` keeps only those splits)."""
    return read_sources([(where, lines)], splits, classes)


def read_sources(sources: Iterable[tuple[str, Iterable[str | bytes]]], splits: Iterable[str] | None = None,
                 classes: Sequence[str] | None = None) -> FeatureSet:
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


def collect(sources: Iterable[tuple[str, Iterable[FeatureRecord | RejectedRecord]]],
            splits: Iterable[str] | None = None, classes: Sequence[str] | None = None) -> FeatureSet:
    """A FeatureSet from ``(name, records)`` sources (FeatureRecords/RejectedRecords)."""
    collector = _Collector(splits, classes)
    for name, records in sources:
        collector.where = " in %s" % name if name else ""
        for record in records:
            collector.add(record)
    return collector.result()
