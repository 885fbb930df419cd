"""The letterbox resize policy: placement, sizes, aspect ratio, pad colour rules; the old policies unchanged."""

import dataclasses
import io
import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mr_tl.errors import ModelError
from mr_tl.images import letterbox_box, pad_colour, preprocess, resize
from mr_tl.model.spec import DEFAULT_PAD_COLOUR, ModelSpec, sidecar_path

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
BLUE = (0, 0, 255)


def make_spec(height, width, **kw):
    kw.setdefault("layout", "NHWC")  # RGB, scale 1, mean 0, std 1: the output is the pixels themselves
    return ModelSpec(input_name="input", input_size=(height, width), output_name="out", output_dim=1, **kw)


def letterbox_spec(height, width, **kw):
    return make_spec(height, width, resize="letterbox", **kw)


def encode(image, fmt="PNG", **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def solid(width, height, colour=(200, 30, 40), mode="RGB"):
    return Image.new(mode, (width, height), colour)


def bands(x, colour):
    """``(top, bottom, left, right)``: rows/columns of ``x`` (H, W, 3) at the edges that are all ``colour``."""
    is_pad = np.all(x == np.asarray(colour, x.dtype), axis=-1)
    rows, cols = is_pad.all(axis=1), is_pad.all(axis=0)

    def run(flags):
        n = 0
        for f in flags:
            if not f:
                break
            n += 1
        return n
    return run(rows), run(rows[::-1]), run(cols), run(cols[::-1])


# -- placement and sizes, by hand -------------------------------------------------------------------

@pytest.mark.parametrize("size, input_size, expected_bands", [
    # (w, h) of the image, (height, width) of the input -> padding (top, bottom, left, right)
    ((16, 8), (8, 8), (2, 2, 0, 0)),    # wide, 2:1 -> 8x4, even difference: 2 above, 2 below
    ((16, 10), (8, 8), (1, 2, 0, 0)),   # wide, 8x5: odd difference 3 -> 1 above, 2 below
    ((8, 16), (8, 8), (0, 0, 2, 2)),    # tall, 1:2 -> 4x8, 2 left, 2 right
    ((10, 16), (8, 8), (0, 0, 1, 2)),   # tall, 5x8: 1 left, 2 right
    ((12, 12), (8, 8), (0, 0, 0, 0)),   # square: no padding at all
    ((8, 8), (8, 8), (0, 0, 0, 0)),     # square, already the right size
    ((80, 8), (8, 8), (3, 4, 0, 0)),    # very wide: 8 x 0.8 -> 8x1 (never 0 rows), odd 7 -> 3 above, 4 below
    ((10, 10), (8, 12), (0, 0, 2, 2)),  # non-square input: the image fits the height, padded left and right
    ((24, 8), (8, 12), (2, 2, 0, 0)),   # ... or its width
])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_padding_placement_and_size(size, input_size, expected_bands, interpolation):
    x = preprocess(encode(solid(*size)), letterbox_spec(*input_size, pad_colour=BLUE, interpolation=interpolation))
    assert x.shape == input_size + (3,)
    assert bands(x, BLUE) == expected_bands
    top, bottom, left, right = expected_bands
    inside = x[top:input_size[0] - bottom, left:input_size[1] - right]
    assert np.all(inside == (200, 30, 40))  # a solid image stays solid: nothing of it is cropped or padded
    assert letterbox_box(size, input_size) == (left, top, input_size[1] - left - right, input_size[0] - top - bottom)


def test_the_image_part_is_pillows_resize_of_the_whole_image():
    g = np.random.default_rng(0)
    source = Image.fromarray(g.integers(0, 256, (30, 50, 3), dtype=np.uint8))  # 50 wide, 30 high
    for interpolation, resample in RESAMPLE.items():
        x = preprocess(encode(source), letterbox_spec(20, 20, interpolation=interpolation, pad_colour=BLUE))
        # 50x30 -> 20x12, 4 rows of padding above and below; every source column and row is in there
        expected = np.asarray(source.resize((20, 12), resample), dtype=np.float32)
        assert np.array_equal(x[4:16], expected)
        assert np.all(x[:4] == BLUE) and np.all(x[16:] == BLUE)


@settings(max_examples=300, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000), height=st.integers(1, 600), width=st.integers(1, 600))
def test_box_keeps_the_aspect_ratio_fits_and_is_centred(w, h, height, width):
    left, top, new_w, new_h = letterbox_box((w, h), (height, width))
    assert 1 <= new_w <= width and 1 <= new_h <= height
    assert new_w == width or new_h == height  # the longer side (relative to the input) fills it
    # the other side is the exact scaled one rounded to a whole pixel (at least 1): aspect ratio kept
    if w * height >= h * width:  # relatively wider than the input
        exact = h * width / w
        assert abs(new_h - exact) <= 0.5 or (new_h == 1 and exact < 1)
    else:
        exact = w * height / h
        assert abs(new_w - exact) <= 0.5 or (new_w == 1 and exact < 1)
    assert (left, top) == ((width - new_w) // 2, (height - new_h) // 2)  # centred, odd pixel right/bottom


@settings(max_examples=40, deadline=None)
@given(w=st.integers(8, 90), h=st.integers(8, 90), side=st.integers(8, 40))
def test_preprocess_puts_the_image_where_the_box_says(w, h, side):
    x = preprocess(encode(solid(w, h)), letterbox_spec(side, side, pad_colour=BLUE, interpolation="nearest"))
    left, top, new_w, new_h = letterbox_box((w, h), (side, side))
    inside = np.zeros((side, side), bool)
    inside[top:top + new_h, left:left + new_w] = True
    assert np.all(x[inside] == (200, 30, 40)) and np.all(x[~inside] == BLUE)


# -- pad colour rules --------------------------------------------------------------------------------

def _striped(width, height):
    """Top row red, bottom row green, left column (rows between) yellow, everything else grey 100."""
    pixels = np.full((height, width, 3), 100, np.uint8)
    pixels[:, 0] = (250, 250, 0)
    pixels[0] = (255, 0, 0)
    pixels[-1] = (0, 255, 0)
    return pixels


def test_edge_mean_is_the_mean_of_the_edges_next_to_the_padding():
    pixels = _striped(16, 8)  # wide: padding above and below, so the top and bottom rows decide
    x = preprocess(encode(Image.fromarray(pixels)), letterbox_spec(16, 16, pad_colour="edge-mean",
                                                                  interpolation="nearest"))
    # top row (255, 0, 0) and bottom row (0, 255, 0): the mean is (127.5, 127.5, 0) -> rounded half up
    assert np.all(x[:4] == (128, 128, 0)) and np.all(x[12:] == (128, 128, 0))
    # the same image on its side: padding left and right, the left and right columns decide
    tall = np.ascontiguousarray(pixels.transpose(1, 0, 2))
    x = preprocess(encode(Image.fromarray(tall)), letterbox_spec(16, 16, pad_colour="edge-mean",
                                                                 interpolation="nearest"))
    expected = np.floor(np.concatenate([tall[:, 0], tall[:, -1]]).mean(axis=0) + 0.5)
    assert np.all(x[:, :4] == expected) and np.all(x[:, 12:] == expected)


def test_mean_is_the_mean_of_the_whole_image():
    pixels = _striped(16, 8)
    x = preprocess(encode(Image.fromarray(pixels)), letterbox_spec(16, 16, pad_colour="mean", interpolation="nearest"))
    assert np.all(x[:4] == np.floor(pixels.reshape(-1, 3).mean(axis=0) + 0.5))


@pytest.mark.parametrize("rule, expected", [("white", (255, 255, 255)), ((1, 2, 3), (1, 2, 3)),
                                            ([10, 20, 30], (10, 20, 30))])
def test_fixed_pad_colours(rule, expected):
    x = preprocess(encode(Image.fromarray(_striped(16, 8))), letterbox_spec(16, 16, pad_colour=rule))
    assert np.all(x[:4] == expected) and np.all(x[12:] == expected)


def test_pad_colour_function_directly():
    image = Image.fromarray(_striped(6, 4))
    assert pad_colour(image, "white", 0) == (255, 255, 255)
    assert pad_colour(image, "edge-mean", 0) == (128, 128, 0)
    assert pad_colour(image, (9, 8, 7), 1) == (9, 8, 7)
    with pytest.raises(ValueError):
        pad_colour(image, "purple", 0)


def _stamp(mode):
    """A 40x20 drawing on a transparent background (a red disc not touching the edges), as Tux Paint's stamps."""
    rgba = np.zeros((20, 40, 4), np.uint8)
    yy, xx = np.mgrid[0:20, 0:40]
    rgba[(yy - 10) ** 2 + (xx - 20) ** 2 < 64] = (220, 20, 20, 255)
    image = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        return image.convert("LA")
    if mode == "P":
        return image.convert("RGB").quantize(4).convert("P")  # transparency set below
    return image


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
@pytest.mark.parametrize("rule", ["edge-mean", "white"])
def test_images_with_transparency_are_padded_with_white(mode, rule):
    image = _stamp(mode)
    kw = {}
    if mode == "P":  # palette index of the (black) background made transparent
        kw["transparency"] = int(np.asarray(image)[0, 0])
    data = encode(image, **kw)
    x = preprocess(data, letterbox_spec(40, 40, pad_colour=rule))
    assert np.all(x[:10] == 255) and np.all(x[30:] == 255)  # the background was composited on white, so is the pad
    assert x[20, 20, 1] < 128  # the drawing is still there


def test_default_pad_colour_and_rule_validation():
    assert letterbox_spec(8, 8).pad_colour == DEFAULT_PAD_COLOUR
    for bad in ("purple", (1, 2), (0, 0, 256), (1.5, 2, 3), (True, 0, 0), 7):
        with pytest.raises(ModelError, match="pad_colour"):
            letterbox_spec(8, 8, pad_colour=bad)


# -- EXIF rotation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation, padded", [(1, "rows"), (6, "columns"), (8, "columns"), (3, "rows")])
def test_exif_rotated_input_is_letterboxed_upright(orientation, padded):
    pixels = np.zeros((16, 32, 3), np.uint8)  # stored 32 wide, 16 high, red block in the top-left
    pixels[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    x = preprocess(encode(Image.fromarray(pixels), exif=exif), letterbox_spec(32, 32, pad_colour=BLUE,
                                                                               interpolation="nearest"))
    # displayed wide (1, 3): blue above and below; displayed tall (6, 8): blue left and right
    assert bands(x, BLUE) == ((8, 8, 0, 0) if padded == "rows" else (0, 0, 8, 8))
    red = np.argwhere((x[:, :, 0] == 255) & (x[:, :, 2] == 0))
    corner = (int(red[:, 0].mean()) > 16, int(red[:, 1].mean()) > 16)  # (bottom half?, right half?)
    assert corner == {1: (False, False), 3: (True, True), 6: (False, True), 8: (True, False)}[orientation]


# -- the other policies are unchanged, bit for bit -------------------------------------------------------

def _resize_before_letterbox(image, spec):
    """mr_tl.images.resize as it was before letterbox was added (commit 8baa385), for comparison."""
    height, width = spec.input_size
    resample = RESAMPLE[spec.interpolation]
    if spec.resize == "squash":
        if image.size != (width, height):
            image = image.resize((width, height), resample)
        return image
    side = spec.shorter_side
    w, h = image.size
    if w <= h:
        new_w, new_h = side, max(side, int(h * side / w + 0.5))
    else:
        new_w, new_h = max(side, int(w * side / h + 0.5)), side
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


@pytest.mark.parametrize("policy, shorter", [("squash", 0), ("center-crop", 0), ("center-crop", 40)])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_squash_and_center_crop_are_bit_identical_to_before(policy, shorter, interpolation):
    g = np.random.default_rng(7)
    spec = make_spec(32, 32, resize=policy, resize_shorter=shorter, interpolation=interpolation)
    for w, h in [(32, 32), (64, 48), (48, 64), (33, 100), (101, 35), (200, 201), (40, 40), (17, 300)]:
        image = Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert resize(image, spec).tobytes() == _resize_before_letterbox(image, spec).tobytes(), (w, h)


def test_sidecars_of_the_other_policies_are_written_as_before(tmp_path):
    for policy in ("squash", "center-crop"):
        spec = make_spec(8, 8, resize=policy)
        obj = json.loads(spec.to_json())
        assert "pad_colour" not in obj  # an older mr_tl reads it; the file is the same as before
        assert ModelSpec.from_dict(obj) == spec
    spec = make_spec(8, 8, resize="letterbox", pad_colour=[1, 2, 3])
    path = str(tmp_path / "s.json")
    spec.save(path)
    with open(path) as f:
        assert json.load(f)["pad_colour"] == [1, 2, 3]
    assert ModelSpec.load(path) == spec and spec.pad_colour == (1, 2, 3)


def test_the_real_lite0_sidecar_still_loads_and_round_trips():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models", "efficientnet-lite0-features.json")
    if not os.path.exists(path):
        pytest.skip("models/ not set up (scripts/setup)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    spec = ModelSpec.load(path)
    # center-crop if models/ was set up before letterbox became Lite0's default (no pad_colour in the file),
    # letterbox edge-mean since; either reads back and is written again byte for byte
    assert (spec.resize, ("pad_colour" in text)) in (("center-crop", False), ("letterbox", True))
    assert spec.to_json() == text


# -- choosing the policy: the cut command writes it, every consumer of the sidecar follows -------------------

def test_cut_with_resize_letterbox(tiny_vgg16, tmp_path, call_main):
    from mr_tl.model.__main__ import main

    out = str(tmp_path / "lb.onnx")
    code, _, err = call_main(main, "cut", tiny_vgg16, "--at", "fc2", "--resize", "letterbox", "--pad-colour",
                             "white", "-o", out)
    assert code == 0, err
    spec = ModelSpec.load(sidecar_path(out))
    assert (spec.resize, spec.pad_colour) == ("letterbox", "white")
    # the same -o again: only with --overwrite (which replaces the graph and its sidecar)
    code, _, err = call_main(main, "cut", tiny_vgg16, "--at", "fc2", "--resize", "letterbox", "-o", out)
    assert code == 2 and "already exists" in err and ModelSpec.load(sidecar_path(out)).pad_colour == "white"
    code, _, _ = call_main(main, "cut", tiny_vgg16, "--at", "fc2", "--resize", "letterbox", "-o", out, "--overwrite")
    assert code == 0 and ModelSpec.load(sidecar_path(out)).pad_colour == DEFAULT_PAD_COLOUR
    code, _, _ = call_main(main, "cut", tiny_vgg16, "--at", "fc2", "--resize", "letterbox", "--pad-colour",
                           "10,20,30", "-o", out, "--overwrite")
    assert code == 0 and ModelSpec.load(sidecar_path(out)).pad_colour == (10, 20, 30)
    # --pad-colour without letterbox is refused, as are bad colours
    code, _, err = call_main(main, "cut", tiny_vgg16, "--at", "fc2", "--pad-colour", "white", "-o", out)
    assert code == 2 and "letterbox" in err
    code, _, err = call_main(main, "cut", tiny_vgg16, "--at", "fc2", "--resize", "letterbox", "--pad-colour",
                             "1,2", "-o", out)
    assert code == 2 and "R,G,B" in err


def test_cut_resize_center_crop_gives_back_the_sidecar_of_before_letterbox(tiny_vgg16, tmp_path, call_main):
    """Lite0's sidecar letterboxes by default and keeps resize_shorter; `cut --resize center-crop` of it writes
    what cutting the pre-issue-15 (center-crop) sidecar writes, byte for byte."""
    from mr_tl.model.__main__ import main
    from mr_tl.model.efficientnet_lite import LITE0_PREPROCESSING, LITE0_TF_PREPROCESSING

    spec = ModelSpec.load(sidecar_path(tiny_vgg16))
    written = {}
    for name, pre, extra in (("old", LITE0_TF_PREPROCESSING, []), ("new", LITE0_PREPROCESSING, []),
                             ("back", LITE0_PREPROCESSING, ["--resize", "center-crop"])):
        source = str(tmp_path / ("%s-src.onnx" % name))
        shutil.copy(tiny_vgg16, source)
        fields = {k: v for k, v in pre.items() if k not in ("input_size", "layout")}   # the tiny graph's own
        dataclasses.replace(spec, **fields).save(sidecar_path(source))
        out = str(tmp_path / ("%s.onnx" % name))
        code, _, err = call_main(main, "cut", source, "--at", "fc2", *extra, "-o", out)
        assert code == 0, err
        with open(sidecar_path(out), encoding="utf-8") as f:
            written[name] = json.load(f)
    assert written["new"]["resize"] == "letterbox" and written["new"]["pad_colour"] == "edge-mean"
    assert written["old"]["resize"] == "center-crop" and "pad_colour" not in written["old"]
    assert written["back"] == written["old"]


def test_export_keeps_the_letterbox_preprocessing(tiny_vgg16_fc2, tmp_path):
    import shutil

    from mr_tl.export import build_classifier
    from mr_tl.head import SoftmaxHead

    trunk = str(tmp_path / "trunk.onnx")
    shutil.copy(tiny_vgg16_fc2, trunk)
    spec = ModelSpec.load(sidecar_path(tiny_vgg16_fc2))
    dataclasses.replace(spec, resize="letterbox", pad_colour="mean").save(sidecar_path(trunk))
    head = SoftmaxHead.xavier(spec.output_dim, 3, seed=0)
    _, classifier_spec = build_classifier(trunk, head, ["a", "b", "c"])
    assert (classifier_spec.resize, classifier_spec.pad_colour) == ("letterbox", "mean")
