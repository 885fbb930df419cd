"""Feature records <-> Parquet (mr_tl.parquet, mr_tl.parquet_io): bit-exact, typed, a dataset pandas
and Spark read as it is, streamed, strict, never over an existing output."""

import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_folders import write_feature_folder

from mr_tl import labels, parquet_io
from mr_tl import parquet as parquet_cli
from mr_tl.errors import FeatureError
from mr_tl.feature_set import read_lines
from mr_tl.feature_store import read_folder
from mr_tl.records import FeatureRecord, RejectedRecord, parse_feature_line

DIM = 7
CLASSES = ["000.circle", "001.café au lait", "002.日本"]
DIGEST = "ab" * 32


def float32_values(n, seed):
    """Finite float32 with awkward bit patterns: -0.0, subnormals, extremes, values that print badly."""
    g = np.random.default_rng(seed)
    bits = g.integers(0, 2**32, size=(n, DIM), dtype=np.uint64).astype("<u4")
    x = bits.view("<f4").copy()
    x[~np.isfinite(x)] = 0.1
    x[0, :6] = [-0.0, 1e-45, -1.1754942e-38, 3.4028235e38, 0.1, 1 / 3]
    return x


@pytest.fixture
def features_dir(tmp_path):
    """A complete featurize-style output folder: two part files (features and rejections) and side files."""
    x = float32_values(9, seed=0)
    ids = ["000.circle/a.jpg", "001.café au lait/b 100%.jpg", "002.日本/tab\there.jpg", "000.circle/d.png",
           "001.café au lait/e.jpg", "002.日本/f.jpg", "000.circle/g.jpg", "001.café au lait/h.jpg", "002.日本/i.jpg"]
    features = [FeatureRecord(i, n % 3, ("train", "val", "test")[n % 3 if n < 6 else 0], x[n], DIGEST if n % 2 else "-")
                for n, i in enumerate(ids)]
    rejected = [RejectedRecord("000.circle/bad.jpg", 0, "train", "corrupt", "OSError: truncated", DIGEST),
                RejectedRecord("002.日本/empty.jpg", 2, "val", "empty-file", "0 bytes")]
    folder = write_feature_folder(tmp_path / "features", features + rejected, CLASSES, parts=2)
    return folder, [r.to_line() for r in features], [r.to_line() for r in rejected]


@pytest.fixture
def cli(call_main):
    """``python -m mr_tl.parquet ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    return lambda *args: call_main(parquet_cli.main, *args)


def test_text_parquet_text_round_trip_is_bit_exact(features_dir, tmp_path, run_module):
    folder, f_lines, r_lines = features_dir
    path = tmp_path / "features.parquet"
    result = run_module("mr_tl.parquet", folder, "-o", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote 9 feature vectors (7-d, 3 classes), skipped 2 rejected records to %s" % path
    assert sorted(os.listdir(path)) == ["_COMPLETE", "_labels.json", "_summary.json", "part-00000.parquet",
                                        "part-00001.parquet"]
    back = tmp_path / "again"
    result = run_module("mr_tl.parquet", "--to-text", path, "-o", back)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(back)) == ["_COMPLETE", "_labels.json", "_summary.json", "part-00000", "part-00001"]
    lines = []
    for name in ("part-00000", "part-00001"):
        with open(back / name, encoding="utf-8") as f:
            lines += f.read().splitlines()
    assert sorted(lines) == sorted(f_lines)  # the very same text: every float32 bit and digest kept
    assert labels.read(str(back / "_labels.json")) == CLASSES


def test_parquet_schema_exactly(features_dir, tmp_path, cli):
    folder, f_lines, _ = features_dir
    path = str(tmp_path / "f.parquet")
    assert cli(folder, "-o", path)[0] == 0
    schema = pq.read_schema(os.path.join(path, "part-00000.parquet"))
    assert schema.names == ["id", "label", "label_name", "split", "sha256", "features"]
    for name in ("id", "label_name", "split", "sha256"):
        assert schema.field(name).type == pa.string()
    assert schema.field("label").type == pa.int32()
    features = schema.field("features").type
    assert pa.types.is_fixed_size_list(features)
    assert features.value_type == pa.float32() and features.list_size == DIM
    assert json.loads(schema.metadata[parquet_io.LABELS_KEY]) == CLASSES
    table = pq.read_table(path)   # the folder, as a dataset
    assert table.num_rows == 9
    records = {r.id: r for r in map(parse_feature_line, f_lines)}
    for row in table.to_pylist():
        r = records[row["id"]]
        assert (row["label"], row["label_name"], row["split"], row["sha256"]) == (r.label, CLASSES[r.label],
                                                                                   r.split, r.sha256)
        assert np.array(row["features"], dtype="<f4").tobytes() == r.features.tobytes()


def test_one_row_group_per_part(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    path = tmp_path / "f.parquet"
    assert cli(folder, "-o", path)[0] == 0
    for name in ("part-00000.parquet", "part-00001.parquet"):
        assert pq.ParquetFile(str(path / name)).num_row_groups == 1
    # part-00000 of the text holds records 0, 2, 4, 6, 8 and one rejection
    assert pq.ParquetFile(str(path / "part-00000.parquet")).metadata.num_rows == 5


def test_readable_by_pandas_unchanged(features_dir, tmp_path, cli):
    folder, f_lines, _ = features_dir
    path = str(tmp_path / "f.parquet")
    assert cli(folder, "-o", path)[0] == 0
    df = pd.read_parquet(path)
    assert list(df.columns) == ["id", "label", "label_name", "split", "sha256", "features"]
    assert df["label"].dtype == np.int32
    records = {r.id: r for r in map(parse_feature_line, f_lines)}
    assert sorted(df["id"]) == sorted(records)
    for _, row in df.iterrows():
        r = records[row["id"]]
        assert row["label"] == r.label and row["split"] == r.split and row["label_name"] == CLASSES[r.label]
        vector = np.asarray(row["features"])
        assert vector.dtype == np.float32 and vector.shape == (DIM,)
        assert vector.tobytes() == r.features.tobytes()


def test_rejected_records_are_skipped_and_counted(features_dir, tmp_path):
    folder, _, r_lines = features_dir
    fs = parquet_cli.storage.filesystem()
    tally, rejected, _ = parquet_cli.text_to_parquet(fs, [folder], str(tmp_path / "f.parquet"))
    assert rejected == len(r_lines) == 2 and sum(tally.featurized.values()) == 9
    ids = set(pq.read_table(str(tmp_path / "f.parquet")).column("id").to_pylist())
    assert "000.circle/bad.jpg" not in ids and "002.日本/empty.jpg" not in ids
    summary = json.load(open(tmp_path / "f.parquet" / "_summary.json"))
    assert summary["data"] == "parquet" and summary["rejected_not_written"] == 2


def test_read_folder_gives_the_feature_set_back(features_dir, tmp_path, cli):
    folder, f_lines, _ = features_dir
    original = read_lines(f_lines, classes=CLASSES)
    assert cli(folder, "-o", tmp_path / "f.parquet")[0] == 0
    back = read_folder(str(tmp_path / "f.parquet"))
    order = sorted(range(len(back)), key=back.ids.__getitem__)
    first = sorted(range(len(original)), key=original.ids.__getitem__)
    assert [back.ids[i] for i in order] == [original.ids[i] for i in first] and back.classes == CLASSES
    assert back.X[order].tobytes() == original.X[first].tobytes()
    assert [back.sha256s[i] for i in order] == [original.sha256s[i] for i in first]
    val = read_folder(str(tmp_path / "f.parquet"), splits=["val"])
    assert val.splits == ["val"] * len(val) and len(val) == original.splits.count("val")


# -- outputs are never written into or over ---------------------------------------------------------------

def test_an_existing_output_is_refused_and_untouched(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    for existing in (tmp_path / "dir.parquet", tmp_path / "file.parquet"):
        if existing.name.startswith("dir"):
            existing.mkdir()
            (existing / "keep.txt").write_text("mine")
        else:
            existing.write_text("mine")
        code, _, err = cli(folder, "-o", existing)
        assert code == 2 and "already exists" in err and "--overwrite" in err
        assert (existing / "keep.txt" if existing.is_dir() else existing).read_text() == "mine"
    # --to-text into an existing features folder: refused, nothing of it replaced
    assert cli(folder, "-o", tmp_path / "p")[0] == 0
    before = {n: (tmp_path / "p" / n).read_bytes() for n in os.listdir(tmp_path / "p")}
    code, _, err = cli("--to-text", tmp_path / "p", "-o", folder)
    assert code == 2 and "already exists" in err
    assert cli("--to-text", tmp_path / "p", "-o", tmp_path / "p")[0] == 2
    assert {n: (tmp_path / "p" / n).read_bytes() for n in os.listdir(tmp_path / "p")} == before


def test_overwrite_replaces_the_whole_output(features_dir, tmp_path, cli):
    folder, f_lines, _ = features_dir
    out = tmp_path / "out"
    out.mkdir()
    for name in ("part-00000", "part-00007", "_summary.json", "stale.txt"):
        (out / name).write_text("old")
    assert cli(folder, "-o", tmp_path / "p")[0] == 0
    code, _, err = cli("--to-text", tmp_path / "p", "-o", out, "--overwrite")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["_COMPLETE", "_labels.json", "_summary.json", "part-00000", "part-00001"]
    assert len(read_folder(str(out))) == len(f_lines)


# -- bad feature text ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (FeatureRecord("x", 0, "train", np.zeros(DIM + 1, "<f4")).to_line(), "has 8 values, expected 7"),
    ("x\t0\ttrain\tAAAA", "not a feature record"),
    (FeatureRecord("x", 0, "train", np.zeros(DIM, "<f4")).to_line(), "do not add up to their summary"),
])
def test_bad_feature_text_is_refused(features_dir, tmp_path, cli, extra, message):
    folder, _, _ = features_dir
    with open(os.path.join(folder, "part-00001"), "a", encoding="utf-8") as f:
        f.write(extra + "\n")
    code, _, err = cli(folder, "-o", tmp_path / "f.parquet")
    assert code == 2
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not os.path.exists(tmp_path / "f.parquet")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".mr_tl")]   # no temporary folder left


def test_bad_line_is_located_by_file_and_line(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    with open(os.path.join(folder, "part-00001"), "a", encoding="utf-8") as f:
        f.write("x\t0\ttrain\tAAAA\n")  # line 6 of part-00001
    code, _, err = cli(folder, "-o", tmp_path / "f.parquet")
    assert code == 2 and "part-00001" in err and "line 6" in err


def test_a_part_file_that_is_not_utf8(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    with open(os.path.join(folder, "part-00001"), "ab") as f:
        f.write(b"F\t\xff\xfe\n")
    code, _, err = cli(folder, "-o", tmp_path / "f.parquet")
    assert code == 2 and "not UTF-8" in err and "Traceback" not in err


def test_incomplete_or_missing_feature_input(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    (tmp_path / "empty").mkdir()
    code, _, err = cli(tmp_path / "empty", "-o", tmp_path / "f.parquet")
    assert code == 2 and "incomplete" in err and "_COMPLETE" in err
    code, _, err = cli(tmp_path / "nowhere", "-o", tmp_path / "f.parquet")
    assert code == 2 and "does not exist" in err
    os.remove(os.path.join(folder, "_COMPLETE"))
    code, _, err = cli(folder, "-o", tmp_path / "f.parquet")
    assert code == 2 and "incomplete" in err and "2 part files" in err


# -- Parquet files of the wrong shape ------------------------------------------------------------

def _good_table():
    flat = pa.array(np.arange(2 * DIM, dtype="<f4"), type=pa.float32())
    return pa.table({"id": ["a", "b"], "label": pa.array([0, 1], pa.int32()), "label_name": ["x", "y"],
                     "split": ["train", "val"], "features": pa.FixedSizeListArray.from_arrays(flat, DIM)})


def _write(tmp_path, table, name="t.parquet"):
    path = str(tmp_path / name)
    pq.write_table(table, path)
    return path


def read_parquet(path):
    return parquet_io.read_feature_set(path)


def test_read_a_good_foreign_file(tmp_path):
    fs = read_parquet(_write(tmp_path, _good_table()))
    assert fs.ids == ["a", "b"] and fs.classes == [] and fs.X.shape == (2, DIM)
    assert fs.X[1].tolist() == list(range(DIM, 2 * DIM))
    assert fs.sha256s == ["-", "-"]   # no digest column: unknown


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(["features"]), "lacks column\\(s\\) features"),
    (lambda t: t.drop(["id", "split"]), "lacks column\\(s\\) id, split"),
    (lambda t: t.set_column(4, "features", pa.array([[1.0] * DIM] * 2, pa.list_(pa.float32()))),
     "column 'features' must be fixed_size_list<float32>, found list<"),
    (lambda t: t.set_column(4, "features", pa.FixedSizeListArray.from_arrays(pa.array([1.0] * 2 * DIM), DIM)),
     "must be fixed_size_list<float32>, found fixed_size_list<.*double>"),
    (lambda t: t.set_column(4, "features", pa.array([1.0, 2.0], pa.float32())), "must be fixed_size_list"),
    (lambda t: t.set_column(3, "split", pa.array(["train", "dev"])), "image 'b' has split 'dev'"),
])
def test_read_parquet_refuses_a_wrong_schema(tmp_path, change, message):
    with pytest.raises(FeatureError, match=message):
        read_parquet(_write(tmp_path, change(_good_table())))


def test_read_parquet_refuses_what_is_not_parquet(tmp_path):
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"PAR1 but not really")
    with pytest.raises(FeatureError, match="is not a readable Parquet file"):
        read_parquet(str(garbage))
    with pytest.raises(FeatureError, match="is not a readable Parquet file"):
        read_parquet(str(tmp_path / "missing.parquet"))


def test_read_parquet_refuses_null_feature_rows(tmp_path):
    flat = pa.array(np.arange(3 * DIM, dtype="<f4"), type=pa.float32())
    features = pa.FixedSizeListArray.from_arrays(flat, DIM, mask=pa.array([False, True, False]))
    table = pa.table({"id": ["a", "b", "c"], "label": pa.array([0, 0, 0], pa.int32()),
                      "split": ["train"] * 3, "features": features})
    with pytest.raises(FeatureError):
        read_parquet(_write(tmp_path, table))


@pytest.mark.parametrize("labels", [pa.array(["0", "one"]), pa.array([None, 1], pa.int32()),
                                    pa.array([-1, 0], pa.int32())])
def test_read_parquet_refuses_bad_labels(tmp_path, labels):
    with pytest.raises(FeatureError):
        read_parquet(_write(tmp_path, _good_table().set_column(1, "label", labels)))


def test_read_parquet_refuses_null_ids(tmp_path):
    with pytest.raises(FeatureError):
        read_parquet(_write(tmp_path, _good_table().set_column(0, "id", pa.array([None, "b"], pa.string()))))
