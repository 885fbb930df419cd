"""What a pass over a feature set learns, as sums that add up across map tasks (numpy only).

:class:`FeatureScan` takes feature/rejected records one at a time (the scan
job's mappers, or the in-process runner) and keeps only counts and sums:
records per split and class, rejected records, vector dimensions, bad
vectors (non-finite, wrong dimension, label out of range) with the smallest
offending id as an example, examples per worker for a given (seed,
workers), a :class:`~mr_tl.digest.MultisetHash` of the training records
(the run's fingerprint of its data; the partition job checks its output
against it) and of all records, and the moment sums of the (pre-normalized)
training vectors.  Partial scans :meth:`merge` in any order into the same
result, so every runner gives the same bits.  Duplicate ids need a shuffle
by id and are found by the scan job itself, not here.
"""

import json
from collections.abc import Sequence
from typing import Self

import numpy as np

from mr_tl.digest import MultisetHash
from mr_tl.normalization import MomentSums, pre_transform
from mr_tl.records import SPLITS, FeatureRecord, RecordHead, RejectedRecord, decode_vector
from mr_tl.training.partition import worker_of

FORMAT = "mr_tl.feature-scan/1"


def _min_id(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


class FeatureScan:
    """Summable facts about a feature set (see the module docstring).

    ``seed``/``workers``: count examples per worker of that partition;
    ``normalization``: the kind whose moment sums to collect (mr_tl.normalization);
    ``n_classes``/``dim``: the expected label range and dimension, when known.
    """

    BAD = ("non_finite", "wrong_dim", "bad_label")

    def __init__(self, seed: int | None = None, workers: int | None = None, normalization: str = "none",
                 n_classes: int | None = None, dim: int | None = None) -> None:
        self.seed, self.workers, self.normalization = seed, workers, normalization
        self.n_classes, self.dim = n_classes, dim
        self.featurized = {s: 0 for s in SPLITS}
        self.rejected: dict[str, int] = {}               # split (or "-") -> count
        self.per_class: dict[str, dict[int, int]] = {s: {} for s in SPLITS}  # split -> {label: count}
        self.dims: dict[int, int] = {}                   # dimension -> records
        self.bad = {name: 0 for name in self.BAD}
        self.bad_example: dict[str, str | None] = {name: None for name in self.BAD}  # smallest offending id
        self.unreadable = 0                              # lines that are no feature record
        self.unreadable_example: str | None = None       # the smallest of their messages
        self.worker_sizes = [0] * workers if workers else []
        self.train_digest = MultisetHash()
        self.digest = MultisetHash()
        self.moments: MomentSums | None = None
        self._pending: list[np.ndarray] = []

    # -- adding records -------------------------------------------------------------

    def add_line(self, line: str, head: RecordHead) -> None:
        """Add one featurize output line; ``head`` is its :class:`~mr_tl.records.RecordHead`."""
        self.digest.add(line)
        if head.kind == "R":
            key = head.split or "-"
            self.rejected[key] = self.rejected.get(key, 0) + 1
            return
        x = decode_vector(line.rsplit("\t", 1)[1])
        self._add_example(head, x, line)

    def add_record(self, record: FeatureRecord | RejectedRecord) -> None:
        """Add one FeatureRecord or RejectedRecord (e.g. from Parquet)."""
        line = record.to_line()
        if isinstance(record, FeatureRecord):
            self.digest.add(line)
            self._add_example(RecordHead("F", record.id, record.label, record.split, record.sha256),
                              record.features, line)
        else:
            self.add_line(line, RecordHead("R", record.id, record.label, record.split, record.sha256,
                                           record.reason, record.detail))

    def add_unreadable(self, message: str) -> None:
        """Count a line that is not a feature record (``message`` says where and why)."""
        self.unreadable += 1
        self.unreadable_example = _min_id(self.unreadable_example, message)

    def _note(self, name: str, image_id: str) -> None:
        self.bad[name] += 1
        self.bad_example[name] = _min_id(self.bad_example[name], image_id)

    def _add_example(self, head: RecordHead, x: np.ndarray, line: str) -> None:
        split = head.split
        assert split is not None and head.label is not None  # an "F" record always has both
        self.featurized[split] += 1
        counts = self.per_class[split]
        counts[head.label] = counts.get(head.label, 0) + 1
        self.dims[x.size] = self.dims.get(x.size, 0) + 1
        if self.dim is not None and x.size != self.dim:
            self._note("wrong_dim", head.id)
            return
        if not np.all(np.isfinite(x)):
            self._note("non_finite", head.id)
            return
        if self.n_classes is not None and head.label >= self.n_classes:
            self._note("bad_label", "%r (label %d)" % (head.id, head.label))
        if split != "train":
            return
        self.train_digest.add(line)
        if self.workers:
            assert self.seed is not None  # a partition is always given its seed
            self.worker_sizes[worker_of(head.id, self.seed, self.workers)] += 1
        if self.dim is not None and self.normalization != "none":
            self._pending.append(x)
            if len(self._pending) >= 256:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            assert self.dim is not None  # vectors are kept only when the dimension is known
            if self.moments is None:
                self.moments = MomentSums(self.dim)
            self.moments.add(pre_transform(np.stack(self._pending), self.normalization))
            self._pending = []

    # -- adding scans -----------------------------------------------------------------

    def merge(self, other: "FeatureScan") -> Self:
        """Add another (partial) scan of the same parameters; returns self."""
        self._flush()
        other._flush()
        for s in SPLITS:
            self.featurized[s] += other.featurized[s]
            for label, n in other.per_class[s].items():
                self.per_class[s][label] = self.per_class[s].get(label, 0) + n
        for key, n in other.rejected.items():
            self.rejected[key] = self.rejected.get(key, 0) + n
        self.unreadable += other.unreadable
        self.unreadable_example = _min_id(self.unreadable_example, other.unreadable_example)
        for dim, n in other.dims.items():
            self.dims[dim] = self.dims.get(dim, 0) + n
        for name in self.BAD:
            self.bad[name] += other.bad[name]
            self.bad_example[name] = _min_id(self.bad_example[name], other.bad_example[name])
        if other.worker_sizes:
            self.worker_sizes = [a + b for a, b in zip(self.worker_sizes or [0] * len(other.worker_sizes),
                                                       other.worker_sizes)]
        self.train_digest.update(other.train_digest)
        self.digest.update(other.digest)
        if other.moments is not None:
            self.moments = other.moments if self.moments is None else self.moments.update(other.moments)
        return self

    def to_json(self) -> str:
        self._flush()
        return json.dumps({
            "format": FORMAT, "seed": self.seed, "workers": self.workers, "normalization": self.normalization,
            "n_classes": self.n_classes, "dim": self.dim,
            "featurized": self.featurized, "rejected": self.rejected,
            "per_class": {s: {str(k): v for k, v in sorted(c.items())} for s, c in self.per_class.items()},
            "dims": {str(k): v for k, v in sorted(self.dims.items())},
            "bad": self.bad, "bad_example": self.bad_example, "worker_sizes": self.worker_sizes,
            "unreadable": self.unreadable, "unreadable_example": self.unreadable_example,
            "train_digest": self.train_digest.lanes, "digest": self.digest.lanes,
            "moments": self.moments.to_json() if self.moments is not None else None,
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        obj = json.loads(text)
        if obj.get("format") != FORMAT:
            raise ValueError("not a feature scan (format %r)" % obj.get("format"))
        scan = cls(obj["seed"], obj["workers"], obj["normalization"], obj["n_classes"], obj["dim"])
        scan.featurized = obj["featurized"]
        scan.rejected = obj["rejected"]
        scan.per_class = {s: {int(k): v for k, v in c.items()} for s, c in obj["per_class"].items()}
        scan.dims = {int(k): v for k, v in obj["dims"].items()}
        scan.bad, scan.bad_example = obj["bad"], obj["bad_example"]
        scan.worker_sizes = obj["worker_sizes"]
        scan.unreadable, scan.unreadable_example = obj["unreadable"], obj["unreadable_example"]
        scan.train_digest, scan.digest = MultisetHash(obj["train_digest"]), MultisetHash(obj["digest"])
        scan.moments = MomentSums.from_json(obj["moments"]) if obj["moments"] is not None else None
        return scan

    # -- what the driver asks ------------------------------------------------------------

    @property
    def total_featurized(self) -> int:
        return sum(self.featurized.values())

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def fingerprint(self) -> str:
        """The training split's fingerprint: a digest of its records (ids, labels, image digests, vectors)."""
        return self.train_digest.hexdigest()


def check(scan: FeatureScan | None, duplicates: Sequence[tuple[str, int]], n_classes: int | None = None,
          where: str = "the features") -> None:
    """Raise FeatureError naming every reason ``scan`` (and the duplicate ids) make the features unusable."""
    from mr_tl.errors import FeatureError

    if scan is None:
        raise FeatureError("%s hold no records (no input file had a line)" % where)
    problems: list[str] = []
    if scan.unreadable:
        problems.append("%d line(s) are not feature records, e.g. %s" % (scan.unreadable, scan.unreadable_example))
    if duplicates:
        image_id, count = duplicates[0]
        problems.append("image id %r appears %s%s" % (image_id, "twice" if count == 2 else "%d times" % count,
                                                     " (and %d more ids appear more than once)"
                                                     % (len(duplicates) - 1) if len(duplicates) > 1 else ""))
    if len(scan.dims) > 1:
        problems.append("feature vectors have different lengths: %s" % ", ".join(
            "%d values (%d vectors)" % kv for kv in sorted(scan.dims.items())))
    elif scan.bad["wrong_dim"]:
        assert scan.dim is not None  # only a known dimension can be wrong
        problems.append("%d feature vector(s) do not have %d values, e.g. %r"
                        % (scan.bad["wrong_dim"], scan.dim, scan.bad_example["wrong_dim"]))
    if scan.bad["non_finite"]:
        problems.append("%d feature vector(s) have non-finite values (NaN or inf), e.g. %r"
                        % (scan.bad["non_finite"], scan.bad_example["non_finite"]))
    if scan.bad["bad_label"]:
        classes = n_classes or scan.n_classes
        assert classes is not None  # labels are checked only against a known number of classes
        problems.append("%d image(s) have a label beyond the %d classes of the labels file, e.g. %s"
                        % (scan.bad["bad_label"], classes, scan.bad_example["bad_label"]))
    if problems:
        raise FeatureError("%s cannot be used: %s" % (where, "; ".join(problems)))
