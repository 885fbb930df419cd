"""VGG16 as an ONNX graph with Keras' layer names.

The graph is built from a dict of Keras-layout weights (``{layer: (kernel,
bias)}``, conv kernels ``(kh, kw, cin, cout)``, dense kernels ``(in, out)``)
so the same code serves three sources:

* Keras' official ImageNet weights file (:func:`read_keras_h5`, pinned MD5);
* seeded random weights of the full size (benchmarks);
* a tiny VGG-shaped variant (same layer names, few channels, 64x64 input)
  for fast tests.

Layer names are Keras' (``block1_conv1`` ... ``block5_pool``, ``flatten``,
``fc1``, ``fc2``, ``predictions``), so "cut at fc2" means what it means in
Keras and DL4J.  Each layer's output tensor carries the layer's name (after
its activation, as Keras reports it); inner tensors are ``layer/op``.

The Keras channels-last trap: Keras flattens ``block5_pool`` as (h, w, c),
this graph is NCHW and flattens (c, h, w); :func:`vgg16_graph` permutes the
rows of ``fc1``'s kernel to match, so the graph computes what Keras computes.
"""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mr_tl.digest import file_digest
from mr_tl.errors import ModelError
from mr_tl.model.spec import ModelSpec
from mr_tl.seeding import rng

OPSET = 17

# The file keras.applications.VGG16(weights="imagenet") downloads, and the
# MD5 Keras pins for it (keras/src/applications/vgg16.py).
KERAS_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
KERAS_WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"
KERAS_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                     + KERAS_WEIGHTS_FILE)

# (block, number of convs, channels) of the real network.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FULL = {"channels": (64, 128, 256, 512, 512), "fc": 4096, "classes": 1000, "input": 224}
# 64x64 input leaves a 2x2 block5_pool, so even the tiny graph tests the flatten order.
TINY = {"channels": (4, 8, 8, 16, 16), "fc": 32, "classes": 10, "input": 64}

CONV_LAYERS = tuple("block%d_conv%d" % (b, i) for b, n, _ in BLOCKS for i in range(1, n + 1))
DENSE_LAYERS = ("fc1", "fc2", "predictions")

# Keras' preprocess_input for VGG16 ("caffe" mode): RGB -> BGR, subtract the
# ImageNet mean per channel, no scaling.  The image is squashed to 224x224 as
# Keras' load_img(target_size=..., interpolation="bilinear") does (its default
# interpolation is "nearest", which aliases).
PREPROCESSING = {
    "resize": "squash",
    "interpolation": "bilinear",
    "channel_order": "BGR",
    "scale": 1.0,
    "mean": (103.939, 116.779, 123.68),
    "std": (1.0, 1.0, 1.0),
    "layout": "NCHW",
}


def layer_list():
    """Every layer of VGG16 in order, as Keras names them."""
    names = []
    for block, n, _ in BLOCKS:
        names += ["block%d_conv%d" % (block, i) for i in range(1, n + 1)]
        names.append("block%d_pool" % block)
    return names + ["flatten", "fc1", "fc2", "predictions"]


def random_weights(seed, size=FULL):
    """Seeded random Keras-layout weights (He-normal kernels, small biases).

    He scaling keeps activations O(1) through 16 ReLU layers, so the features
    look like a real network's in magnitude (useful for int8 calibration).
    """
    weights = {}
    cin = 3
    channels = dict(zip(range(1, 6), size["channels"]))
    for block, n, _ in BLOCKS:
        for i in range(1, n + 1):
            name = "block%d_conv%d" % (block, i)
            cout = channels[block]
            g = rng(seed, "vgg16", name)
            kernel = g.standard_normal((3, 3, cin, cout), dtype=np.float32) * np.float32(np.sqrt(2.0 / (9 * cin)))
            bias = g.standard_normal(cout, dtype=np.float32) * np.float32(0.01)
            weights[name] = (kernel, bias)
            cin = cout
    side = size["input"] // 32
    fan_in = side * side * cin
    for name, n_out in (("fc1", size["fc"]), ("fc2", size["fc"]), ("predictions", size["classes"])):
        g = rng(seed, "vgg16", name)
        kernel = g.standard_normal((fan_in, n_out), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        bias = g.standard_normal(n_out, dtype=np.float32) * np.float32(0.01)
        weights[name] = (kernel, bias)
        fan_in = n_out
    return weights


def read_keras_h5(path, expected_md5=KERAS_WEIGHTS_MD5):
    """Weights from Keras' legacy-format VGG16 ``.h5`` file.

    Refuses a file whose MD5 differs from the one Keras pins (pass
    ``expected_md5=None`` only for files you generated yourself, e.g. to
    compare against Keras on random weights).  Needs ``h5py`` (the
    ``convert`` extra).
    """
    if expected_md5 is not None:
        actual = file_digest(path, "md5")
        if actual != expected_md5:
            raise ModelError(
                "%s has MD5 %s, but Keras' VGG16 ImageNet weights file has MD5 %s. Download the "
                "right file (%s) from %s, or build a random-weights graph with --random-weights."
                % (path, actual, expected_md5, KERAS_WEIGHTS_FILE, KERAS_WEIGHTS_URL))
    try:
        import h5py
    except ImportError:
        raise ModelError("reading Keras .h5 weights needs h5py: pip install 'mr_tl[convert]'") from None
    weights = {}
    with h5py.File(path, "r") as f:
        # Keras 2 legacy layout: one group per layer, its attribute
        # ``weight_names`` lists [kernel, bias] in order.
        root = f["model_weights"] if "model_weights" in f else f
        for name in CONV_LAYERS + DENSE_LAYERS:
            if name not in root:
                raise ModelError("%s has no layer %r; is it a VGG16 weights file?" % (path, name))
            group = root[name]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            if len(names) != 2:
                raise ModelError("layer %r in %s has %d weights, expected kernel and bias"
                                 % (name, path, len(names)))
            kernel, bias = (np.asarray(group[n], dtype=np.float32) for n in names)
            weights[name] = (kernel, bias)
    return weights


def _initializer(name, array):
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def vgg16_graph(weights, input_size=None, source=""):
    """The VGG16 ONNX model for Keras-layout ``weights``.

    Input ``input`` is NCHW float32 ``[N, 3, H, W]`` after preprocessing;
    output ``predictions`` holds the softmax probabilities, and every layer's
    output is a named tensor that :func:`mr_tl.model.graph.cut` can cut at.
    """
    kernel0 = weights["block1_conv1"][0]
    if kernel0.ndim != 4 or kernel0.shape[:3] != (3, 3, 3):
        raise ModelError("block1_conv1 kernel must have shape (3, 3, 3, C), found %s" % (kernel0.shape,))
    last_channels = weights["block5_conv3"][0].shape[3]
    fc1_in = weights["fc1"][0].shape[0]
    side = int(round((fc1_in / last_channels) ** 0.5))
    if side * side * last_channels != fc1_in:
        raise ModelError("fc1 has %d inputs, not a square multiple of %d channels" % (fc1_in, last_channels))
    if input_size is None:
        input_size = side * 32

    nodes, inits = [], []
    prev = "input"
    for block, n, _ in BLOCKS:
        for i in range(1, n + 1):
            name = "block%d_conv%d" % (block, i)
            kernel, bias = weights[name]
            # Keras (kh, kw, cin, cout) -> ONNX (cout, cin, kh, kw)
            inits += [_initializer(name + "/kernel", kernel.transpose(3, 2, 0, 1)),
                      _initializer(name + "/bias", bias)]
            nodes.append(helper.make_node("Conv", [prev, name + "/kernel", name + "/bias"], [name + "/conv"],
                                          name=name + "/conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [name + "/conv"], [name], name=name + "/relu"))
            prev = name
        pool = "block%d_pool" % block
        nodes.append(helper.make_node("MaxPool", [prev], [pool], name=pool, kernel_shape=[2, 2], strides=[2, 2]))
        prev = pool
    nodes.append(helper.make_node("Flatten", [prev], ["flatten"], name="flatten", axis=1))
    prev = "flatten"
    for name in DENSE_LAYERS:
        kernel, bias = weights[name]
        if name == "fc1":
            # Keras flattened (h, w, c); this graph flattens (c, h, w).
            kernel = kernel.reshape(side, side, last_channels, -1).transpose(2, 0, 1, 3).reshape(fc1_in, -1)
        inits += [_initializer(name + "/kernel", kernel), _initializer(name + "/bias", bias)]
        nodes.append(helper.make_node("Gemm", [prev, name + "/kernel", name + "/bias"], [name + "/dense"],
                                      name=name + "/dense"))
        activation = ("Softmax", {"axis": 1}) if name == "predictions" else ("Relu", {})
        nodes.append(helper.make_node(activation[0], [name + "/dense"], [name],
                                      name=name + "/" + activation[0].lower(), **activation[1]))
        prev = name

    n_classes = weights["predictions"][0].shape[1]
    graph = helper.make_graph(
        nodes, "vgg16",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", n_classes])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mr_tl", producer_version="1")
    model.ir_version = 8
    helper.set_model_props(model, {"mr_tl.layers": json.dumps(layer_list()), "mr_tl.source": source})
    onnx.checker.check_model(model)
    return model


def vgg16_spec(input_size, n_classes, source="", source_sha256=""):
    """The sidecar for an uncut VGG16 graph (output: ``predictions``)."""
    return ModelSpec(input_name="input", input_size=(input_size, input_size), output_name="predictions",
                     output_dim=n_classes, source=source, source_sha256=source_sha256, **PREPROCESSING)
