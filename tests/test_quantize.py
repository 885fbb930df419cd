"""Static int8 quantization (``python -m mr_tl.model quantize``) on the tiny VGG16 and the demo pack.

The tiny random-weights VGG16 has 4-16 channels per layer: per-channel
int8 weights are then few numbers each, and each layer's rounding error is
averaged over few inputs, so it quantizes worse than a real network (where
the error of one weight is diluted over hundreds of channels).  Measured on
this net with 16 calibration images: mean cosine 0.999, worst image 0.996.
The bounds below (every image >= 0.95, mean >= 0.98) leave room for other
CPUs' kernels while still failing on any real breakage (wrong scales, a
lost per-channel axis, a mis-calibrated layer give cosines far below 0.9).
"""

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mr_tl import storage
from mr_tl.errors import ModelError
from mr_tl.featurize import MRFeaturize
from mr_tl.images import preprocess
from mr_tl.model.quantize import QUANTIZED_KEY, quantize_model
from mr_tl.model.session import Featurizer
from mr_tl.model.spec import load_model_spec, sha256_file, sidecar_path
from mr_tl.records import FeatureRecord, parse_feature_line

SAMPLES = 16


@pytest.fixture(scope="module")
def int8_model(tiny_vgg16_fc2, packed_demo, run_module, tmp_path_factory):
    """The tiny VGG16 (cut at fc2) quantized through the command line."""
    out = str(tmp_path_factory.mktemp("int8") / "vgg16-tiny-fc2-int8.onnx")
    result = run_module("mr_tl.model", "quantize", tiny_vgg16_fc2, "--calibration", packed_demo,
                        "--samples", SAMPLES, "--seed", 42, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "wrote %s" % out in result.stdout
    return out


def test_cli_writes_model_and_sidecar(int8_model, tiny_vgg16_fc2):
    fp32 = load_model_spec(tiny_vgg16_fc2)
    spec = load_model_spec(int8_model)  # the sidecar exists and its sha256 matches the graph
    assert os.path.exists(sidecar_path(int8_model))
    # same interface and preprocessing as the fp32 model, so the featurize job can use it as is
    for field in ("input_name", "input_size", "output_name", "output_dim", "resize", "channel_order",
                  "mean", "std", "layout", "cut_at"):
        assert getattr(spec, field) == getattr(fp32, field), field
    # provenance: quantized, from which model
    assert spec.source.startswith("int8 static QDQ per-channel")
    assert fp32.model_sha256 in spec.source
    assert spec.source_sha256 == fp32.model_sha256
    model = onnx.load(int8_model)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["mr_tl.layers"] == {p.key: p.value for p in onnx.load(tiny_vgg16_fc2).metadata_props}[
        "mr_tl.layers"]
    assert '"calibration_images": %d' % SAMPLES in props[QUANTIZED_KEY]


def test_graph_has_qdq_nodes_with_per_channel_weight_scales(int8_model):
    model = onnx.load(int8_model)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in model.graph.initializer}
    weights = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0].endswith("/kernel_quantized"):
            q = inits[node.input[0]]
            scale = numpy_helper.to_array(inits[node.input[1]])
            axis = {a.name: a.i for a in node.attribute}.get("axis")
            weights[node.input[0].split("/")[0]] = (q.data_type, scale.shape, axis, q.dims)
    # every conv and dense layer has int8 weights with one scale per output channel
    assert set(weights) == {"block%d_conv%d" % (b, i) for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                            for i in range(1, n + 1)} | {"fc1", "fc2"}
    for layer, (dtype, scale_shape, axis, dims) in weights.items():
        assert dtype == onnx.TensorProto.INT8, layer
        out_axis = 0 if layer.startswith("block") else 1  # conv (cout, cin, kh, kw); Gemm B (in, out)
        assert axis == out_axis, layer
        assert scale_shape == (dims[out_axis],) and dims[out_axis] > 1, layer


def test_featurize_job_runs_with_the_int8_model(int8_model, tiny_vgg16_fc2, packed_demo, read_packed, tmp_path):
    out = tmp_path / "features"
    job = MRFeaturize(["-r", "inline", "--model", int8_model, packed_demo, "-o", str(out)])
    job.check_inputs()
    with job.make_runner() as runner:
        runner.run()
        lines = list(storage.cat_lines(runner))
        job.report(runner)
    records = [parse_feature_line(line, dim=32) for line in lines]
    assert all(isinstance(r, FeatureRecord) for r in records)
    int8 = {r.id: r.features for r in records}
    fp32_model = Featurizer(tiny_vgg16_fc2)
    images = read_packed(packed_demo)
    assert set(int8) == {image.id for image in images}
    fp32 = fp32_model(np.stack([preprocess(image.data, fp32_model.spec) for image in images]))
    cos = []
    for image, ref in zip(images, fp32):
        got = int8[image.id]
        cos.append(float(np.dot(ref, got) / (np.linalg.norm(ref) * np.linalg.norm(got))))
    assert min(cos) >= 0.95, sorted(cos)[:5]
    assert np.mean(cos) >= 0.98, np.mean(cos)


def test_same_seed_gives_identical_bytes(int8_model, tiny_vgg16_fc2, packed_demo, tmp_path):
    again = str(tmp_path / "again.onnx")
    quantize_model(tiny_vgg16_fc2, [packed_demo], again, samples=SAMPLES, seed=42)
    assert sha256_file(again) == sha256_file(int8_model)
    with open(sidecar_path(again), "rb") as a, open(sidecar_path(int8_model), "rb") as b:
        assert a.read() == b.read()
    # and the seed does choose the images: another seed, other ranges
    other = str(tmp_path / "other.onnx")
    quantize_model(tiny_vgg16_fc2, packed_demo, other, samples=SAMPLES, seed=7)
    assert sha256_file(other) != sha256_file(int8_model)


def test_shards_as_calibration_input(tiny_vgg16_fc2, packed_demo, tmp_path):
    shard = os.path.join(packed_demo, sorted(n for n in os.listdir(packed_demo) if n.endswith(".tsv"))[0])
    out = str(tmp_path / "from-shard.onnx")
    spec = quantize_model(tiny_vgg16_fc2, [shard], out, samples=4, seed=1)
    assert "4 calibration images" in spec.source


def test_empty_calibration_set_is_a_clear_error(tiny_vgg16_fc2, tmp_path, run_module):
    empty = tmp_path / "empty-pack"
    empty.mkdir()
    (empty / "train-00000.tsv").write_text("")
    out = tmp_path / "never.onnx"
    result = run_module("mr_tl.model", "quantize", tiny_vgg16_fc2, "--calibration", empty, "-o", out)
    assert result.returncode != 0
    assert "calibration set is empty" in result.stderr
    assert not out.exists() and not os.path.exists(sidecar_path(str(out)))


def test_calibration_set_without_usable_images(tiny_vgg16_fc2, tmp_path):
    bad = tmp_path / "bad-pack"
    bad.mkdir()
    # a valid packed line whose bytes are no image, and a line that is no packed record at all
    (bad / "train-00000.tsv").write_text("a.jpg\t0\ttrain\taGVsbG8=\nnot a record\n")
    with pytest.raises(ModelError, match="no usable image"):
        quantize_model(tiny_vgg16_fc2, [str(bad)], str(tmp_path / "never.onnx"))


def test_missing_calibration_folder(tiny_vgg16_fc2, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        quantize_model(tiny_vgg16_fc2, [str(tmp_path / "nowhere")], str(tmp_path / "never.onnx"))
