"""python -m mr_tl.export (trunk + head as one ONNX graph) and python -m mr_tl.predict.

Uses the tiny random-weights VGG16 cut at fc2 (32 features) from tests/conftest.py, the packed demo
images, features made by ``python -m mr_tl.featurize -r inline`` and a head trained on them.
"""

import json
import os

import numpy as np
import onnx
import pytest

from mr_tl.export import CLASSES_KEY, classes_of
from mr_tl.images import preprocess
from mr_tl.model.session import Featurizer
from mr_tl.model.spec import load_model_spec
from mr_tl.run_dir import RunDir


@pytest.fixture(scope="module")
def vgg_case(tiny_vgg16_fc2, packed_demo, run_module, train_cli, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    features = str(root / "features")
    result = run_module("mr_tl.featurize", "-r", "inline", "-q", "--model", tiny_vgg16_fc2, packed_demo,
                        "-o", features)
    assert result.returncode == 0, result.stderr
    run = str(root / "run")
    result = train_cli("-r", "inline", features, "-o", run, "--workers", 1, "--epochs", 3,
                       "--averaging-frequency", "epoch", "--lr", 0.001)
    assert result.code == 0, result.err
    classifier = str(root / "classifier.onnx")
    result = run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run, "-o", classifier)
    assert result.returncode == 0, result.stderr
    assert "wrote %s" % classifier in result.stdout
    return {"run": run, "classifier": classifier, "trunk": tiny_vgg16_fc2}


def numpy_pipeline(trunk, run_dir, images):
    """trunk (onnxruntime on the cut graph) -> head in numpy: (logits, probabilities)."""
    featurizer = Featurizer(trunk)
    X = featurizer(np.stack([preprocess(data, featurizer.spec) for data in images]))
    head, _ = RunDir(run_dir).load_head()
    logits = X.astype(np.float64) @ head.W.astype(np.float64) + head.b
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return logits, p


def some_images(demo_images, names):
    out = []
    for name in names:
        with open(os.path.join(demo_images, name), "rb") as f:
            out.append(f.read())
    return out


IMAGES = ["000.circle/000_0000.jpg", "001.square/001_0009.png", "002.triangle/002_0003.jpg", "003.star/003_0005.jpg"]


def test_exported_classifier_equals_trunk_then_head(vgg_case, read_packed, packed_demo, demo_images):
    import onnxruntime as ort

    # every packed image: which ones are uncertain depends on the split (issue 14 made it per image)
    images = [p.data for p in read_packed(packed_demo)] + some_images(demo_images, IMAGES[1:2])
    logits, expected = numpy_pipeline(vgg_case["trunk"], vgg_case["run"], images)

    spec = load_model_spec(vgg_case["classifier"])
    assert spec.output_name == "probabilities" and spec.output_dim == 4
    assert spec.input_size == load_model_spec(vgg_case["trunk"]).input_size
    session = ort.InferenceSession(vgg_case["classifier"], providers=["CPUExecutionProvider"])
    x = np.stack([preprocess(data, spec) for data in images])
    probabilities, head_logits = session.run(["probabilities", "head/logits"], {spec.input_name: x})
    assert probabilities.shape == (len(images), 4)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(head_logits, logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    # the comparison means something: not every probability is 0 or 1
    assert np.any((expected > 0.01) & (expected < 0.99))


def test_class_names_are_in_the_metadata(vgg_case):
    labels = RunDir(vgg_case["run"]).classes()
    assert labels == ["000.circle", "001.square", "002.triangle", "003.star"]
    model = onnx.load(vgg_case["classifier"], load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props[CLASSES_KEY]) == labels
    assert classes_of(model) == labels


def test_predict_prints_top_k_and_reports_a_non_image(vgg_case, demo_images, run_module, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not an image\n")
    paths = [os.path.join(demo_images, IMAGES[0]), str(bad), os.path.join(demo_images, IMAGES[2]),
             os.path.join(demo_images, IMAGES[3])]
    result = run_module("mr_tl.predict", vgg_case["classifier"], *paths, "--top", 3, "--json")
    assert result.returncode == 1, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["image"] for r in rows) == sorted(paths)
    by_path = {r["image"]: r for r in rows}
    assert "error" in by_path[str(bad)] and "top" not in by_path[str(bad)]

    good = [p for p in paths if p != str(bad)]
    _, expected = numpy_pipeline(vgg_case["trunk"], vgg_case["run"], [open(p, "rb").read() for p in good])
    classes = RunDir(vgg_case["run"]).classes()
    for path, p in zip(good, expected):
        top = by_path[path]["top"]
        assert len(top) == 3
        order = np.argsort(-p, kind="stable")[:3]
        assert [t["class"] for t in top] == [classes[i] for i in order]
        np.testing.assert_allclose([t["probability"] for t in top], p[order], atol=1e-5)
        assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)


def test_predict_text_output(vgg_case, demo_images, run_module):
    path = os.path.join(demo_images, IMAGES[0])
    result = run_module("mr_tl.predict", vgg_case["classifier"], path, "--top", 2)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == path and len(lines) == 3
    _, expected = numpy_pipeline(vgg_case["trunk"], vgg_case["run"], [open(path, "rb").read()])
    classes = RunDir(vgg_case["run"]).classes()
    order = np.argsort(-expected[0], kind="stable")[:2]
    for line, i in zip(lines[1:], order):
        assert line == "  %6.2f%%  %s" % (100 * expected[0][i], classes[i])


def test_export_refuses_a_head_of_another_dimension(tiny_vgg16_fc2, run_module, tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_json("labels.json", {"format": "mr_tl.labels/1", "classes": ["a", "b", "c", "d"]})
    run.write_head({"W": np.zeros((31, 4), dtype=np.float32), "b": np.zeros(4, dtype=np.float32)}, {})
    out = tmp_path / "classifier.onnx"
    result = run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run.path, "-o", out)
    assert result.returncode == 2
    assert "the head expects 31 features but the trunk" in result.stderr and "gives 32" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_export_of_an_unfinished_run_is_refused(tiny_vgg16_fc2, run_module, tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_json("labels.json", {"format": "mr_tl.labels/1", "classes": ["a", "b"]})
    out = tmp_path / "classifier.onnx"
    result = run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run.path, "-o", out)
    assert result.returncode == 2
    assert "has no head.npz" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("options", [("--normalization", "sqrt-l2-zscore"), ("--hidden", "16"),
                                     ("--hidden", "16", "--normalization", "zscore")])
def test_normalization_and_hidden_layer_are_folded_into_the_export(options, tiny_vgg16_fc2, packed_demo, run_module,
                                                                    train_cli, read_packed, tmp_path):
    """The exported classifier gives the run's head (normalization and hidden layer included) on the trunk's
    features, so predict needs nothing else."""
    import onnxruntime as ort

    features = str(tmp_path / "features")
    assert run_module("mr_tl.featurize", "-r", "inline", "-q", "--model", tiny_vgg16_fc2, packed_demo,
                      "-o", features).returncode == 0
    run = str(tmp_path / "run")
    result = train_cli("-r", "inline", features, "-o", run, "--workers", 1, "--epochs", 3, "--lr", 0.01, *options)
    assert result.code == 0, result.err
    classifier = str(tmp_path / "classifier.onnx")
    assert run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run, "-o", classifier).returncode == 0
    images = [p.data for p in read_packed(packed_demo)]
    featurizer = Featurizer(tiny_vgg16_fc2)
    X = featurizer(np.stack([preprocess(data, featurizer.spec) for data in images]))
    head, _, normalizer = RunDir(run).load_classifier()
    assert normalizer.kind == dict(zip(options[::2], options[1::2])).get("--normalization", "none")
    expected = head.predict_proba(normalizer.apply(X))
    spec = load_model_spec(classifier)
    session = ort.InferenceSession(classifier, providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(d, spec) for d in images])
    (probabilities,) = session.run(["probabilities"], {spec.input_name: batch})
    np.testing.assert_allclose(probabilities, expected, atol=2e-5)
    assert np.any((expected > 0.01) & (expected < 0.99))


def test_predict_applies_max_pixels_and_min_side(vgg_case, demo_images, run_module):
    """The single-image form rejects what featurize would reject with the same limits."""
    from PIL import Image

    path = os.path.join(demo_images, IMAGES[0])
    width, height = Image.open(path).size
    result = run_module("mr_tl.predict", vgg_case["classifier"], path, "--json", "--max-pixels", width * height - 1)
    assert result.returncode == 1, result.stderr
    row = json.loads(result.stdout)
    assert row["error"] == "too-large" and str(width * height - 1) in row["detail"]
    result = run_module("mr_tl.predict", vgg_case["classifier"], path, "--json", "--min-side", min(width, height) + 1)
    assert result.returncode == 1 and json.loads(result.stdout)["error"] == "too-small"
    assert run_module("mr_tl.predict", vgg_case["classifier"], path, "--max-pixels", width * height).returncode == 0
