"""Dev check, not run in CI: mr_tl's ONNX VGG16 against Keras' own VGG16.

1. Writes seeded random full-size VGG16 weights (``random_weights(0, FULL)``,
   He-normal) with ``tests/keras_h5.write_keras_legacy_h5`` in the layout of
   Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``, and shows that Keras
   loads that file through the very path the official file takes
   (``keras.applications.VGG16(weights=path)`` -> ``model.load_weights`` ->
   ``legacy_h5_format.load_weights_from_hdf5_group``, by layer order) and also
   by name (``load_weights(path, by_name=True)``): every variable equals the
   array written.  It also writes a file with Keras' own legacy writer
   (``legacy_h5_format.save_weights_to_hdf5_group``) and checks that mr_tl's
   reader returns the same arrays from it.
2. Reads our file with ``mr_tl.model.vgg16.read_keras_h5`` and compares the
   ONNX graph of ``vgg16_graph`` (onnxruntime, NCHW) with the Keras model
   (NHWC) on the same preprocessed random images: ``block5_pool``, ``fc1``,
   ``fc2`` and ``predictions``.
3. Rebuilds the graph with fc1's kernel rows NOT permuted (Keras' (h, w, c)
   rows fed to a (c, h, w) flatten) and shows fc1/fc2/predictions then differ.
4. Compares Keras' ``preprocess_input`` with ``mr_tl.images.to_input`` (VGG16
   spec) on the same resized uint8 photo, and, for information, Keras'
   ``load_img(target_size=...)`` resizing with mr_tl's ``decode``.

Needs a throwaway venv (not the project's) with tensorflow-cpu (Keras 3),
h5py, onnx, onnxruntime, numpy and pillow.  Run from the repository root::

    python scripts/dev/verify_vgg16_keras.py [--workdir /tmp/vgg16-keras] [--batch 4]

Exits non-zero when a comparison is outside its tolerance.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402
from keras_h5 import write_keras_legacy_h5  # noqa: E402

from mr_tl import images  # noqa: E402
from mr_tl.model import vgg16 as mv  # noqa: E402

COMPARED = ("block5_pool", "fc1", "fc2", "predictions")
# float32 through 16 layers: differences are summation-order noise, ~1e-6 of the scale.
REL_TOL = 1e-4
# without the permutation the error must be a sizeable fraction of the scale
TRAP_MIN_REL = 0.05
INPUT_SCALE = 64.0


def diffs(ours, ref):
    """(max abs diff, max abs diff / max |ref|, max elementwise rel diff where |ref| > 1e-3 max |ref|)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    d = np.abs(ours - ref)
    scale = np.abs(ref).max()
    big = np.abs(ref) > 1e-3 * scale
    elementwise = (d[big] / np.abs(ref[big])).max() if big.any() else 0.0
    return d.max(), d.max() / scale, elementwise


def onnx_outputs(model, names, x_nchw):
    """Run ``model`` with extra graph outputs ``names``; returns ``{name: array}``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(list(names), {"input": x_nchw})
    out = dict(zip(names, values))
    # block5_pool is NCHW in the graph; Keras' is NHWC
    out["block5_pool"] = out["block5_pool"].transpose(0, 2, 3, 1)
    return out


def unpermuted(model, keras_fc1_kernel):
    """The graph a naive converter would write: Keras' fc1 rows used as they are."""
    naive = onnx.ModelProto.FromString(model.SerializeToString())
    for i, init in enumerate(naive.graph.initializer):
        if init.name == "fc1/kernel":
            naive.graph.initializer[i].CopyFrom(numpy_helper.from_array(keras_fc1_kernel, "fc1/kernel"))
            return naive
    raise AssertionError("no fc1/kernel initializer")


def check_keras_loads(path, written):
    """Keras loads ``path`` (order-based, as for the official file, and by name); returns the model."""
    t0 = time.time()
    model = keras.applications.VGG16(weights=path)  # -> model.load_weights(path)
    by_order_s = time.time() - t0
    by_name = keras.applications.VGG16(weights=None)
    by_name.load_weights(path, by_name=True)
    for m, how in ((model, "by order"), (by_name, "by name")):
        n = 0
        for layer in m.layers:
            if not layer.weights:
                continue
            kernel, bias = written[layer.name]
            got = [np.asarray(w) for w in layer.get_weights()]
            assert len(got) == 2 and np.array_equal(got[0], kernel) and np.array_equal(got[1], bias), \
                (how, layer.name)
            n += 1
        print("  Keras loaded %s %s: all %d layers' kernels and biases equal the written arrays"
              % (os.path.basename(path), how, n))
    print("  (keras.applications.VGG16(weights=path) took %.1f s)" % by_order_s)
    return model


def _str(name):
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def check_keras_writer(model, workdir, written):
    """mr_tl reads the file Keras' own legacy writer makes, and it has our file's structure."""
    path = os.path.join(workdir, "keras_written_legacy.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    read = mv.read_keras_h5(path, expected_md5=None)
    for name, (kernel, bias) in written.items():
        assert np.array_equal(read[name][0], kernel) and np.array_equal(read[name][1], bias), name
    with h5py.File(path, "r") as f:
        root_attrs = sorted(f.attrs)
        groups = sorted(f)
        example = [_str(n) for n in f["block1_conv1"].attrs["weight_names"]]
        layer_names = [_str(n) for n in f.attrs["layer_names"]]
    print("  Keras' own legacy writer (save_weights_to_hdf5_group): root attrs %s, %d groups, "
          "block1_conv1 weight_names %s" % (root_attrs, len(groups), example))
    print("    its layer_names: %s ... %s" % (layer_names[:3], layer_names[-3:]))
    print("    mr_tl's read_keras_h5 returns the same arrays from it")
    os.unlink(path)
    # a whole-model legacy .h5 (model.save("x.h5")) keeps the weights under /model_weights
    path = os.path.join(workdir, "keras_model_legacy.h5")
    model.save(path)
    read = mv.read_keras_h5(path, expected_md5=None)
    for name, (kernel, bias) in written.items():
        assert np.array_equal(read[name][0], kernel) and np.array_equal(read[name][1], bias), name
    print("  Keras' whole-model legacy file (model.save('x.h5'), weights under /model_weights): "
          "read_keras_h5 returns the same arrays from it")
    os.unlink(path)


def compare_forward(keras_model, graph, x_nhwc, label):
    extractor = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in COMPARED])
    t0 = time.time()
    k_out = dict(zip(COMPARED, (np.asarray(v) for v in extractor.predict(x_nhwc, verbose=0))))
    k_s = time.time() - t0
    t0 = time.time()
    o_out = onnx_outputs(graph, COMPARED, np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    o_s = time.time() - t0
    print("  %s (Keras %.1f s, onnxruntime %.1f s; batch %d)" % (label, k_s, o_s, len(x_nhwc)))
    print("    %-12s %-14s %12s %12s %14s %14s" % ("tensor", "shape", "max |ref|", "max abs diff",
                                                   "max diff/scale", "max elem rel"))
    result = {}
    for name in COMPARED:
        a, r, e = diffs(o_out[name], k_out[name])
        result[name] = (a, r, e)
        print("    %-12s %-14s %12.4g %12.3e %14.3e %14.3e"
              % (name, "x".join(map(str, k_out[name].shape)), np.abs(k_out[name]).max(), a, r, e))
    print("    Keras' largest probability per image: %s" % np.round(k_out["predictions"].max(axis=1), 4).tolist())
    top_k = np.argmax(k_out["predictions"], axis=1)
    top_o = np.argmax(o_out["predictions"], axis=1)
    print("    top-1 class, Keras %s, ONNX %s" % (top_k.tolist(), top_o.tolist()))
    return result, bool((top_k == top_o).all())


def compare_preprocessing(size):
    spec = mv.vgg16_spec(size, 1000)
    photo = os.path.join(ROOT, "tests", "data", "chelsea_cat.jpg")
    with open(photo, "rb") as f:
        resized = images.decode(f.read(), spec)  # mr_tl's resize: squash, bilinear
    rgb = np.asarray(resized, dtype=np.uint8)
    ours = images.to_input(resized, spec)  # (3, H, W) BGR - mean
    keras_np = keras.applications.vgg16.preprocess_input(rgb.astype(np.float32)[None].copy())[0]
    keras_tensor = np.asarray(keras.applications.vgg16.preprocess_input(tf.constant(rgb[None], tf.float32)))[0]
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    ours_noise = images.to_input(Image.fromarray(noise, "RGB"), spec)
    keras_noise = keras.applications.vgg16.preprocess_input(noise.astype(np.float32)[None].copy())[0]
    d_photo = np.abs(ours.transpose(1, 2, 0) - keras_np).max()
    d_tensor = np.abs(ours.transpose(1, 2, 0) - keras_tensor).max()
    d_noise = np.abs(ours_noise.transpose(1, 2, 0) - keras_noise).max()
    print("  preprocess_input (numpy) vs mr_tl to_input, photo %dx%d: max abs diff %g (bit-identical: %s)"
          % (size, size, d_photo, np.array_equal(ours.transpose(1, 2, 0), keras_np)))
    print("  preprocess_input (tf tensor) vs mr_tl to_input, photo: max abs diff %g" % d_tensor)
    print("  preprocess_input (numpy) vs mr_tl to_input, uniform-noise image: max abs diff %g" % d_noise)
    # For information: the resize.  Keras' load_img defaults to nearest-neighbour; mr_tl squashes bilinear.
    for interpolation in ("nearest", "bilinear"):
        k_img = np.asarray(keras.utils.load_img(photo, target_size=(size, size), interpolation=interpolation))
        d = np.abs(k_img.astype(np.int16) - rgb.astype(np.int16))
        print("  keras.utils.load_img(target_size, interpolation=%r) vs mr_tl decode: "
              "max abs pixel diff %d, mean %.2f" % (interpolation, d.max(), d.mean()))
    # mr_tl lets libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale (Image.draft) before resizing;
    # Keras decodes at full size.  Measure the effect on a large JPEG made from the photo.
    big = os.path.join(tempfile.mkdtemp(), "big.jpg")
    Image.open(photo).convert("RGB").resize((1804, 1200), Image.BICUBIC).save(big, quality=95)
    with open(big, "rb") as f:
        ours_big = np.asarray(images.decode(f.read(), spec), dtype=np.int16)
    k_big = np.asarray(keras.utils.load_img(big, target_size=(size, size), interpolation="bilinear"), np.int16)
    d = np.abs(ours_big - k_big)
    print("  1804x1200 JPEG: load_img(interpolation='bilinear') vs mr_tl decode (JPEG draft): "
          "max abs pixel diff %d, mean %.2f" % (d.max(), d.mean()))
    os.unlink(big)
    return max(d_photo, d_noise, d_tensor) == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/vgg16-keras")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    print("date %s" % datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    print("python %s, tensorflow %s, keras %s (backend %s), h5py %s, onnx %s, onnxruntime %s, numpy %s"
          % (platform.python_version(), tf.__version__, keras.__version__, keras.backend.backend(),
             h5py.__version__, onnx.__version__, ort.__version__, np.__version__))
    ok = True

    print("\n1. the legacy .h5 file")
    weights = mv.random_weights(args.seed, mv.FULL)
    # He-normal keeps the input's scale through the ReLU layers; caffe-preprocessed pixels are
    # +-128, which would make the logits ~1e3 and the softmax one-hot (nothing left to compare).
    # Scale the first kernel so the activations are O(1) and the softmax is not saturated.
    kernel, bias = weights["block1_conv1"]
    weights["block1_conv1"] = (kernel * np.float32(1.0 / INPUT_SCALE), bias)
    path = os.path.join(args.workdir, "vgg16_random_legacy.h5")
    t0 = time.time()
    write_keras_legacy_h5(path, weights)
    print("  wrote %s (%.0f MB, %.1f s) with tests/keras_h5.write_keras_legacy_h5, weights random_weights(%d, FULL),"
          " block1_conv1 kernel / %g" % (path, os.path.getsize(path) / 1e6, time.time() - t0, args.seed, INPUT_SCALE))
    keras_model = check_keras_loads(path, weights)
    check_keras_writer(keras_model, args.workdir, weights)

    print("\n2. forward pass: ONNX (mr_tl) vs Keras")
    read = mv.read_keras_h5(path, expected_md5=None)
    assert all(np.array_equal(read[n][0], weights[n][0]) and np.array_equal(read[n][1], weights[n][1])
               for n in weights)
    print("  read_keras_h5 returns exactly the written arrays")
    graph = mv.vgg16_graph(read)
    rng = np.random.default_rng(args.seed + 1)
    raw = rng.integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8)
    x = keras.applications.vgg16.preprocess_input(raw.astype(np.float32))  # NHWC, caffe mode
    good, same_top1 = compare_forward(keras_model, graph, x, "with the fc1 row permutation (vgg16_graph)")
    for name, (_, rel, _) in good.items():
        if rel > REL_TOL:
            print("  FAIL: %s differs by %.3e of its scale (tolerance %g)" % (name, rel, REL_TOL))
            ok = False
    ok = ok and same_top1

    print("\n3. the trap: fc1's Keras (h, w, c) rows used unpermuted")
    naive = unpermuted(graph, weights["fc1"][0])
    bad, _ = compare_forward(keras_model, naive, x, "WITHOUT the permutation")
    for name in ("fc1", "fc2", "predictions"):
        if bad[name][1] < TRAP_MIN_REL:
            print("  FAIL: without the permutation %s differs by only %.3e of its scale" % (name, bad[name][1]))
            ok = False
    if bad["block5_pool"][0] != good["block5_pool"][0]:
        print("  FAIL: block5_pool should not depend on fc1")
        ok = False

    print("\n4. preprocessing")
    ok = compare_preprocessing(224) and ok

    print("\n%s" % ("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED"))
    os.unlink(path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
