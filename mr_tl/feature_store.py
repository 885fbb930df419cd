"""A features folder: what is in it, whether it is complete, and its side files.

::

    FEATURES/part-*              text feature records (featurize, ``parquet --to-text``), or
    FEATURES/part-*.parquet      Parquet files (``mr_tl.parquet``): a dataset Spark and pandas read as it is
    FEATURES/_labels.json        class names (mr_tl.labels)
    FEATURES/_summary.json       what the data files hold: records per split, rejected images,
                                 the digest of every record, what made them (model, preprocessing)
    FEATURES/_COMPLETE           written last, once every check passed

Side files start with ``_`` so Hadoop, Spark and pandas never read them as
data.  A folder without ``_COMPLETE`` is refused (a featurize that failed
half-way leaves part files behind); a complete folder whose data does not
add up to its summary (a part file removed, cut at a line boundary, or
edited) is refused by whoever scans it (:func:`verify`), naming what differs.
"""

import hashlib
import json

from mr_tl import labels, storage
from mr_tl.digest import MultisetHash
from mr_tl.errors import FeatureError, InputError
from mr_tl.records import SPLITS

LABELS = "_labels.json"
SUMMARY = "_summary.json"
MARKER = "_COMPLETE"
SUMMARY_FORMAT = "mr_tl.features-summary/1"
MARKER_FORMAT = "mr_tl.complete/1"
FORMATS = ("text", "parquet")


class RecordTally:
    """Counts and the digest of records as they are written (the summary's ``records`` part)."""

    def __init__(self):
        self.featurized = {s: 0 for s in SPLITS}
        self.rejected = 0
        self.digest = MultisetHash()

    def add(self, record, line=None):
        """Count one FeatureRecord/RejectedRecord; ``line``: its text as written (default ``to_line()``)."""
        self.digest.add(record.to_line() if line is None else line)
        if hasattr(record, "features"):
            self.featurized[record.split] += 1
        else:
            self.rejected += 1

    def to_json(self):
        return {"featurized": dict(self.featurized), "rejected": self.rejected, "digest": self.digest.hexdigest()}


def summary(data_format, tally, dim, **extra):
    """A ``_summary.json`` object: ``records`` from ``tally`` (a RecordTally or its to_json()),
    the data format, the dimension, and whatever else the writer knows (model, pack accounting...)."""
    if data_format not in FORMATS:
        raise ValueError("data format must be one of %s" % (FORMATS,))
    records = tally.to_json() if isinstance(tally, RecordTally) else dict(tally)
    return dict(extra, format=SUMMARY_FORMAT, data=data_format, dim=dim, records=records)


def write_metadata(fs, folder, classes, summary_obj):
    """Write ``_labels.json``, ``_summary.json`` and, last, ``_COMPLETE`` into ``folder``."""
    text = json.dumps(summary_obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    storage.write_text(fs, storage.join(folder, LABELS), labels.dumps(classes))
    storage.write_text(fs, storage.join(folder, SUMMARY), text)
    marker = {"format": MARKER_FORMAT, "summary_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    storage.write_text(fs, storage.join(folder, MARKER), json.dumps(marker) + "\n")


class FeatureFolder:
    """One complete features folder (:func:`open_folder`)."""

    def __init__(self, path, summary_obj, classes, files):
        self.path = path
        self.summary = summary_obj
        self.classes = classes
        self.files = files

    @property
    def data_format(self):
        return self.summary["data"]

    @property
    def dim(self):
        return self.summary["dim"]


def open_folder(fs, path):
    """A :class:`FeatureFolder`; InputError if ``path`` is not a complete features folder."""
    names = set(storage.file_names(fs, path, side_files=True))
    if not names and not storage.exists(fs, path):
        raise InputError("features folder %s does not exist" % path)
    if MARKER not in names:
        if not names and not storage.is_remote(path) and not storage.is_dir(path):
            raise InputError("%s is a file; give the features folder it belongs to (train, evaluate and parquet "
                             "read whole folders, so they can check nothing is missing)" % path)
        parts = sorted(n for n in names if n.startswith("part-"))
        raise InputError("%s is incomplete: it has no %s marker (%s); did the command that wrote it fail or "
                         "is it still running? Run it again into a new folder"
                         % (path, MARKER, "%d part files, no marker" % len(parts) if parts else "no data files"))
    marker_text = storage.read_text(fs, storage.join(path, MARKER), listed=True)
    summary_text = storage.read_text(fs, storage.join(path, SUMMARY), listed=SUMMARY in names)
    if summary_text is None:
        raise InputError("%s has a %s marker but no %s" % (path, MARKER, SUMMARY))
    try:
        marker = json.loads(marker_text)
        summary_obj = json.loads(summary_text)
    except (TypeError, json.JSONDecodeError) as e:
        raise InputError("%s: %s or %s is not valid JSON: %s" % (path, MARKER, SUMMARY, e)) from None
    if not isinstance(marker, dict) or marker.get("summary_sha256") != hashlib.sha256(
            summary_text.encode("utf-8")).hexdigest():
        raise InputError("%s: %s does not belong to this %s (was the summary changed after the features were "
                         "written?)" % (path, MARKER, SUMMARY))
    if not isinstance(summary_obj, dict) or summary_obj.get("format") != SUMMARY_FORMAT \
            or summary_obj.get("data") not in FORMATS:
        raise InputError("%s: %s is not a summary of this version of mr_tl (format %r)"
                         % (path, SUMMARY, summary_obj.get("format") if isinstance(summary_obj, dict) else None))
    labels_text = storage.read_text(fs, storage.join(path, LABELS), listed=LABELS in names)
    if labels_text is None:
        raise InputError("no %s beside the features in %s" % (LABELS, path))
    classes = labels.parse(labels_text, storage.join(path, LABELS))
    suffix = ".parquet" if summary_obj["data"] == "parquet" else ""
    files = [storage.join(path, n) for n in sorted(names)
             if n.startswith("part-") and (n.endswith(".parquet") if suffix else not n.endswith(".parquet"))]
    if not files:
        raise InputError("%s holds no data files (part-*%s)" % (path, suffix))
    return FeatureFolder(path, summary_obj, classes, files)


class FeatureInputs:
    """The features folders a command reads, as one data set."""

    def __init__(self, folders):
        self.folders = folders
        formats = {f.data_format for f in folders}
        if len(formats) > 1:
            raise InputError("the inputs mix text and Parquet features; convert one with python -m mr_tl.parquet")
        dims = {f.dim for f in folders}
        if len(dims) > 1:
            raise InputError("the inputs hold features of different lengths (%s): were they made with "
                             "different models?" % ", ".join(str(d) for d in sorted(dims)))
        self.classes = labels.agreed([(f.path, f.classes) for f in folders])
        self.data_format = formats.pop()
        self.dim = dims.pop()
        self.files = [p for f in folders for p in f.files]

    def expected(self):
        """Records per split, rejected records and the digest the data files must add up to."""
        featurized = {s: 0 for s in SPLITS}
        rejected = 0
        digest = MultisetHash()
        for f in self.folders:
            records = f.summary["records"]
            for s in SPLITS:
                featurized[s] += int(records["featurized"].get(s, 0))
            rejected += int(records.get("rejected", 0))
            digest.update(MultisetHash.from_hex(records["digest"]))
        return featurized, rejected, digest

    def verify(self, scan):
        """FeatureError if the scanned data does not add up to the summaries (nothing missing, cut, changed)."""
        featurized, rejected, digest = self.expected()
        where = ", ".join(f.path for f in self.folders)
        problems = ["the %s split has %d feature records, %s says %d" % (s, scan.featurized[s], SUMMARY, featurized[s])
                    for s in SPLITS if scan.featurized[s] != featurized[s]]
        if self.data_format == "text" and scan.total_rejected != rejected:
            problems.append("%d rejected records, %s says %d" % (scan.total_rejected, SUMMARY, rejected))
        if not problems and scan.digest != digest:
            problems.append("the records differ from those %s describes (same counts, other content)" % SUMMARY)
        if problems:
            raise FeatureError("%s: the data files do not add up to their summary: %s; was a part file removed, "
                               "cut or edited after it was written?" % (where, "; ".join(problems)))


def open_inputs(fs, paths):
    """:class:`FeatureInputs` of the given folders (each must be complete)."""
    if not paths:
        raise InputError("give at least one features folder")
    return FeatureInputs([open_folder(fs, p) for p in paths])


def read_folder(path, splits=None):
    """The FeatureSet of a complete local features folder (text or Parquet; mr_tl.feature_store)."""
    from mr_tl import parquet_io
    from mr_tl.feature_set import collect, read_sources

    folder = open_folder(None, path)
    if folder.data_format == "parquet":
        features = collect(((p, parquet_io.iter_records(p)) for p in folder.files), splits, folder.classes)
    else:
        def lines(p):
            with open(p, encoding="utf-8") as f:
                yield from f

        features = read_sources(((p, lines(p)) for p in folder.files), splits, folder.classes)
    return features
