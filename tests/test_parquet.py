"""Feature records <-> Parquet (mr_tl.parquet, mr_tl.features): bit-exact, typed, pandas-readable, strict."""

import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mr_tl import parquet as parquet_cli
from mr_tl.errors import FeatureError
from mr_tl.features import PARQUET_LABELS_KEY, FeatureSet, read_lines, read_parquet, write_parquet
from mr_tl.pack import load_labels
from mr_tl.records import FeatureRecord, RejectedRecord, parse_feature_line

DIM = 7
CLASSES = ["000.circle", "001.café au lait", "002.日本"]


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
    """A featurize-style output folder: two part files (features and rejections) and _labels.json."""
    out = tmp_path / "features"
    out.mkdir()
    x = float32_values(9, seed=0)
    ids = ["000.circle/a.jpg", "001.café au lait/b 100%.jpg", "002.日本/tab\there.jpg", "000.circle/d.png",
           "001.café au lait/e.jpg", "002.日本/f.jpg", "000.circle/g.jpg", "001.café au lait/h.jpg", "002.日本/i.jpg"]
    f_lines = [FeatureRecord(i, n % 3, ("train", "val", "test")[n % 3 if n < 6 else 0], x[n]).to_line()
               for n, i in enumerate(ids)]
    r_lines = [RejectedRecord("000.circle/bad.jpg", 0, "train", "corrupt", "OSError: truncated").to_line(),
               RejectedRecord("002.日本/empty.jpg", 2, "val", "empty-file", "0 bytes").to_line()]
    (out / "part-00000").write_text("\n".join(f_lines[:5] + r_lines[:1]) + "\n", encoding="utf-8")
    (out / "part-00001").write_text("\n".join(f_lines[5:] + r_lines[1:]) + "\n", encoding="utf-8")
    (out / "_labels.json").write_text(json.dumps({"format": "mr_tl.labels/1", "classes": CLASSES}), encoding="utf-8")
    (out / "_summary.json").write_text("{}")  # side files are not data
    return str(out), f_lines, r_lines


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
    back = tmp_path / "again"
    result = run_module("mr_tl.parquet", "--to-text", path, "-o", back)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(back)) == ["_labels.json", "part-00000"]
    with open(back / "part-00000", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert sorted(lines) == sorted(f_lines)  # the very same text: every float32 bit kept
    assert load_labels(str(back / "_labels.json")) == CLASSES


def test_parquet_schema_exactly(features_dir, tmp_path, cli):
    folder, f_lines, _ = features_dir
    path = str(tmp_path / "f.parquet")
    assert cli(folder, "-o", path)[0] == 0
    schema = pq.read_schema(path)
    assert schema.names == ["id", "label", "label_name", "split", "features"]
    assert schema.field("id").type == pa.string()
    assert schema.field("label").type == pa.int32()
    assert schema.field("label_name").type == pa.string()
    assert schema.field("split").type == pa.string()
    features = schema.field("features").type
    assert pa.types.is_fixed_size_list(features)
    assert features.value_type == pa.float32() and features.list_size == DIM
    assert json.loads(schema.metadata[PARQUET_LABELS_KEY]) == CLASSES
    table = pq.read_table(path)
    assert table.num_rows == 9
    records = {r.id: r for r in map(parse_feature_line, f_lines)}
    for row in table.to_pylist():
        r = records[row["id"]]
        assert (row["label"], row["label_name"], row["split"]) == (r.label, CLASSES[r.label], r.split)
        assert np.array(row["features"], dtype="<f4").tobytes() == r.features.tobytes()


def test_readable_by_pandas_unchanged(features_dir, tmp_path, cli):
    folder, f_lines, _ = features_dir
    path = str(tmp_path / "f.parquet")
    assert cli(folder, "-o", path)[0] == 0
    df = pd.read_parquet(path)
    assert list(df.columns) == ["id", "label", "label_name", "split", "features"]
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
    features = parquet_cli.text_to_parquet(fs, [folder], str(tmp_path / "f.parquet"))
    assert features.rejected == len(r_lines) == 2 and len(features) == 9
    ids = set(pq.read_table(str(tmp_path / "f.parquet")).column("id").to_pylist())
    assert "000.circle/bad.jpg" not in ids and "002.日本/empty.jpg" not in ids


def test_read_parquet_gives_the_feature_set_back(features_dir, tmp_path):
    folder, f_lines, _ = features_dir
    with open(os.path.join(folder, "part-00000"), encoding="utf-8") as f0, \
            open(os.path.join(folder, "part-00001"), encoding="utf-8") as f1:
        original = read_lines(f0.read().splitlines() + f1.read().splitlines(), classes=CLASSES)
    path = str(tmp_path / "f.parquet")
    write_parquet(original, path)
    back = read_parquet(path)
    assert back.ids == original.ids and back.splits == original.splits and back.classes == CLASSES
    assert back.labels.tolist() == original.labels.tolist()
    assert back.X.dtype == np.float32 and back.X.tobytes() == original.X.tobytes()
    val = read_parquet(path, splits=["val"])
    assert val.splits == ["val"] * len(val) and len(val) == original.splits.count("val")


def test_labels_option_and_missing_labels(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    os.remove(os.path.join(folder, "_labels.json"))
    code, out, _ = cli(folder, "-o", tmp_path / "nolabels.parquet")
    assert code == 0 and "0 classes" in out
    assert set(pq.read_table(str(tmp_path / "nolabels.parquet")).column("label_name").to_pylist()) == {""}
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"format": "mr_tl.labels/1", "classes": CLASSES}))
    code, out, _ = cli(folder, "--labels", labels, "-o", tmp_path / "labels.parquet")
    assert code == 0 and "3 classes" in out
    assert read_parquet(str(tmp_path / "labels.parquet")).classes == CLASSES


# -- bad feature text ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (FeatureRecord("000.circle/a.jpg", 0, "train", np.zeros(DIM, "<f4")).to_line(), "appears twice"),
    (FeatureRecord("x", 0, "train", np.zeros(DIM + 1, "<f4")).to_line(), "has 8 values, the others have 7"),
    (FeatureRecord("x", 0, "train", np.full(DIM, np.nan, "<f4")).to_line(), "non-finite"),
    (FeatureRecord("x", 3, "train", np.zeros(DIM, "<f4")).to_line(), "label 3 but there are only 3 classes"),
    ("x\t0\ttrain\tAAAA", "not a feature record"),
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


def test_bad_line_is_located_by_file_and_line(features_dir, tmp_path, cli):
    folder, _, _ = features_dir
    with open(os.path.join(folder, "part-00001"), "a", encoding="utf-8") as f:
        f.write("x\t0\ttrain\tAAAA\n")  # line 6 of part-00001
    code, _, err = cli(folder, "-o", tmp_path / "f.parquet")
    assert code == 2 and "part-00001" in err and "line 6" in err


def test_missing_feature_input(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    code, _, err = cli(tmp_path / "empty", "-o", tmp_path / "f.parquet")
    assert code == 2 and "has no part-* files" in err
    code, _, err = cli(tmp_path / "nowhere", "-o", tmp_path / "f.parquet")
    assert code == 2 and "does not exist" in err


def test_only_rejected_records(tmp_path, cli):
    folder = tmp_path / "features"
    folder.mkdir()
    (folder / "part-00000").write_text(RejectedRecord("x", 0, "train", "corrupt").to_line() + "\n")
    code, _, err = cli(folder, "-o", tmp_path / "f.parquet")
    assert code == 2 and err.startswith("error: ")


# -- read_parquet on files of the wrong shape ------------------------------------------------------------

def _good_table():
    flat = pa.array(np.arange(2 * DIM, dtype="<f4"), type=pa.float32())
    return pa.table({"id": ["a", "b"], "label": pa.array([0, 1], pa.int32()), "label_name": ["x", "y"],
                     "split": ["train", "val"], "features": pa.FixedSizeListArray.from_arrays(flat, DIM)})


def _write(tmp_path, table, name="t.parquet"):
    path = str(tmp_path / name)
    pq.write_table(table, path)
    return path


def test_read_parquet_of_a_good_foreign_file(tmp_path):
    fs = read_parquet(_write(tmp_path, _good_table()))
    assert fs.ids == ["a", "b"] and fs.classes == [] and fs.X.shape == (2, DIM)
    assert fs.X[1].tolist() == list(range(DIM, 2 * DIM))


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


def test_write_parquet_of_an_in_memory_set(tmp_path):
    X = float32_values(3, seed=1)
    fs = FeatureSet(["a", "b", "c"], np.array([2, 0, 1]), ["train", "val", "test"], X, ["p", "q", "r"])
    write_parquet(fs, str(tmp_path / "m.parquet"))
    table = pq.read_table(str(tmp_path / "m.parquet"))
    assert table.column("label_name").to_pylist() == ["r", "p", "q"]
    assert np.array(table.column("features").to_pylist(), dtype="<f4").tobytes() == X.tobytes()
