"""python -m mr_tl.pack IMAGES_DIR OUT_DIR: split images and pack them into text shards.

Input layout, as Caltech-256: one sub-folder per class, the class name is the
folder name (``IMAGES_DIR/001.ak47/001_0001.jpg``).  Output::

    OUT_DIR/train-00000.tsv ...   packed images, one per line (see mr_tl.records)
    OUT_DIR/val-00000.tsv ...
    OUT_DIR/test-00000.tsv ...
    OUT_DIR/labels.json           class index <-> class name
    OUT_DIR/manifest.json         counts per class and split; per shard its sha256 and the
                                  MultisetHash of its lines; every file found, once: packed
                                  (with its split and sha256), rejected (reason), duplicate
                                  (of which image) or skipped (why); symbolic links; warnings

The split is stratified, seeded, and stable: each image's split is decided by
its own bytes.  A number u in [0, 1) is drawn from sha256(seed, sha256 of the
image's bytes); u < test fraction -> test, u < test + val fraction -> val,
else train, with the fractions of the image's class.  Identical bytes always
land in the same split, and adding, removing or changing one image never
moves another (with fractions, and apart from the rescue below; see --val).
Per class the split sizes follow the fractions on average, not exactly.  A
class whose images all drew val or test gets its image with the largest u
moved to train (listed in the manifest, with a warning); a class with fewer
than 2 training images is warned about.  The same input gives byte-identical
output.

Files: only regular files are read (FIFOs, sockets, devices are rejected
unopened); each file is read once, its header checked on the first MiB
before the rest is read, and its size capped (--max-file-size) before reading.
The full decode happens in the featurize job.  Symbolic links are followed
when they point outside IMAGES_DIR (to a folder: not into a loop); a link to
something inside IMAGES_DIR is skipped, since its target is packed under its
own name.  Files with the same bytes: within one class, the copy whose id
sorts first is packed and the others are listed as duplicates of it; in
different classes, every copy is rejected as conflicting-labels.

files found (counted from the directory listing) = packed + rejected +
skipped + duplicate is checked; pack fails rather than lose track of a file.
Nothing is written to OUT_DIR unless everything was: pack works in a hidden
folder beside it and renames it at the end (disk space: about 1.75 times the
output while it runs).
"""

import argparse
import base64
import hashlib
import json
import math
import numbers
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from mr_tl import __version__, labels
from mr_tl.cli import run_command
from mr_tl.digest import MultisetHash
from mr_tl.errors import JobFailed, PackError
from mr_tl.images import MAX_PIXELS, MIN_SIDE, ImageRejected, max_file_size, read_image
from mr_tl.records import SPLITS, PackedImage
from mr_tl.run_dir import fsync_dir

MANIFEST_FORMAT = "mr_tl.pack-manifest/1"
SPLIT_RULE = "mr_tl.split/1: u = first 53 bits of sha256('mr_tl.split/1 <seed> <sha256 of the image>') / 2**53; " \
             "test if u < test fraction, val if u < test + val fraction, else train"
FEW_TRAINING_IMAGES = 2  # warn when a class ends with fewer training images than this
_B64_CHUNK = 3 << 20     # bytes base64-encoded at a time when writing a line (a multiple of 3)


@dataclass(frozen=True)
class SplitSize:
    """How many images of each class go to a split: a fraction (< 1) or a count (a whole number >= 1)."""

    value: float

    @classmethod
    def parse(cls, text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a count (e.g. 10) or a fraction (e.g. 0.15), "
                                             "found %r" % text) from None
        if not math.isfinite(value) or value < 0 or (value >= 1 and value != int(value)):
            raise argparse.ArgumentTypeError("expected a count >= 0 or a fraction in [0, 1), found %r" % text)
        return cls(value)

    @property
    def is_count(self):
        return self.value >= 1

    def fraction(self, n):
        """The fraction of a class of ``n`` images: the value itself, or count / n (at most 1)."""
        if self.is_count:
            return min(1.0, self.value / n) if n else 0.0
        return self.value


def parse_size(text):
    """'64M', '1G', '500k' or a number of bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = float(number)
        if not math.isfinite(value):
            raise ValueError(number)
        size = int(value * factor)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a size like 64M or 1G, found %r" % text) from None
    if size < 1:
        raise argparse.ArgumentTypeError("size must be positive")
    return size


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number, found %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a whole number >= 1, found %r" % text)
    return value


def split_draw(seed, sha256_hex):
    """The image's number u in [0, 1): a function of the seed and the image's bytes only."""
    digest = hashlib.sha256(("mr_tl.split/1 %d %s" % (int(seed), sha256_hex)).encode("ascii")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def split_for(u, val_fraction, test_fraction):
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _utf8(name):
    """``name`` as printable text; file names that are not UTF-8 come back with \\x.. escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_utf8(name):
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir surrogate-escaped bytes that are not UTF-8
        return False
    return True


def _within(path, folder):
    """Is the real path ``path`` the real path ``folder`` or inside it?"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass
class Listing:
    """What :func:`find_images` saw.

    ``found``: every entry of the listing that is not a folder walked into (files, links
    to files, special files, folders skipped as a whole), by printable relative path;
    ``items``: the candidate images ``(id, class index, path)``; ``skipped``: ``(path,
    kind, why)``; ``symlinks``: one dict per symbolic link met, followed or not.
    """

    classes: list
    items: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    symlinks: list = field(default_factory=list)
    found: list = field(default_factory=list)


def find_images(images_dir):
    """Walk ``images_dir``: class names (sorted), candidate files, and everything else, listed.

    Hidden files and folders, files outside a class folder, names that are not
    UTF-8, symbolic links that are not followed, folders that cannot be listed
    are ``skipped`` with why, so nothing is dropped silently.  A symbolic link is
    followed when it points outside ``images_dir`` and, for a folder, not to a
    folder that contains it (a loop); a link to anything inside ``images_dir`` is
    skipped (its target is packed under its own name, in its own class); a
    dangling link is a candidate (rejected as unreadable).
    """
    if not os.path.isdir(images_dir):
        raise PackError("%s is not a folder" % images_dir)
    root_real = os.path.realpath(images_dir)
    try:
        entries = sorted(os.listdir(images_dir))
    except OSError as e:
        raise PackError("cannot list %s: %s" % (images_dir, e.strerror or e)) from None
    bad_classes = [_utf8(e) for e in entries if not _is_utf8(e) and not e.startswith(".")
                   and os.path.isdir(os.path.join(images_dir, e))]
    if bad_classes:
        raise PackError("class folder names must be UTF-8 (they become class names): %s" % ", ".join(bad_classes))
    listing = Listing(classes=[])

    def skip(rel, kind, why):
        listing.found.append(rel)
        listing.skipped.append((rel, kind, why))

    def hidden(path, rel):
        skip(rel, "hidden", "hidden file or folder")
        if os.path.islink(path):
            try:
                target = _utf8(os.readlink(path))
            except OSError:
                target = "?"
            listing.symlinks.append({"path": rel, "target": target, "followed": False, "why": "hidden: not followed"})

    def follow(path, rel, chain):
        """For a symbolic link: ``(True, None)`` to follow it, or ``(False, why)``."""
        try:
            target = _utf8(os.readlink(path))
        except OSError as e:
            target = "?"
            listing.symlinks.append({"path": rel, "target": target, "followed": True,
                                     "why": "cannot be read (%s): left to the reader" % e.strerror})
            return True, None
        real = os.path.realpath(path)
        entry = {"path": rel, "target": target}
        listing.symlinks.append(entry)
        if not os.path.exists(path):
            entry.update(followed=True, why="dangling: its target does not exist")
            return True, None
        if _within(real, root_real):
            inside = os.path.relpath(real, root_real).replace(os.sep, "/")
            why = ("symbolic link to %s inside the image folder: not followed (it is packed under its own name)"
                   % ("the image folder itself" if inside == "." else inside))
            entry.update(followed=False, why=why)
            return False, why
        if os.path.isdir(real) and any(_within(c, real) for c in chain):
            why = "symbolic link to %s, a folder that contains it: not followed (a loop)" % real
            entry.update(followed=False, why=why)
            return False, why
        entry.update(followed=True, why="points outside the image folder: followed")
        return True, None

    def walk(directory, rel_dir, index, chain, text_name=True):
        try:
            names = sorted(os.listdir(directory))
        except OSError as e:
            skip(rel_dir, "unlistable", "folder cannot be listed (%s: %s): its files are not packed"
                 % (type(e).__name__, e.strerror or e))
            return
        for name in names:
            path = os.path.join(directory, name)
            rel = rel_dir + "/" + _utf8(name)
            if name.startswith("."):
                hidden(path, rel)
                continue
            if os.path.islink(path):
                ok, why = follow(path, rel, chain)
                if not ok:
                    skip(rel, "symlink", why)
                    continue
            if os.path.isdir(path):
                walk(path, rel, index, chain + [os.path.realpath(path)], text_name and _is_utf8(name))
            elif not _is_utf8(name) or not text_name:
                skip(rel, "bad-name", "name is not valid UTF-8 (ids must be text)")
            else:
                listing.found.append(rel)
                listing.items.append((rel, index, path))

    classes = []
    for name in entries:
        path = os.path.join(images_dir, name)
        rel = _utf8(name)
        if name.startswith("."):
            hidden(path, rel)
            continue
        if os.path.islink(path):
            ok, why = follow(path, rel, [root_real])
            if not ok:
                skip(rel, "symlink", why)
                continue
        if os.path.isdir(path):
            classes.append(name)
        else:
            skip(rel, "outside-class", "file outside a class folder")
    if not classes:
        raise PackError("%s has no class sub-folders (expected IMAGES_DIR/CLASS/IMAGE)" % images_dir)
    listing.classes = classes
    for index, name in enumerate(classes):
        path = os.path.join(images_dir, name)
        walk(path, name, index, [root_real, os.path.realpath(path)])
    listing.items.sort()
    return listing


@dataclass(frozen=True)
class _Staged:
    """An accepted image whose bytes wait in the staging file."""

    id: str
    label: int
    sha256: str
    offset: int
    length: int


def assign_splits(images, classes, seed, val, test):
    """``{id: split}`` for the kept images, per class fractions, rescued images and warnings.

    ``images``: ``(id, label, sha256)``.  Each image's split is :func:`split_for` of
    its own :func:`split_draw`; a class that drew no training image gets its image
    with the largest draw moved to train.
    """
    by_class = {}
    for image_id, label, sha in images:
        by_class.setdefault(label, []).append((split_draw(seed, sha), image_id))
    split_of, fractions, rescued, warnings = {}, {}, [], []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda m: m[1])
        name = classes[label]
        f_val, f_test = val.fraction(len(members)), test.fraction(len(members))
        fractions[name] = {"val": f_val, "test": f_test}
        for u, image_id in members:
            split_of[image_id] = split_for(u, f_val, f_test)
        train = [image_id for _, image_id in members if split_of[image_id] == "train"]
        if not train:
            u, image_id = max(members)
            rescued.append({"class": name, "id": image_id, "drawn": split_of[image_id]})
            warnings.append("class %r drew no training image: %s moved from %s to train"
                            % (name, image_id, split_of[image_id]))
            split_of[image_id] = "train"
            train = [image_id]
        if len(train) < FEW_TRAINING_IMAGES:
            warnings.append("class %r has only %d training image%s (of %d)"
                            % (name, len(train), "" if len(train) == 1 else "s", len(members)))
    return split_of, fractions, rescued, warnings


class _ShardWriter:
    """Writes ``SPLIT-NNNNN.tsv`` files, starting a new one past ``shard_size`` bytes.

    Lines are written in pieces (the base64 of a large image never sits in memory
    whole); each shard's sha256 and the MultisetHash of its lines (each line's
    bytes without the newline) are computed from the bytes written.
    """

    def __init__(self, out_dir, split, shard_size):
        self.out_dir, self.split, self.shard_size = out_dir, split, shard_size
        self.shards = []
        self._file = None
        self._bytes = 0

    def write_image(self, image_id, label, data):
        prefix = PackedImage(image_id, label, self.split, b"").to_line().encode("utf-8")  # "ID\tLABEL\tSPLIT\t"
        length = len(prefix) + 4 * ((len(data) + 2) // 3) + 1
        if self._file is None or (self._bytes and self._bytes + length > self.shard_size):
            self._open_next()
        line_hash = hashlib.sha256()
        for piece in _pieces(prefix, memoryview(data)):
            self._put(piece)
            line_hash.update(piece)
        self._put(b"\n")
        self._lines.add_sha256(line_hash.digest())
        self.shards[-1]["images"] += 1

    def _put(self, piece):
        self._file.write(piece)
        self._hash.update(piece)
        self._bytes += len(piece)

    def _open_next(self):
        self.close()
        name = "%s-%05d.tsv" % (self.split, len(self.shards))
        self._file = open(os.path.join(self.out_dir, name), "wb")
        self._bytes = 0
        self._hash = hashlib.sha256()
        self._lines = MultisetHash()
        self.shards.append({"path": name, "images": 0})

    def close(self):
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self.shards[-1].update(bytes=self._bytes, sha256=self._hash.hexdigest(),
                                   lines_digest=self._lines.hexdigest())


def _pieces(prefix, view):
    yield prefix
    for i in range(0, len(view), _B64_CHUNK):
        yield base64.b64encode(view[i:i + _B64_CHUNK])


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path, obj, **kw):
    _write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, **kw) + "\n")


def check_options(val, test, seed=0, shard_size=1, max_pixels=1, min_side=1, max_file_bytes=1):
    """Refuse options that cannot give a sensible split or pack (PackError)."""
    if not val.is_count and not test.is_count and val.value + test.value >= 1:
        raise PackError("--val %g + --test %g leave no images for training (fractions must add up to less "
                        "than 1)" % (val.value, test.value))
    for name, value in (("--shard-size", shard_size), ("--max-pixels", max_pixels), ("--min-side", min_side),
                        ("--max-file-size", max_file_bytes)):
        if not isinstance(value, numbers.Integral) or value < 1:
            raise PackError("%s must be a whole number >= 1, found %r" % (name, value))
    if not isinstance(seed, numbers.Integral):
        raise PackError("--seed must be a whole number, found %r" % (seed,))


def pack(images_dir, out_dir, val=SplitSize(0.15), test=SplitSize(0.15), seed=42, shard_size=64 << 20,
         max_pixels=MAX_PIXELS, min_side=MIN_SIDE, max_file_bytes=None, overwrite=False, progress=None):
    """Split and pack ``images_dir`` into ``out_dir``; returns the manifest dict.

    Writes into a temporary folder beside ``out_dir`` and renames it at the
    end, so ``out_dir`` is either the complete result or untouched.  Raises
    PackError (the request cannot be carried out; nothing written) or JobFailed
    (writing failed, e.g. the disk is full; nothing written).
    """
    if max_file_bytes is None:
        max_file_bytes = max_file_size(max_pixels)
    check_options(val, test, seed, shard_size, max_pixels, min_side, max_file_bytes)
    if os.path.lexists(out_dir):
        if not overwrite:
            raise PackError("%s already exists (use --overwrite to replace it)" % out_dir)
        if not os.path.isdir(out_dir) or os.path.islink(out_dir):
            raise PackError("%s exists and is not a folder (a file or a symbolic link): not replaced" % out_dir)
    listing = find_images(images_dir)
    classes = listing.classes

    parent = os.path.dirname(os.path.abspath(out_dir))
    made_parent = not os.path.isdir(parent)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".pack-")
    except OSError as e:
        raise JobFailed("cannot create %s: %s" % (out_dir, e.strerror or e)) from None
    try:
        try:
            return _pack_into(tmp, out_dir, listing, classes, val, test, seed, shard_size, max_pixels, min_side,
                              max_file_bytes, progress)
        except OSError as e:
            raise JobFailed("cannot write %s: %s; nothing was written to %s" % (
                e.filename or out_dir, e.strerror or e, out_dir)) from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        if made_parent and os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)


def _pack_into(tmp, out_dir, listing, classes, val, test, seed, shard_size, max_pixels, min_side, max_file_bytes,
               progress):
    # 1. read each candidate once: check its header, hash it, stage its bytes (memory stays flat)
    staging_path = os.path.join(tmp, ".staging")
    staged, rejected, image_warnings = [], [], []
    with open(staging_path, "w+b") as staging:
        for n, (image_id, label, path) in enumerate(listing.items):
            try:
                data, info = read_image(path, max_pixels, min_side, max_file_bytes)
            except ImageRejected as e:
                entry = {"id": image_id, "reason": e.reason, "detail": e.detail}
                if e.warnings:
                    entry["warnings"] = e.warnings
                rejected.append(entry)
            else:
                sha = hashlib.sha256(data).hexdigest()
                staged.append(_Staged(image_id, label, sha, staging.tell(), len(data)))
                staging.write(data)
                if info.warnings:
                    image_warnings.append({"id": image_id, "warnings": list(info.warnings)})
                del data
            if progress and (n + 1) % 1000 == 0:
                progress("checked %d/%d files" % (n + 1, len(listing.items)))

        # 2. the same bytes under several names: one copy per class, or rejected if the classes differ
        kept, duplicates = _dedupe(staged, classes, rejected)
        rejected.sort(key=lambda r: r["id"])
        present = {k.label for k in kept}
        empty = [classes[i] for i in range(len(classes)) if i not in present]
        if empty:
            raise PackError("class folder(s) with no usable image: %s (%d files rejected in all; fix or "
                            "remove them)" % (", ".join(empty), len(rejected)))

        # 3. each image's split from its own bytes
        split_of, fractions, rescued, warnings = assign_splits(
            [(k.id, k.label, k.sha256) for k in kept], classes, seed, val, test)

        # 4. the shards, from the staged bytes (checked again against the hash taken when read)
        counts = {name: {s: 0 for s in SPLITS} for name in classes}
        writers = {s: _ShardWriter(tmp, s, shard_size) for s in SPLITS}
        packed = []
        for image in kept:  # sorted by id
            staging.seek(image.offset)
            data = staging.read(image.length)
            if len(data) != image.length or hashlib.sha256(data).hexdigest() != image.sha256:
                raise JobFailed("the staged copy of %s changed on disk before it was packed (%s); nothing was "
                                "written to %s" % (image.id, staging_path, out_dir))
            split = split_of[image.id]
            writers[split].write_image(image.id, image.label, data)
            counts[classes[image.label]][split] += 1
            packed.append({"id": image.id, "split": split, "sha256": image.sha256})
            del data
        for w in writers.values():
            w.close()
    os.remove(staging_path)

    _write_text(os.path.join(tmp, "labels.json"), labels.dumps(classes))
    totals = {s: sum(c[s] for c in counts.values()) for s in SPLITS}
    skipped = [{"path": p, "kind": kind, "why": why} for p, kind, why in listing.skipped]
    manifest = {
        "format": MANIFEST_FORMAT,
        "mr_tl_version": __version__,
        "seed": seed, "val": val.value, "test": test.value, "split_rule": SPLIT_RULE,
        "max_pixels": max_pixels, "min_side": min_side, "max_file_size": max_file_bytes,
        "files_found": len(listing.found),
        "images_packed": len(packed),
        "images_rejected": len(rejected),
        "images_duplicate": len(duplicates),
        "files_skipped": len(skipped),
        "per_split": totals,
        "per_class": counts,
        "class_fractions": fractions,
        "shards": [s for w in writers.values() for s in w.shards],
        "packed": packed,
        "rejected": rejected,
        "duplicates": duplicates,
        "skipped": skipped,
        "symlinks": listing.symlinks,
        "image_warnings": image_warnings,
        "train_rescued": rescued,
        "warnings": warnings,
    }
    check_accounting(listing.found, manifest)
    _write_json(os.path.join(tmp, "manifest.json"), manifest, sort_keys=True)
    os.chmod(tmp, 0o755)
    fsync_dir(tmp)
    _replace(tmp, out_dir)
    return manifest


def _dedupe(staged, classes, rejected):
    """Keep one image per content; returns ``(kept, duplicates)`` and adds conflicts to ``rejected``."""
    groups = {}
    for image in staged:
        groups.setdefault(image.sha256, []).append(image)
    kept, duplicates = [], []
    for sha, group in groups.items():
        labels = sorted({g.label for g in group})
        if len(labels) > 1:
            ids = [g.id for g in group]
            shown = ", ".join(ids[:6]) + (" and %d more" % (len(ids) - 6) if len(ids) > 6 else "")
            detail = "the same bytes (sha256 %s...) are in classes %s: %s" % (
                sha[:16], ", ".join(classes[i] for i in labels), shown)
            rejected += [{"id": g.id, "reason": "conflicting-labels", "detail": detail} for g in group]
        else:
            kept.append(group[0])
            duplicates += [{"id": g.id, "duplicate_of": group[0].id, "sha256": sha} for g in group[1:]]
    kept.sort(key=lambda k: k.id)
    duplicates.sort(key=lambda d: d["id"])
    return kept, duplicates


def check_accounting(found, manifest):
    """Every file of the listing is packed, rejected, duplicate or skipped, exactly once (else JobFailed)."""
    accounted = Counter(p["id"] for p in manifest["packed"])
    accounted.update(r["id"] for r in manifest["rejected"])
    accounted.update(d["id"] for d in manifest["duplicates"])
    accounted.update(s["path"] for s in manifest["skipped"])
    listed = Counter(found)
    if accounted == listed:
        return
    missing, extra = sorted((listed - accounted).elements()), sorted((accounted - listed).elements())
    raise JobFailed("pack lost track of files: files found %d != packed %d + rejected %d + skipped %d + duplicate %d"
                    " (not accounted for: %s; accounted for but not found, or twice: %s); nothing was written"
                    % (len(found), manifest["images_packed"], manifest["images_rejected"], manifest["files_skipped"],
                       manifest["images_duplicate"], ", ".join(missing[:5]) or "none",
                       ", ".join(extra[:5]) or "none"))


def _replace(tmp, out_dir):
    """Put the finished ``tmp`` at ``out_dir``; an old ``out_dir`` is only removed once the new one is in place."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    old = None
    if os.path.lexists(out_dir):
        old = tempfile.mkdtemp(dir=parent, prefix=".pack-old-")
        os.replace(out_dir, os.path.join(old, "out"))
    os.replace(tmp, out_dir)
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _tally(values):
    return ", ".join("%s %d" % kv for kv in sorted(Counter(values).items()))


def describe(manifest, out_dir, max_warnings=10):
    """The terminal summary: one short block that says what the manifest says."""
    lines = ["packed %d images of %d classes into %s (%d shards)"
             % (manifest["images_packed"], len(manifest["per_class"]), out_dir, len(manifest["shards"])),
             "  train %(train)d  val %(val)d  test %(test)d" % manifest["per_split"]]
    if manifest["images_rejected"]:
        lines.append("  rejected %d: %s" % (manifest["images_rejected"],
                                            _tally(r["reason"] for r in manifest["rejected"])))
    if manifest.get("images_duplicate"):
        lines.append("  duplicate %d: the same bytes as an image packed under another name in the same class"
                     % manifest["images_duplicate"])
    if manifest["files_skipped"]:
        lines.append("  skipped %d: %s" % (manifest["files_skipped"],
                                           _tally(s.get("kind", "other") for s in manifest["skipped"])))
    followed = [s for s in manifest.get("symlinks", []) if s["followed"]]
    if followed:
        lines.append("  followed %d symbolic link%s out of the image folder" % (len(followed),
                                                                                 "" if len(followed) == 1 else "s"))
    if manifest.get("image_warnings"):
        n = len(manifest["image_warnings"])
        lines.append("  Pillow warned about %d image%s" % (n, "" if n == 1 else "s"))
    warnings = manifest.get("warnings", [])
    lines += ["  warning: %s" % w for w in warnings[:max_warnings]]
    if len(warnings) > max_warnings:
        lines.append("  ... and %d more warnings" % (len(warnings) - max_warnings))
    if manifest["images_rejected"] or manifest.get("images_duplicate") or manifest["files_skipped"] or warnings:
        lines.append("  (every file, warning and reason is listed in manifest.json)")
    lines.append("  files found %(files_found)d = packed %(images_packed)d + rejected %(images_rejected)d"
                 " + skipped %(files_skipped)d + duplicate %(images_duplicate)d" % manifest)
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.pack", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images_dir", help="folder with one sub-folder of images per class")
    p.add_argument("out_dir", help="folder to create with shards, labels.json and manifest.json")
    size_help = ("per class: a fraction (0.15) or a count (10) of images for %s (default 0.15). A count N is "
                 "read as the fraction N/n of a class of n images: about N images, not exactly N, and adding "
                 "or removing an image of that class can move others (fractions never do)")
    p.add_argument("--val", type=SplitSize.parse, default=SplitSize(0.15), help=size_help % "validation")
    p.add_argument("--test", type=SplitSize.parse, default=SplitSize(0.15),
                   help="per class: a fraction or a count of images for test (default 0.15; as --val). "
                        "Fractions must add up to less than 1")
    p.add_argument("--seed", type=int, default=42, help="seed of the split (default 42)")
    p.add_argument("--shard-size", type=parse_size, default=64 << 20, metavar="SIZE",
                   help="start a new shard past this size, e.g. 64M (default), 1G")
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS,
                   help="reject images with more pixels (decompression-bomb guard; default %d)" % MAX_PIXELS)
    p.add_argument("--min-side", type=positive_int, default=MIN_SIDE,
                   help="reject images with a side shorter than this (default %d)" % MIN_SIDE)
    p.add_argument("--max-file-size", type=parse_size, default=None, metavar="SIZE",
                   help="reject files larger than this before reading them (default: 8 bytes per pixel of "
                        "--max-pixels + 16M, %dM by default)" % (max_file_size(MAX_PIXELS) >> 20))
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_command(_pack_command, args)


def _pack_command(args):
    manifest = pack(args.images_dir, args.out_dir, val=args.val, test=args.test, seed=args.seed,
                    shard_size=args.shard_size, max_pixels=args.max_pixels, min_side=args.min_side,
                    max_file_bytes=args.max_file_size, overwrite=args.overwrite,
                    progress=lambda m: print(m, file=sys.stderr))
    print(describe(manifest, args.out_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
