"""Static int8 quantization of a feature extractor, calibrated on your own packed images.

    python -m mr_tl.model quantize models/vgg16-fc2.onnx --calibration packed/ -o models/vgg16-fc2-int8.onnx

What it does and why:

* **Static QDQ, per-channel.**  onnxruntime's ``quantize_static`` inserts
  QuantizeLinear/DequantizeLinear pairs; its CPU provider fuses each
  ``DQ -> Conv/Gemm -> Q`` into an integer kernel (QLinearConv, QGemm) at
  session creation.  Weights are int8 with one scale per output channel
  (conv filters differ a lot in range); activations are uint8 with one
  scale per tensor, from the min/max seen on the calibration images.  uint8
  activations x int8 weights is the combination x86 VNNI (``vpdpbusd``)
  executes natively.  On x86 CPUs *without* VNNI (e.g. Zen 3) the same
  model runs but uses a 16-bit intermediate that can saturate;
  ``reduce_range=True`` (7-bit weights) avoids that at some accuracy cost,
  and on such machines fp32 is usually the better choice anyway.
* **Calibration images** are drawn from packed shards (``mr_tl.pack``
  output folders or ``.tsv`` files), ``samples`` of them in an order
  drawn from ``rng(seed, "quantize-calibration")`` over all lines; images
  that cannot be decoded are skipped (the next one in the order is used).
  They are preprocessed exactly as the featurize job does, with the
  model's own sidecar (:func:`mr_tl.images.preprocess`).
* **Deterministic.**  The same model, images, ``samples`` and ``seed`` give
  a byte-identical int8 graph: the order is seeded, calibration ranges are
  minima/maxima (exact, independent of thread scheduling), and onnxruntime's
  quantizer names its nodes deterministically.
* **Same interface as the fp32 model.**  The input and output tensor names
  stay the same; the graph keeps the source's metadata (its layer list
  and cut point), so the featurize job, ``summary`` and the sidecar checks
  work unchanged.  The new sidecar keeps the preprocessing and output,
  records in ``source`` that the graph was quantized (method, images, seed)
  and from which model, and sets ``source_sha256`` to the fp32 graph's hash.

``quant_pre_process`` (onnxruntime's shape inference + graph optimization
before quantizing) is not run: measured on the random-weights VGG16 and on
EfficientNet-Lite0 (BN already folded), the quantized graphs gave identical
cosines to fp32 and the same speed within noise with and without it, while
it costs seconds (7 s on VGG16) and its symbolic shape inference needs sympy.
"""

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile

import numpy as np

from mr_tl.errors import ModelError, RecordError
from mr_tl.images import ImageRejected, preprocess
from mr_tl.model import graph
from mr_tl.model.spec import load_model_spec
from mr_tl.records import PackedImage
from mr_tl.seeding import rng

QUANTIZED_KEY = "mr_tl.quantized"


def _shard_files(calibration):
    """Local ``.tsv`` shards named by ``calibration`` (pack folders or files)."""
    from mr_tl import paths
    from mr_tl.errors import InputError

    inputs = [calibration] if isinstance(calibration, (str, os.PathLike)) else list(calibration)
    if not inputs:
        raise ModelError("no calibration input given (pack output folders or .tsv shards)")
    for path in inputs:
        if paths.is_uri(str(path)) and not str(path).startswith("file://"):
            raise ModelError("calibration shards must be local files, found %s (copy a few shards "
                             "to local disk first)" % path)
    try:
        return paths.expand_inputs([str(p) for p in inputs], paths.PACKED_SUFFIX)
    except InputError as e:
        raise ModelError("calibration input: %s" % e) from None


def _line_offsets(files):
    """``(file, byte offset)`` of every non-empty line: cheap to hold, lets us seek to a chosen line."""
    offsets = []
    for path in files:
        with open(path, "rb") as f:
            pos = 0
            for line in f:
                if line.strip():
                    offsets.append((path, pos))
                pos += len(line)
    return offsets


def calibration_inputs(calibration, spec, samples=64, seed=42):
    """``samples`` preprocessed inputs (``(n, C, H, W)`` float32) and their image ids.

    Lines are visited in an order drawn from ``seed``; undecodable images
    and malformed lines are skipped.  Fewer usable images than ``samples``
    gives them all; none at all raises ModelError.
    """
    if samples < 1:
        raise ModelError("samples must be at least 1, found %d" % samples)
    files = _shard_files(calibration)
    offsets = _line_offsets(files)
    if not offsets:
        raise ModelError("the calibration set is empty: %s hold no packed images" % ", ".join(files))
    order = rng(seed, "quantize-calibration").permutation(len(offsets))
    inputs, ids, skipped = [], [], 0
    handles = {}
    try:
        for i in order:
            path, pos = offsets[i]
            f = handles.get(path) or handles.setdefault(path, open(path, "rb"))
            f.seek(pos)
            try:
                image = PackedImage.from_line(f.readline())
                inputs.append(preprocess(image.data, spec))
                ids.append(image.id)
            except (RecordError, ImageRejected):
                skipped += 1
                continue
            if len(inputs) == samples:
                break
    finally:
        for f in handles.values():
            f.close()
    if not inputs:
        raise ModelError("the calibration set has no usable image: all %d lines of %s were rejected"
                         % (skipped, ", ".join(files)))
    return np.stack(inputs), ids


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over preprocessed inputs, one image per call."""

    def __init__(self, input_name, inputs):
        self.input_name = input_name
        self.inputs = inputs
        self.i = 0

    def get_next(self):
        if self.i >= len(self.inputs):
            return None
        x = self.inputs[self.i:self.i + 1]
        self.i += 1
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


class _DropPreProcessAdvice(logging.Filter):
    """quantize_static logs (on the root logger) advice to run quant_pre_process, which we decided
    against (see the module docstring); keep it off the user's terminal."""

    def filter(self, record):
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer():
    root = logging.getLogger()
    advice = _DropPreProcessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _drop_unused_initializers(model):
    """Remove initializers and Constant nodes nothing reads (the quantizer leaves e.g. the bounds of
    the Clip nodes it folded into quantization ranges; onnxruntime would warn about each one in
    every task)."""
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    nodes = [n for n in model.graph.node if n.op_type != "Constant" or any(o in read for o in n.output)]
    if len(nodes) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    for subgraph_node in model.graph.node:  # inputs of subgraphs (If/Loop) count as used too
        for attr in subgraph_node.attribute:
            if attr.HasField("g"):
                used |= {name for node in attr.g.node for name in node.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def quantize_model(model_path, calibration, output, samples=64, seed=42, reduce_range=False):
    """Write a static int8 (QDQ, per-channel) copy of ``model_path`` and its sidecar to ``output``.

    ``calibration``: pack output folder(s) or ``.tsv`` shard(s) (a path or a
    list).  Returns the new ModelSpec.  Raises ModelError for an unusable
    model or calibration set.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    spec = load_model_spec(model_path)  # also checks the graph against its sidecar
    if os.path.abspath(output) == os.path.abspath(model_path):
        raise ModelError("output %s would overwrite the model being quantized" % output)
    inputs, _ = calibration_inputs(calibration, spec, samples, seed)
    source = graph.load(model_path)
    props = graph.metadata(source)
    del source

    tmp = tempfile.mkdtemp(prefix="mr_tl-quantize-")
    try:
        quantized = os.path.join(tmp, "int8.onnx")
        with _quiet_quantizer():
            quantize_static(
                model_path, quantized, _Reader(spec.input_name, inputs),
                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_providers=["CPUExecutionProvider"],
            )
        model = graph.load(quantized)
        _drop_unused_initializers(model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    names_out = [o.name for o in model.graph.output]
    names_in = [i.name for i in model.graph.input]
    if spec.output_name not in names_out or spec.input_name not in names_in:
        raise ModelError("the quantized graph lost its interface: %s -> %s became %s -> %s"
                         % (spec.input_name, spec.output_name, names_in, names_out))
    info = {"method": "onnxruntime quantize_static QDQ, per-channel int8 weights, uint8 activations, MinMax",
            "reduce_range": bool(reduce_range), "calibration_images": int(len(inputs)), "seed": int(seed),
            "source_model_sha256": spec.model_sha256}
    props[QUANTIZED_KEY] = json.dumps(info, sort_keys=True)
    del model.metadata_props[:]
    for key in sorted(props):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, props[key]
    new_spec = dataclasses.replace(
        spec,
        source="int8 static QDQ per-channel (MinMax, %d calibration images, seed %d%s) of %s sha256 %s; %s"
               % (len(inputs), seed, ", reduce_range" if reduce_range else "", os.path.basename(model_path),
                  spec.model_sha256, spec.source),
        source_sha256=spec.model_sha256, model_sha256="")
    return graph.save_model(model, output, new_spec)
