"""Bad input is refused before any job runs: one clear line, a non-zero exit, outputs untouched.

Every case runs the real command line (``python -m ...``) as a user would.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from feature_folders import write_feature_folder

from mr_tl.records import FeatureRecord

DIM = 8
CLASSES = ["a", "b", "c"]


def snapshot(root):
    """Every file under ``root`` with its bytes' hash and mtime (to prove nothing was touched)."""
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return out


def write_features(folder, rows, classes=CLASSES):
    """rows: (id, label, split, vector) -> a complete featurize-style folder (one part file)."""
    records = [FeatureRecord(image_id, label, split, np.asarray(vector, dtype=np.float32))
               for image_id, label, split, vector in rows]
    return write_feature_folder(folder, records, classes, parts=1)


def good_rows(n=30, dim=DIM, seed=0):
    g = np.random.default_rng(seed)
    splits = ["train", "train", "train", "val", "test"]
    return [("x%03d" % i, i % 3, splits[i % 5], g.normal(i % 3, 0.3, dim)) for i in range(n)]


def assert_refused(result, *fragments, code=2):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_module):
    """A finished 1-worker run on good features, to evaluate/resume against."""
    root = tmp_path_factory.mktemp("run")
    features = write_features(root / "features", good_rows())
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", root / "run", "--workers", 1, "--epochs", 2)
    assert result.returncode == 0, result.stderr
    return str(root / "run"), features


# -- models ---------------------------------------------------------------------------------------

def test_missing_model_file(packed_demo, tmp_path, run_module):
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tmp_path / "nope.onnx", packed_demo,
                        "-o", tmp_path / "out")
    assert_refused(result, "nope.onnx does not exist")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_model(packed_demo, tiny_vgg16_fc2, tmp_path, run_module):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"this is not protobuf at all")
    spec = json.load(open(tiny_vgg16_fc2[:-5] + ".json"))
    spec["model_sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()  # the sidecar matches the file
    (tmp_path / "model.json").write_text(json.dumps(spec))
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", model, packed_demo, "-o", tmp_path / "out")
    assert_refused(result, "onnxruntime cannot load")


def test_sidecar_that_does_not_match_the_graph(packed_demo, tiny_vgg16_fc2, tmp_path, run_module):
    shutil.copy(tiny_vgg16_fc2, tmp_path / "m.onnx")
    spec = json.load(open(tiny_vgg16_fc2[:-5] + ".json"))
    spec["model_sha256"] = "0" * 64
    (tmp_path / "m.json").write_text(json.dumps(spec))
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tmp_path / "m.onnx", packed_demo,
                        "-o", tmp_path / "out")
    assert_refused(result, "does not match its sidecar", "0" * 64)
    spec["model_sha256"] = hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    spec["output_name"] = "fc1"  # right file, wrong description
    (tmp_path / "m.json").write_text(json.dumps(spec))
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tmp_path / "m.onnx", packed_demo,
                        "-o", tmp_path / "out")
    assert_refused(result, "does not match the graph", "fc1")
    assert not (tmp_path / "out").exists()


def test_unknown_cut_layer(tiny_vgg16, tmp_path, run_module):
    result = run_module("mr_tl.model", "cut", tiny_vgg16, "--at", "fc3", "-o", tmp_path / "cut.onnx")
    assert_refused(result, "no layer 'fc3'", "block1_conv1", "fc2", "predictions")
    assert os.listdir(tmp_path) == []


# -- features against heads, labels, splits --------------------------------------------------------

def test_feature_dimension_that_does_not_match_the_head(run, tmp_path, run_module):
    run_dir, _ = run
    before = snapshot(run_dir)
    other = write_features(tmp_path / "wide", good_rows(dim=DIM + 4))
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run_dir, other, "--split", "test")
    assert_refused(result, "%d values per image" % (DIM + 4), "expects %d" % DIM)
    assert snapshot(run_dir) == before


def test_head_that_does_not_match_the_trunk(run, tiny_vgg16_fc2, tmp_path, run_module):
    run_dir, _ = run
    result = run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run_dir, "-o", tmp_path / "c.onnx")
    assert_refused(result, "expects %d features" % DIM)
    assert not (tmp_path / "c.onnx").exists()


def test_label_sets_that_differ_between_inputs(tmp_path, run_module):
    first = write_features(tmp_path / "first", good_rows())
    second = write_features(tmp_path / "second", [("y%03d" % i, label, s, v) for i, (_, label, s, v)
                                                   in enumerate(good_rows(seed=1))], classes=["a", "c", "b"])
    result = run_module("mr_tl.train", "-r", "inline", first, second, "-o", tmp_path / "run")
    assert_refused(result, "different classes")
    assert not (tmp_path / "run").exists()


def test_label_sets_that_differ_from_the_run(run, tmp_path, run_module):
    run_dir, _ = run
    before = snapshot(run_dir)
    other = write_features(tmp_path / "other", good_rows(), classes=["a", "b", "z"])
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run_dir, other)
    assert_refused(result, "labels differ")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("split, args, message", [
    ("train", (), "the train split is empty"),
    ("val", ("--validate-every", 1), "needs a val split, but it is empty"),
])
def test_empty_split(tmp_path, run_module, split, args, message):
    rows = [r for r in good_rows() if r[2] != split]
    features = write_features(tmp_path / "f", rows)
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", tmp_path / "run", *args)
    assert_refused(result, message)
    assert not (tmp_path / "run").exists()


def test_empty_evaluation_split(run, tmp_path, run_module):
    run_dir, _ = run
    features = write_features(tmp_path / "f", [r for r in good_rows() if r[2] != "test"])
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run_dir, features, "--split", "test")
    assert result.returncode != 0 and "no featurized examples" in result.stderr


def test_duplicate_image_ids(tmp_path, run_module):
    rows = good_rows()
    rows.append(rows[0])
    features = write_features(tmp_path / "f", rows)
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", tmp_path / "run")
    assert_refused(result, "'x000' appears twice")


def test_non_finite_feature_values(tmp_path, run_module):
    rows = good_rows()
    rows[4] = (rows[4][0], rows[4][1], rows[4][2], np.full(DIM, np.inf))
    features = write_features(tmp_path / "f", rows)
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", tmp_path / "run")
    assert_refused(result, "non-finite", rows[4][0])


# -- resume -----------------------------------------------------------------------------------------

def test_resume_with_a_different_config_or_different_features(run, tmp_path, run_module):
    run_dir, features = run
    before = snapshot(run_dir)
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", run_dir, "--workers", 1, "--epochs", 2,
                        "--resume", "--momentum", 0.9)
    assert_refused(result, "momentum was 0.8, now 0.9")
    changed = good_rows()
    changed[0] = (changed[0][0], changed[0][1], changed[0][2], changed[0][3] + 1)
    other = write_features(tmp_path / "changed", changed)
    result = run_module("mr_tl.train", "-r", "inline", other, "-o", run_dir, "--workers", 1, "--epochs", 2,
                        "--resume")
    assert_refused(result, "training features differ")
    assert snapshot(run_dir) == before


def test_a_new_run_into_an_existing_run_dir(run, run_module):
    run_dir, features = run
    before = snapshot(run_dir)
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", run_dir)
    assert_refused(result, "already holds a run", "--resume")
    assert snapshot(run_dir) == before


def test_featurize_into_an_existing_output(packed_demo, tiny_vgg16_fc2, tmp_path, run_module):
    out = tmp_path / "features"
    out.mkdir()
    (out / "part-00000").write_text("earlier results\n")
    before = snapshot(str(out))
    result = run_module("mr_tl.featurize", "-r", "local", "--model", tiny_vgg16_fc2, packed_demo, "-o", out)
    assert_refused(result, "already exists")
    assert snapshot(str(out)) == before


@pytest.mark.parametrize("module", ["mr_tl.featurize", "mr_tl.predict"])
def test_an_output_without_a_scheme_on_hadoop_is_refused_before_any_job(packed_demo, tiny_vgg16_fc2, tmp_path,
                                                                        run_module, module):
    """-r hadoop resolves such a path against Hadoop's default file system and working folder: refused
    with one line before anything runs (the hadoop command given does not even exist)."""
    result = run_module(module, "-r", "hadoop", "--hadoop-bin", tmp_path / "no-such-hadoop", "--model",
                        tiny_vgg16_fc2, packed_demo, "-o", "features", cwd=tmp_path)
    assert_refused(result, "-o features", "hdfs:///", "file:///")
    assert sorted(os.listdir(tmp_path)) == []
