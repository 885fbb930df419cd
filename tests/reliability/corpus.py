"""A bad-input corpus, generated: every kind of junk and oddity an image collection holds.

``make_corpus(root)`` writes ``root/CLASS/FILE`` and returns ``{id: expected}``
where ``expected`` is ``"featurized"`` or the reject reason mr_tl must give,
plus ``twins``: ``{odd id: plain id}`` pairs that must get the same features
(an odd but valid encoding and the plain RGB image it stands for).
"""

import io
import os

import numpy as np
from PIL import Image

SIDE = 80


def _pixels(seed, size=(SIDE, 60)):
    g = np.random.default_rng(seed)
    w, h = size
    base = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # some structure so the network sees more than noise
    base[h // 4: h // 2, w // 4: w // 2] = g.integers(0, 256, 3, dtype=np.uint8)
    return base


def _encode(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return rel


def make_corpus(root):
    expected, twins = {}, {}

    def good(rel, data):
        expected[_write(root, rel, data)] = "featurized"

    def bad(rel, data, reason):
        expected[_write(root, rel, data)] = reason

    # plain images, so every class has train data
    for k, c in enumerate(("cats", "dogs")):
        for i in range(6):
            good("%s/plain_%d.png" % (c, i), _encode(Image.fromarray(_pixels(100 * k + i)), "PNG"))

    rgb = _pixels(7)
    plain = Image.fromarray(rgb)
    good("cats/reference.png", _encode(plain, "PNG"))

    # odd but valid: each must give the features of its plain twin
    # wrong extension; other bytes than reference.png (same pixels), else pack would pack one copy only
    good("cats/png named.jpg", _encode(plain, "PNG", compress_level=1))
    twins["cats/png named.jpg"] = "cats/reference.png"
    gray = Image.fromarray(rgb).convert("L")
    good("cats/gray.png", _encode(gray, "PNG"))
    good("cats/gray as rgb.png", _encode(gray.convert("RGB"), "PNG"))
    twins["cats/gray.png"] = "cats/gray as rgb.png"
    sixteen = np.asarray(gray, dtype=np.uint16) * 257  # the same picture in 16 bits
    good("cats/sixteen bit.png", _encode(Image.fromarray(sixteen.astype(np.uint16)), "PNG"))
    twins["cats/sixteen bit.png"] = "cats/gray as rgb.png"
    palette = plain.convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    good("cats/palette transparent.png", _encode(palette, "PNG", transparency=0))
    flat = palette.convert("RGBA")
    white = Image.new("RGBA", flat.size, (255, 255, 255, 255))
    good("cats/palette flattened.png", _encode(Image.alpha_composite(white, flat).convert("RGB"), "PNG"))
    twins["cats/palette transparent.png"] = "cats/palette flattened.png"
    rgba = plain.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:20, :20] = 0
    rgba.putalpha(Image.fromarray(alpha))
    good("cats/rgba.png", _encode(rgba, "PNG"))
    good("cats/rgba flattened.png", _encode(Image.alpha_composite(
        Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB"), "PNG"))
    twins["cats/rgba.png"] = "cats/rgba flattened.png"
    rotated = plain.transpose(Image.Transpose.ROTATE_90)  # stored sideways, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    good("cats/exif rotated.png", _encode(rotated, "PNG", exif=exif))
    twins["cats/exif rotated.png"] = "cats/reference.png"
    good("cats/cmyk.jpg", _encode(plain.convert("CMYK"), "JPEG", quality=95))  # lossy: compared loosely

    # names: spaces, non-ASCII, a class folder with one image
    good("chats tigrés/éléphant ☃.png", _encode(Image.fromarray(_pixels(11)), "PNG"))
    good("seul/only one.png", _encode(Image.fromarray(_pixels(12)), "PNG"))

    # junk
    bad("dogs/empty.jpg", b"", "empty-file")
    jpeg = _encode(Image.fromarray(_pixels(13, (200, 150))), "JPEG", quality=90)
    bad("dogs/truncated.jpg", jpeg[:len(jpeg) // 3], "corrupt")
    bad("dogs/notes.jpg", b"this is a shopping list, not a photo\n" * 10, "not-an-image")
    bad("dogs/one pixel.png", _encode(Image.new("RGB", (1, 1)), "PNG"), "too-small")
    bad("dogs/bomb.png", png_claiming(30000, 30000), "too-large")
    os.symlink(os.path.join(root, "nowhere", "gone.jpg"), os.path.join(root, "dogs", "dangling link.jpg"))
    expected["dogs/dangling link.jpg"] = "unreadable"
    return expected, twins


def png_claiming(width, height):
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    small = _encode(Image.new("RGB", (8, 8)), "PNG")
    ihdr = struct.pack(">II", width, height) + small[24:29]
    return small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]
