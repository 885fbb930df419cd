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
    """Apply the spec's resize policy to an RGB image.

    * ``squash``: to the input size, aspect ratio not kept;
    * ``center-crop``: shorter side to ``spec.shorter_side`` (aspect kept), then the central crop;
    * ``letterbox``: longer side to the input size (aspect kept), padded to it, centred
      (:func:`letterbox`; nothing is cropped).
    """
    height, width = spec.input_size
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize == "squash":
        if image.size != (width, height):
            image = image.resize((width, height), resample)
        return image
    if spec.resize == "letterbox":
        return letterbox(image, spec)
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


def letterbox_box(size, input_size):
    """Where a ``(w, h)`` image goes in a letterboxed ``(height, width)`` input: ``(left, top, new_w, new_h)``.

    The image is scaled so that it fits (aspect ratio kept, rounded to whole
    pixels, at least 1) and centred; when the padding is an odd number of
    pixels the extra one goes to the right or bottom, as centre-crop's offsets.
    """
    w, h = size
    height, width = input_size
    if w * height >= h * width:  # as wide as the input or wider: fills the width, padded above and below
        new_w, new_h = width, min(height, max(1, (2 * h * width + w) // (2 * w)))
    else:                        # taller: fills the height, padded left and right
        new_w, new_h = min(width, max(1, (2 * w * height + h) // (2 * h))), height
    return (width - new_w) // 2, (height - new_h) // 2, new_w, new_h


def pad_colour(image, rule, padded_axis):
    """The RGB padding colour (3 ints) of an already resized RGB image under ``rule`` (see ModelSpec.pad_colour).

    ``padded_axis`` is 0 when padding goes above and below (the top and bottom
    rows are the edges next to it), 1 when it goes left and right.
    """
    if isinstance(rule, (tuple, list)):
        return tuple(int(v) for v in rule)
    if rule == "white":
        return (255, 255, 255)
    pixels = np.asarray(image, dtype=np.float64)  # (H, W, 3)
    if rule == "mean":
        values = pixels.reshape(-1, 3)
    elif rule == "edge-mean":
        edges = (pixels[0], pixels[-1]) if padded_axis == 0 else (pixels[:, 0], pixels[:, -1])
        values = np.concatenate(edges)
    else:
        raise ValueError("unknown pad colour rule %r" % (rule,))
    return tuple(int(v) for v in np.floor(values.mean(axis=0) + 0.5))


def letterbox(image, spec):
    """Resize an RGB image to fit inside ``spec.input_size`` (aspect kept) and pad it, centred.

    The same as padding the image to the input's aspect ratio and then
    resizing, except that the padding is added after resizing: its bands are
    whole pixels and the pad colour never bleeds into the image's edge pixels.
    Nothing is cropped.  The padding colour follows ``spec.pad_colour``.
    """
    height, width = spec.input_size
    left, top, new_w, new_h = letterbox_box(image.size, spec.input_size)
    if image.size != (new_w, new_h):
        image = image.resize((new_w, new_h), _RESAMPLE[spec.interpolation])
    if (new_w, new_h) == (width, height):
        return image
    colour = pad_colour(image, spec.pad_colour, 0 if new_w == width else 1)
    canvas = Image.new("RGB", (width, height), colour)
    canvas.paste(image, (left, top))
    return canvas


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
