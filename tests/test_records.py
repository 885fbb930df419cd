"""mr_tl.records: every on-disk record format, its escaping and its errors."""

import base64
import hashlib
import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mr_tl.errors import RecordError
from mr_tl.records import (
    FEATURE_DTYPE,
    FeatureRecord,
    PackedImage,
    RejectedRecord,
    decode_arrays,
    encode_arrays,
    escape_field,
    feature_line_head,
    load_npz,
    parse_feature_line,
    save_npz,
    unescape_field,
)

NASTY_IDS = [
    "001.ak47/001_0001.jpg",
    "a\tb.jpg",
    "line\nbreak.jpg",
    "carriage\rreturn.jpg",
    "crlf\r\n.jpg",
    "100% sure.jpg",
    "%09 is not a tab.jpg",
    "%%%",
    "%",
    "ends with %",
    "002.café au lait/naïve 日本語 😀.jpg",
    "ctrl \x00\x01\x0b\x0c\x1c\x1d\x1e\x7f\x85\u2028\u2029.jpg",
    "",
]


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _floats(values):
    return np.asarray(values, dtype=FEATURE_DTYPE)


def _single_line(line, fields):
    assert "\n" not in line and "\r" not in line
    assert line.count("\t") == fields - 1


# -- escaping -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", NASTY_IDS)
def test_escape_round_trip_and_no_separators_left(text):
    escaped = escape_field(text)
    assert not any(c in escaped for c in "\t\n\r")
    assert unescape_field(escaped) == text


def test_escape_is_exactly_the_documented_one():
    assert escape_field("a%b\tc\nd\re") == "a%25b%09c%0Ad%0De"
    # everything else, non-ASCII and other control characters included, stays as it is
    assert escape_field("é 日本 \x0b\x00") == "é 日本 \x0b\x00"
    assert unescape_field("%0a%0d") == "\n\r"  # hex digits in either case


@pytest.mark.parametrize("text", ["%", "%2", "%41", "abc%zz", "%%", "%0"])
def test_unescape_rejects_unknown_escapes(text):
    with pytest.raises(RecordError, match="bad escape"):
        unescape_field(text)


# -- packed images ------------------------------------------------------------------------------

@pytest.mark.parametrize("image_id", NASTY_IDS)
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_packed_image_round_trip(image_id, split):
    image = PackedImage(image_id, 7, split, bytes(range(256)) * 3)
    line = image.to_line()
    _single_line(line, 4)
    assert PackedImage.from_line(line) == image
    assert PackedImage.from_line(line + "\n") == image
    assert PackedImage.from_line(line + "\r\n") == image
    assert PackedImage.from_line((line + "\n").encode("utf-8")) == image


def test_packed_image_line_layout():
    line = PackedImage("a b/é.jpg", 12, "val", b"\xff\xd8\xff").to_line()
    assert line == "a b/é.jpg\t12\tval\t" + _b64(b"\xff\xd8\xff")


def test_packed_image_empty_data_round_trips():
    image = PackedImage("x", 0, "train", b"")
    assert PackedImage.from_line(image.to_line()) == image


def test_packed_image_to_line_refuses_a_bad_split():
    with pytest.raises(RecordError, match="split"):
        PackedImage("x", 0, "training", b"").to_line()


@pytest.mark.parametrize("line, message", [
    ("x\t0\ttrain", "4 tab-separated fields, found 3"),
    ("x\t0\ttrain\tAAAA\textra", "4 tab-separated fields, found 5"),
    ("", "found 1"),
    ("x\t-1\ttrain\tAAAA", "label must be a non-negative integer"),
    ("x\t1.0\ttrain\tAAAA", "label must be a non-negative integer"),
    ("x\t\ttrain\tAAAA", "label must be a non-negative integer"),
    ("x\t 1\ttrain\tAAAA", "label must be a non-negative integer"),
    ("x\t1234567890\ttrain\tAAAA", "label must be a non-negative integer"),
    ("x\tone\ttrain\tAAAA", "label must be a non-negative integer"),
    ("x\t0\tTrain\tAAAA", "split must be one of train/val/test"),
    ("x\t0\t\tAAAA", "split must be one of"),
    ("x\t0\ttrain\tAAA", "image data is not valid base64"),
    ("x\t0\ttrain\tAA!A", "image data is not valid base64"),
    ("x\t0\ttrain\tAAAA AAAA", "image data is not valid base64"),
    ("x\t0\ttrain\tAAAé", "image data is not valid base64"),
    ("bad%zz\t0\ttrain\tAAAA", "bad escape"),
])
def test_packed_image_malformed_lines(line, message):
    with pytest.raises(RecordError, match=message):
        PackedImage.from_line(line)


def test_packed_image_line_that_is_not_utf8():
    with pytest.raises(RecordError, match="not UTF-8"):
        PackedImage.from_line(b"caf\xe9\t0\ttrain\tAAAA")


def test_label_of_nine_digits_is_the_largest_accepted():
    assert PackedImage.from_line("x\t999999999\ttrain\t").label == 999999999


@pytest.mark.parametrize("label", ["²", "١٢", "𝟙", "①"])
def test_label_must_be_ascii_digits(label):
    with pytest.raises(RecordError, match="label"):
        PackedImage.from_line("x\t%s\ttrain\tAAAA" % label)


# -- feature and rejected records ---------------------------------------------------------------

@pytest.mark.parametrize("image_id", NASTY_IDS)
def test_feature_record_round_trip(image_id):
    features = _floats([0.0, -0.0, 1.5, -3.25e-38, 3.4e38, np.inf, -np.inf, 1e-45])
    line = FeatureRecord(image_id, 3, "test", features, "0f" * 32).to_line()
    _single_line(line, 6)
    record = parse_feature_line(line, dim=features.size)
    assert isinstance(record, FeatureRecord)
    assert (record.id, record.label, record.split, record.sha256) == (image_id, 3, "test", "0f" * 32)
    assert record.features.dtype == FEATURE_DTYPE
    assert record.features.tobytes() == features.tobytes()


def test_feature_record_layout_is_little_endian_float32():
    line = FeatureRecord("a", 1, "train", np.array([1.0, 2.0], dtype=">f8")).to_line()
    kind, image_id, label, split, digest, data = line.split("\t")
    assert (kind, image_id, label, split, digest) == ("F", "a", "1", "train", "-")
    assert base64.b64decode(data) == b"\x00\x00\x80?\x00\x00\x00@"


def test_feature_record_keeps_nan_payloads():
    bits = np.array([0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7FBADBAD, 0x00000001], dtype="<u4")
    line = FeatureRecord("n", 0, "train", bits.view(FEATURE_DTYPE)).to_line()
    assert parse_feature_line(line).features.view("<u4").tolist() == bits.tolist()


def test_empty_feature_vector_round_trips():
    record = parse_feature_line(FeatureRecord("e", 0, "val", _floats([])).to_line())
    assert record.features.size == 0


@pytest.mark.parametrize("image_id", NASTY_IDS)
@pytest.mark.parametrize("detail", ["", "OSError: image file is truncated (3 bytes not processed)",
                                    "multi\nline\r\ndetail\twith tab, 100% and é"])
def test_rejected_record_round_trip(image_id, detail):
    record = RejectedRecord(image_id, 2, "val", "corrupt", detail, "a" * 64)
    line = record.to_line()
    _single_line(line, 7)
    assert parse_feature_line(line) == record
    assert parse_feature_line(line.encode("utf-8") + b"\n") == record


def test_rejected_record_default_detail_is_empty():
    line = RejectedRecord("x", 0, "train", "empty-file").to_line()
    assert line == "R\tx\t0\ttrain\t-\tempty-file\t"
    assert parse_feature_line(line).detail == ""


def test_feature_line_head_reads_the_fields_without_decoding():
    assert feature_line_head(FeatureRecord("a%b", 0, "val", _floats([1]), "c" * 64).to_line()) == \
        ("F", "a%b", 0, "val", "c" * 64, None, None)
    assert feature_line_head(RejectedRecord("x\ty", 3, "test", "corrupt", "d\n").to_line()) == \
        ("R", "x\ty", 3, "test", "-", "corrupt", "d\n")
    # the vector is not decoded: a broken one does not matter here
    assert feature_line_head("F\tx\t0\ttrain\t-\t!!!")[:4] == ("F", "x", 0, "train")
    for bad in ("F\tx\t0", "X\tx\t0\ttrain\t-\tAAAA", "F\tx\t0\tdev\t-\tAAAA", "F\tx\t0\ttrain\tAAAA", "",
                "F\tx\t0\ttrain\tnot-a-digest\tAAAA"):
        with pytest.raises(RecordError):
            feature_line_head(bad)


def test_rejected_record_with_unknown_label_and_split():
    line = RejectedRecord("?line", None, None, "bad-record", "why").to_line()
    assert line == "R\t?line\t-\t-\t-\tbad-record\twhy"
    assert parse_feature_line(line) == RejectedRecord("?line", None, None, "bad-record", "why")


def test_negative_label_is_refused_when_writing():
    with pytest.raises(RecordError, match="label"):
        FeatureRecord("x", -1, "train", _floats([1])).to_line()
    with pytest.raises(RecordError, match="label"):
        PackedImage("x", -1, "train", b"").to_line()


@pytest.mark.parametrize("line, message", [
    ("F\tx\t0\ttrain\t-", "expected 'F' \\+ 5 fields or 'R' \\+ 6 fields, found 'F' with 5 fields"),
    ("F\tx\t0\ttrain\tAAAA", "found 'F' with 5 fields"),   # a feature line without its image digest
    ("F\tx\t0\ttrain\t-\tAAAA\textra", "found 'F' with 7 fields"),
    ("R\tx\t0\ttrain\t-\tcorrupt", "found 'R' with 6 fields"),
    ("R\tx\t0\ttrain\t-\tcorrupt\tdetail\textra", "found 'R' with 8 fields"),
    ("X\tx\t0\ttrain\t-\tAAAA", "not a feature record"),
    ("", "not a feature record"),
    ("x\t0\ttrain\tAAAA", "not a feature record"),  # a packed image line is not a feature line
    ("F\tx\t0\ttrain\t-\tAAA", "feature vector is not valid base64"),
    ("F\tx\t0\ttrain\t-\t%s" % _b64(b"abcde"), "5 bytes, not a whole number of float32"),
    ("F\tx\t0\ttrain\t-\t%s" % _b64(b"ab"), "2 bytes, not a whole number of float32"),
    ("F\tx\t-1\ttrain\t-\tAAAAAA==", "label must be a non-negative integer"),
    ("F\tx\t0\tdev\t-\tAAAAAA==", "split must be one of"),
    ("F\tx\t0\ttrain\tABCD\tAAAAAA==", "image digest must be 64 hex digits"),
    ("F\tx\t0\ttrain\t%s\tAAAAAA==" % ("A" * 64), "image digest must be 64 hex digits"),
    ("R\tx\tzero\ttrain\t-\tcorrupt\t", "label"),
    ("R\tx\t0\tall\t-\tcorrupt\t", "split"),
    ("R\tx\t0\ttrain\t-\tcorrupt\tbad %zz", "bad escape"),
])
def test_feature_malformed_lines(line, message):
    with pytest.raises(RecordError, match=message):
        parse_feature_line(line)


def test_feature_wrong_dimension_names_the_image():
    line = FeatureRecord("a%b", 0, "train", _floats([1, 2, 3])).to_line()
    assert parse_feature_line(line, dim=3).features.size == 3
    with pytest.raises(RecordError, match=r"feature vector of 'a%b' has 3 values, expected 4"):
        parse_feature_line(line, dim=4)


# -- arrays: encode_arrays / decode_arrays --------------------------------------------------------

ARRAY_DTYPES = ["<f2", "<f4", "<f8", ">f4", ">f8", "i1", "<i2", "<i4", ">i8", "u1", "<u2", "<u4", ">u8"]


@pytest.mark.parametrize("dtype", ARRAY_DTYPES)
@pytest.mark.parametrize("shape", [(0,), (5,), (2, 3), (2, 0, 4), (1, 2, 3, 4)])  # () below
def test_arrays_round_trip_every_dtype_and_shape(dtype, shape):
    values = (np.arange(int(np.prod(shape))) % 100).reshape(shape).astype(dtype)
    line = encode_arrays({"round": 3, "worker": "a\tb"}, {"w": values, "b": values[..., :1]})
    assert "\n" not in line
    meta, arrays = decode_arrays(line)
    assert meta == {"round": 3, "worker": "a\tb"}
    out = arrays["w"]
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype).newbyteorder("<")  # always little-endian on the wire
    assert out.dtype.byteorder in ("<", "|", "=")
    assert np.array_equal(out, values)
    assert out.flags.writeable


@pytest.mark.parametrize("dtype", ["<f4", "<i8"])
def test_arrays_round_trip_scalars(dtype):
    _, arrays = decode_arrays(encode_arrays({}, {"step": np.array(7, dtype=dtype)}))
    assert arrays["step"].shape == ()
    assert arrays["step"] == 7


def test_npz_round_trip_scalars(tmp_path):
    save_npz(str(tmp_path / "s.npz"), {}, {"step": np.array(7, dtype="<i8")})
    assert load_npz(str(tmp_path / "s.npz"))[1]["step"].shape == ()


def test_arrays_are_one_canonical_json_object():
    line = encode_arrays({"b": 1, "a": [1, 2]}, {"z": np.zeros(2, "<f4"), "a": np.ones(1, "<i4")})
    assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))
    # the same content gives the same line, whatever the insertion order
    assert line == encode_arrays({"a": [1, 2], "b": 1}, {"a": np.ones(1, "<i4"), "z": np.zeros(2, "<f4")})


def test_arrays_refuse_unsupported_dtypes_and_nan_meta():
    for value in (np.array([True]), np.array([1 + 2j]), np.array(["s"]), np.array([None], dtype=object)):
        with pytest.raises(TypeError, match="unsupported dtype"):
            encode_arrays({}, {"x": value})
    with pytest.raises(ValueError):
        encode_arrays({"loss": float("nan")}, {})


def _array_line(**spec):
    base = {"dtype": "<f4", "shape": [2], "data": _b64(b"\x00" * 8)}
    base.update(spec)
    return json.dumps({"meta": {}, "arrays": {"x": base}})


@pytest.mark.parametrize("line, message", [
    ("", "not an array record"),
    ("not json", "not an array record"),
    ("[1, 2]", "not an array record"),
    ('"text"', "not an array record"),
    ('{"meta": {}}', "not an array record"),
    ('{"arrays": {}}', "not an array record"),
    ('{"meta": {}, "arrays": {"x": [1]}}', "not an array record"),
    ('{"meta": {}, "arrays": {"x": {"shape": [1], "data": ""}}}', "not an array record"),
    (_array_line(dtype="|b1"), "unsupported dtype"),
    (_array_line(dtype="<c8"), "unsupported dtype"),
    (_array_line(dtype="|O"), "unsupported dtype"),
    (_array_line(dtype="no such dtype"), "not an array record"),
    (_array_line(shape=[3]), "8 bytes for shape \\(3,\\)"),
    (_array_line(shape=[-2]), "bytes for shape"),
    (_array_line(shape=[-1, -1], data=_b64(b"\x00" * 4)), "not an array record"),
    (_array_line(shape=["two"]), "not an array record"),
    (_array_line(data="AAA"), "not valid base64"),
])
def test_decode_arrays_malformed(line, message):
    with pytest.raises(RecordError, match=message):
        decode_arrays(line)


@pytest.mark.parametrize("line", ['{"meta": {}, "arrays": []}', '{"meta": {}, "arrays": "x"}',
                                  '{"meta": {}, "arrays": 1}', "[" * 100_000])
def test_decode_arrays_malformed_structure_is_a_record_error(line):
    with pytest.raises(RecordError):
        decode_arrays(line)


# -- npz ----------------------------------------------------------------------------------------

def _npz_arrays():
    return {"W": np.arange(12, dtype="<f4").reshape(3, 4), "b": np.array([-1.5, np.nan], dtype="<f8"),
            "step": np.array([7], dtype="<i8"), "empty": np.zeros((0, 3), dtype="<f4")}


def test_npz_round_trip(tmp_path):
    path = str(tmp_path / "p.npz")
    meta = {"round": 2, "classes": ["é", "a\tb"], "lr": 0.1}
    save_npz(path, meta, _npz_arrays())
    got_meta, got = load_npz(path)
    assert got_meta == meta
    assert sorted(got) == sorted(_npz_arrays())
    for name, value in _npz_arrays().items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        assert got[name].tobytes() == value.tobytes()


def test_npz_bytes_are_a_function_of_the_content(tmp_path):
    a, b, c = (str(tmp_path / n) for n in ("a.npz", "b.npz", "c.npz"))
    save_npz(a, {"x": 1, "y": 2}, _npz_arrays())
    # same content, different dict orders and a different moment: same bytes
    save_npz(b, {"y": 2, "x": 1}, dict(reversed(list(_npz_arrays().items()))))
    assert open(a, "rb").read() == open(b, "rb").read()
    save_npz(c, {"x": 1, "y": 3}, _npz_arrays())
    assert hashlib.sha256(open(a, "rb").read()).digest() != hashlib.sha256(open(c, "rb").read()).digest()


def test_npz_without_meta_and_reserved_name(tmp_path):
    path = str(tmp_path / "plain.npz")
    np.savez(path, x=np.ones(2))
    meta, arrays = load_npz(path)
    assert meta == {} and arrays["x"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="reserved"):
        save_npz(str(tmp_path / "r.npz"), {}, {"__meta__": np.zeros(1)})
    with pytest.raises(ValueError):
        save_npz(str(tmp_path / "n.npz"), {"x": float("inf")}, {})


def test_npz_never_unpickles(tmp_path):
    path = str(tmp_path / "pickled.npz")
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_npz(path)


# -- properties ---------------------------------------------------------------------------------

# any text, with the characters that need escaping (and look-alikes of escapes) made frequent
ids = st.text(alphabet=st.one_of(st.characters(exclude_categories=("Cs",)),
                                 st.sampled_from("\t\n\r%0A9Dd\x00\x85\u2028")), max_size=40)
labels = st.integers(0, 999_999_999)
splits = st.sampled_from(["train", "val", "test"])
float32_bits = st.lists(st.integers(0, 2**32 - 1), max_size=40).map(lambda b: np.array(b, "<u4").view("<f4"))


@given(ids, labels, splits, st.binary(max_size=300))
def test_property_packed_image_round_trip(image_id, label, split, data):
    image = PackedImage(image_id, label, split, data)
    line = image.to_line()
    _single_line(line, 4)
    assert PackedImage.from_line(line) == image
    assert PackedImage.from_line(line.encode("utf-8") + b"\n") == image


@given(ids, labels, splits, float32_bits)
def test_property_feature_record_round_trip_bitwise(image_id, label, split, features):
    line = FeatureRecord(image_id, label, split, features).to_line()
    _single_line(line, 6)
    record = parse_feature_line(line, dim=features.size)
    assert (record.id, record.label, record.split) == (image_id, label, split)
    assert record.features.tobytes() == features.tobytes()


@given(ids, labels, splits, ids, ids)
def test_property_rejected_record_round_trip(image_id, label, split, reason, detail):
    record = RejectedRecord(image_id, label, split, reason, detail)
    line = record.to_line()
    _single_line(line, 7)
    assert parse_feature_line(line) == record
    assert feature_line_head(line) == ("R", image_id, label, split, "-", reason, detail)


@given(ids)
def test_property_escape_round_trip(text):
    escaped = escape_field(text)
    assert not any(c in escaped for c in "\t\n\r")
    assert unescape_field(escaped) == text
    assert escape_field(text) == text or "%" in escaped


_array_dtypes = st.sampled_from(["<f2", "<f4", "<f8", ">f4", "i1", "<i2", ">i4", "<i8", "u1", ">u2", "<u4", "<u8"])


@st.composite
def named_arrays(draw):
    out = {}
    for name in draw(st.lists(st.text(max_size=8), max_size=4, unique=True)):
        dtype = np.dtype(draw(_array_dtypes))
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
        raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize,
                             max_size=int(np.prod(shape)) * dtype.itemsize))
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)  # any bit pattern, NaNs included
    return out


json_meta = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10)
                         | st.floats(allow_nan=False, allow_infinity=False),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=3), max_leaves=10)


@given(json_meta, named_arrays())
def test_property_arrays_round_trip_bitwise(meta, arrays):
    meta_back, arrays_back = decode_arrays(encode_arrays(meta, arrays))
    assert meta_back == meta
    assert sorted(arrays_back) == sorted(arrays)
    for name, value in arrays.items():
        little = value.astype(value.dtype.newbyteorder("<"))
        assert arrays_back[name].dtype == little.dtype and arrays_back[name].shape == value.shape
        assert arrays_back[name].tobytes() == little.tobytes()


# Arbitrary text for the parsers: free text, and lines assembled from plausible fields so
# that the deeper checks (label, split, base64, escapes, sizes) are reached too.
_digits = st.one_of(st.characters(categories=["Nd", "No"]), st.sampled_from("0123456789²³¹①١٢𝟙"))
_field = st.one_of(st.text(max_size=12), st.text(_digits,
                           min_size=1, max_size=3),
                   st.sampled_from(
    ["F", "R", "0", "7", "999999999", "1234567890", "-1", "train", "val", "test", "AAAA", "AAAAAA==", "AAA",
     "%25", "%0", "%zz", "", " ", _b64(b"\x00" * 12)]))
lines = st.one_of(
    st.text(),
    st.lists(_field, min_size=0, max_size=8).map("\t".join),
    st.tuples(_field, _field, _field, _field).map("\t".join),                             # packed image
    st.tuples(st.sampled_from("FR"), _field, _field, _field, _field).map("\t".join),       # feature
    st.tuples(st.sampled_from("FR"), _field, _field, _field, _field, _field).map("\t".join),  # rejected
)


def _only_record_errors(parse, line):
    try:
        parse(line)
    except RecordError:
        pass


@settings(max_examples=400)
@given(lines)
def test_property_parsers_raise_only_record_error(line):
    for parse in (PackedImage.from_line, parse_feature_line, lambda x: parse_feature_line(x, dim=3),
                  feature_line_head):
        _only_record_errors(parse, line)
        _only_record_errors(parse, line.encode("utf-8"))
    _only_record_errors(unescape_field, line)


@given(st.binary(max_size=200))
def test_property_byte_lines_raise_only_record_error(data):
    for parse in (PackedImage.from_line, parse_feature_line, feature_line_head):
        _only_record_errors(parse, data)


_json_array_fields = st.fixed_dictionaries({}, optional={
    "dtype": st.one_of(st.sampled_from(["<f4", "|b1", "<c8", "bogus", "V4", "<M8", "O", "S3"]), st.text(max_size=4),
                       st.integers(), st.none()),
    "shape": st.one_of(st.lists(st.one_of(st.integers(-3, 5), st.text(max_size=2)), max_size=3), st.integers(),
                       st.none(), st.text(max_size=3)),
    "data": st.one_of(st.sampled_from(["", "AAAA", "AAAAAA==", "AAA", "!!!!"]), st.text(max_size=8), st.integers()),
})


@given(st.one_of(
    st.text(),
    st.builds(lambda meta, arrays: json.dumps({"meta": meta, "arrays": arrays}),
              json_meta, st.dictionaries(st.text(max_size=3), _json_array_fields, max_size=3)),
    st.builds(json.dumps, st.dictionaries(st.sampled_from(["meta", "arrays", "other"]), json_meta, max_size=3)
              .filter(lambda d: not ("arrays" in d and not isinstance(d["arrays"], dict)))),
))
@example('{"meta": null, "arrays": {"x": {"dtype": "<f4", "shape": [-1, -1], "data": "AAAAAA=="}}}')
@example('{"meta": 1, "arrays": {"x": {"dtype": [["a", "<f4"]], "shape": [1], "data": "AAAAAA=="}}}')
def test_property_decode_arrays_raises_only_record_error(line):
    # a non-object "arrays" member is excluded: see test_decode_arrays_malformed_structure_is_a_record_error
    try:
        decode_arrays(line)
    except RecordError:
        pass


# -- round records (the partition job's output) -------------------------------------------------------

def test_round_records_round_trip():
    from mr_tl.records import parse_round_line, train_line, val_line

    line = FeatureRecord("a\tb", 2, "train", _floats([1, 2]), "e" * 64).to_line()
    kind, worker, record = parse_round_line(train_line(17, line))
    assert (kind, worker, record.id, record.label, record.sha256) == ("T", 17, "a\tb", 2, "e" * 64)
    kind, worker, record = parse_round_line(val_line(line).encode("utf-8") + b"\n")
    assert (kind, worker, record.features.tolist()) == ("V", None, [1.0, 2.0])
    for bad in ("T\tx\t" + line, "W\t1\t" + line, "V\t" + RejectedRecord("r", 0, "val", "corrupt").to_line(),
                train_line(1, line)[:-3], "V\t"):
        with pytest.raises(RecordError):
            parse_round_line(bad)
    with pytest.raises(RecordError, match="expected 3"):
        parse_round_line(train_line(0, line), dim=3)
