"""Operations on ONNX graphs: list layers, cut at a layer, summarize, save.

A *layer* is a named tensor a user may cut at.  Graphs built by mr_tl list
their layers, in order, in the model metadata key ``mr_tl.layers`` and name
their nodes ``layer`` or ``layer/op``; for any other ONNX file every node
output counts as a layer.
"""

import dataclasses
import json
import math
import os
import tempfile

import numpy as np
import onnx
import onnx.utils
from onnx import helper, shape_inference

from mr_tl.errors import ModelError
from mr_tl.model.spec import ModelSpec, sha256_file, sidecar_path

LAYERS_KEY = "mr_tl.layers"


def load(path, load_weights=True):
    if not os.path.isfile(path):
        raise ModelError("model file %s does not exist" % path)
    try:
        return onnx.load(path, load_external_data=load_weights)
    except Exception as e:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise ModelError("%s is not a readable ONNX model: %s" % (path, e)) from None


def metadata(model):
    return {p.key: p.value for p in model.metadata_props}


def layer_names(model):
    """Layers of ``model`` in graph order."""
    listed = metadata(model).get(LAYERS_KEY)
    if listed:
        return json.loads(listed)
    return [out for node in model.graph.node for out in node.output if out]


def _layer_of(node_name, layers):
    head = node_name.split("/", 1)[0]
    return head if head in layers else None


def summary(model):
    """Rows ``(layer, op, output_shape, params)`` and the total parameter count.

    Like DL4J's ``summary()``: parameters are counted per layer from the
    initializers its nodes use.
    """
    layers = layer_names(model)
    layer_set = set(layers)
    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?")
                for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    init_sizes = {i.name: math.prod(i.dims) for i in model.graph.initializer}
    grouped = metadata(model).get(LAYERS_KEY) is not None
    ops, params, seen = {}, {}, set()
    for node in model.graph.node:
        if grouped:
            layer = _layer_of(node.name, layer_set)
        else:
            layer = node.output[0] if node.output else None
        if layer is None:
            continue
        ops.setdefault(layer, node.op_type)
        for name in node.input:
            if name in init_sizes and name not in seen:
                seen.add(name)
                params[layer] = params.get(layer, 0) + init_sizes[name]
    rows = []
    for layer in layers:
        dims = shapes.get(layer)
        shape = "x".join("?" if d in ("N", "batch") else d for d in dims) if dims else "?"
        rows.append((layer, ops.get(layer, "?"), shape, params.get(layer, 0)))
    total = sum(init_sizes.values())
    return rows, total


def format_summary(rows, total):
    width = max([len("Layer")] + [len(r[0]) for r in rows])
    lines = ["%-*s  %-14s %-18s %14s" % (width, "Layer", "Op", "Output shape", "Params"),
             "-" * (width + 50)]
    for name, op, shape, n in rows:
        lines.append("%-*s  %-14s %-18s %14s" % (width, name, op, shape, format(n, ",")))
    lines.append("-" * (width + 50))
    lines.append("Total parameters: %s" % format(total, ","))
    return "\n".join(lines)


# Graphs bigger than this keep their weights in a separate file beside the
# graph: onnxruntime then memory-maps them instead of parsing and copying a
# protobuf, which makes every map task's session several times faster to
# create and lets concurrent tasks on a node share the pages.
EXTERNAL_DATA_MIN_BYTES = 100 << 20


def save_model(model, path, spec, external_data=None):
    """Write ``model`` and its sidecar; the sidecar records the sha256 of every file written.

    Weights go to ``<path>.data`` beside the graph when ``external_data`` is
    true (default: when the model is bigger than EXTERNAL_DATA_MIN_BYTES).
    Note that saving with external data moves the weights out of ``model``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if external_data is None:
        external_data = model.ByteSize() > EXTERNAL_DATA_MIN_BYTES
    data_name = os.path.basename(path) + ".data"
    data_path = os.path.join(directory, data_name)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".onnx.tmp")
    os.close(fd)
    try:
        if external_data:
            if os.path.exists(data_path):
                os.unlink(data_path)  # onnx appends to an existing data file
            onnx.save(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name,
                      size_threshold=1024)
            os.chmod(data_path, 0o644)
            spec.external_data = {data_name: sha256_file(data_path)}
        else:
            onnx.save(model, tmp)
            spec.external_data = {}
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model is meant to be shared
        spec.model_sha256 = sha256_file(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not external_data and os.path.exists(data_path):
        os.unlink(data_path)  # a stale weights file of an earlier save
    spec.save(sidecar_path(path))
    return spec


def output_dim(model, tensor):
    """Features per example of ``tensor`` (all dims but the batch, multiplied)."""
    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name == tensor:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
            if len(dims) < 2 or any(d is None for d in dims[1:]):
                raise ModelError("cannot tell the size of tensor %r (shape %s)" % (tensor, dims))
            return int(np.prod(dims[1:]))
    raise ModelError("no shape known for tensor %r" % tensor)


def cut(model_path, at, out_path, spec=None):
    """Extract the graph from its input up to and including layer ``at``.

    Uses ``onnx.utils.extract_model``.  ``spec`` is the source model's
    preprocessing (default: its own sidecar); the new sidecar keeps it and
    records the output tensor, its dimension, the cut layer and the sha256 of
    the source file.
    """
    source = load(model_path, load_weights=False)
    layers = layer_names(source)
    if at not in layers:
        raise ModelError("%s has no layer %r; its layers are: %s" % (model_path, at, ", ".join(layers)))
    if spec is None:
        spec = ModelSpec.load(sidecar_path(model_path))
    input_names = [i.name for i in source.graph.input
                   if i.name not in {init.name for init in source.graph.initializer}]
    if len(input_names) != 1:
        raise ModelError("%s has %d inputs; a feature extractor takes one image tensor"
                         % (model_path, len(input_names)))
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.utils.extract_model(model_path, tmp, input_names, [at])
        model = onnx.load(tmp)
    finally:
        os.unlink(tmp)
    kept = layers[:layers.index(at) + 1]
    props = metadata(source)
    props.update({LAYERS_KEY: json.dumps(kept), "mr_tl.cut_at": at})
    helper.set_model_props(model, props)
    new_spec = dataclasses.replace(spec, output_name=at, output_dim=output_dim(model, at), cut_at=at,
                                   source_sha256=sha256_file(model_path))
    return save_model(model, out_path, new_spec)
