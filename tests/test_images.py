"""mr_tl.images: decoding, the odd-but-valid image modes, rejections, and normalisation by hand."""

import io
import os
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import mr_tl.images as images
from mr_tl.errors import ModelError
from mr_tl.images import REJECT_REASONS, ImageRejected, preprocess, probe, read_file, to_input
from mr_tl.model.spec import ModelSpec


def make_spec(height, width, **kw):
    return ModelSpec(input_name="input", input_size=(height, width), output_name="out", output_dim=1, **kw)


RAW_NHWC = dict(layout="NHWC")  # RGB, scale 1, mean 0, std 1: the output is the pixels themselves


def encode(image, fmt="PNG", **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def known_pixels(height=8, width=10):
    """R = 16*row + col, G = 255 - R, B = 7*R mod 256: every pixel and channel tells where it came from."""
    r = np.array([[16 * h + w for w in range(width)] for h in range(height)])
    return np.stack([r, 255 - r, (7 * r) % 256], axis=-1).astype(np.uint8)


def rejected(data, **kw):
    with pytest.raises(ImageRejected) as info:
        preprocess(data, make_spec(32, 32), **kw)
    assert info.value.reason in REJECT_REASONS
    return info.value


# -- normalisation, value by value, against a hand computation -------------------------------------

IMAGENET = dict(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), layout="NCHW")
CAFFE_NHWC = dict(channel_order="BGR", mean=(103.939, 116.779, 123.68), layout="NHWC")


def test_rgb_scale_mean_std_nchw_by_hand():
    pixels = known_pixels()
    x = preprocess(encode(Image.fromarray(pixels)), make_spec(8, 10, **IMAGENET))
    assert x.shape == (3, 8, 10) and x.dtype == np.float32 and x.flags.c_contiguous
    # pixel (row 2, col 3) is R=35, G=220, B=245:
    # (35/255 - 0.485)/0.229, (220/255 - 0.456)/0.224, (245/255 - 0.406)/0.225
    assert x[:, 2, 3] == pytest.approx([-1.5185375460, 1.8158263305, 2.4657080610], abs=1e-5)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c in range(3):
        for h in range(8):
            for w in range(10):
                expected = (int(pixels[h, w, c]) / 255 - mean[c]) / std[c]
                assert x[c, h, w] == pytest.approx(expected, abs=2e-6), (c, h, w)


def test_bgr_caffe_mean_nhwc_by_hand():
    pixels = known_pixels()
    x = preprocess(encode(Image.fromarray(pixels)), make_spec(8, 10, **CAFFE_NHWC))
    assert x.shape == (8, 10, 3) and x.dtype == np.float32
    # pixel (2, 3): B - 103.939, G - 116.779, R - 123.68 (channel 0 is blue)
    assert x[2, 3] == pytest.approx([245 - 103.939, 220 - 116.779, 35 - 123.68], abs=1e-4)
    for h in range(8):
        for w in range(10):
            r, g, b = (int(v) for v in pixels[h, w])
            assert x[h, w].tolist() == pytest.approx([b - 103.939, g - 116.779, r - 123.68], abs=1e-4)


def test_bgr_nchw_and_rgb_nhwc_are_transposes_of_each_other():
    data = encode(Image.fromarray(known_pixels()))
    nchw = preprocess(data, make_spec(8, 10, channel_order="BGR"))
    nhwc = preprocess(data, make_spec(8, 10, layout="NHWC"))
    assert np.array_equal(nchw, nhwc[:, :, ::-1].transpose(2, 0, 1))
    assert np.array_equal(nhwc, known_pixels().astype(np.float32))


# -- resize policies -----------------------------------------------------------------------------

@pytest.mark.parametrize("height, width, top, left", [(8, 12, 0, 2), (12, 8, 2, 0), (8, 11, 0, 1), (8, 8, 0, 0)])
def test_center_crop_without_resize_is_a_pure_crop(height, width, top, left):
    pixels = known_pixels(height, width)
    x = preprocess(encode(Image.fromarray(pixels)), make_spec(8, 8, resize="center-crop", **RAW_NHWC))
    # shorter side already 8: no resampling at all, the central 8x8 block, offsets computed by hand
    assert np.array_equal(x, pixels[top:top + 8, left:left + 8].astype(np.float32))


@pytest.mark.parametrize("interpolation, resample", [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC),
                                                     ("nearest", Image.NEAREST)])
def test_center_crop_with_resize(interpolation, resample):
    g = np.random.default_rng(0)
    source = Image.fromarray(g.integers(0, 256, (20, 40, 3), dtype=np.uint8))
    spec = make_spec(8, 8, resize="center-crop", resize_shorter=10, interpolation=interpolation, **RAW_NHWC)
    x = preprocess(encode(source), spec)
    # shorter side 20 -> 10, so 40 -> 20; the 8x8 centre starts at row (10-8)//2 = 1, column (20-8)//2 = 6
    expected = np.asarray(source.resize((20, 10), resample).crop((6, 1, 14, 9)), dtype=np.float32)
    assert np.array_equal(x, expected)


@pytest.mark.parametrize("interpolation, resample", [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC),
                                                     ("nearest", Image.NEAREST)])
def test_squash_matches_pillow_resize(interpolation, resample):
    g = np.random.default_rng(1)
    source = Image.fromarray(g.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    x = preprocess(encode(source), make_spec(8, 12, interpolation=interpolation, **CAFFE_NHWC))
    resized = np.asarray(source.resize((12, 8), resample), dtype=np.float32)  # aspect ratio not kept
    expected = resized[:, :, ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)
    assert x.shape == (8, 12, 3)
    assert np.array_equal(x, expected)


def test_squash_leaves_an_image_of_the_right_size_alone():
    pixels = known_pixels(8, 12)
    x = preprocess(encode(Image.fromarray(pixels)), make_spec(8, 12, **RAW_NHWC))
    assert np.array_equal(x, pixels.astype(np.float32))


def test_center_crop_non_square_input_size():
    try:
        spec = make_spec(8, 12, resize="center-crop")
    except ModelError:
        return  # refusing such a spec up front would be a fix as well
    x = preprocess(encode(Image.fromarray(known_pixels(16, 16))), spec)
    assert x.shape == (3, 8, 12)


# -- odd but valid images --------------------------------------------------------------------------

def _block_image(height, width):
    """Black, with a red 8x8 block in the top-left corner."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:8, :8] = (255, 0, 0)
    return Image.fromarray(pixels)


def _red_block_corner(x):
    """(row, col) block index of the red block in an NHWC uint8-valued image made of 8x8 blocks."""
    red = (x[:, :, 0] > 128) & (x[:, :, 1] < 100) & (x[:, :, 2] < 100)
    rows, cols = np.nonzero(red)
    assert red.sum() > 40, "no red block"
    return int(rows.mean()) // 8, int(cols.mean()) // 8


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation, shape, block", [
    (1, (16, 24), (0, 0)),   # as stored
    (3, (16, 24), (1, 2)),   # rotated 180: top-left -> bottom-right
    (6, (24, 16), (0, 1)),   # rotate 90 clockwise to view: top-left -> top-right
    (8, (24, 16), (2, 0)),   # rotate 90 counter-clockwise to view: top-left -> bottom-left
    (2, (16, 24), (0, 2)),   # mirrored
])
def test_exif_orientation_comes_out_upright(fmt, orientation, shape, block):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_block_image(16, 24), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == orientation
    # the spec asks for the displayed size, so an upright image needs no resize at all
    x = preprocess(data, make_spec(*shape, **RAW_NHWC))
    assert x.shape == shape + (3,)
    assert _red_block_corner(x) == block


def test_cmyk_jpeg_is_converted():
    yy, xx = np.mgrid[0:32, 0:32]
    pixels = np.stack([xx * 8, yy * 8, np.full_like(xx, 100)], -1).astype(np.uint8)
    data = encode(Image.fromarray(pixels).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    x = preprocess(data, make_spec(32, 32, **RAW_NHWC))
    assert np.abs(x - pixels).max() <= 8  # not inverted, not garbage


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    x = preprocess(encode(Image.fromarray(gray, "L")), make_spec(8, 8, **RAW_NHWC))
    for c in range(3):
        assert np.array_equal(x[:, :, c], gray.astype(np.float32))


def test_one_bit_image():
    bits = Image.fromarray(np.eye(8, dtype=bool))
    x = preprocess(encode(bits), make_spec(8, 8, **RAW_NHWC))
    assert np.array_equal(x[:, :, 1], np.eye(8, dtype=np.float32) * 255)


def test_16_bit_grayscale_png_uses_the_full_range():
    values = np.array([[0, 32768, 65535, 1000, 257, 65280, 128, 40000]] * 8, dtype=np.uint16)
    data = encode(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I")
    x = preprocess(data, make_spec(8, 8, **RAW_NHWC))
    # v * 255 / 65535 rounded: 65535 -> 255 (not clipped: a 16-bit photo must not turn white)
    assert x[0, :, 0].tolist() == [0, 128, 255, 4, 1, 254, 0, 156]
    assert np.array_equal(x[:, :, 0], x[:, :, 2])


def test_palette_png_with_transparency_is_white_where_transparent():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    image.putpixel((0, 0), 1)
    image.putpixel((1, 0), 2)
    data = encode(image, transparency=0)  # index 0 (black) is transparent
    x = preprocess(data, make_spec(8, 8, **RAW_NHWC))
    assert x[0, 0].tolist() == [255, 0, 0]
    assert x[0, 1].tolist() == [0, 0, 255]
    assert x[0, 2].tolist() == [255, 255, 255]  # not black
    assert (x[1:] == 255).all()


def test_palette_png_without_transparency():
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    x = preprocess(encode(image), make_spec(8, 8, **RAW_NHWC))
    assert (x == np.array([10, 20, 30], np.float32)).all()


@pytest.mark.parametrize("alpha, expected", [(255, [200, 100, 50]), (0, [255, 255, 255]),
                                             # 200*a + 255*(1-a) with a = 128/255, rounded by Pillow
                                             (128, [227, 177, 152])])
def test_rgba_is_composited_on_white(alpha, expected):
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[...] = (200, 100, 50, alpha)
    x = preprocess(encode(Image.fromarray(pixels, "RGBA")), make_spec(8, 8, **RAW_NHWC))
    assert x[3, 3].tolist() == pytest.approx(expected, abs=1)
    assert (x == x[0, 0]).all()


def test_gray_with_alpha_is_composited_on_white():
    pixels = np.zeros((8, 8, 2), np.uint8)
    pixels[:, :4] = (0, 255)   # opaque black
    pixels[:, 4:] = (0, 0)     # transparent black
    x = preprocess(encode(Image.fromarray(pixels, "LA")), make_spec(8, 8, **RAW_NHWC))
    assert (x[:, :4] == 0).all() and (x[:, 4:] == 255).all()


# -- rejections ------------------------------------------------------------------------------------

def _jpeg(width=64, height=48):
    g = np.random.default_rng(2)
    return encode(Image.fromarray(g.integers(0, 256, (height, width, 3), dtype=np.uint8)), "JPEG", quality=90)


@pytest.mark.parametrize("width, height", [(1, 1), (7, 100), (100, 7)])
def test_too_small(width, height):
    e = rejected(encode(Image.new("RGB", (width, height))))
    assert e.reason == "too-small"
    assert "%dx%d" % (width, height) in e.detail


def test_min_side_is_inclusive_and_configurable():
    data = encode(Image.new("RGB", (8, 8)))
    assert preprocess(data, make_spec(8, 8)).shape == (3, 8, 8)
    assert rejected(data, min_side=9).reason == "too-small"
    assert preprocess(encode(Image.new("RGB", (1, 1))), make_spec(8, 8), min_side=1).shape == (3, 8, 8)


def test_empty_file():
    e = rejected(b"")
    assert (e.reason, e.detail) == ("empty-file", "0 bytes")
    assert str(e) == "empty-file: 0 bytes"


@pytest.mark.parametrize("data", [b"hello, this is not an image\n", b"\x00" * 100, b"%PDF-1.4\n",
                                  "ünïcödé".encode("utf-8")])
def test_not_an_image(data):
    e = rejected(data)
    assert e.reason == "not-an-image"
    assert repr(data[:8]) in e.detail


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.1])
def test_truncated_jpeg_is_corrupt(keep):
    data = _jpeg()
    e = rejected(data[:int(len(data) * keep)])
    assert e.reason == "corrupt"
    assert e.detail  # says what went wrong


def test_truncated_jpeg_of_exactly_the_input_size_is_corrupt():
    # no resize happens: the decode must still be forced inside the checks
    data = _jpeg(32, 32)
    assert rejected(data[:len(data) // 2]).reason == "corrupt"


def test_truncated_png_is_corrupt():
    g = np.random.default_rng(3)
    data = encode(Image.fromarray(g.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
    assert rejected(data[:len(data) // 2]).reason == "corrupt"


def png_claiming(width, height):
    """A small valid 8x8 PNG whose IHDR (CRC fixed up) claims ``width`` x ``height`` pixels."""
    small = encode(Image.new("RGB", (8, 8)))
    assert small[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + small[24:29]
    return small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]


def test_decompression_bomb_is_rejected_from_the_header():
    data = png_claiming(20000, 20000)
    assert len(data) < 200
    assert Image.open(io.BytesIO(png_claiming(100, 50))).size == (100, 50)  # the crafting works
    e = rejected(data)
    # the pixel data is only 8x8: decoding it would say "corrupt", so the header decided
    assert e.reason == "too-large"
    with pytest.raises(ImageRejected, match="too-large"):
        probe(data)


def test_max_pixels_is_our_own_guard():
    data = png_claiming(3000, 3000)  # 9 MP: far below Pillow's own limits
    assert probe(data) == ("PNG", 3000, 3000)
    e = rejected(data, max_pixels=1_000_000)
    assert e.reason == "too-large"
    assert e.detail == "3000x3000 is more than 1000000 pixels"


def test_max_pixels_above_pillows_warning_limit():
    assert probe(png_claiming(9000, 10000)) == ("PNG", 9000, 10000)  # 90 MP < MAX_PIXELS


def test_probe_reads_only_the_header():
    assert probe(_jpeg(64, 48)) == ("JPEG", 64, 48)
    data = _jpeg()
    assert probe(data[:len(data) // 2]) == ("JPEG", 64, 48)  # truncated pixel data: the header is enough
    with pytest.raises(ImageRejected, match="not-an-image"):
        probe(b"text")


def test_read_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x00\x01")
    assert read_file(str(path)) == b"\x00\x01"
    with pytest.raises(ImageRejected) as info:
        read_file(str(tmp_path / "missing.jpg"))
    assert info.value.reason == "unreadable"
    with pytest.raises(ImageRejected) as info:
        read_file(str(tmp_path))  # a folder is never opened for reading (as a FIFO or a device)
    assert (info.value.reason, info.value.detail) == ("not-a-regular-file", "a folder, never opened for reading")


# -- JPEG draft mode --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_jpeg():
    g = np.random.default_rng(4)
    small = Image.fromarray(g.integers(0, 256, (150, 200, 3), dtype=np.uint8))
    return encode(small.resize((2000, 1500), Image.BILINEAR), "JPEG", quality=90)


def test_jpeg_draft_decodes_at_reduced_scale(big_jpeg, monkeypatch):
    spec = make_spec(32, 32, **RAW_NHWC)
    seen = []
    real_resize = images.resize

    def spy(image, spec):
        seen.append(image.size)
        return real_resize(image, spec)

    monkeypatch.setattr(images, "resize", spy)
    fast = preprocess(big_jpeg, spec)
    # libjpeg decoded at 1/8 scale, still at least 32x32: 2000x1500 -> 250x188
    assert seen == [(250, 188)]
    full = to_input(real_resize(Image.open(io.BytesIO(big_jpeg)).convert("RGB"), spec), spec)
    diff = np.abs(fast - full)
    assert diff.mean() < 2.0 and diff.max() < 32


def test_jpeg_draft_never_goes_below_the_input_size(big_jpeg, monkeypatch):
    seen = []
    real_resize = images.resize
    monkeypatch.setattr(images, "resize", lambda image, spec: seen.append(image.size) or real_resize(image, spec))
    preprocess(big_jpeg, make_spec(224, 224))
    preprocess(big_jpeg, make_spec(100, 300, resize="center-crop", resize_shorter=300))
    assert seen[0] == (500, 375) and seen[1] == (500, 375)  # 1/4 scale: 1/8 would be smaller than asked


# -- properties ----------------------------------------------------------------------------------------

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"GIF89a", b"GIF87a", b"BM",
         b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P6\n", b"\x00\x00\x01\x00"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MAGIC), st.binary(max_size=600))
def test_property_random_bytes_only_ever_rejected(magic, tail):
    try:
        x = preprocess(magic + tail, make_spec(16, 16), min_side=1)
    except ImageRejected as e:
        assert e.reason in REJECT_REASONS
    else:
        assert x.shape == (3, 16, 16) and x.dtype == np.float32


def _seed_images():
    g = np.random.default_rng(5)
    rgb = Image.fromarray(g.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    return [encode(rgb, "PNG"), encode(rgb, "JPEG"), encode(rgb, "GIF"), encode(rgb, "BMP"), encode(rgb, "WEBP"),
            encode(rgb.convert("P"), "PNG", transparency=3), encode(rgb.convert("LA"), "PNG")]


SEEDS = _seed_images()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                        max_size=6), st.floats(0.05, 1))
def test_property_damaged_images_only_ever_rejected(seed, changes, keep):
    data = bytearray(seed)
    for where, value in changes:
        data[int(where * len(data))] = value
    data = bytes(data[:max(1, int(len(data) * keep))])
    try:
        x = preprocess(data, make_spec(8, 8))
    except ImageRejected as e:
        assert e.reason in REJECT_REASONS
    else:
        assert x.shape == (3, 8, 8) and np.isfinite(x).all()


# -- reading files: regular files only, capped, header first, once (issue 14, items 9 and 10) ----------

def _read_in_thread(function, *args, timeout=10):
    """``function(*args)`` in a thread: its result or exception, or a failure if it is still blocked."""
    import threading

    out = {}

    def run():
        try:
            out["value"] = function(*args)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return thread.is_alive(), out


@pytest.mark.parametrize("reader", ["read_file", "read_image"])
def test_a_fifo_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    blocked, out = _read_in_thread(getattr(images, reader), str(fifo))
    if blocked:  # unblock the reader before failing (open the other end and close it: EOF)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("reading a FIFO blocked")
    assert isinstance(out.get("error"), ImageRejected), out
    assert (out["error"].reason, out["error"].detail) == ("not-a-regular-file",
                                                          "a FIFO (named pipe), never opened for reading")


def test_a_symlink_to_a_device_is_refused_unread(tmp_path):
    link = tmp_path / "photo.jpg"
    os.symlink("/dev/null", link)  # /dev/zero would read until memory runs out; /dev/null reads as empty
    for reader in (images.read_file, images.read_image):
        with pytest.raises(ImageRejected) as info:
            reader(str(link))
        assert (info.value.reason, info.value.detail) == ("not-a-regular-file",
                                                          "a character device, never opened for reading")


def test_size_cap_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGB", (8, 8))) + b"\0" * 1000)
    size = path.stat().st_size
    with pytest.raises(ImageRejected) as info:
        images.read_file(str(path), max_bytes=size - 1)
    assert (info.value.reason, info.value.detail) == (
        "file-too-large", "%d bytes, more than the cap of %d bytes" % (size, size - 1))
    assert images.read_file(str(path), max_bytes=size) == path.read_bytes()
    with pytest.raises(ImageRejected, match="file-too-large"):
        images.read_image(str(path), max_bytes=size - 1)


def test_default_cap_follows_max_pixels(tmp_path):
    assert images.max_file_size(1000) == 8000 + (16 << 20)
    sparse = tmp_path / "huge.png"
    with open(sparse, "wb") as f:  # a sparse file: no disk used, and it must not be read
        f.write(encode(Image.new("RGB", (8, 8))))
        f.truncate(images.max_file_size(1_000_000) + 1)
    tracemalloc.start()
    try:
        with pytest.raises(ImageRejected) as info:
            images.read_image(str(sparse), max_pixels=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == "file-too-large"
    assert peak < 1 << 20  # nothing was read


@pytest.mark.parametrize("head, reason", [
    (b"this is a shopping list, not a photo\n" * 100, "not-an-image"),
    (png_claiming(20000, 20000), "too-large"),
    (encode(Image.new("RGB", (2, 2))), "too-small"),
])
def test_header_is_checked_before_the_rest_is_read(tmp_path, head, reason):
    path = tmp_path / "x.png"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(images.HEADER_BYTES * 64)  # 64 MiB, sparse: reading it whole would show
    tracemalloc.start()
    try:
        with pytest.raises(ImageRejected) as info:
            images.read_image(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == reason
    assert peak < 8 * images.HEADER_BYTES  # the first MiB (and Pillow's look at it), not 64 MiB


def test_read_image_returns_the_bytes_it_checked(tmp_path):
    data = _jpeg()
    path = tmp_path / "x.jpg"
    path.write_bytes(data + b"\0" * images.HEADER_BYTES)  # longer than the header read
    got, info = images.read_image(str(path))
    assert got == path.read_bytes() and (info.format, info.width, info.height) == ("JPEG", 64, 48)
    path.write_bytes(data)
    assert images.read_image(str(path))[0] == data


def test_header_that_needs_more_than_the_first_bytes(tmp_path):
    # a JPEG whose metadata (a 2 MB comment) puts its size past the first MiB: read whole, then checked
    big = io.BytesIO()
    Image.new("RGB", (40, 30)).save(big, "JPEG", comment=b"c" * 60000)
    data = big.getvalue()
    segments = data[:2] + b"".join(b"\xff\xfe" + struct.pack(">H", 65002) + b"x" * 65000 for _ in range(40)) + data[2:]
    path = tmp_path / "x.jpg"
    path.write_bytes(segments)
    assert len(segments) > images.HEADER_BYTES
    got, info = images.read_image(str(path))
    assert got == segments and (info.width, info.height) == (40, 30)


# -- reason codes say what happened; Pillow's warnings belong to their image (item 15) -------------

def test_memory_error_is_out_of_memory(monkeypatch):
    def no_memory(image):
        raise MemoryError()

    monkeypatch.setattr(images, "_to_rgb", no_memory)
    e = rejected(encode(Image.new("RGB", (16, 16))))
    assert e.reason == "out-of-memory"


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\nshowpage\n%%EOF\n"


def test_missing_decoder_is_no_decoder(monkeypatch):
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", False)  # as on a node without Ghostscript
    assert probe(EPS) == ("EPS", 32, 32)  # the header is fine: pack accepts it
    e = rejected(EPS)
    assert (e.reason, e.detail) == ("no-decoder", "OSError: Unable to locate Ghostscript on paths")


def test_png_text_chunk_over_pillows_limit():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("comment", "x" * (2 << 20), zip=True)  # 2 MB of text, compressed to 2 kB
    e = rejected(encode(Image.new("RGB", (16, 16)), pnginfo=info))
    assert e.reason == "png-text-too-large" and "MAX_TEXT_CHUNK" in e.detail


def jpeg_with_broken_exif():
    """A JPEG whose EXIF points at data past its end: Pillow warns "Tag data larger than file"."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 100, 1000) \
        + struct.pack("<I", 0)
    return encode(Image.new("RGB", (16, 16), (10, 20, 30)), "JPEG", exif=b"Exif\x00\x00" + tiff)


def test_pillow_warnings_are_attached_to_their_image_never_printed(recwarn):
    seen = []
    x = preprocess(jpeg_with_broken_exif(), make_spec(16, 16), warnings=seen)
    assert x.shape == (3, 16, 16)
    assert seen == ["UserWarning: Tag data larger than file. Skipping tag 270"]
    # and on a rejected image, in its detail
    with pytest.raises(ImageRejected) as info:
        preprocess(jpeg_with_broken_exif(), make_spec(16, 16), min_side=17)
    assert info.value.reason == "too-small"
    preprocess(jpeg_with_broken_exif(), make_spec(16, 16))  # no list given: dropped, still not printed
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]


def test_bomb_warning_is_attached_to_its_image(monkeypatch, recwarn):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow warns past 50 pixels, refuses past 100
    e = rejected(encode(Image.new("RGB", (10, 10))), max_pixels=60, min_side=1)
    assert e.reason == "too-large"
    assert any("DecompressionBombWarning" in w for w in e.warnings) and "DecompressionBombWarning" in e.detail
    assert len(recwarn) == 0


def test_every_reason_is_documented():
    source = open(images.__file__, encoding="utf-8").read()
    for reason in REJECT_REASONS:
        assert '"%s",' % reason in source and len(set(REJECT_REASONS)) == len(REJECT_REASONS)
    block = source[source.index("REJECT_REASONS = ("):source.index(")\n", source.index("REJECT_REASONS = ("))]
    for line in block.splitlines()[1:]:
        if line.strip().startswith('"'):
            assert "#" in line, "reason without a comment: %s" % line


# -- 16-bit images: decode memory proportional to the 8-bit pixels (item 11) ---------------------------

def test_16_bit_png_decodes_in_memory_proportional_to_8_bit_pixels():
    side = 2000
    ramp = (np.arange(side * side, dtype=np.uint32) * 7 % 65536).astype(np.uint16).reshape(side, side)
    data = encode(Image.fromarray(ramp), compress_level=1)
    spec = make_spec(16, 16, **RAW_NHWC)
    tracemalloc.start()
    try:
        x = preprocess(data, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (16, 16, 3)
    # the 8-bit result is 1 byte per pixel; float64 was 8 bytes per pixel, several times over
    assert peak < 2 * side * side, "peak %.1f bytes per pixel" % (peak / side / side)


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", [0, 1, 128, 129, 257, 385, 386, 32768, 65279, 65535], [0, 0, 0, 1, 1, 1, 2, 128, 254, 255]),
    ("I", [-5, 0, 300, 65535, 70000, 128, 129, 1, 2, 3], [0, 0, 1, 255, 255, 0, 1, 0, 0, 0]),
    ("I", [0, 10, 255, 100, 7, 1, 2, 3, 4, 5], [0, 10, 255, 100, 7, 1, 2, 3, 4, 5]),  # 8-bit values in "I"
    ("F", [-1.0, 0.4, 0.5, 254.6, 300.0, 1.5, 2.49, 3, 4, 5], [0, 0, 1, 255, 255, 2, 2, 3, 4, 5]),
])
def test_high_bit_depth_to_8_bit_by_hand(mode, values, expected):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    array = np.array([values] * 3, dtype=dtype)
    image = Image.fromarray(array, mode) if mode != "I;16" else Image.fromarray(array)
    assert image.mode == mode
    got = np.asarray(images._to_rgb(image))
    assert got.shape == (3, 10, 3) and (got[:, :, 0] == got[:, :, 2]).all()
    assert got[0, :, 0].tolist() == expected
    # the float64 formula it replaces, v * 255 / top rounded half up, on every 16-bit value
    if mode == "I;16":
        every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
        fast = np.asarray(images._to_rgb(Image.fromarray(every)))[:, :, 0]
        slow = np.clip(np.floor(every.astype(np.float64) * (255.0 / 65535.0) + 0.5), 0, 255).astype(np.uint8)
        assert np.array_equal(fast, slow)


def test_16_bit_conversion_in_blocks_matches_a_single_block(monkeypatch):
    g = np.random.default_rng(9)
    image = Image.fromarray(g.integers(0, 65536, (37, 23), dtype=np.uint16))
    whole = np.asarray(images._to_rgb(image))
    monkeypatch.setattr(images, "_BLOCK_PIXELS", 50)  # 2 rows per block, the last one short
    assert np.array_equal(np.asarray(images._to_rgb(image)), whole)


def test_pillows_bomb_error_quotes_our_limit_not_pillows(monkeypatch):
    """Pillow refuses past twice its MAX_IMAGE_PIXELS (raised to --max-pixels) and says so with its own
    number; the rejection names mr_tl's limit, as the check of the header does."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    e = rejected(encode(Image.new("RGB", (20, 20))), max_pixels=60, min_side=1)
    assert e.reason == "too-large"
    assert e.detail.startswith("400 pixels is more than 60 pixels"), e.detail
    assert "120" not in e.detail
