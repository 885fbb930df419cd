"""mr_tl.model: the VGG16 builder, cut/summary, the sidecar and its checks, the Featurizer."""

import dataclasses
import hashlib
import json
import os
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mr_tl.errors import ModelError
from mr_tl.model import graph, vgg16
from mr_tl.model.__main__ import main as model_main
from mr_tl.model.session import Featurizer
from mr_tl.model.spec import SPEC_FORMAT, ModelSpec, load_model_spec, sha256_file, sidecar_path


def expected_layers(size):
    """``(layer, op, output shape, params)`` of a VGG16 of ``size`` (vgg16.TINY or FULL), worked out from the
    architecture: 3x3 convs with bias, 2x2 pools, flatten, three dense layers."""
    rows, cin, side = [], 3, size["input"]
    for (block, n, _), cout in zip(vgg16.BLOCKS, size["channels"]):
        for i in range(1, n + 1):
            rows.append(("block%d_conv%d" % (block, i), "Conv", "?x%dx%dx%d" % (cout, side, side),
                         3 * 3 * cin * cout + cout))
            cin = cout
        side //= 2
        rows.append(("block%d_pool" % block, "MaxPool", "?x%dx%dx%d" % (cin, side, side), 0))
    fan_in = cin * side * side
    rows.append(("flatten", "Flatten", "?x%d" % fan_in, 0))
    for name, n in (("fc1", size["fc"]), ("fc2", size["fc"]), ("predictions", size["classes"])):
        rows.append((name, "Gemm", "?x%d" % n, fan_in * n + n))
        fan_in = n
    return rows


TINY = vgg16.TINY
S, FC, CLASSES = TINY["input"], TINY["fc"], TINY["classes"]  # input side, fc1/fc2 width, classes
TINY_ROWS = expected_layers(TINY)
TINY_TOTAL = sum(r[3] for r in TINY_ROWS)
TINY_FC2_TOTAL = TINY_TOTAL - TINY_ROWS[-1][3]


def features_of(layer):
    shape = dict((r[0], r[2]) for r in TINY_ROWS)[layer]
    return int(np.prod([int(d) for d in shape.split("x")[1:]]))


def test_expected_layers_knows_keras_vgg16():
    rows = expected_layers(vgg16.FULL)
    assert sum(r[3] for r in rows) == 138_357_544  # keras.applications.VGG16().count_params()
    assert [r[0] for r in rows] == vgg16.layer_list()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def copy_model(path, directory, name="model.onnx"):
    """Copy a graph and its sidecar into ``directory``; returns the new graph path."""
    dest = os.path.join(str(directory), name)
    shutil.copyfile(path, dest)
    shutil.copyfile(sidecar_path(path), sidecar_path(dest))
    return dest


def run(path, x, output=None):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = output or session.get_outputs()[0].name
    return session.run([name], {session.get_inputs()[0].name: x})[0]


def summary_rows(stdout):
    """(layer, op, shape, params) of the table ``python -m mr_tl.model summary`` prints."""
    rows = []
    for line in stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\S+)\s+(\S+)\s+([\d,]+)$", line)
        if m and m.group(1) != "Layer":
            rows.append((m.group(1), m.group(2), m.group(3), int(m.group(4).replace(",", ""))))
    return rows


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(call_main):
    """``python -m mr_tl.model ARGS`` in this process (cheaper than a subprocess): a Result."""
    return lambda *args: Result(*call_main(model_main, *args))


def printed_total(stdout):
    (total,) = re.findall(r"^Total parameters: ([\d,]+)$", stdout, re.M)
    return total


# -- build ------------------------------------------------------------------------------------------

def test_tiny_vgg16_graph_and_sidecar(tiny_vgg16):
    model = onnx.load(tiny_vgg16)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["predictions"]
    assert json.loads(graph.metadata(model)[graph.LAYERS_KEY]) == vgg16.layer_list()
    spec = load_model_spec(tiny_vgg16)
    assert spec.model_sha256 == sha256(tiny_vgg16)
    assert (spec.input_name, spec.input_size, spec.output_name, spec.output_dim) == ("input", (S, S),
                                                                                      "predictions", CLASSES)
    assert (spec.resize, spec.channel_order, spec.layout) == ("squash", "BGR", "NCHW")
    assert spec.mean == (103.939, 116.779, 123.68) and spec.std == (1.0, 1.0, 1.0) and spec.scale == 1.0
    assert spec.cut_at == "" and "seed 0" in spec.source and "tiny" in spec.source
    probabilities = run(tiny_vgg16, np.random.default_rng(0).normal(0, 50, (3, 3, S, S)).astype(np.float32))
    assert probabilities.shape == (3, CLASSES)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_build_is_deterministic_and_seeded(tiny_vgg16, tmp_path, cli):
    again, other = str(tmp_path / "again.onnx"), str(tmp_path / "other.onnx")
    assert cli("build-vgg16", "--random-weights", "--tiny", "-o", again).returncode == 0
    assert cli("build-vgg16", "--random-weights", "--tiny", "--seed", "1",
                      "-o", other).returncode == 0
    assert sha256(again) == sha256(tiny_vgg16)
    assert sha256(other) != sha256(tiny_vgg16)
    assert oct(os.stat(again).st_mode & 0o777) == "0o644"  # a model is meant to be shared


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one of --weights FILE.h5 or --random-weights"),
    (["--random-weights", "--weights", "x.h5"], "give exactly one of"),
    (["--tiny", "--weights", "x.h5"], "--tiny builds a random-weights test model"),
])
def test_build_argument_errors(args, message, tmp_path, cli):
    result = cli("build-vgg16", *args, "-o", str(tmp_path / "m.onnx"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "m.onnx")


def test_keras_weights_with_the_wrong_md5_are_refused(tmp_path, cli):
    fake = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    fake.write_bytes(b"not the real file")
    result = cli("build-vgg16", "--weights", str(fake), "-o", str(tmp_path / "m.onnx"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert vgg16.KERAS_WEIGHTS_MD5 in result.stderr and hashlib.md5(b"not the real file").hexdigest() in result.stderr


# -- summary ----------------------------------------------------------------------------------------

def test_summary_of_the_full_tiny_graph(tiny_vgg16, run_module):
    result = run_module("mr_tl.model", "summary", tiny_vgg16)
    assert result.returncode == 0, result.stderr
    rows = summary_rows(result.stdout)
    assert [r[0] for r in rows] == vgg16.layer_list()  # every Keras layer, in order
    assert rows == TINY_ROWS                            # with its op, output shape and parameters
    assert sum(r[3] for r in rows) == TINY_TOTAL
    assert printed_total(result.stdout) == format(TINY_TOTAL, ",")


def test_summary_of_the_cut_graph(tiny_vgg16_fc2, cli):
    result = cli("summary", tiny_vgg16_fc2)
    assert result.returncode == 0, result.stderr
    rows = summary_rows(result.stdout)
    layers = vgg16.layer_list()
    assert [r[0] for r in rows] == layers[:layers.index("fc2") + 1]
    assert rows == TINY_ROWS[:-1]
    assert printed_total(result.stdout) == format(TINY_FC2_TOTAL, ",")
    assert sum(r[3] for r in rows) == TINY_FC2_TOTAL


def test_summary_of_a_foreign_graph_lists_node_outputs():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])])
    rows, total = graph.summary(helper.make_model(g))
    assert [(r[0], r[1]) for r in rows] == [("a", "Relu"), ("b", "Neg")]
    assert total == 0


def test_summary_of_a_missing_or_broken_file(tmp_path, cli):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage\xff" * 10)
    for path, message in ((tmp_path / "missing.onnx", "does not exist"), (broken, "not a readable ONNX model")):
        result = cli("summary", path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


# -- cut --------------------------------------------------------------------------------------------

def test_cut_output_equals_the_full_graphs_fc2_tensor(tiny_vgg16, tiny_vgg16_fc2, tmp_path):
    full = onnx.load(tiny_vgg16)
    full.graph.output.append(helper.make_tensor_value_info("fc2", TensorProto.FLOAT, ["N", FC]))
    with_fc2 = str(tmp_path / "full-with-fc2.onnx")
    onnx.save(full, with_fc2)
    x = np.random.default_rng(1).normal(0, 60, (4, 3, S, S)).astype(np.float32)
    expected = run(with_fc2, x, "fc2")
    got = run(tiny_vgg16_fc2, x)
    assert got.shape == (4, FC)
    assert np.abs(expected).max() > 0  # not a degenerate all-zero comparison
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    cut = onnx.load(tiny_vgg16_fc2)
    assert [o.name for o in cut.graph.output] == ["fc2"]
    assert "predictions/kernel" not in {i.name for i in cut.graph.initializer}


def test_cut_sidecar(tiny_vgg16, tiny_vgg16_fc2):
    spec = load_model_spec(tiny_vgg16_fc2)
    full_spec = ModelSpec.load(sidecar_path(tiny_vgg16))
    with open(sidecar_path(tiny_vgg16_fc2), encoding="utf-8") as f:
        raw = json.load(f)
    assert raw["format"] == SPEC_FORMAT
    assert raw["input_size"] == [S, S]
    assert (spec.input_name, spec.output_name, spec.output_dim, spec.cut_at) == ("input", "fc2", FC, "fc2")
    assert (spec.resize, spec.interpolation, spec.channel_order, spec.layout) == ("squash", "bilinear", "BGR", "NCHW")
    assert (spec.scale, spec.mean, spec.std) == (1.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
    # preprocessing is the source's
    for name in ("input_size", "resize", "resize_shorter", "interpolation", "channel_order", "scale", "mean", "std",
                 "layout", "source", "license"):
        assert getattr(spec, name) == getattr(full_spec, name), name
    assert spec.source_sha256 == sha256(tiny_vgg16)
    assert spec.model_sha256 == sha256(tiny_vgg16_fc2) == sha256_file(tiny_vgg16_fc2)
    assert graph.metadata(onnx.load(tiny_vgg16_fc2))["mr_tl.cut_at"] == "fc2"


@pytest.mark.parametrize("layer", ["block1_conv1", "block3_pool", "block5_conv3", "flatten", "fc1", "predictions"])
def test_cut_at_other_layers(tiny_vgg16, layer, tmp_path):
    dim = features_of(layer)
    out = str(tmp_path / ("%s.onnx" % layer))
    spec = graph.cut(tiny_vgg16, layer, out)
    assert (spec.output_name, spec.output_dim, spec.cut_at) == (layer, dim, layer)
    assert load_model_spec(out) == spec
    x = np.random.default_rng(3).normal(0, 60, (2, 3, S, S)).astype(np.float32)
    assert Featurizer(out)(x).shape == (2, dim)


def test_cut_at_an_unknown_layer(tiny_vgg16, tmp_path, run_module):
    out = tmp_path / "nope.onnx"
    result = run_module("mr_tl.model", "cut", tiny_vgg16, "--at", "fc3", "-o", out)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "has no layer 'fc3'" in result.stderr
    listed = result.stderr.split("its layers are:", 1)[1]
    assert [name.strip() for name in listed.split(",")] == vgg16.layer_list()
    assert not out.exists() and not os.path.exists(sidecar_path(str(out)))
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left either


def test_cut_without_a_sidecar_needs_a_preset(tiny_vgg16, tmp_path, cli):
    bare = str(tmp_path / "bare.onnx")
    shutil.copyfile(tiny_vgg16, bare)
    out = str(tmp_path / "bare-fc2.onnx")
    result = cli("cut", bare, "--at", "fc2", "-o", out)
    assert result.returncode == 2 and "--preprocessing" in result.stderr and not os.path.exists(out)
    result = cli("cut", bare, "--at", "fc2", "--preprocessing", "vgg16", "-o", out)
    assert result.returncode == 0, result.stderr
    spec = load_model_spec(out)
    assert (spec.output_name, spec.output_dim, spec.input_size) == ("fc2", FC, (S, S))
    assert spec.channel_order == "BGR" and spec.mean == vgg16.PREPROCESSING["mean"]
    result = cli("cut", bare, "--at", "fc2", "--preprocessing", "inception", "-o", out)
    assert result.returncode == 2 and "unknown --preprocessing 'inception'" in result.stderr


# -- the sidecar ------------------------------------------------------------------------------------

def test_load_model_spec_refuses_a_changed_graph(tiny_vgg16_fc2, tmp_path):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    load_model_spec(path)  # the copy is fine
    with open(path, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelError, match="does not match its sidecar") as info:
        load_model_spec(path)
    assert sha256(path) in str(info.value) and load_model_spec(path, verify_hash=False).output_name == "fc2"


def test_load_model_spec_refuses_another_graph_with_this_sidecar(tiny_vgg16, tiny_vgg16_fc2, tmp_path):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    shutil.copyfile(tiny_vgg16, path)  # the graph was replaced, the sidecar was not
    with pytest.raises(ModelError, match="was the graph replaced"):
        load_model_spec(path)


def test_load_model_spec_missing_files(tiny_vgg16_fc2, tmp_path):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    os.remove(sidecar_path(path))
    with pytest.raises(ModelError, match=r"model sidecar .*model\.json is missing .*mr_tl\.model cut"):
        load_model_spec(path)
    with pytest.raises(ModelError, match="model file .*nothing.onnx does not exist"):
        load_model_spec(str(tmp_path / "nothing.onnx"))


def test_load_model_spec_needs_a_recorded_hash(tiny_vgg16_fc2, tmp_path):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    spec = ModelSpec.load(sidecar_path(path))
    dataclasses.replace(spec, model_sha256="").save(sidecar_path(path))
    with pytest.raises(ModelError, match="records no model_sha256"):
        load_model_spec(path)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"input_name": "input"}', "incomplete"),
])
def test_sidecar_that_cannot_be_read(tiny_vgg16_fc2, tmp_path, content, message):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    with open(sidecar_path(path), "w") as f:
        f.write(content)
    with pytest.raises(ModelError, match=message):
        load_model_spec(path)


def _spec_dict(**changes):
    spec = dict(input_name="input", input_size=[32, 32], output_name="fc2", output_dim=32)
    spec.update(changes)
    return spec


@pytest.mark.parametrize("changes, message", [
    (dict(format="mr_tl.model-spec/0"), "format"),
    (dict(input_size=[32]), "input_size"),
    (dict(input_size=[0, 32]), "input_size"),
    (dict(resize="stretch"), "resize 'stretch'"),
    (dict(interpolation="lanczos"), "interpolation"),
    (dict(channel_order="RBG"), "channel_order"),
    (dict(layout="CHW"), "layout"),
    (dict(mean=[1, 2]), "mean/std"),
    (dict(std=[1, 0, 1]), "std non-zero"),
    (dict(output_dim=0), "output_dim"),
    (dict(colour="blue"), "unknown keys colour"),
])
def test_invalid_spec_values(changes, message):
    with pytest.raises(ModelError, match=message):
        ModelSpec.from_dict(_spec_dict(**changes))


def test_spec_lists_every_problem_at_once():
    with pytest.raises(ModelError) as info:
        ModelSpec.from_dict(_spec_dict(resize="stretch", layout="CHW", channel_order="RBG"))
    assert all(word in str(info.value) for word in ("resize", "layout", "channel_order"))


def test_spec_json_round_trip(tmp_path):
    spec = ModelSpec.from_dict(_spec_dict(mean=[1, 2, 3], resize="center-crop", resize_shorter=36, cut_at="fc2"))
    path = str(tmp_path / "s.json")
    spec.save(path)
    assert ModelSpec.load(path) == spec
    assert spec.shorter_side == 36 and ModelSpec.from_dict(_spec_dict()).shorter_side == 32
    assert sidecar_path("models/vgg16-fc2.onnx") == "models/vgg16-fc2.json"
    assert sidecar_path("models/graph.bin") == "models/graph.bin.json"


# -- the Featurizer ----------------------------------------------------------------------------------

def test_featurizer_matches_onnxruntime(tiny_vgg16_fc2):
    x = np.random.default_rng(2).normal(0, 60, (5, 3, S, S)).astype(np.float32)
    featurizer = Featurizer(tiny_vgg16_fc2, threads=1)
    assert featurizer.dim == FC
    np.testing.assert_allclose(featurizer(x), run(tiny_vgg16_fc2, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("changes, message", [
    (dict(input_name="images"), "sidecar says images -> fc2, graph has input -> fc2"),
    (dict(output_name="fc1"), "sidecar says input -> fc1, graph has input -> fc2"),
    (dict(output_name="predictions"), "does not match the graph"),
])
def test_featurizer_refuses_a_sidecar_that_does_not_match_the_graph(tiny_vgg16_fc2, tmp_path, changes, message):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    spec = dataclasses.replace(load_model_spec(path), **changes)
    with pytest.raises(ModelError, match=message):
        Featurizer(path, spec)
    spec.save(sidecar_path(path))  # the same through the sidecar on disk (its hash still matches)
    with pytest.raises(ModelError, match=message):
        Featurizer(path)


def test_featurizer_checks_the_output_dimension(tiny_vgg16_fc2):
    spec = dataclasses.replace(load_model_spec(tiny_vgg16_fc2), output_dim=FC - 1)
    featurizer = Featurizer(tiny_vgg16_fc2, spec)
    with pytest.raises(ModelError, match="graph produced %d features, sidecar says %d" % (FC, FC - 1)):
        featurizer(np.zeros((1, 3, S, S), np.float32))


def test_featurizer_refuses_what_onnxruntime_cannot_load(tiny_vgg16_fc2, tmp_path):
    path = copy_model(tiny_vgg16_fc2, tmp_path)
    with open(path, "wb") as f:
        f.write(b"not a graph")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        Featurizer(path, verify_hash=False)
    with pytest.raises(ModelError, match="does not match its sidecar"):
        Featurizer(path)


# -- the real size (slow) ----------------------------------------------------------------------------

@pytest.mark.slow
def test_full_vgg16_cut_at_fc2_has_134_260_544_parameters(tmp_path, run_module):
    full, fc2 = str(tmp_path / "vgg16-random.onnx"), str(tmp_path / "vgg16-random-fc2.onnx")
    result = run_module("mr_tl.model", "build-vgg16", "--random-weights", "-o", full)
    assert result.returncode == 0, result.stderr
    assert "138,357,544 parameters" in result.stdout  # Keras' VGG16 total
    result = run_module("mr_tl.model", "cut", full, "--at", "fc2", "-o", fc2)
    assert result.returncode == 0, result.stderr
    assert "4096 features" in result.stdout
    os.remove(full)  # 0.5 GB less on disk
    result = run_module("mr_tl.model", "summary", fc2)
    assert result.returncode == 0, result.stderr
    assert printed_total(result.stdout) == "134,260,544"
    rows = summary_rows(result.stdout)
    assert rows == expected_layers(vgg16.FULL)[:-1]
    by_name = {r[0]: r for r in rows}
    assert by_name["block1_conv1"][2:] == ("?x64x224x224", 1_792)
    assert by_name["fc1"][2:] == ("?x4096", 102_764_544)
    assert by_name["fc2"][2:] == ("?x4096", 16_781_312)
