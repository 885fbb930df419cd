"""Nothing lost, nothing mislabeled (issue 14, the pack side).

Every file of the image folder ends up exactly once in the manifest (packed, rejected,
duplicate or skipped) and the count is checked against the listing; symbolic links cannot
duplicate or relabel images; identical bytes cannot land in two classes or two splits;
an image's split depends on its own bytes only; files are read once, only if they are
regular files of a sane size; failures are one error line and leave nothing behind.
"""

import builtins
import io
import json
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mr_tl.pack as pack_module
from mr_tl.errors import JobFailed
from mr_tl.pack import SplitSize, pack
from mr_tl.records import PackedImage


def png(index, size=(8, 8)):
    g = np.random.default_rng(index)
    buf = io.BytesIO()
    Image.fromarray(g.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write(root, rel, data):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_images(root, sizes, start=0):
    """``{class: n}`` -> ``{id: bytes}``, every image different."""
    files = {}
    for c, (name, n) in enumerate(sorted(sizes.items())):
        for i in range(n):
            rel = "%s/img_%03d.png" % (name, i)
            files[rel] = png(start + 1000 * c + i)
            write(root, rel, files[rel])
    return files


def packed(out):
    images = {}
    for name in sorted(os.listdir(str(out))):
        if name.endswith(".tsv"):
            with open(os.path.join(str(out), name), encoding="utf-8") as f:
                for line in f:
                    image = PackedImage.from_line(line)
                    assert image.id not in images
                    images[image.id] = image
    return images


def manifest_of(out):
    with open(os.path.join(str(out), "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def entries_on_disk(root):
    """Every entry of the tree that is not a folder walked into, counted here without mr_tl: files, links
    (not followed), and hidden folders (one entry each, not looked into)."""
    n = 0
    for directory, dirs, files in os.walk(str(root)):
        n += len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(directory, d)) or d.startswith("."))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return n


def accounted(manifest):
    """id/path -> how the manifest accounts for it; each must appear once."""
    out = {}
    for kind, key, entries in (("packed", "id", manifest["packed"]), ("rejected", "id", manifest["rejected"]),
                               ("duplicate", "id", manifest["duplicates"]), ("skipped", "path", manifest["skipped"])):
        for entry in entries:
            assert entry[key] not in out, "%s listed twice" % entry[key]
            out[entry[key]] = kind
    assert len(out) == manifest["files_found"]
    assert manifest["files_found"] == manifest["images_packed"] + manifest["images_rejected"] \
        + manifest["images_duplicate"] + manifest["files_skipped"]
    return out


def one_error_line(result, code):
    """The one error line (``error: ...``, or argparse's ``PROG: error: ...`` after its usage lines)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:") or ": error: " in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- item 4: symbolic links ----------------------------------------------------------------------------

def test_a_link_to_the_image_root_makes_no_fake_class_and_is_listed(tmp_path):
    images = tmp_path / "images"
    files = make_images(images, {"a": 3, "b": 3})
    os.symlink(".", images / "everything")          # a class folder that is the whole root
    os.symlink("..", images / "a" / "up")           # inside a class: the root again
    os.symlink("../b/img_000.png", images / "a" / "stolen.png")  # another class's image
    manifest = pack(str(images), str(tmp_path / "out"))
    assert manifest["per_class"].keys() == {"a", "b"}
    assert {i: p.label for i, p in packed(tmp_path / "out").items()} == {i: "ab".index(i[0]) for i in files}
    links = {s["path"]: s for s in manifest["symlinks"]}
    assert set(links) == {"everything", "a/up", "a/stolen.png"} and not any(s["followed"] for s in links.values())
    assert links["everything"]["why"].startswith("symbolic link to the image folder itself inside the image folder")
    assert "b/img_000.png inside the image folder" in links["a/stolen.png"]["why"]
    skipped = {s["path"]: s["kind"] for s in manifest["skipped"]}
    assert skipped == {"everything": "symlink", "a/up": "symlink", "a/stolen.png": "symlink"}
    assert accounted(manifest) == dict({i: "packed" for i in files}, **{p: "skipped" for p in skipped})


def test_links_out_of_the_image_folder_are_followed_and_loops_are_not(tmp_path, read_packed):
    outside = tmp_path / "elsewhere"
    extra = make_images(outside, {"more": 2}, start=50)
    os.symlink("..", outside / "more" / "loop")  # from inside the followed folder back to a parent of it
    images = tmp_path / "images"
    files = make_images(images, {"a": 2, "b": 2})
    os.symlink(str(outside / "more"), images / "a" / "more")          # a sub-folder of class a, elsewhere
    os.symlink(str(outside / "more" / "img_000.png"), images / "b" / "linked.png")  # one file, elsewhere
    os.symlink(str(tmp_path), images / "b" / "parent")                # contains the image folder: a loop
    manifest = pack(str(images), str(tmp_path / "out"), val=SplitSize(0), test=SplitSize(0))
    got = {i: p.label for i, p in packed(tmp_path / "out").items()}
    assert got == dict({i: "ab".index(i[0]) for i in files}, **{"a/more/img_001.png": 0})
    # b/linked.png has the bytes of a/more/img_000.png: two classes, so both are rejected, not mislabeled
    assert extra["more/img_000.png"] == (images / "b" / "linked.png").read_bytes()
    links = {s["path"]: (s["followed"], s["why"]) for s in manifest["symlinks"]}
    assert links["a/more"] == (True, "points outside the image folder: followed")
    assert links["b/linked.png"] == (True, "points outside the image folder: followed")
    assert links["a/more/loop"][0] is False and "a loop" in links["a/more/loop"][1]
    assert links["b/parent"][0] is False and "a loop" in links["b/parent"][1]
    rejected = {r["id"]: r["reason"] for r in manifest["rejected"]}
    assert rejected == {"b/linked.png": "conflicting-labels", "a/more/img_000.png": "conflicting-labels"}
    accounted(manifest)


def test_a_dangling_link_is_rejected_as_unreadable(tmp_path):
    images = tmp_path / "images"
    make_images(images, {"a": 2})
    os.symlink(str(tmp_path / "gone.png"), images / "a" / "dangling.png")
    manifest = pack(str(images), str(tmp_path / "out"))
    assert [(r["id"], r["reason"]) for r in manifest["rejected"]] == [("a/dangling.png", "unreadable")]
    assert manifest["symlinks"][0]["why"].startswith("dangling")
    accounted(manifest)


# -- item 5: the same bytes under two names --------------------------------------------------------------

def test_identical_images_are_packed_once_or_rejected_as_conflicting(tmp_path, run_module):
    images = tmp_path / "images"
    files = make_images(images, {"cats": 4, "dogs": 4})
    write(images, "cats/copy of img_001.png", files["cats/img_001.png"])       # same class: a duplicate
    write(images, "cats/sub/again img_001.png", files["cats/img_001.png"])
    write(images, "dogs/actually a cat.png", files["cats/img_002.png"])        # two classes: a conflict
    result = run_module("mr_tl.pack", images, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(tmp_path / "out")
    sha = manifest["duplicates"][0]["sha256"]
    # the copy whose id sorts first is packed; the others name it
    kept = "cats/copy of img_001.png"
    assert manifest["duplicates"] == [{"id": "cats/img_001.png", "duplicate_of": kept, "sha256": sha},
                                      {"id": "cats/sub/again img_001.png", "duplicate_of": kept, "sha256": sha}]
    rejected = {r["id"]: r for r in manifest["rejected"]}
    assert set(rejected) == {"cats/img_002.png", "dogs/actually a cat.png"}
    for r in rejected.values():
        assert r["reason"] == "conflicting-labels"
        assert "are in classes cats, dogs: cats/img_002.png, dogs/actually a cat.png" in r["detail"]
    got = packed(tmp_path / "out")
    assert set(got) == set(files) - {"cats/img_002.png", "cats/img_001.png"} | {"cats/copy of img_001.png"}
    assert len({p.data for p in got.values()}) == len(got)  # no bytes twice: no leakage between splits
    assert "rejected 2: conflicting-labels 2" in result.stdout
    assert "duplicate 2: the same bytes as an image packed under another name" in result.stdout
    assert "files found 11 = packed 7 + rejected 2 + skipped 0 + duplicate 2" in result.stdout
    assert entries_on_disk(images) == 11
    accounted(manifest)


# -- item 6: an image's split depends on its own bytes ---------------------------------------------------

def splits(out):
    return {i: p.split for i, p in packed(out).items()}


def test_adding_removing_or_changing_one_image_moves_no_other(tmp_path):
    images = tmp_path / "images"
    files = make_images(images, {"a": 30, "b": 25})
    pack(str(images), str(tmp_path / "before"))
    before = splits(tmp_path / "before")
    write(images, "a/new.png", png(777))                    # added
    os.remove(images / "b" / "img_003.png")                 # removed
    write(images, "b/img_010.png", png(778))                # changed
    write(images, "a/img_005.png", b"not an image any more")  # now rejected
    pack(str(images), str(tmp_path / "after"))
    after = splits(tmp_path / "after")
    changed = {"a/new.png", "b/img_003.png", "b/img_010.png", "a/img_005.png"}
    assert {i: s for i, s in before.items() if i not in changed} == {i: s for i, s in after.items() if i not in changed}
    # identical bytes land in the same split, whatever their name
    write(images, "a/renamed.png", files["a/img_007.png"])
    os.remove(images / "a" / "img_007.png")
    pack(str(images), str(tmp_path / "renamed"))
    assert splits(tmp_path / "renamed")["a/renamed.png"] == after["a/img_007.png"]


POOL = [png(10_000 + i) for i in range(40)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       val=st.floats(0, 0.6), test=st.floats(0, 0.6), seed=st.integers(0, 2 ** 31),
       add=st.booleans(), which=st.integers(0, 10 ** 6))
def test_property_one_image_more_or_less_never_moves_another(sizes, val, test, seed, add, which):
    """The property covers: fraction mode (--val and --test below 1, summing to less than 1), images with
    distinct bytes (a copy is a duplicate or a conflict, decided by content), any seed, 1 to 3 classes of 1
    to 6 images, one image added to any class or removed from a class that keeps at least one.  The only
    images whose split may differ are the added or removed one and those moved to train because their class
    drew no training image (listed in train_rescued, in one run or the other): that rescue depends on the
    rest of the class by design."""
    if val + test >= 0.95:
        val, test = val / 2, test / 2
    layout, k = {}, 0
    for c, n in enumerate(sizes):
        for i in range(n):
            layout["c%d/img_%d.png" % (c, i)] = POOL[k]
            k += 1
    changed = dict(layout)
    if add:
        target = "c%d/new.png" % (which % len(sizes))
        changed[target] = POOL[k]
    else:
        target = sorted(layout)[which % len(layout)]
        if sum(1 for i in layout if i.split("/")[0] == target.split("/")[0]) == 1:
            return  # removing the last image of a class is an error (an empty class), not a split
        del changed[target]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in (("one", layout), ("two", changed)):
            for rel, data in files.items():
                write(os.path.join(tmp, name), rel, data)
            out = os.path.join(tmp, name + "-out")
            manifest = pack(os.path.join(tmp, name), out, val=SplitSize(val), test=SplitSize(test), seed=seed)
            results.append((splits(out), {r["id"] for r in manifest["train_rescued"]}))
    (first, rescued1), (second, rescued2) = results
    for image_id in set(first) & set(second) - {target} - rescued1 - rescued2:
        assert first[image_id] == second[image_id], image_id


# -- item 8: the count is made from the listing and checked ---------------------------------------------

def test_files_found_is_counted_from_the_listing(tmp_path):
    images = tmp_path / "images"
    files = make_images(images, {"a": 3, "b": 2})
    write(images, ".DS_Store", b"mac")
    write(images, "a/.hidden/x.png", png(1))
    write(images, "loose.png", png(2))
    write(images, "b/notes.png", b"text")
    write(images, "b/copy.png", files["b/img_000.png"])
    os.symlink("../a/img_000.png", images / "b" / "link.png")
    manifest = pack(str(images), str(tmp_path / "out"))
    # the listing as os.walk sees it, hidden folders counted as one entry (their files are not looked at)
    assert manifest["files_found"] == entries_on_disk(images) == 11
    assert accounted(manifest) == dict({i: "packed" for i in files}, **{
        ".DS_Store": "skipped", "a/.hidden": "skipped", "loose.png": "skipped", "b/notes.png": "rejected",
        "b/copy.png": "packed", "b/img_000.png": "duplicate", "b/link.png": "skipped"})


def test_a_file_lost_on_the_way_fails_the_check(tmp_path, monkeypatch, call_main):
    images = tmp_path / "images"
    make_images(images, {"a": 3})
    real = pack_module.find_images

    def listing_with_a_ghost(images_dir):
        listing = real(images_dir)
        listing.found.append("a/ghost.png")  # a file the listing saw that no later step accounts for
        return listing

    monkeypatch.setattr(pack_module, "find_images", listing_with_a_ghost)
    with pytest.raises(JobFailed, match=r"pack lost track of files: files found 4 != packed 3 \+ rejected 0 \+ "
                                        r"skipped 0 \+ duplicate 0 \(not accounted for: a/ghost.png"):
        pack(str(images), str(tmp_path / "out"))
    code, out, err = call_main(pack_module.main, images, tmp_path / "out")
    assert code == 1 and err.startswith("error: pack lost track of files") and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["images"]  # nothing written


# -- item 9: each file is read once ----------------------------------------------------------------------

def test_each_file_is_opened_once_and_a_file_gone_after_it_was_read_changes_nothing(tmp_path, monkeypatch):
    images = tmp_path / "images"
    files = make_images(images, {"a": 4})
    root = str(images)
    opens = {}
    real_open, real_os_open = builtins.open, os.open

    def seen(path):
        path = os.fspath(path) if not isinstance(path, int) else ""
        if isinstance(path, str) and path.startswith(root) and os.path.isfile(path):
            opens[path] = opens.get(path, 0) + 1
            if opens[path] == 2:  # deleted between a first and a second read
                os.remove(path)

    monkeypatch.setattr(builtins, "open", lambda file, *a, **kw: (seen(file), real_open(file, *a, **kw))[1])
    monkeypatch.setattr(os, "open", lambda path, *a, **kw: (seen(path), real_os_open(path, *a, **kw))[1])
    manifest = pack(root, str(tmp_path / "out"))
    monkeypatch.undo()
    assert sorted(opens.values()) == [1, 1, 1, 1]
    assert {i: p.data for i, p in packed(tmp_path / "out").items()} == files
    assert manifest["images_packed"] == 4


# -- item 10: regular files only, of a sane size ----------------------------------------------------------

def test_a_fifo_and_a_link_to_a_device_are_rejected_unopened(tmp_path, run_module):
    images = tmp_path / "images"
    files = make_images(images, {"a": 3})
    os.mkfifo(images / "a" / "pipe.png")  # reading it would wait forever for a writer
    os.symlink("/dev/null", images / "a" / "device.png")
    result = run_module("mr_tl.pack", images, tmp_path / "out", timeout=60)
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(tmp_path / "out")
    rejected = {r["id"]: (r["reason"], r["detail"]) for r in manifest["rejected"]}
    assert rejected == {
        "a/pipe.png": ("not-a-regular-file", "a FIFO (named pipe), never opened for reading"),
        "a/device.png": ("not-a-regular-file", "a character device, never opened for reading")}
    assert set(packed(tmp_path / "out")) == set(files)
    assert "rejected 2: not-a-regular-file 2" in result.stdout
    accounted(manifest)


def test_a_file_over_the_size_cap_is_rejected_before_it_is_read(tmp_path, run_module):
    images = tmp_path / "images"
    files = make_images(images, {"a": 3})
    write(images, "a/big.png", png(3, size=(200, 200)))
    result = run_module("mr_tl.pack", images, tmp_path / "out", "--max-file-size", "50k")
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(tmp_path / "out")
    assert [(r["id"], r["reason"], r["detail"]) for r in manifest["rejected"]] == [
        ("a/big.png", "file-too-large", "%d bytes, more than the cap of 51200 bytes"
         % (images / "a" / "big.png").stat().st_size)]
    assert manifest["max_file_size"] == 51200 and set(packed(tmp_path / "out")) == set(files)
    # the default cap follows --max-pixels
    result = run_module("mr_tl.pack", images, tmp_path / "out2", "--max-pixels", "1000")
    assert manifest_of(tmp_path / "out2")["max_file_size"] == 8000 + (16 << 20)


# -- item 12: bad flags and a full disk are one error line ----------------------------------------------

@pytest.mark.parametrize("args", [("--val", "nan"), ("--val", "inf"), ("--test=-inf",), ("--shard-size", "inf"),
                                  ("--shard-size", "nan"), ("--min-side=-3",), ("--min-side", "0"),
                                  ("--max-pixels=-1",), ("--max-file-size", "0"), ("--val", "1e400")])
def test_bad_flags_are_one_error_line(tmp_path, run_module, args):
    make_images(tmp_path / "images", {"a": 2})
    result = run_module("mr_tl.pack", tmp_path / "images", tmp_path / "out", *args)
    assert args[0].split("=")[0] in one_error_line(result, 2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [16 << 10, 200 << 10])  # full while staging / full while writing the shards
def test_disk_full_is_one_error_line_and_leaves_nothing(tmp_path, run_module, small_disk, size):
    images = tmp_path / "images"
    make_images(images, {"a": 6, "b": 6})
    for i in range(8):  # ~ 30 kB each, incompressible
        write(images, "a/big_%d.png" % i, png(500 + i, size=(100, 100)))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(images) for f in fs)
    assert total * 0.9 > size or total * 4 / 3 > size * 0.6  # staging, or staging + shards, cannot fit
    disk = small_disk(size)
    result = run_module("mr_tl.pack", images, disk / "packed")
    line = one_error_line(result, 1)
    assert "No space left on device" in line and "nothing was written to %s" % (disk / "packed") in line
    assert os.listdir(disk) == []  # no output, no half-written folder, no temporary folder


# -- item 15: Pillow's warnings belong to their image -----------------------------------------------------

def tiff_with_a_bad_tag(side=8):
    """An 8x8 grayscale TIFF with an ImageDescription longer than the file: Pillow warns when it opens it."""
    entries = [(256, 3, 1, side), (257, 3, 1, side), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (270, 2, 100000, 0), (273, 4, 1, 8 + 2 + 12 * 10 + 4), (277, 3, 1, 1), (278, 3, 1, side),
               (279, 4, 1, side * side)]
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 else \
            struct.pack("<HHII", tag, kind, count, value)
    return out + struct.pack("<I", 0) + bytes(range(side * side))


def test_pillow_warnings_are_listed_with_their_image_not_printed(tmp_path, run_module):
    images = tmp_path / "images"
    make_images(images, {"a": 2})
    write(images, "a/odd.tif", tiff_with_a_bad_tag())
    result = run_module("mr_tl.pack", images, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Tag data" not in result.stderr, result.stderr
    manifest = manifest_of(tmp_path / "out")
    assert manifest["image_warnings"] == [
        {"id": "a/odd.tif", "warnings": ["UserWarning: Tag data larger than file. Skipping tag 270"]}]
    assert "Pillow warned about 1 image\n" in result.stdout
    assert "a/odd.tif" in packed(tmp_path / "out")


# -- the terminal says what the manifest says -------------------------------------------------------------

def test_the_summary_is_one_block_with_every_category(tmp_path, run_module):
    images = tmp_path / "images"
    files = make_images(images, {"a": 3, "single": 1})
    write(images, "a/notes.png", b"text")
    write(images, "a/copy.png", files["a/img_000.png"])
    write(images, ".hidden", b"")
    result = run_module("mr_tl.pack", images, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2:] == [
        "  rejected 1: not-an-image 1",
        "  duplicate 1: the same bytes as an image packed under another name in the same class",
        "  skipped 1: hidden 1",
        "  warning: class 'single' has only 1 training image (of 1)",
        "  (every file, warning and reason is listed in manifest.json)",
        "  files found 7 = packed 4 + rejected 1 + skipped 1 + duplicate 1"]
    manifest = manifest_of(tmp_path / "out")
    assert manifest["warnings"] == ["class 'single' has only 1 training image (of 1)"]
    assert result.stderr == ""
