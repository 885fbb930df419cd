"""Every on-disk record format of mr_tl, in one place.

All records are single lines of UTF-8 text with tab-separated fields, so
Hadoop's ``TextInputFormat`` can split the files anywhere and Hadoop
Streaming passes them through unchanged.

Packed image (written by ``mr_tl.pack``, read by the featurize job)::

    ID <TAB> LABEL <TAB> SPLIT <TAB> BASE64(original file bytes)

Feature record and rejected record (written by the featurize job)::

    F <TAB> ID <TAB> LABEL <TAB> SPLIT <TAB> SHA256 <TAB> BASE64(float32 little-endian)
    R <TAB> ID <TAB> LABEL <TAB> SPLIT <TAB> SHA256 <TAB> REASON <TAB> DETAIL

``SHA256`` is the hex sha256 of the image file's bytes the record was made
from (``-`` when unknown): with the model's hash in the output's summary it
says exactly what a feature vector is of, so an unchanged image is never
featurized twice and a changed one never reuses a stale vector.

Prediction record (written by the predict job; its rejected records are the ``R`` records above)::

    P <TAB> ID <TAB> LABEL <TAB> SPLIT <TAB> SHA256 <TAB> TOP

``TOP`` is a JSON array of ``[class name, probability]`` pairs, most probable
first (JSON escapes every tab and newline inside a name; probabilities are
the shortest text that reads back as the same float32).

Round records (written by the partition job, read by every training round)::

    T <TAB> WORKER <TAB> <feature record>     a training example and its worker
    V <TAB> <feature record>                  a validation example

``ID`` is the image's path relative to the image folder (``001.ak47/x.jpg``);
it and ``DETAIL`` are escaped so that no tab, newline or carriage return can
appear inside a field (``%`` becomes ``%25``, TAB ``%09``, LF ``%0A``,
CR ``%0D``; everything else, non-ASCII included, stays as it is).

Arrays that travel between the train driver and its tasks (parameters,
optimizer state, a worker's contribution) are one JSON object per line, see
:func:`encode_arrays`; files of parameters on disk are ``.npz`` archives
read with ``allow_pickle=False`` (:func:`save_npz` / :func:`load_npz`).
"""

import base64
import binascii
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import IO, Any, NamedTuple, Self, SupportsInt

import numpy as np
import numpy.typing as npt

from mr_tl.errors import RecordError

SPLITS = ("train", "val", "test")

FEATURE_DTYPE = np.dtype("<f4")

_ESCAPES = {"%": "%25", "\t": "%09", "\n": "%0A", "\r": "%0D"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}




def escape_field(text: str) -> str:
    """Make ``text`` safe to be one tab-separated field of one line."""
    if not any(c in text for c in _ESCAPES):
        return text
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape_field(text: str) -> str:
    """Inverse of :func:`escape_field`."""
    if "%" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        code = text[i:i + 3]
        if text[i] == "%":
            if code.upper() not in _UNESCAPES:
                raise RecordError("bad escape %r in field %r" % (code, text[:80]))
            out.append(_UNESCAPES[code.upper()])
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise RecordError("split must be one of %s, found %r" % ("/".join(SPLITS), split[:20]))
    return split


def _parse_label(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise RecordError("label must be a non-negative integer, found %r" % text[:20])
    return int(text)


def _label_field(label: SupportsInt) -> str:
    value = int(label)
    if not 0 <= value < 10 ** 9:
        raise RecordError("label must be an integer in [0, 1e9), found %d" % value)
    return str(value)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RecordError("%s is not valid base64: %s" % (what, e)) from None


def _text(line: str | bytes) -> str:
    """A line as text without its line ending (bytes are decoded as UTF-8)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordError("line is not UTF-8: %s" % e) from None
    return line.rstrip("\r\n")


def _line_fields(line: str | bytes) -> list[str]:
    return _text(line).split("\t")


@dataclass(frozen=True)
class PackedImage:
    """One image as packed by ``mr_tl.pack``: its id, label, split and file bytes."""

    id: str
    label: int
    split: str
    data: bytes

    def to_line(self) -> str:
        return "\t".join((escape_field(self.id), _label_field(self.label), _check_split(self.split),
                          base64.b64encode(self.data).decode("ascii")))

    @classmethod
    def from_line(cls, line: str | bytes) -> Self:
        fields = _line_fields(line)
        if len(fields) != 4:
            raise RecordError("packed image line needs 4 tab-separated fields, found %d" % len(fields))
        image_id, label, split, data = fields
        return cls(unescape_field(image_id), _parse_label(label), _check_split(split),
                   _b64decode(data, "image data"))


def packed_line_head(line: str | bytes) -> tuple[str, int, str]:
    """``(id, label, split)`` of a packed image line, without decoding its image (RecordError if it is
    not one)."""
    fields = _line_fields(line)
    if len(fields) != 4:
        raise RecordError("packed image line needs 4 tab-separated fields, found %d" % len(fields))
    return unescape_field(fields[0]), _parse_label(fields[1]), _check_split(fields[2])


def relabeled_feature_line(feature_line: str | bytes, image_id: str, label: SupportsInt, split: str) -> str:
    """A feature record line with another id, label and split, its digest and vector text kept as they
    are (featurize --reuse: an unchanged image's old vector under its current id)."""
    fields = _line_fields(feature_line)
    if fields[0] != "F" or len(fields) != 6:
        raise RecordError("not a feature record line (%r, %d fields)" % (fields[0][:10], len(fields)))
    return "\t".join(("F", escape_field(image_id), _label_field(label), _check_split(split), fields[4], fields[5]))


NO_DIGEST = "-"


def _check_digest(text: str) -> str:
    if text != NO_DIGEST and (len(text) != 64 or any(c not in "0123456789abcdef" for c in text)):
        raise RecordError("image digest must be 64 hex digits or '-', found %r" % text[:70])
    return text


@dataclass(frozen=True, eq=False)
class FeatureRecord:
    """The feature vector of one image (``sha256``: of the image file it was made from, or ``-``)."""

    id: str
    label: int
    split: str
    features: np.ndarray
    sha256: str = NO_DIGEST

    def to_line(self) -> str:
        data = np.ascontiguousarray(self.features, dtype=FEATURE_DTYPE).tobytes()
        return "\t".join(("F", escape_field(self.id), _label_field(self.label), _check_split(self.split),
                          _check_digest(self.sha256), base64.b64encode(data).decode("ascii")))


UNKNOWN = "-"


@dataclass(frozen=True)
class RejectedRecord:
    """An image the featurizer could not use, and why.

    ``label`` and ``split`` are None for an input line so damaged that they
    are unknown (written as ``-``).
    """

    id: str
    label: int | None
    split: str | None
    reason: str
    detail: str = ""
    sha256: str = NO_DIGEST

    def to_line(self) -> str:
        label = UNKNOWN if self.label is None else _label_field(self.label)
        split = UNKNOWN if self.split is None else _check_split(self.split)
        return "\t".join(("R", escape_field(self.id), label, split, _check_digest(self.sha256),
                          escape_field(self.reason), escape_field(self.detail)))


_NOT_A_FEATURE_RECORD = "not a feature record: expected 'F' + 5 fields or 'R' + 6 fields, found %r with %d fields"


def parse_feature_line(line: str | bytes, dim: int | None = None) -> "FeatureRecord | RejectedRecord":
    """Parse one line of featurize output into a FeatureRecord or RejectedRecord.

    ``dim``, when given, is the expected feature dimension.
    """
    fields = _line_fields(line)
    kind = fields[0]
    if kind == "F" and len(fields) == 6:
        _, image_id, label, split, digest, data = fields
        return FeatureRecord(unescape_field(image_id), _parse_label(label), _check_split(split),
                             decode_vector(data, dim, image_id), _check_digest(digest))
    if kind == "R" and len(fields) == 7:
        return _rejected_record(fields)
    raise RecordError(_NOT_A_FEATURE_RECORD % (kind[:10], len(fields)))


def decode_vector(text: str, dim: int | None = None, image_id: str = "") -> np.ndarray:
    """The float32 vector of a feature record's last field."""
    raw = _b64decode(text, "feature vector")
    if len(raw) % 4:
        raise RecordError("feature vector has %d bytes, not a whole number of float32" % len(raw))
    features = np.frombuffer(raw, dtype=FEATURE_DTYPE)
    if dim is not None and features.size != dim:
        raise RecordError("feature vector of %r has %d values, expected %d"
                          % (unescape_field(image_id), features.size, dim))
    return features


class RecordHead(NamedTuple):
    """A feature or rejected record without its vector (:func:`feature_line_head`)."""

    kind: str            # "F" or "R"
    id: str
    label: int | None    # None when unknown (a damaged input line)
    split: str | None    # "train"/"val"/"test", or None when unknown
    sha256: str
    reason: str | None = None  # rejected records only
    detail: str | None = None


def _rejected_record(fields: list[str]) -> RejectedRecord:
    """The RejectedRecord of an ``R`` line's 7 fields (checked in field order)."""
    _, image_id, label, split, digest, reason, detail = fields
    image_id = unescape_field(image_id)
    label_value = None if label == UNKNOWN else _parse_label(label)
    split_value = None if split == UNKNOWN else _check_split(split)
    digest = _check_digest(digest)
    return RejectedRecord(image_id, label_value, split_value, unescape_field(reason), unescape_field(detail), digest)


def _rejected_head(fields: list[str]) -> RecordHead:
    r = _rejected_record(fields)
    return RecordHead("R", r.id, r.label, r.split, r.sha256, r.reason, r.detail)


def feature_line_head(line: str | bytes) -> RecordHead:
    """The :class:`RecordHead` of a feature/rejected line, without decoding the vector.

    A fast pass for counting, routing and listing featurize output.
    """
    fields = _line_fields(line)
    if fields[0] == "F" and len(fields) == 6:
        return RecordHead("F", unescape_field(fields[1]), _parse_label(fields[2]), _check_split(fields[3]),
                          _check_digest(fields[4]))
    if fields[0] == "R" and len(fields) == 7:
        return _rejected_head(fields)
    raise RecordError(_NOT_A_FEATURE_RECORD % (fields[0][:10], len(fields)))


# ---------------------------------------------------------------------------
# prediction records: the predict job's output

def _float32_text(value: float | np.floating[Any]) -> str:
    """The shortest decimal text that reads back as the same float32 (JSON-compatible)."""
    v = np.float32(value)
    if not np.isfinite(v):
        return "NaN" if np.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return np.format_float_positional(v, unique=True, trim="0") if v == 0 or 1e-4 <= abs(v) < 1e16 \
        else np.format_float_scientific(v, unique=True, trim="0")


def top_classes(probabilities: Sequence[float] | np.ndarray, classes: Sequence[str],
                k: int) -> list[tuple[str, float]]:
    """``[(class name, probability)]`` of the ``k`` most probable classes (ties: the lower label first)."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(classes[i], float(np.float32(probabilities[i]))) for i in order]


@dataclass(frozen=True)
class PredictionRecord:
    """The top classes of one image: ``top`` is ``[(class name, probability)]``, most probable first."""

    id: str
    label: int | None   # None when unknown
    split: str | None   # "train"/"val"/"test", or None when unknown
    sha256: str
    top: tuple[tuple[str, float], ...]

    def to_line(self) -> str:
        label = UNKNOWN if self.label is None else _label_field(self.label)
        split = UNKNOWN if self.split is None else _check_split(self.split)
        top = "[%s]" % ",".join("[%s,%s]" % (json.dumps(name, ensure_ascii=False), _float32_text(p))
                                for name, p in self.top)
        return "\t".join(("P", escape_field(self.id), label, split, _check_digest(self.sha256), top))


def parse_prediction_line(line: str | bytes) -> PredictionRecord | RejectedRecord:
    """A PredictionRecord or RejectedRecord of one line of predict output."""
    fields = _line_fields(line)
    if fields[0] == "P" and len(fields) == 6:
        _, image_id, label, split, digest, top_text = fields
        try:
            pairs = json.loads(top_text)
            top = tuple((str(name), float(np.float32(p))) for name, p in pairs)
        except (ValueError, TypeError) as e:
            raise RecordError("prediction of %r: bad top classes: %s" % (unescape_field(image_id), e)) from None
        return PredictionRecord(unescape_field(image_id), None if label == UNKNOWN else _parse_label(label),
                                None if split == UNKNOWN else _check_split(split), _check_digest(digest), top)
    if fields[0] == "R" and len(fields) == 7:
        return _rejected_record(fields)
    raise RecordError("not a prediction record: expected 'P' + 5 fields or 'R' + 6 fields, found %r with %d fields"
                      % (fields[0][:10], len(fields)))


# ---------------------------------------------------------------------------
# round records: the partition job's output, every round's input

def train_line(worker: SupportsInt, feature_line: str) -> str:
    """``T WORKER <feature record>``: a training example and the worker that trains on it."""
    return "T\t%d\t%s" % (int(worker), feature_line)


def val_line(feature_line: str) -> str:
    """``V <feature record>``: a validation example."""
    return "V\t" + feature_line


def parse_round_line(line: str | bytes, dim: int | None = None) -> tuple[str, int | None, FeatureRecord]:
    """``(kind, worker, FeatureRecord)`` of a round record; ``worker`` is None for ``V``."""
    text = _text(line)
    worker: int | None
    if text.startswith("T\t"):
        _, worker_text, rest = text.split("\t", 2)
        if not (worker_text.isascii() and worker_text.isdigit()):
            raise RecordError("round record: worker must be a number, found %r" % worker_text[:20])
        record = parse_feature_line(rest, dim)
        kind, worker = "T", int(worker_text)
    elif text.startswith("V\t"):
        record = parse_feature_line(text[2:], dim)
        kind, worker = "V", None
    else:
        raise RecordError("not a round record: expected 'T' or 'V' first, found %r" % text[:10])
    if not isinstance(record, FeatureRecord):
        raise RecordError("round record holds a rejected record (%r)" % record.id)
    return kind, worker, record


# ---------------------------------------------------------------------------
# arrays: parameters, optimizer state, contributions

def encode_arrays(meta: Any, arrays: Mapping[str, npt.ArrayLike]) -> str:
    """One line of JSON holding ``meta`` (a JSON-able dict) and named arrays.

    Arrays keep their dtype and shape; the bytes are base64 in little-endian
    order so the line means the same on every machine.
    """
    out = {}
    for name, given in sorted(arrays.items()):
        value = np.asarray(given)
        dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
        if dtype.kind not in "fiu":
            raise TypeError("array %r has unsupported dtype %s" % (name, value.dtype))
        value = np.asarray(value, dtype=dtype, order="C")  # keeps 0-d arrays 0-d
        out[name] = {"dtype": dtype.str, "shape": list(value.shape),
                     "data": base64.b64encode(value.tobytes()).decode("ascii")}
    return json.dumps({"meta": meta, "arrays": out}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def decode_arrays(line: str | bytes) -> tuple[Any, dict[str, np.ndarray]]:
    """Inverse of :func:`encode_arrays`: returns ``(meta, {name: array})``."""
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict) or "meta" not in obj or not isinstance(obj.get("arrays"), dict):
            raise RecordError("not an array record: expected {\"meta\": ..., \"arrays\": {...}}")
        meta, encoded = obj["meta"], obj["arrays"]
        arrays: dict[str, np.ndarray] = {}
        for name, spec in encoded.items():
            dtype = np.dtype(spec["dtype"])
            if dtype.kind not in "fiu":
                raise RecordError("array %r has unsupported dtype %s" % (name, dtype))
            shape = tuple(int(n) for n in spec["shape"])
            raw = _b64decode(spec["data"], "array %r" % name)
            count = math.prod(shape)
            if len(raw) != count * dtype.itemsize:
                raise RecordError("array %r: %d bytes for shape %s" % (name, len(raw), shape))
            arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except RecordError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise RecordError("not an array record: %s: %s" % (type(e).__name__, e)) from None
    return meta, arrays


def save_npz(path: str | PathLike[str] | IO[bytes], meta: Any, arrays: Mapping[str, npt.ArrayLike]) -> None:
    """Write named arrays plus a JSON ``meta`` dict as an uncompressed .npz.

    Writes exactly the bytes it is given to ``path``; callers that need
    atomicity write to a temporary name and rename.
    """
    payload = {name: np.asarray(a, order="C") for name, a in arrays.items()}
    if "__meta__" in payload:
        raise ValueError("'__meta__' is reserved")
    payload["__meta__"] = np.array(json.dumps(meta, sort_keys=True, allow_nan=False))
    # np.savez stamps the current time into the zip; a fixed stamp keeps the
    # bytes a pure function of the contents (checkpoints compare bit for bit).
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(payload):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, payload[name], allow_pickle=False)


def load_npz(path: str | PathLike[str] | IO[bytes]) -> tuple[Any, dict[str, np.ndarray]]:
    """Inverse of :func:`save_npz`: ``(meta, arrays)``; never unpickles."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files if name != "__meta__"}
        meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
    return meta, arrays
