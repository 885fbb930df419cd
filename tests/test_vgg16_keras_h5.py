"""Keras' legacy VGG16 .h5 weights: reading, the MD5 guard, and the flatten-order trap.

Runs without TensorFlow.  The files are written by ``tests/keras_h5.py`` in
the layout ``scripts/dev/verify_vgg16_keras.py`` showed Keras 3 loading
(``keras.applications.VGG16(weights=path)``, by layer order and by name);
that script also compared the full-size graph with Keras' own forward pass.

Here a numpy forward pass written the way Keras computes (channels-last,
``block5_pool`` flattened as (h, w, c)) is the reference for the ONNX graph
(NCHW, flattened (c, h, w)).  The tiny model uses TINY's channels with a 64x64
input, so ``block5_pool`` is 2x2: at TINY's own 32x32 it would be 1x1, where
the two flatten orders coincide and no test could see the trap.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py (the 'convert' extra) is needed to write Keras .h5 files")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from keras_h5 import write_keras_legacy_h5  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mr_tl.errors import ModelError  # noqa: E402
from mr_tl.model import vgg16 as mv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = dict(mv.TINY, input=64)  # block5_pool 2x2x16 -> fc1 has 64 inputs
BATCH = 3


@pytest.fixture(scope="module")
def weights():
    return mv.random_weights(7, SIZE)


@pytest.fixture(scope="module")
def h5_path(tmp_path_factory, weights):
    path = str(tmp_path_factory.mktemp("keras_h5") / mv.KERAS_WEIGHTS_FILE)
    write_keras_legacy_h5(path, weights)
    return path


@pytest.fixture(scope="module")
def inputs():
    """Already-preprocessed inputs, NHWC (Keras' layout), scaled so the 10-way softmax is not saturated."""
    x = np.random.default_rng(3).standard_normal((BATCH, SIZE["input"], SIZE["input"], 3)) * 0.25
    return x.astype(np.float32)


# -- a numpy VGG16, channels-last like Keras -------------------------------------------------------

def _conv3x3_same(x, kernel, bias):
    """Keras Conv2D(3x3, padding="same"), NHWC, kernel (3, 3, cin, cout)."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[3]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,cd->nhwd", padded[:, i:i + h, j:j + w, :], kernel[i, j])
    return out + bias


def _maxpool2x2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def keras_forward(weights, x_nhwc):
    """Every layer's output of VGG16, computed as Keras does (float64)."""
    w = {k: (np.asarray(a, np.float64), np.asarray(b, np.float64)) for k, (a, b) in weights.items()}
    out = {}
    x = np.asarray(x_nhwc, np.float64)
    for block, n, _ in mv.BLOCKS:
        for i in range(1, n + 1):
            name = "block%d_conv%d" % (block, i)
            x = out[name] = np.maximum(_conv3x3_same(x, *w[name]), 0.0)
        x = out["block%d_pool" % block] = _maxpool2x2(x)
    x = out["flatten"] = x.reshape(len(x), -1)  # (h, w, c) order: Keras' Flatten on NHWC
    for name in mv.DENSE_LAYERS:
        z = x @ w[name][0] + w[name][1]
        x = out[name] = _softmax(z) if name == "predictions" else np.maximum(z, 0.0)
    return out


def onnx_forward(model, x_nhwc, names):
    """Run the graph on NCHW input with extra outputs ``names``; block5_pool back to NHWC."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(names, session.run(list(names), {"input": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})))
    if "block5_pool" in values:
        values["block5_pool"] = values["block5_pool"].transpose(0, 2, 3, 1)
    return values


def without_permutation(model, keras_fc1_kernel):
    """The graph a converter that forgot the flatten order would write (Keras' fc1 rows as they are)."""
    naive = onnx.ModelProto.FromString(model.SerializeToString())
    for init in naive.graph.initializer:
        if init.name == "fc1/kernel":
            init.CopyFrom(numpy_helper.from_array(np.asarray(keras_fc1_kernel, np.float32), "fc1/kernel"))
            return naive
    raise AssertionError("the graph has no fc1/kernel initializer")


def rel_error(ours, ref):
    """Max abs difference over the reference's scale."""
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


COMPARED = ("block5_pool", "fc1", "fc2", "predictions")


# -- reading ----------------------------------------------------------------------------------------

def test_file_has_keras_legacy_layout(h5_path):
    with h5py.File(h5_path, "r") as f:
        assert [n.decode() for n in f.attrs["layer_names"]] == ["input_1"] + mv.layer_list()
        assert f.attrs["backend"] in ("tensorflow", b"tensorflow") and f.attrs["keras_version"]
        assert list(f["block1_conv1"].attrs["weight_names"]) == [b"block1_conv1/kernel:0", b"block1_conv1/bias:0"]
        assert f["block1_conv1"]["block1_conv1"]["kernel:0"].shape == (3, 3, 3, SIZE["channels"][0])
        assert f["fc1/fc1/kernel:0"].shape == (4 * SIZE["channels"][4], SIZE["fc"])
        assert len(f["block1_pool"].attrs["weight_names"]) == 0


def test_read_keras_h5_returns_the_written_arrays(h5_path, weights):
    read = mv.read_keras_h5(h5_path, expected_md5=None)
    assert set(read) == set(mv.CONV_LAYERS + mv.DENSE_LAYERS) == set(weights)
    for name, (kernel, bias) in weights.items():
        assert read[name][0].dtype == np.float32 and read[name][1].dtype == np.float32
        np.testing.assert_array_equal(read[name][0], kernel, err_msg=name)
        np.testing.assert_array_equal(read[name][1], bias, err_msg=name)


def test_read_keras_h5_checks_md5(h5_path):
    with pytest.raises(ModelError, match=mv.KERAS_WEIGHTS_MD5):
        mv.read_keras_h5(h5_path)
    actual = hashlib.md5(open(h5_path, "rb").read()).hexdigest()
    assert mv.read_keras_h5(h5_path, expected_md5=actual).keys() == mv.read_keras_h5(h5_path, None).keys()


def test_cli_refuses_a_file_with_the_wrong_md5(h5_path, tmp_path):
    out = tmp_path / "models" / "vgg16.onnx"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "mr_tl.model", "build-vgg16", "--weights", h5_path, "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert mv.KERAS_WEIGHTS_MD5 in proc.stderr                      # what was expected
    assert hashlib.md5(open(h5_path, "rb").read()).hexdigest() in proc.stderr  # what was found
    assert mv.KERAS_WEIGHTS_URL in proc.stderr and "--random-weights" in proc.stderr  # where to get it
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not out.parent.exists() or not os.listdir(out.parent)


# -- the forward pass: Keras' (h, w, c) flatten vs the graph's (c, h, w) --------------------------

@pytest.fixture(scope="module")
def reference(weights, inputs):
    return keras_forward(weights, inputs)


@pytest.fixture(scope="module")
def graph(h5_path):
    return mv.vgg16_graph(mv.read_keras_h5(h5_path, expected_md5=None))


def test_reference_is_not_degenerate(reference):
    # block5_pool is 2x2 (the flatten order matters) and the activations neither vanish nor blow up
    assert reference["block5_pool"].shape == (BATCH, 2, 2, SIZE["channels"][4])
    for name in COMPARED[:-1]:
        assert 0.1 < np.abs(reference[name]).max() < 100, name
        assert (reference[name] > 0).mean() > 0.2, name
    assert reference["predictions"].max() < 0.9  # softmax not saturated


def test_graph_matches_keras_forward_pass(graph, reference, inputs):
    ours = onnx_forward(graph, inputs, COMPARED)
    for name in COMPARED:
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-4,
                                   atol=1e-4 * np.abs(reference[name]).max(), err_msg=name)
    assert ours["predictions"].shape == (BATCH, SIZE["classes"])
    np.testing.assert_array_equal(ours["predictions"].argmax(1), reference["predictions"].argmax(1))


def test_without_fc1_permutation_the_comparison_fails(graph, weights, reference, inputs):
    naive = onnx_forward(without_permutation(graph, weights["fc1"][0]), inputs, COMPARED)
    # everything before fc1 is unaffected ...
    assert rel_error(naive["block5_pool"], reference["block5_pool"]) < 1e-5
    # ... and from fc1 on the outputs are far outside the tolerance the test above uses
    for name in ("fc1", "fc2", "predictions"):
        assert rel_error(naive[name], reference[name]) > 0.05, name
        assert not np.allclose(naive[name], reference[name], rtol=1e-4, atol=1e-4 * np.abs(reference[name]).max())


def test_permutation_is_the_documented_one(graph, weights):
    """fc1's rows in the graph are Keras' rows reordered from (h, w, c) to (c, h, w)."""
    kernel = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}["fc1/kernel"]
    keras_kernel = weights["fc1"][0]
    c = SIZE["channels"][4]
    for ci, hi, wi in [(0, 0, 1), (1, 1, 0), (c - 1, 1, 1), (3, 0, 0)]:
        np.testing.assert_array_equal(kernel[ci * 4 + hi * 2 + wi], keras_kernel[hi * 2 * c + wi * c + ci])
