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
short machine-readable ``reason`` (one of :data:`REJECT_REASONS`, used as a
Hadoop counter name) and a human-readable ``detail``.  Odd but valid images
(CMYK, grayscale, 16-bit, palette with transparency, rotated) are converted,
not rejected.

Pillow's warnings ("Corrupt EXIF data", DecompressionBombWarning, ...) name
no file; they are never printed here.  They are captured per image and
attached to it: ``ImageRejected.warnings`` (and its detail), ``ImageInfo.warnings``,
or the ``warnings`` list a caller of :func:`decode`/:func:`preprocess` passes in.

Files are read by :func:`read_file` / :func:`read_image`: regular files only
(a FIFO or a device is never read), at most ``max_bytes`` (checked before
reading), once.
"""

import contextlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from mr_tl.model.spec import ModelSpec

# Refuse to decode more pixels than this: a 40 kB PNG can claim 50,000 x 50,000
# pixels and take 7.5 GB to decode (a "decompression bomb").  Pillow's own
# guard warns at 89 MP and refuses at 179 MP; ours is explicit and counted.
MAX_PIXELS = 100_000_000
# Images with a side shorter than this carry no usable content.
MIN_SIDE = 8

# Every reason an image can be rejected for, by pack or by featurize: the one list.
REJECT_REASONS = (
    "empty-file",          # zero bytes
    "unreadable",          # the file could not be opened or read (permissions, I/O error, vanished, dangling link)
    "not-a-regular-file",  # a FIFO, socket or device: never opened for reading (it could block or never end)
    "file-too-large",      # more bytes than the file-size cap: refused before reading (pack --max-file-size)
    "not-an-image",        # Pillow does not recognise the format
    "no-decoder",          # a recognised format this installation cannot decode (EPS without Ghostscript,
                           # JPEG 2000 without OpenJPEG, AVIF without libavif, ...)
    "too-large",           # more than max_pixels (decompression-bomb guard)
    "too-small",           # a side shorter than min_side
    "png-text-too-large",  # a PNG text or ICC chunk over Pillow's safety limits (MAX_TEXT_CHUNK/MAX_TEXT_MEMORY)
    "out-of-memory",       # MemoryError while reading or decoding it
    "corrupt",             # recognised, but decoding failed (truncated JPEG, bad data)
    "conflicting-labels",  # pack: the same bytes are in two or more classes (every copy is rejected)
)

# Bytes read and checked before the rest of a file is read (the header of almost any image).
HEADER_BYTES = 1 << 20

# Image.Resampling (Pillow >= 9.1): the typed names of the same numbers as Image.NEAREST etc.
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC}


def max_file_size(max_pixels: int = MAX_PIXELS) -> int:
    """The default cap on an image file's bytes: 8 bytes per allowed pixel (16-bit RGBA
    uncompressed, the largest common encoding) plus 16 MiB of metadata."""
    return 8 * int(max_pixels) + (16 << 20)


class ImageRejected(Exception):
    """This image cannot be used; ``reason`` is one of REJECT_REASONS.

    ``warnings`` are the messages Pillow warned with while this image was read.
    """

    def __init__(self, reason: str, detail: str = "", warnings: Iterable[str] = ()) -> None:
        self.warnings = list(warnings)
        if self.warnings:
            detail = "%s (Pillow warned: %s)" % (detail, "; ".join(self.warnings)) if detail \
                else "Pillow warned: %s" % "; ".join(self.warnings)
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    """What the header check found: format, size, and Pillow's warnings about this image."""

    format: str | None   # as Pillow names it (None only for an image Pillow made itself)
    width: int
    height: int
    warnings: tuple[str, ...] = ()


@contextlib.contextmanager
def _captured(into: list[str]) -> Iterator[None]:
    """Collect every warning raised inside into the list ``into`` (as text); none is printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                text = "%s: %s" % (w.category.__name__, w.message)
                if text not in into:
                    into.append(text)


def _reason_for(e: BaseException) -> tuple[str, str]:
    """``(reason, detail)`` for an exception Pillow (or memory) raised while opening or decoding."""
    text = str(e)
    if isinstance(e, MemoryError):
        return "out-of-memory", "MemoryError%s" % (": " + text if text else " while decoding")
    if isinstance(e, Image.DecompressionBombError):
        return "too-large", text
    if isinstance(e, OSError) and ("not available" in text and ("decoder" in text or "codec" in text)
                                   or "Ghostscript" in text or "cannot find loader" in text):
        return "no-decoder", "%s: %s" % (type(e).__name__, text)
    if isinstance(e, ValueError) and ("MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text):
        return "png-text-too-large", "%s: %s" % (type(e).__name__, text)
    return "corrupt", "%s: %s" % (type(e).__name__, text)


def _missing_decoder(prefix: bytes) -> str | None:
    """Pillow's message when a plugin recognises ``prefix`` but its decoder is not installed, else None."""
    Image.init()
    for fmt in Image.ID:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        if accept is None:
            continue
        try:
            result = accept(prefix[:16])
        except Exception:
            continue
        if isinstance(result, str):
            return result
    return None


def _any_plugin_accepts(prefix: bytes) -> bool:
    """Does any Pillow plugin that checks a signature accept these first bytes?"""
    Image.init()
    for fmt in Image.ID:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        if accept is None:
            continue  # plugins without a signature read their header from the first bytes
        try:
            result = accept(prefix[:16])
        except Exception:
            return True  # cannot tell: not conclusive
        if result:
            return True
    return False


def _open(data: bytes, max_pixels: int, min_side: int, seen: list[str]) -> Image.Image:
    if not data:
        raise ImageRejected("empty-file", "0 bytes", seen)
    try:
        with _captured(seen):
            # our own limit (below) decides; Pillow's global guard only backs it up,
            # raised to our limit so it never rejects what we accept
            if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
                Image.MAX_IMAGE_PIXELS = max_pixels
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        missing = _missing_decoder(data)
        if missing:
            raise ImageRejected("no-decoder", missing, seen) from None
        raise ImageRejected("not-an-image", "format not recognised (%d bytes, starts %r)"
                            % (len(data), bytes(data[:8])), seen) from None
    except Image.DecompressionBombError as e:
        # Pillow's message quotes its own limit, twice ours: say ours, as the check below does
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise ImageRejected("too-large", "%s is more than %d pixels" % (
            "%s pixels" % found.group(1) if found else "the image", max_pixels), seen) from None
    except Exception as e:  # a damaged header can raise almost anything
        raise ImageRejected(*_reason_for(e), warnings=seen) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected("too-large", "%dx%d is more than %d pixels" % (width, height, max_pixels), seen)
    if min(width, height) < min_side:
        raise ImageRejected("too-small", "%dx%d has a side shorter than %d" % (width, height, min_side), seen)
    return image


def inspect(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> ImageInfo:
    """Check the header only (cheap): an :class:`ImageInfo`, or ImageRejected."""
    seen: list[str] = []
    image = _open(data, max_pixels, min_side, seen)
    return ImageInfo(image.format, image.size[0], image.size[1], tuple(seen))


def probe(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> tuple[str | None, int, int]:
    """Check the header only (cheap): ``(format, width, height)`` or ImageRejected."""
    info = inspect(data, max_pixels, min_side)
    return info.format, info.width, info.height


# Pixels converted per block when a high-bit-depth image is brought to 8 bits: bounds the
# temporary arrays (a few bytes per pixel of one block), whatever the image size.
_BLOCK_PIXELS = 1 << 18


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """An 8-bit "L" image from a 16-bit ("I;16*"), 32-bit integer ("I") or float ("F") grayscale one.

    Maps the full range onto 0..255 instead of clipping at 255, which would turn a
    16-bit photo white: ``v * 255 / 65535`` rounded half up, which is ``(v + 128) // 257``
    for integers (exact; no ties).  Integer arithmetic in row blocks: the memory
    is the 8-bit result plus one block, not 8 bytes per pixel of float64.
    """
    mode = image.mode
    width, height = image.size
    rows = max(1, _BLOCK_PIXELS // max(width, 1))

    def blocks() -> Iterator[tuple[int, int, np.ndarray]]:
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            yield top, bottom, np.asarray(image.crop((0, top, width, bottom)))

    sixteen = mode.startswith("I;16")
    if mode == "I":  # 32-bit container; older Pillow opens 16-bit PNGs this way
        sixteen = any(block.size and block.max() > 255 for _, _, block in blocks())
    out = np.empty((height, width), np.uint8)
    for top, bottom, block in blocks():
        if mode == "F":
            values = block.astype(np.float64)
            values += 0.5
            np.floor(values, out=values)
            np.nan_to_num(values, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        elif sixteen:  # in place: 4 (unsigned 16-bit) or 8 (signed 32-bit container) bytes per block pixel
            values = block.astype(np.uint32 if mode != "I" else np.int64)
            values += 128
            values //= 257
        else:
            values = block
        np.clip(values, 0, 255, out=out[top:bottom], casting="unsafe")
    return Image.fromarray(out, "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image from any mode Pillow can open."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_bit_depth_to_l(image).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # transparent pixels become white, not whatever colour they hide
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _target_decode_size(spec: "ModelSpec") -> int:
    height, width = spec.input_size
    side = spec.shorter_side if spec.resize == "center-crop" else max(height, width)
    return side


def decode(data: bytes, spec: "ModelSpec", max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
           warnings: list[str] | None = None) -> Image.Image:
    """An upright 8-bit RGB PIL image, resized and cropped to ``spec.input_size``.

    Pillow's warnings about this image are appended to ``warnings`` (a list) when given,
    and attached to the ImageRejected if it is rejected; never printed.
    """
    seen = [] if warnings is None else warnings
    image = _open(data, max_pixels, min_side, seen)
    try:
        with _captured(seen):
            if image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the result is
                # still at least as large as needed: much faster for big photos.
                side = _target_decode_size(spec)
                image.draft("RGB", (side, side))
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
    except ImageRejected:
        raise
    except (Exception, MemoryError) as e:  # truncated data, bad huffman tables, a missing decoder, ...
        raise ImageRejected(*_reason_for(e), warnings=seen) from None
    try:
        with _captured(seen):
            return resize(image, spec)  # a spec that cannot be applied raises: not the image's fault
    except MemoryError as e:
        raise ImageRejected(*_reason_for(e), warnings=seen) from None


def resize(image: Image.Image, spec: "ModelSpec") -> Image.Image:
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


def letterbox_box(size: tuple[int, int], input_size: Sequence[int]) -> tuple[int, int, int, int]:
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


def pad_colour(image: Image.Image, rule: str | Sequence[int], padded_axis: int) -> tuple[int, ...]:
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


def letterbox(image: Image.Image, spec: "ModelSpec") -> Image.Image:
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


def to_input(image: Image.Image, spec: "ModelSpec") -> np.ndarray:
    """Normalize an RGB image of the right size into a float32 array for one example."""
    x: np.ndarray = np.asarray(image, dtype=np.float32)  # (H, W, 3) RGB
    if spec.channel_order == "BGR":
        x = x[:, :, ::-1]
    if spec.scale != 1.0:
        x = x * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess(data: bytes, spec: "ModelSpec", max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               warnings: list[str] | None = None) -> np.ndarray:
    """File bytes -> one network input (``(3, H, W)`` or ``(H, W, 3)`` float32).

    ``warnings``: as for :func:`decode`.
    """
    return to_input(decode(data, spec, max_pixels, min_side, warnings), spec)


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file (mode %o)" % stat.S_IFMT(mode)


def _unreadable(e: OSError) -> ImageRejected:
    return ImageRejected("unreadable", "%s: %s" % (type(e).__name__, e.strerror or e))


def _open_regular(path: str | os.PathLike[str], max_bytes: int) -> BinaryIO:
    """A binary file object on the regular file ``path`` (symbolic links followed), or ImageRejected.

    Anything else (FIFO, socket, device) is refused from its ``stat`` without being
    opened; the open itself is non-blocking and checked again with ``fstat``, so a
    file swapped for a FIFO in between cannot hang the reader.  A file larger than
    ``max_bytes`` is refused before any byte is read.
    """
    try:
        before = os.stat(path)
    except OSError as e:
        raise _unreadable(e) from None
    if not stat.S_ISREG(before.st_mode):
        raise ImageRejected("not-a-regular-file", "%s, never opened for reading" % _kind(before.st_mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _unreadable(e) from None
    f = os.fdopen(fd, "rb")
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise ImageRejected("not-a-regular-file", "%s (it was a regular file a moment before)"
                                % _kind(now.st_mode))
        _check_size(now.st_size, max_bytes)
    except BaseException:
        f.close()
        raise
    return f


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise ImageRejected("file-too-large", "%d bytes, more than the cap of %d bytes" % (size, max_bytes))


def _read(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the file)."""
    try:
        return f.read(n)
    except MemoryError:
        raise ImageRejected("out-of-memory", "MemoryError while reading %d bytes" % n) from None
    except OSError as e:
        raise _unreadable(e) from None


def read_file(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (default :func:`max_file_size`), or ImageRejected
    (``unreadable``, ``not-a-regular-file``, ``file-too-large``, ``out-of-memory``)."""
    if max_bytes is None:
        max_bytes = max_file_size()
    with _open_regular(path, max_bytes) as f:
        data = _read(f, max_bytes + 1)
    _check_size(len(data), max_bytes)  # it grew while being read
    return data


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               max_bytes: int | None = None) -> tuple[bytes, ImageInfo]:
    """Read an image file once and check its header: ``(bytes, ImageInfo)`` or ImageRejected.

    The checked bytes are the returned bytes (one read, so a file changed meanwhile
    cannot make them differ).  Only regular files, at most ``max_bytes`` (refused from
    ``fstat`` before reading).  The first :data:`HEADER_BYTES` are checked before the
    rest is read: a header that claims too many or too few pixels, or bytes no image
    format starts with, are refused without reading further.
    """
    if max_bytes is None:
        max_bytes = max_file_size(max_pixels)
    with _open_regular(path, max_bytes) as f:
        head = _read(f, min(HEADER_BYTES, max_bytes + 1))
        if len(head) == HEADER_BYTES and HEADER_BYTES <= max_bytes:
            _check_prefix(head, max_pixels, min_side)
            rest = _read(f, max_bytes + 1 - len(head))
            data = head + rest if rest else head
        else:
            data = head
    _check_size(len(data), max_bytes)  # it grew while being read
    return data, inspect(data, max_pixels, min_side)


def _check_prefix(head: bytes, max_pixels: int, min_side: int) -> None:
    """Refuse a file from its first bytes when they are conclusive; otherwise decide on the whole file."""
    try:
        inspect(head, max_pixels, min_side)
    except ImageRejected as e:
        if e.reason in ("too-large", "too-small", "no-decoder"):
            raise
        if e.reason == "not-an-image" and not _any_plugin_accepts(head):
            raise
