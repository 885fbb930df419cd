"""python -m mr_tl.pack IMAGES_DIR OUT_DIR: split images and pack them into text shards.

Input layout, as Caltech-256: one sub-folder per class, the class name is the
folder name (``IMAGES_DIR/001.ak47/001_0001.jpg``).  Output::

    OUT_DIR/train-00000.tsv ...   packed images, one per line (see mr_tl.records)
    OUT_DIR/val-00000.tsv ...
    OUT_DIR/test-00000.tsv ...
    OUT_DIR/labels.json           class index <-> class name
    OUT_DIR/manifest.json         counts per class and split, sha256 per shard,
                                  every rejected or skipped file and why

The split is stratified and deterministic: within each class the images are
put in an order drawn from ``rng(seed, "split", class)``, the first go to
test, the next to val, the rest to train; every class keeps at least one
image in train.  The same input gives byte-identical output.

Each file's header is checked (is it an image Pillow can open, not a
decompression bomb, not tiny); the full decode happens in the featurize job.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from mr_tl import __version__
from mr_tl.cli import fail
from mr_tl.digest import file_digest
from mr_tl.errors import PackError
from mr_tl.images import MAX_PIXELS, MIN_SIDE, ImageRejected, probe, read_file
from mr_tl.records import SPLITS, PackedImage
from mr_tl.seeding import rng

MANIFEST_FORMAT = "mr_tl.pack-manifest/1"
LABELS_FORMAT = "mr_tl.labels/1"




@dataclass(frozen=True)
class SplitSize:
    """How many images of each class go to a split: a count or a fraction."""

    value: float

    @classmethod
    def parse(cls, text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a count (e.g. 10) or a fraction (e.g. 0.15), "
                                             "found %r" % text) from None
        if value < 0 or (value >= 1 and value != int(value)):
            raise argparse.ArgumentTypeError("expected a count >= 0 or a fraction in [0, 1), found %r" % text)
        return cls(value)

    def count(self, n):
        if self.value >= 1:
            return int(self.value)
        return int(self.value * n + 0.5)


def parse_size(text):
    """'64M', '1G', '500k' or a number of bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        size = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a size like 64M or 1G, found %r" % text) from None
    if size < 1:
        raise argparse.ArgumentTypeError("shard size must be positive")
    return size


def _utf8(name):
    """``name`` as printable text; file names that are not UTF-8 come back with \\x.. escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_utf8(name):
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir surrogate-escaped bytes that are not UTF-8
        return False
    return True


def find_images(images_dir):
    """Class names (sorted) and ``(id, class_index, path)`` for every candidate file.

    Also returns what cannot be a candidate (hidden files and folders, files
    outside a class folder, names that are not UTF-8) as ``(relative path,
    why)``, so nothing is dropped silently.
    """
    if not os.path.isdir(images_dir):
        raise PackError("%s is not a folder" % images_dir)
    entries = sorted(os.listdir(images_dir))
    bad_classes = [_utf8(e) for e in entries if not _is_utf8(e) and os.path.isdir(os.path.join(images_dir, e))]
    if bad_classes:
        raise PackError("class folder names must be UTF-8 (they become class names): %s" % ", ".join(bad_classes))
    classes = [e for e in entries if os.path.isdir(os.path.join(images_dir, e)) and not e.startswith(".")]
    skipped = [(_utf8(e), "hidden file or folder") for e in entries if e.startswith(".")]
    skipped += [(_utf8(e), "file outside a class folder") for e in entries
                if not e.startswith(".") and not os.path.isdir(os.path.join(images_dir, e))]
    if not classes:
        raise PackError("%s has no class sub-folders (expected IMAGES_DIR/CLASS/IMAGE)" % images_dir)
    items = []
    for index, name in enumerate(classes):
        root = os.path.join(images_dir, name)
        for directory, dirs, files in os.walk(root):
            rel_dir = os.path.relpath(directory, images_dir).replace(os.sep, "/")
            skipped += [(_utf8(rel_dir + "/" + d), "hidden file or folder") for d in dirs if d.startswith(".")]
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file_name in sorted(files):
                path = os.path.join(directory, file_name)
                rel = rel_dir + "/" + file_name
                if file_name.startswith("."):
                    skipped.append((_utf8(rel), "hidden file or folder"))
                elif not _is_utf8(rel):
                    skipped.append((_utf8(rel), "name is not valid UTF-8 (ids must be text)"))
                else:
                    items.append((rel, index, path))
    items.sort()
    return classes, items, skipped


def split_class(ids, class_name, seed, val, test):
    """``{id: split}`` for the images of one class (at least one stays in train)."""
    order = sorted(ids)
    perm = rng(seed, "split", class_name).permutation(len(order))
    n = len(order)
    n_test = min(test.count(n), max(n - 1, 0))
    n_val = min(val.count(n), max(n - 1 - n_test, 0))
    assignment = {}
    for rank, i in enumerate(perm):
        assignment[order[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return assignment


class _ShardWriter:
    """Writes ``SPLIT-NNNNN.tsv`` files, starting a new one past ``shard_size`` bytes."""

    def __init__(self, out_dir, split, shard_size):
        self.out_dir, self.split, self.shard_size = out_dir, split, shard_size
        self.shards = []
        self._file = None

    def write(self, line):
        data = (line + "\n").encode("utf-8")
        if self._file is None or (self._bytes and self._bytes + len(data) > self.shard_size):
            self._open_next()
        self._file.write(data)
        self._bytes += len(data)
        self.shards[-1]["images"] += 1

    def _open_next(self):
        self.close()
        name = "%s-%05d.tsv" % (self.split, len(self.shards))
        self._file = open(os.path.join(self.out_dir, name), "wb")
        self._bytes = 0
        self.shards.append({"path": name, "images": 0})

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
            shard = self.shards[-1]
            path = os.path.join(self.out_dir, shard["path"])
            shard["bytes"] = os.path.getsize(path)
            shard["sha256"] = file_digest(path)


def pack(images_dir, out_dir, val=SplitSize(0.15), test=SplitSize(0.15), seed=42, shard_size=64 << 20,
         max_pixels=MAX_PIXELS, min_side=MIN_SIDE, overwrite=False, progress=None):
    """Split and pack ``images_dir`` into ``out_dir``; returns the manifest dict.

    Writes into a temporary folder beside ``out_dir`` and renames it at the
    end, so ``out_dir`` is either the complete result or untouched.
    """
    if os.path.exists(out_dir) and not overwrite:
        raise PackError("%s already exists (use --overwrite to replace it)" % out_dir)
    classes, items, skipped = find_images(images_dir)

    accepted, rejected = [], []
    for n, (image_id, label, path) in enumerate(items):
        try:
            data = read_file(path)
            fmt, width, height = probe(data, max_pixels, min_side)
        except ImageRejected as e:
            rejected.append({"id": image_id, "reason": e.reason, "detail": e.detail})
        else:
            accepted.append((image_id, label, path))
        if progress and (n + 1) % 1000 == 0:
            progress("checked %d/%d files" % (n + 1, len(items)))

    by_class = {}
    for image_id, label, _ in accepted:
        by_class.setdefault(label, []).append(image_id)
    empty = [classes[i] for i in range(len(classes)) if i not in by_class]
    if empty:
        raise PackError("class folder(s) with no usable image: %s (%d files rejected in all; fix or "
                        "remove them)" % (", ".join(empty), len(rejected)))
    split_of = {}
    for label, ids in by_class.items():
        split_of.update(split_class(ids, classes[label], seed, val, test))

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".pack-")
    try:
        counts = {name: {s: 0 for s in SPLITS} for name in classes}
        writers = {s: _ShardWriter(tmp, s, shard_size) for s in SPLITS}
        for image_id, label, path in accepted:  # sorted by id
            split = split_of[image_id]
            # the bytes were read once above to check them; reading again keeps memory flat
            data = read_file(path)
            writers[split].write(PackedImage(image_id, label, split, data).to_line())
            counts[classes[label]][split] += 1
        for w in writers.values():
            w.close()
        labels = {"format": LABELS_FORMAT, "classes": classes}
        with open(os.path.join(tmp, "labels.json"), "w", encoding="utf-8") as f:
            json.dump(labels, f, indent=1, ensure_ascii=False)
            f.write("\n")
        totals = {s: sum(c[s] for c in counts.values()) for s in SPLITS}
        manifest = {
            "format": MANIFEST_FORMAT,
            "mr_tl_version": __version__,
            "seed": seed, "val": val.value, "test": test.value,
            "max_pixels": max_pixels, "min_side": min_side,
            "files_found": len(items) + len(skipped),
            "images_packed": len(accepted),
            "images_rejected": len(rejected),
            "files_skipped": len(skipped),
            "per_split": totals,
            "per_class": counts,
            "shards": [s for w in writers.values() for s in w.shards],
            "rejected": rejected,
            "skipped": [{"path": p, "why": why} for p, why in skipped],
        }
        if manifest["images_packed"] + manifest["images_rejected"] + manifest["files_skipped"] \
                != manifest["files_found"]:
            raise AssertionError("pack lost files: %r" % {k: manifest[k] for k in manifest if k.startswith(
                ("files", "images"))})
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o755)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return manifest


def load_labels(path):
    """Class names, in label order, from a ``labels.json``."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise PackError("labels file %s is missing" % path) from None
    except json.JSONDecodeError as e:
        raise PackError("labels file %s is not valid JSON: %s" % (path, e)) from None
    if not isinstance(obj, dict) or obj.get("format") != LABELS_FORMAT or not isinstance(obj.get("classes"), list):
        raise PackError("%s is not an mr_tl labels file (expected format %s)" % (path, LABELS_FORMAT))
    return [str(c) for c in obj["classes"]]


def describe(manifest, out_dir):
    lines = ["packed %d images of %d classes into %s (%d shards)"
             % (manifest["images_packed"], len(manifest["per_class"]), out_dir, len(manifest["shards"])),
             "  train %(train)d  val %(val)d  test %(test)d" % manifest["per_split"]]
    if manifest["images_rejected"]:
        reasons = {}
        for r in manifest["rejected"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        lines.append("  rejected %d: %s (listed in manifest.json)" % (
            manifest["images_rejected"], ", ".join("%s %d" % kv for kv in sorted(reasons.items()))))
    if manifest["files_skipped"]:
        lines.append("  skipped %d hidden or misplaced files (listed in manifest.json)" % manifest["files_skipped"])
    lines.append("  files found %(files_found)d = packed %(images_packed)d + rejected %(images_rejected)d"
                 " + skipped %(files_skipped)d" % manifest)
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.pack", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images_dir", help="folder with one sub-folder of images per class")
    p.add_argument("out_dir", help="folder to create with shards, labels.json and manifest.json")
    p.add_argument("--val", type=SplitSize.parse, default=SplitSize(0.15),
                   help="per class: a fraction (0.15) or a count (10) of images for validation (default 0.15)")
    p.add_argument("--test", type=SplitSize.parse, default=SplitSize(0.15),
                   help="per class: a fraction or a count of images for test (default 0.15)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split (default 42)")
    p.add_argument("--shard-size", type=parse_size, default=64 << 20, metavar="SIZE",
                   help="start a new shard past this size, e.g. 64M (default), 1G")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="reject images with more pixels (decompression-bomb guard; default %d)" % MAX_PIXELS)
    p.add_argument("--min-side", type=int, default=MIN_SIDE,
                   help="reject images with a side shorter than this (default %d)" % MIN_SIDE)
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        manifest = pack(args.images_dir, args.out_dir, val=args.val, test=args.test, seed=args.seed,
                        shard_size=args.shard_size, max_pixels=args.max_pixels, min_side=args.min_side,
                        overwrite=args.overwrite, progress=lambda m: print(m, file=sys.stderr))
    except PackError as e:
        fail(str(e))
    print(describe(manifest, args.out_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
