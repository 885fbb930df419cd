"""Image decoding and preprocessing (Pillow + numpy), driven by a ModelSpec.

One image's path from file bytes to a network input::

    bytes --Image.open--> header checks (not an image? bomb? too small?)
          --draft-------> JPEG decoded at a reduced scale when it is much larger
          --exif--------> upright (EXIF orientation applied)
          --to RGB------> alpha composited on white; 16-bit and float scaled to 8 bit;
                          palette, grayscale, CMYK converted
          --resize------> "squash" to the input size, or shorter side then centre crop
          --normalize---> channel order, * scale, - mean, / std, NCHW or NHWC

Anything that cannot become an input raises :class:`ImageRejected` with a
short machine-readable ``reason`` (used as a Hadoop counter name) and a
human-readable ``detail``.  Odd but valid images (CMYK, grayscale, 16-bit,
palette with transparency, rotated) are converted, not rejected.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse to decode more pixels than this: a 40 kB PNG can claim 50,000 x 50,000
# pixels and take 7.5 GB to decode (a "decompression bomb").  Pillow's own
# guard warns at 89 MP and refuses at 179 MP; ours is explicit and counted.
MAX_PIXELS = 100_000_000
# Images with a side shorter than this carry no usable content.
MIN_SIDE = 8

REJECT_REASONS = (
    "empty-file",        # zero bytes
    "unreadable",        # the file could not be read (permissions, I/O error)
    "not-an-image",      # Pillow does not recognise the format
    "too-large",         # more than max_pixels (decompression-bomb guard)
    "too-small",         # a side shorter than min_side
    "corrupt",           # recognised, but decoding failed (truncated JPEG, bad data)
)

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class ImageRejected(Exception):
    """This image cannot be used; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


def _open(data, max_pixels, min_side):
    if not data:
        raise ImageRejected("empty-file", "0 bytes")
    try:
        with warnings.catch_warnings():
            # our own limit (below) decides; Pillow's global guard only backs it up,
            # raised to twice our limit so it never rejects what we accept
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
                Image.MAX_IMAGE_PIXELS = max_pixels
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not-an-image", "format not recognised (%d bytes, starts %r)"
                            % (len(data), data[:8])) from None
    except Image.DecompressionBombError as e:
        raise ImageRejected("too-large", str(e)) from None
    except Exception as e:  # a damaged header can raise almost anything
        raise ImageRejected("corrupt", "%s: %s" % (type(e).__name__, e)) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected("too-large", "%dx%d is more than %d pixels" % (width, height, max_pixels))
    if min(width, height) < min_side:
        raise ImageRejected("too-small", "%dx%d has a side shorter than %d" % (width, height, min_side))
    return image


def probe(data, max_pixels=MAX_PIXELS, min_side=MIN_SIDE):
    """Check the header only (cheap): ``(format, width, height)`` or ImageRejected."""
    image = _open(data, max_pixels, min_side)
    return image.format, image.size[0], image.size[1]


def _to_rgb(image):
    """An 8-bit RGB image from any mode Pillow can open."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit (and 32-bit) grayscale: map the full range onto 0..255 instead
        # of clipping at 255, which would turn a 16-bit photo white.
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            top = 65535.0
        elif mode == "I":  # 32-bit container; older Pillow opens 16-bit PNGs this way
            top = 65535.0 if values.max(initial=0) > 255 else 255.0
        else:  # "F"
            top = 255.0
        values = np.clip(np.floor(values * (255.0 / top) + 0.5), 0, 255).astype(np.uint8)
        return Image.fromarray(values, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # transparent pixels become white, not whatever colour they hide
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _target_decode_size(spec):
    height, width = spec.input_size
    side = spec.shorter_side if spec.resize == "center-crop" else max(height, width)
    return side


def decode(data, spec, max_pixels=MAX_PIXELS, min_side=MIN_SIDE):
    """An upright 8-bit RGB PIL image, resized and cropped to ``spec.input_size``."""
    image = _open(data, max_pixels, min_side)
    try:
        if image.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result is
            # still at least as large as needed: much faster for big photos.
            side = _target_decode_size(spec)
            image.draft("RGB", (side, side))
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except ImageRejected:
        raise
    except Exception as e:  # truncated data, bad huffman tables, ...
        raise ImageRejected("corrupt", "%s: %s" % (type(e).__name__, e)) from None
    return resize(image, spec)


def resize(image, spec):
    """Apply the spec's resize policy to an RGB image."""
    height, width = spec.input_size
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize == "squash":
        if image.size != (width, height):
            image = image.resize((width, height), resample)
        return image
    # center-crop: shorter side -> S (aspect kept), then the central H x W
    side = spec.shorter_side
    w, h = image.size
    if w <= h:
        new_w, new_h = side, max(side, int(h * side / w + 0.5))
    else:
        new_w, new_h = max(side, int(w * side / h + 0.5)), side
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    if new_w < width or new_h < height:
        raise ValueError("resize_shorter %d is smaller than input size %s" % (side, spec.input_size))
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_input(image, spec):
    """Normalize an RGB image of the right size into a float32 array for one example."""
    x = np.asarray(image, dtype=np.float32)  # (H, W, 3) RGB
    if spec.channel_order == "BGR":
        x = x[:, :, ::-1]
    if spec.scale != 1.0:
        x = x * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess(data, spec, max_pixels=MAX_PIXELS, min_side=MIN_SIDE):
    """File bytes -> one network input (``(3, H, W)`` or ``(H, W, 3)`` float32)."""
    return to_input(decode(data, spec, max_pixels, min_side), spec)


def read_file(path):
    """The bytes of an image file, or ImageRejected('unreadable')."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageRejected("unreadable", "%s: %s" % (type(e).__name__, e.strerror or e)) from None
