"""python -m mr_tl.export --trunk MODEL --run RUN_DIR -o classifier.onnx

One deployable ONNX graph: the frozen trunk the features came from, then the
trained head as ``Gemm`` + ``Softmax``.  Outputs ``probabilities``
``[N, classes]`` (and ``head/logits``); the class names are in the model
metadata (``mr_tl.classes``) and the sidecar ``classifier.json`` keeps the
trunk's preprocessing, so ``python -m mr_tl.predict classifier.onnx IMAGE``
needs nothing else.
"""

import argparse
import dataclasses
import json
import sys

import numpy as np
from onnx import helper, numpy_helper

from mr_tl.cli import fail
from mr_tl.errors import ModelError, RunError
from mr_tl.model import graph
from mr_tl.model.spec import load_model_spec
from mr_tl.run import RunDir

CLASSES_KEY = "mr_tl.classes"
OUTPUT = "probabilities"
LOGITS = "head/logits"


def build_classifier(trunk_path, head, classes, head_meta=None):
    """``(model, spec)``: trunk graph + head, checked against each other."""
    spec = load_model_spec(trunk_path)
    if head.n_features != spec.output_dim:
        raise ModelError("the head expects %d features but the trunk %s gives %d (%s): was the head trained "
                         "on features of another model?" % (head.n_features, trunk_path, spec.output_dim,
                                                            spec.output_name))
    if len(classes) != head.n_classes:
        raise ModelError("head has %d classes but %d class names were given" % (head.n_classes, len(classes)))
    model = graph.load(trunk_path)
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.initializer}
    clash = names & {OUTPUT, LOGITS, "head/W", "head/b", "head/flat"}
    if clash:
        raise ModelError("trunk already has tensors named %s" % ", ".join(sorted(clash)))
    g = model.graph
    features = spec.output_name
    g.node.append(helper.make_node("Flatten", [features], ["head/flat"], name="head/flatten", axis=1))
    g.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(head.W, dtype=np.float32), "head/W"),
                          numpy_helper.from_array(np.ascontiguousarray(head.b, dtype=np.float32), "head/b")])
    g.node.append(helper.make_node("Gemm", ["head/flat", "head/W", "head/b"], [LOGITS], name="head/dense"))
    g.node.append(helper.make_node("Softmax", [LOGITS], [OUTPUT], name="head/softmax", axis=1))
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(OUTPUT, 1, ["N", head.n_classes]),
                     helper.make_tensor_value_info(LOGITS, 1, ["N", head.n_classes])])
    props = graph.metadata(model)
    layers = json.loads(props.get(graph.LAYERS_KEY, "[]")) + ["head/logits", OUTPUT]
    props.update({CLASSES_KEY: json.dumps(classes, ensure_ascii=False), graph.LAYERS_KEY: json.dumps(layers),
                  "mr_tl.trunk_sha256": spec.model_sha256,
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
    args = p.parse_args(argv)
    try:
        run = RunDir(args.run)
        head, meta = run.load_head()
        model, spec = build_classifier(args.trunk, head, run.classes(), meta)
        graph.save_model(model, args.output, spec)
    except (ModelError, RunError) as e:
        fail(str(e))
    print("wrote %s (%s -> %d classes) and its sidecar" % (args.output, spec.input_name, head.n_classes))


if __name__ == "__main__":
    main(sys.argv[1:])
