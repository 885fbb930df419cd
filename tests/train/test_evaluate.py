"""python -m mr_tl.evaluate and mr_tl.metrics against scikit-learn."""

import csv
import json
import os

import numpy as np
import pytest
from feature_folders import rewrite_summary
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from mr_tl.metrics import confusion_matrix as mr_confusion_matrix
from mr_tl.metrics import per_class, summarize, top_k_hits
from mr_tl.records import RejectedRecord, load_npz
from mr_tl.run_dir import RunDir

N_CLASSES = 8
CLASSES = ["%03d.kind%d" % (c, c) for c in range(N_CLASSES)]
NEVER = 7  # the crafted head never predicts this class


@pytest.fixture(scope="module")
def eval_case(tmp_path_factory, write_features_fn):
    """8 overlapping classes (test: 30 each), 2 part files with rejected records, and a hand-made head.

    The head is a nearest-centroid rule (W = centres, b = -|c|^2 / 2) with class 7 switched off, so
    accuracy is middling, top-5 is not trivially 1, and one class is never predicted.
    """
    root = tmp_path_factory.mktemp("eval")
    g = np.random.default_rng(11)
    dim = 16
    centres = g.normal(0, 0.6, (N_CLASSES, dim))
    ids, labels, splits, rows = [], [], [], []
    for split, n in (("train", 3), ("val", 4), ("test", 30)):
        for c in range(N_CLASSES):
            for i in range(n):
                ids.append("%s/%s_%03d.jpg" % (CLASSES[c], split, i))
                labels.append(c)
                splits.append(split)
                rows.append(centres[c] + g.normal(0, 1, dim))
    perm = g.permutation(len(ids))
    features = write_features_fn(str(root / "features"), [ids[i] for i in perm], np.array(labels)[perm],
                                 [splits[i] for i in perm], np.asarray(rows, dtype=np.float32)[perm], CLASSES,
                                 parts=2)
    # featurize also writes rejected records: two in test, one in val
    with open(os.path.join(features, "part-00001"), "a", encoding="utf-8") as f:
        for i, split in enumerate(("test", "test", "val")):
            record = RejectedRecord("%s/broken_%d.jpg" % (CLASSES[0], i), 0, split, "decode-error", "bad")
            f.write(record.to_line() + "\n")
    rewrite_summary(features)   # as featurize counts them (evaluate checks the folder against its summary)

    run = RunDir(str(root / "run"))
    run.write_json("labels.json", {"format": "mr_tl.labels/1", "classes": CLASSES})
    W = centres.T.astype(np.float32)
    b = (-0.5 * np.sum(centres ** 2, axis=1)).astype(np.float32)
    b[NEVER] -= 1e3
    run.write_head({"W": W, "b": b}, {"classes": CLASSES})

    keep = [i for i in perm if splits[i] == "test"]
    X_test = np.asarray(rows, dtype=np.float32)[keep]
    y_test = np.array(labels)[keep]
    return {"features": features, "run": run.path, "X": X_test, "y": y_test}


def expected_numbers(run_dir, X, y, k):
    """What scikit-learn says about the head's predictions (computed here in numpy from head.npz)."""
    _, a = load_npz(os.path.join(run_dir, "head.npz"))
    logits = X @ a["W"] + a["b"]
    pred = logits.argmax(axis=1)
    labels = np.arange(a["W"].shape[1])
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    return {
        "examples": len(y),
        "accuracy": accuracy_score(y, pred),
        "precision": p, "recall": r, "f1": f1,
        "top%d_accuracy" % k: top_k_accuracy_score(y, logits, k=k, labels=labels),
        "loss": float(nll.mean()),
    }, pred, labels


def check_against_sklearn(result, run_dir, X, y, k=5):
    expected, pred, labels = expected_numbers(run_dir, X, y, k)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-9, abs=1e-6), name
    return pred, labels


@pytest.mark.parametrize("runner", ["inline", "local"])
def test_evaluate_matches_sklearn(runner, eval_case, run_module):
    run = eval_case["run"]
    # --overwrite: the other runner's evaluation of the same run is replaced
    result = run_module("mr_tl.evaluate", "-r", runner, "-q", "--run", run, eval_case["features"], "--split", "test",
                        "--overwrite")
    assert result.returncode == 0, result.stderr
    out_dir = os.path.join(run, "evaluation", "test")
    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    X, y = eval_case["X"], eval_case["y"]
    pred, labels = check_against_sklearn(metrics, run, X, y, k=5)
    assert metrics["split"] == "test" and metrics["rejected_images"] == 2
    # the data is not degenerate: a class never predicted, middling accuracy, top-5 short of 1
    assert NEVER not in pred
    assert 0.3 < metrics["accuracy"] < 0.9 and metrics["top5_accuracy"] < 1.0

    # per_class.csv
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    with open(os.path.join(out_dir, "per_class.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "class", "precision", "recall", "f1", "support"]
    assert len(rows) == 1 + N_CLASSES
    for i, row in enumerate(rows[1:]):
        assert row[:2] == [str(i), CLASSES[i]]
        np.testing.assert_allclose([float(v) for v in row[2:5]], [p[i], r[i], f1[i]], atol=1e-6)
        assert int(row[5]) == support[i]

    # confusion.csv
    with open(os.path.join(out_dir, "confusion.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted"] + CLASSES
    assert [row[0] for row in rows[1:]] == CLASSES
    np.testing.assert_array_equal(np.array([[int(v) for v in row[1:]] for row in rows[1:]]),
                                  confusion_matrix(y, pred, labels=labels))

    # confusion.png (matplotlib is installed here)
    with open(os.path.join(out_dir, "confusion.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # the printed report
    assert "test split: %d examples (2 images rejected at featurize)" % len(y) in result.stdout
    assert "accuracy        %.4f" % metrics["accuracy"] in result.stdout


def test_evaluate_top_k_and_other_split_on_a_trained_run(trained_run, synth, run_module, tmp_path, copy_tree):
    run = copy_tree(trained_run, tmp_path / "run")
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", run, synth.path, "--split", "val",
                        "--top-k", 2)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(run, "evaluation", "val", "metrics.json")) as f:
        metrics = json.load(f)
    _, X, y = synth.split("val")
    check_against_sklearn(metrics, run, X, y, k=2)
    assert "top5_accuracy" not in metrics
    assert metrics["accuracy"] > 0.8  # a trained head
    assert not os.path.exists(os.path.join(run, "evaluation", "test"))


# -- errors ----------------------------------------------------------------------------------------


def test_evaluate_without_a_head_is_a_clear_error(eval_case, run_module, tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_json("labels.json", {"format": "mr_tl.labels/1", "classes": CLASSES})
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", run.path, eval_case["features"])
    assert result.returncode == 2
    assert "head.npz does not exist: has training finished?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(run.path, "evaluation"))


def test_evaluate_of_an_unknown_split_is_refused(eval_case, run_module):
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", eval_case["run"], eval_case["features"],
                        "--split", "testing")
    assert result.returncode == 2
    assert "invalid choice: 'testing'" in result.stderr


def test_evaluate_of_an_empty_split_is_a_clear_error(eval_case, run_module, tmp_path, write_features_fn):
    X = np.zeros((2, 16), dtype=np.float32)
    features = write_features_fn(str(tmp_path / "f"), ["a", "b"], np.array([0, 1]), ["train", "test"], X, CLASSES)
    run = eval_case["run"]
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", run, features, "--split", "val")
    assert result.returncode == 2   # refused before any job: the features' summary lists no val example
    assert "the val split has no featurized examples" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(run, "evaluation", "val"))


def test_evaluate_refuses_features_with_other_labels(eval_case, run_module, tmp_path, write_features_fn):
    X = np.zeros((2, 16), dtype=np.float32)
    features = write_features_fn(str(tmp_path / "f"), ["a", "b"], np.array([0, 1]), ["test", "test"], X,
                                 list(reversed(CLASSES)))
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", eval_case["run"], features)
    assert result.returncode == 2
    assert "the features' labels differ from the run's labels.json" in result.stderr


def test_evaluate_refuses_features_of_another_dimension(eval_case, run_module, tmp_path, write_features_fn):
    X = np.zeros((2, 20), dtype=np.float32)  # the head expects 16
    features = write_features_fn(str(tmp_path / "f"), ["a", "b"], np.array([0, 1]), ["test", "test"], X, CLASSES)
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", eval_case["run"], features)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert "20" in result.stderr and "16" in result.stderr


def test_evaluate_needs_a_run(eval_case, run_module):
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", eval_case["features"])
    assert result.returncode == 2
    assert "--run RUN_DIR is required" in result.stderr


# -- mr_tl.metrics ------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None, database=None)
@given(st.data())
def test_summarize_matches_sklearn(data):
    n_classes = data.draw(st.integers(2, 8), label="classes")
    n = data.draw(st.integers(1, 60), label="examples")
    # labels from a subset of the classes, so some classes are never true and/or never predicted
    true_pool = data.draw(st.lists(st.integers(0, n_classes - 1), min_size=1, max_size=n_classes, unique=True))
    pred_pool = data.draw(st.lists(st.integers(0, n_classes - 1), min_size=1, max_size=n_classes, unique=True))
    y = np.array(data.draw(st.lists(st.sampled_from(true_pool), min_size=n, max_size=n)))
    pred = np.array(data.draw(st.lists(st.sampled_from(pred_pool), min_size=n, max_size=n)))
    cm = mr_confusion_matrix(y, pred, n_classes)
    np.testing.assert_array_equal(cm, confusion_matrix(y, pred, labels=np.arange(n_classes)))
    out = summarize(cm)
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert out["examples"] == n
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert out["precision"] == pytest.approx(p, abs=1e-12)
    assert out["recall"] == pytest.approx(r, abs=1e-12)
    assert out["f1"] == pytest.approx(f1, abs=1e-12)
    pc, rc, fc, support = per_class(cm)
    p_, r_, f_, s_ = precision_recall_fscore_support(y, pred, labels=np.arange(n_classes), average=None,
                                                     zero_division=0)
    np.testing.assert_allclose(pc, p_, atol=1e-12)
    np.testing.assert_allclose(rc, r_, atol=1e-12)
    np.testing.assert_allclose(fc, f_, atol=1e-12)
    np.testing.assert_array_equal(support, s_)


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(3, 9), st.integers(1, 40), st.integers(0, 2 ** 32 - 1), st.data())
def test_top_k_hits_match_sklearn(n_classes, n, seed, data):
    k = data.draw(st.integers(1, n_classes - 1), label="k")
    g = np.random.default_rng(seed)
    scores = g.normal(size=(n, n_classes)).astype(np.float32)
    y = g.integers(0, n_classes, n)
    hits = top_k_hits(scores, y, k)
    assert hits / n == pytest.approx(top_k_accuracy_score(y, scores, k=k, labels=np.arange(n_classes)))
    out = summarize(mr_confusion_matrix(y, scores.argmax(axis=1), n_classes), hits, k=k)
    assert out["top%d_accuracy" % k] == pytest.approx(hits / n)


def test_summarize_of_nothing_is_zero_not_nan():
    out = summarize(np.zeros((3, 3), dtype=np.int64), 0, 0.0)
    assert out == {"examples": 0, "accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                   "top5_accuracy": 0.0, "loss": 0.0}
