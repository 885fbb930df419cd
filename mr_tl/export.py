"""python -m mr_tl.export --trunk MODEL --run RUN_DIR -o classifier.onnx

One deployable ONNX graph: the frozen trunk the features came from, then the
trained head as ``Gemm`` + ``Softmax``.  When the run's features were made
with ``featurize --augment flip``, the graph does the same: it runs the
trunk once on the batch and its horizontal mirror (``Slice`` with step -1
on the width axis, ``Concat``) and averages the two halves of the features
before the head, so the classifier sees what the head was trained on.  Outputs ``probabilities``
``[N, classes]`` (and ``head/logits``); the class names are in the model
metadata (``mr_tl.classes``) and the sidecar ``classifier.json`` keeps the
trunk's preprocessing, so ``python -m mr_tl.predict classifier.onnx IMAGE``
needs nothing else.
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
from onnx import helper, numpy_helper

from mr_tl.cli import run_command
from mr_tl.errors import ModelError, OutputExists
from mr_tl.model import graph
from mr_tl.model.spec import load_model_spec, sidecar_path
from mr_tl.run_dir import RunDir

CLASSES_KEY = "mr_tl.classes"
OUTPUT = "probabilities"
LOGITS = "head/logits"
PREFIX = "mr_tl_head/"   # the classifier's own tensors (EfficientNet already has a "head/conv")


def fold_normalization(W, b, normalizer):
    """``(W, b)`` of a first layer that takes the normalization's pre-transformed features instead of
    normalized ones: ``((u - mean) * scale) @ W + b == u @ (scale * W) + (b - (mean * scale) @ W)``."""
    if normalizer is None or normalizer.kind == "none":
        return W, b
    W = np.asarray(W, dtype=np.float64)
    scale = np.asarray(normalizer.scale, dtype=np.float64)
    mean = np.asarray(normalizer.mean, dtype=np.float64)
    return ((scale[:, None] * W).astype(np.float32),
            (np.asarray(b, dtype=np.float64) - (mean * scale) @ W).astype(np.float32))


def _opset(model):
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)


def _pre_transform_nodes(kind, x, model):
    """Nodes for mr_tl.normalization.pre_transform of tensor ``x``; returns the output tensor's name."""
    if kind != "sqrt-l2-zscore":
        return x
    g = model.graph

    def node(op, inputs, output, **attributes):
        g.node.append(helper.make_node(op, [i if i == x else PREFIX + i for i in inputs], [PREFIX + output],
                                       name=PREFIX + output, **attributes))

    node("Abs", [x], "abs")
    node("Sqrt", ["abs"], "sqrt")
    node("Sign", [x], "sign")
    node("Mul", ["sign", "sqrt"], "signed_sqrt")
    g.initializer.append(numpy_helper.from_array(np.array(1e-12, dtype=np.float32), PREFIX + "eps"))
    if _opset(model) >= 18:   # axes became an input in opset 18
        g.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), PREFIX + "axes"))
        node("ReduceL2", ["signed_sqrt", "axes"], "norm", keepdims=1)
    else:
        node("ReduceL2", ["signed_sqrt"], "norm", axes=[1], keepdims=1)
    node("Max", ["norm", "eps"], "norm_safe")
    node("Div", ["signed_sqrt", "norm_safe"], "unit")
    return PREFIX + "unit"


def check_trunk(spec, head_meta, trunk_path):
    """ModelError if the head was trained on features another trunk (or preprocessing) made."""
    made_by = ((head_meta or {}).get("features") or {}).get("made_by")
    if not made_by:
        return
    from mr_tl.model.spec import describe_difference
    from mr_tl.model.spec import made_by as describe

    mine = describe(spec)
    for key, what in (("sha256", "graph"), ("preprocessing", "preprocessing")):
        if made_by.get(key) != mine.get(key):
            raise ModelError("the head was trained on features of another %s than %s (%s %s); "
                             "export it with the trunk and sidecar that made its features"
                             % (what, trunk_path, key, describe_difference(mine.get(key), made_by.get(key))))


def augment_of(head_meta):
    """The augmentation the head's features were made with (mr_tl.augment.AUGMENTS)."""
    from mr_tl.augment import AUGMENTS

    made_by = ((head_meta or {}).get("features") or {}).get("made_by") or {}
    augment = made_by.get("augment", "none")
    if augment not in AUGMENTS:
        raise ModelError("the head was trained on features made with augmentation %r, which this version of "
                         "mr_tl cannot build into a classifier (it knows %s)" % (augment, ", ".join(AUGMENTS)))
    return augment


def build_classifier(trunk_path, head, classes, head_meta=None, normalizer=None):
    """``(model, spec)``: trunk graph + (flip averaging) + (normalization) + head, checked against each other."""
    from mr_tl import augment as augmentation

    spec = load_model_spec(trunk_path)
    check_trunk(spec, head_meta, trunk_path)
    augment = augment_of(head_meta)
    if head.n_features != spec.output_dim:
        raise ModelError("the head expects %d features but the trunk %s gives %d (%s): was the head trained "
                         "on features of another model?" % (head.n_features, trunk_path, spec.output_dim,
                                                            spec.output_name))
    if len(classes) != head.n_classes:
        raise ModelError("head has %d classes but %d class names were given" % (head.n_classes, len(classes)))
    model = graph.load(trunk_path)
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.initializer}
    clash = {n for n in names if n.startswith((PREFIX, "tta/"))} | (names & {OUTPUT, LOGITS})
    if clash:
        raise ModelError("trunk already has tensors named %s" % ", ".join(sorted(clash)))
    g = model.graph
    features = spec.output_name
    g.node.append(helper.make_node("Flatten", [features], [PREFIX + "flat"], name=PREFIX + "flatten", axis=1))
    flat = PREFIX + "flat"
    if augment == "flip":   # the trunk runs on the batch and its mirror; the halves' features are averaged
        augmentation.add_flip_nodes(model, spec.input_name, spec.layout)
        flat = augmentation.add_mean_of_halves(model, flat, spec.output_dim)
    x = _pre_transform_nodes(normalizer.kind if normalizer is not None else "none", flat, model)
    params = dict(head.params())
    W, b = ("W1", "b1") if "W1" in params else ("W", "b")   # the first layer takes the normalization
    params[W], params[b] = fold_normalization(params[W], params[b], normalizer)
    g.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), PREFIX + name)
                         for name, value in sorted(params.items()))
    if W == "W1":   # the hidden layer: Gemm + ReLU
        g.node.append(helper.make_node("Gemm", [x, PREFIX + "W1", PREFIX + "b1"], [PREFIX + "hidden_in"],
                                       name=PREFIX + "hidden"))
        g.node.append(helper.make_node("Relu", [PREFIX + "hidden_in"], [PREFIX + "hidden_out"],
                                       name=PREFIX + "relu"))
        x = PREFIX + "hidden_out"
    g.node.append(helper.make_node("Gemm", [x, PREFIX + "W", PREFIX + "b"], [LOGITS], name=PREFIX + "dense"))
    g.node.append(helper.make_node("Softmax", [LOGITS], [OUTPUT], name=PREFIX + "softmax", axis=1))
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(OUTPUT, 1, ["N", head.n_classes]),
                     helper.make_tensor_value_info(LOGITS, 1, ["N", head.n_classes])])
    props = graph.metadata(model)
    layers = json.loads(props.get(graph.LAYERS_KEY, "[]")) + ["head/logits", OUTPUT]
    props.update({CLASSES_KEY: json.dumps(classes, ensure_ascii=False), graph.LAYERS_KEY: json.dumps(layers),
                  "mr_tl.trunk_sha256": spec.model_sha256, "mr_tl.augment": augment,
                  "mr_tl.head": json.dumps({k: v for k, v in (head_meta or {}).items() if k != "classes"},
                                           sort_keys=True)})
    helper.set_model_props(model, props)
    new_spec = dataclasses.replace(spec, output_name=OUTPUT, output_dim=head.n_classes, model_sha256="")
    return model, new_spec


def classes_of(model):
    """Class names stored in an exported classifier."""
    value = graph.metadata(model).get(CLASSES_KEY)
    if value is None:
        raise ModelError("this ONNX file has no class names (%s); export it with python -m mr_tl.export"
                         % CLASSES_KEY)
    return json.loads(value)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mr_tl.export", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", required=True, help="the feature extractor (.onnx + sidecar) the features came from")
    p.add_argument("--run", required=True, help="the training run directory (its head.npz and labels.json)")
    p.add_argument("-o", "--output", required=True, help="classifier .onnx to write (sidecar .json beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT and its sidecar if they exist")
    args = p.parse_args(argv)
    run_command(export, args)


def export(args):
    existing = [p for p in (args.output, sidecar_path(args.output), args.output + ".data") if os.path.exists(p)]
    if existing and not args.overwrite:
        raise OutputExists("%s already exists (use --overwrite to replace it, or choose another -o)" % existing[0])
    run = RunDir(args.run)
    head, meta, normalizer = run.load_classifier()
    model, spec = build_classifier(args.trunk, head, run.classes(), meta, normalizer)
    graph.save_model(model, args.output, spec)
    print("wrote %s (%s -> %d classes) and its sidecar" % (args.output, spec.input_name, head.n_classes))


if __name__ == "__main__":
    main(sys.argv[1:])
