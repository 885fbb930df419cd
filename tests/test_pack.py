"""mr_tl.pack: stratified deterministic split, shards, manifest, and nothing dropped silently."""

import argparse
import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import mr_tl.pack as pack_module
from mr_tl import labels
from mr_tl.digest import MultisetHash
from mr_tl.errors import InputError, JobFailed, PackError
from mr_tl.pack import MANIFEST_FORMAT, SplitSize, assign_splits, describe, pack, parse_size, split_draw
from mr_tl.records import PackedImage


def png(index, size=(8, 8)):
    """A small PNG whose bytes depend on ``index``."""
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


def make_classes(root, sizes, reverse=False):
    """``{class name: number of images}`` -> IMAGES_DIR/CLASS/img_NNN.png; returns ``{id: bytes}``."""
    files = {}
    for c, (name, n) in enumerate(sizes.items()):
        for i in range(n):
            files["%s/img_%03d.png" % (name, i)] = png(1000 * c + i)
    for rel in (reversed(list(files)) if reverse else files):
        write(root, rel, files[rel])
    return files


@pytest.fixture
def pack_cli(call_main):
    """``python -m mr_tl.pack ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    return lambda *args: call_main(pack_module.main, *args)


def read_packed_file(path):
    with open(str(path), encoding="utf-8") as f:
        return [PackedImage.from_line(line) for line in f]


def split_of(read_packed, out):
    return {image.id: image.split for image in read_packed(str(out))}


def counts(assignment, class_name):
    out = {"train": 0, "val": 0, "test": 0}
    for image_id, split in assignment.items():
        if image_id.split("/", 1)[0] == class_name:
            out[split] += 1
    return out


SIZES = {"a": 20, "b": 10, "c_single": 1, "d_pair": 2}


# -- the split ------------------------------------------------------------------------------------

def expected_split(data, seed, f_val, f_test):
    """The split rule, computed here independently: u from sha256('mr_tl.split/1 SEED SHA256'), first 53 bits."""
    sha = hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256(("mr_tl.split/1 %d %s" % (seed, sha)).encode()).digest()
    u = (int.from_bytes(digest[:8], "big") >> 11) / 2 ** 53
    return "test" if u < f_test else "val" if u < f_test + f_val else "train"


@pytest.mark.parametrize("val, test", [("0.25", "0.1"), ("0.15", "0.15"), ("3", "2"), ("0", "0"), ("0.5", "0")])
def test_each_image_split_follows_its_own_draw(tmp_path, read_packed, val, test):
    # issue 14, item 6: the split of an image is a function of the seed, its bytes and its class's fractions
    files = make_classes(tmp_path / "images", SIZES)
    out = tmp_path / "packed"
    manifest = pack(str(tmp_path / "images"), str(out), val=SplitSize.parse(val), test=SplitSize.parse(test))
    assignment = split_of(read_packed, out)
    assert len(assignment) == sum(SIZES.values())
    rescued = {r["id"] for r in manifest["train_rescued"]}
    for image_id, split in assignment.items():
        n = SIZES[image_id.split("/")[0]]
        f_val, f_test = (float(v) if float(v) < 1 else min(1.0, float(v) / n) for v in (val, test))
        want = "train" if image_id in rescued else expected_split(files[image_id], 42, f_val, f_test)
        assert split == want, image_id
    for name in SIZES:
        assert manifest["per_class"][name] == counts(assignment, name)
        assert manifest["per_class"][name]["train"] >= 1  # every class keeps a training image
    assert manifest["per_split"] == {s: sum(counts(assignment, n)[s] for n in SIZES) for s in ("train", "val", "test")}
    for r in manifest["train_rescued"]:  # only ever an image of a class that drew no training image
        assert expected_split(files[r["id"]], 42, *(manifest["class_fractions"][r["class"]][k]
                                                    for k in ("val", "test"))) == r["drawn"] != "train"


def test_counts_larger_than_a_class_leave_one_training_image_and_say_so(tmp_path, read_packed, pack_cli):
    # issue 14, item 14: "--val 100" used to leave one training image per class without a word
    make_classes(tmp_path / "images", SIZES)
    code, out, err = pack_cli(tmp_path / "images", tmp_path / "out", "--val", "100", "--test", "100")
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for name in SIZES:
        assert manifest["per_class"][name]["train"] == 1
    # a count >= the class size is the fraction 1: every image draws test, one per class is moved to train
    assert sorted(r["class"] for r in manifest["train_rescued"]) == sorted(SIZES)
    assert all(r["drawn"] == "test" for r in manifest["train_rescued"])
    for name in SIZES:
        assert "class %r has only 1 training image (of %d)" % (name, SIZES[name]) in manifest["warnings"]
        assert "warning: class %r has only 1 training image" % name in out


def test_fractions_that_leave_nothing_for_training_are_refused(tmp_path, pack_cli):
    make_classes(tmp_path / "images", {"a": 4})
    for val, test in (("0.6", "0.6"), ("0.5", "0.5"), ("0.99", "0.01")):
        with pytest.raises(PackError, match="leave no images for training"):
            pack(str(tmp_path / "images"), str(tmp_path / "out"), val=SplitSize.parse(val), test=SplitSize.parse(test))
        code, _, err = pack_cli(tmp_path / "images", tmp_path / "out", "--val", val, "--test", test)
        assert code == 2 and err.startswith("error: --val %s + --test %s leave no images" % (val, test))
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_labels_follow_the_sorted_class_folders(tmp_path, read_packed):
    make_classes(tmp_path / "images", {"b": 2, "a": 2, "c": 1})
    pack(str(tmp_path / "images"), str(tmp_path / "out"))
    assert labels.read(str(tmp_path / "out" / "labels.json")) == ["a", "b", "c"]
    for image in read_packed(str(tmp_path / "out")):
        assert image.label == "abc".index(image.id[0])


def test_assign_splits_directly():
    shas = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(20000)]
    images = [("k/%05d" % i, i % 2, sha) for i, sha in enumerate(shas)]
    split_of, fractions, rescued, warnings = assign_splits(images, ["k0", "k1"], 42, SplitSize(0.2), SplitSize(0.1))
    assert fractions == {"k0": {"val": 0.2, "test": 0.1}, "k1": {"val": 0.2, "test": 0.1}}
    assert rescued == [] and warnings == []
    for label in (0, 1):  # stratified: the fractions hold in each class (10,000 draws: within 1.5 points)
        mine = [split_of[i] for i, lab, _ in images if lab == label]
        assert abs(mine.count("val") / len(mine) - 0.2) < 0.015 and abs(mine.count("test") / len(mine) - 0.1) < 0.015
    assert assign_splits(list(reversed(images)), ["k0", "k1"], 42, SplitSize(0.2), SplitSize(0.1))[0] == split_of
    assert assign_splits(images, ["k0", "k1"], 43, SplitSize(0.2), SplitSize(0.1))[0] != split_of  # the seed
    assert assign_splits([], ["k0"], 42, SplitSize(2), SplitSize(3)) == ({}, {}, [], [])
    assert 0 <= split_draw(0, shas[0]) < 1 and split_draw(0, shas[0]) == split_draw(0, shas[0])
    assert split_draw(0, shas[0]) != split_draw(1, shas[0])


@pytest.mark.parametrize("text, value, n, fraction", [("10", 10, 40, 0.25), ("0.15", 0.15, 40, 0.15),
                                                      ("1", 1, 40, 1 / 40), ("0", 0, 40, 0), ("2.0", 2, 5, 0.4),
                                                      ("0.5", 0.5, 3, 0.5), ("10", 10, 3, 1.0)])
def test_split_size_parse(text, value, n, fraction):
    size = SplitSize.parse(text)
    assert size.value == value and size.fraction(n) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["-1", "1.5", "abc", "", "-0.1", "nan", "inf", "-inf", "1e400"])
def test_split_size_parse_errors(text):
    with pytest.raises(argparse.ArgumentTypeError):
        SplitSize.parse(text)


def test_split_size_errors_on_the_command_line(tmp_path, pack_cli):
    make_classes(tmp_path / "images", {"a": 2})
    code, _, err = pack_cli(tmp_path / "images", tmp_path / "out", "--val", "1.5")
    assert code == 2 and "expected a count >= 0 or a fraction in [0, 1), found '1.5'" in err
    assert not os.path.exists(tmp_path / "out")


# -- determinism ----------------------------------------------------------------------------------

def _tree_bytes(root):
    out = {}
    for directory, _, names in os.walk(str(root)):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, str(root))] = f.read()
    return out


def test_same_input_gives_byte_identical_output(tmp_path):
    # two copies of the same images, written in opposite orders (directory order differs)
    make_classes(tmp_path / "one", SIZES)
    make_classes(tmp_path / "two", SIZES, reverse=True)
    pack(str(tmp_path / "one"), str(tmp_path / "out1"), seed=7, shard_size=2000)
    pack(str(tmp_path / "two"), str(tmp_path / "out2"), seed=7, shard_size=2000)
    first, second = _tree_bytes(tmp_path / "out1"), _tree_bytes(tmp_path / "out2")
    assert len(first) > 4  # several shards, labels.json, manifest.json
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name] == second[name], name


def test_different_seed_gives_a_different_split(tmp_path, read_packed):
    make_classes(tmp_path / "images", SIZES)
    splits = []
    for seed in (1, 2):
        out = tmp_path / ("seed%d" % seed)
        manifest = pack(str(tmp_path / "images"), str(out), seed=seed)
        assert manifest["seed"] == seed
        splits.append(split_of(read_packed, out))
    assert splits[0] != splits[1]


# -- manifest and shards --------------------------------------------------------------------------

def test_manifest_counts_and_shard_hashes(tmp_path):
    files = make_classes(tmp_path / "images", SIZES)
    out = tmp_path / "packed"
    manifest = pack(str(tmp_path / "images"), str(out), shard_size=1500)
    with open(out / "manifest.json", encoding="utf-8") as f:
        assert json.load(f) == manifest
    assert manifest["format"] == MANIFEST_FORMAT
    assert (manifest["files_found"], manifest["images_packed"], manifest["images_rejected"],
            manifest["files_skipped"]) == (33, 33, 0, 0)
    assert (manifest["val"], manifest["test"], manifest["seed"]) == (0.15, 0.15, 42)
    shard_names = sorted(n for n in os.listdir(out) if n.endswith(".tsv"))
    assert sorted(s["path"] for s in manifest["shards"]) == shard_names
    per_class = {name: {"train": 0, "val": 0, "test": 0} for name in SIZES}
    for shard in manifest["shards"]:
        path = out / shard["path"]
        data = path.read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["bytes"] == len(data)
        images = read_packed_file(path)
        assert shard["images"] == len(images)
        split = shard["path"].split("-")[0]
        for image in images:
            assert image.split == split
            assert image.data == files[image.id]
            per_class[image.id.split("/")[0]][split] += 1
    assert manifest["per_class"] == per_class
    with open(out / "labels.json", encoding="utf-8") as f:
        assert json.load(f) == {"format": labels.FORMAT, "classes": sorted(SIZES)}
    assert describe(manifest, str(out)).endswith("files found 33 = packed 33 + rejected 0 + skipped 0 + duplicate 0")


def test_each_shard_records_the_multiset_hash_of_its_lines(tmp_path):
    make_classes(tmp_path / "images", SIZES)
    out = tmp_path / "packed"
    manifest = pack(str(tmp_path / "images"), str(out), shard_size=1500)
    assert len(manifest["shards"]) > 3
    for shard in manifest["shards"]:
        lines = (out / shard["path"]).read_bytes().split(b"\n")
        assert lines[-1] == b""  # every line ends with a newline
        assert shard["lines_digest"] == MultisetHash.of(lines[:-1]).hexdigest()
        assert len(lines) - 1 == shard["images"]


def test_a_large_image_is_written_in_pieces(tmp_path, read_packed, monkeypatch):
    monkeypatch.setattr(pack_module, "_B64_CHUNK", 300)  # a line in many pieces; the result must not change
    files = make_classes(tmp_path / "images", {"a": 3})
    big = png(5, size=(64, 64))
    assert len(big) > 3000
    write(tmp_path / "images", "a/big.png", big)
    files["a/big.png"] = big
    manifest = pack(str(tmp_path / "images"), str(tmp_path / "out"), val=SplitSize(0), test=SplitSize(0))
    assert {i.id: i.data for i in read_packed(str(tmp_path / "out"))} == files
    shard = manifest["shards"][0]
    data = (tmp_path / "out" / shard["path"]).read_bytes()
    assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
    assert shard["lines_digest"] == MultisetHash.of(data.split(b"\n")[:-1]).hexdigest()


def test_shard_rotation(tmp_path, read_packed):
    files = make_classes(tmp_path / "images", {"a": 30})
    files["a/zz_big.png"] = png(99, size=(64, 64))  # one line larger than a whole shard
    write(tmp_path / "images", "a/zz_big.png", files["a/zz_big.png"])
    out = tmp_path / "packed"
    manifest = pack(str(tmp_path / "images"), str(out), val=SplitSize(0), test=SplitSize(0), shard_size=1000)
    shards = [s for s in manifest["shards"]]
    assert [s["path"] for s in shards] == ["train-%05d.tsv" % i for i in range(len(shards))]
    assert len(shards) > 5
    for shard in shards:
        assert shard["bytes"] <= 1000 or shard["images"] == 1  # only a single oversized line may exceed it
    assert shards[-1]["images"] == 1 and shards[-1]["bytes"] > 1000
    ids = [image.id for image in read_packed(str(out))]
    assert ids == sorted(files)  # in id order across shards, none lost, none twice


@pytest.mark.parametrize("text, size", [("64M", 64 << 20), ("1G", 1 << 30), ("500k", 500 << 10), ("1000", 1000),
                                        ("2MB", 2 << 20), ("1.5k", 1536), (" 8m ", 8 << 20)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-5M", "lots", "M", "0.1"])
def test_parse_size_errors(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


# -- skipped and rejected files -------------------------------------------------------------------

def test_hidden_and_misplaced_files_are_listed_as_skipped(tmp_path, read_packed):
    images = tmp_path / "images"
    make_classes(images, {"a": 3, "b": 2})
    write(images, ".DS_Store", b"mac")
    write(images, ".hidden_class/x.png", png(1))
    write(images, "README.txt", b"hello")
    write(images, "loose.png", png(2))
    write(images, "a/.DS_Store", b"mac")
    write(images, "b/._img_000.png", png(3))
    manifest = pack(str(images), str(tmp_path / "out"))
    skipped = {s["path"]: s["why"] for s in manifest["skipped"]}
    assert skipped == {".DS_Store": "hidden file or folder", ".hidden_class": "hidden file or folder",
                       "README.txt": "file outside a class folder", "loose.png": "file outside a class folder",
                       "a/.DS_Store": "hidden file or folder", "b/._img_000.png": "hidden file or folder"}
    assert manifest["files_skipped"] == 6 and manifest["images_packed"] == 5
    assert manifest["files_found"] == manifest["images_packed"] + manifest["images_rejected"] + 6
    assert labels.read(str(tmp_path / "out" / "labels.json")) == ["a", "b"]
    assert sorted(i.id for i in read_packed(str(tmp_path / "out"))) == sorted(
        "%s/img_%03d.png" % (c, i) for c, n in (("a", 3), ("b", 2)) for i in range(n))


def test_hidden_sub_folder_inside_a_class_is_listed(tmp_path):
    images = tmp_path / "images"
    make_classes(images, {"a": 2})
    write(images, "a/.thumbnails/img_000.png", png(7))
    manifest = pack(str(images), str(tmp_path / "out"))
    assert "a/.thumbnails" in {s["path"] for s in manifest["skipped"]}


def test_nested_folders_belong_to_their_class(tmp_path, read_packed):
    images = tmp_path / "images"
    make_classes(images, {"a": 1, "b": 1})
    write(images, "b/2019/summer/x.png", png(5))
    pack(str(images), str(tmp_path / "out"))
    labels = {i.id: i.label for i in read_packed(str(tmp_path / "out"))}
    assert labels == {"a/img_000.png": 0, "b/img_000.png": 1, "b/2019/summer/x.png": 1}


def test_non_images_are_rejected_with_their_reason(tmp_path, read_packed, run_module):
    images = tmp_path / "images"
    make_classes(images, {"a": 4, "b": 3})
    write(images, "a/notes.jpg", b"this is a text file with a .jpg name\n")
    write(images, "a/empty.png", b"")
    write(images, "b/tiny.png", png(1, size=(1, 1)))
    truncated = png(2, size=(40, 40))
    write(images, "b/truncated.png", truncated[:len(truncated) // 2])  # header fine: the featurizer decides
    write(images, ".hidden", b"")
    out = tmp_path / "out"
    result = run_module("mr_tl.pack", images, out)
    assert result.returncode == 0, result.stderr
    with open(out / "manifest.json", encoding="utf-8") as f:
        manifest = json.load(f)
    reasons = {r["id"]: r["reason"] for r in manifest["rejected"]}
    assert reasons == {"a/notes.jpg": "not-an-image", "a/empty.png": "empty-file", "b/tiny.png": "too-small"}
    assert all(r["detail"] for r in manifest["rejected"])
    assert manifest["images_rejected"] == 3 and manifest["files_skipped"] == 1 and manifest["images_packed"] == 8
    assert manifest["files_found"] == 12 == manifest["images_packed"] + manifest["images_rejected"] + 1
    packed_ids = {i.id for i in read_packed(str(out))}
    assert "b/truncated.png" in packed_ids and not packed_ids & set(reasons)
    assert "rejected 3: empty-file 1, not-an-image 1, too-small 1" in result.stdout
    assert "files found 12 = packed 8 + rejected 3 + skipped 1" in result.stdout


# -- errors leave nothing behind --------------------------------------------------------------------

def test_existing_out_dir_needs_overwrite(tmp_path, pack_cli):
    make_classes(tmp_path / "images", {"a": 3})
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(PackError, match="already exists \\(use --overwrite"):
        pack(str(tmp_path / "images"), str(out))
    code, _, err = pack_cli(tmp_path / "images", out)
    assert code == 2 and err == "error: %s already exists (use --overwrite to replace it)\n" % out
    assert os.listdir(out) == ["precious.txt"]
    assert sorted(os.listdir(tmp_path)) == ["images", "out"]
    pack(str(tmp_path / "images"), str(out), overwrite=True)
    assert "precious.txt" not in os.listdir(out) and "manifest.json" in os.listdir(out)


@pytest.mark.parametrize("layout, message", [
    ({"a/x.png": png(1), "b/notes.jpg": b"text"}, "class folder\\(s\\) with no usable image: b"),
    ({"a/x.png": png(1), "b/.hidden.png": png(2)}, "no usable image: b"),
    ({"loose.png": png(1)}, "has no class sub-folders"),
])
def test_errors_leave_nothing_behind(tmp_path, layout, message, pack_cli):
    images = tmp_path / "images"
    images.mkdir()
    for rel, data in layout.items():
        write(images, rel, data)
    out = tmp_path / "parent" / "out"
    with pytest.raises(PackError, match=message):
        pack(str(images), str(out))
    assert not os.path.exists(out)
    assert not os.path.exists(tmp_path / "parent") or os.listdir(tmp_path / "parent") == []
    code, _, err = pack_cli(images, out)
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert not os.path.exists(out)


def test_missing_images_dir(tmp_path):
    with pytest.raises(PackError, match="is not a folder"):
        pack(str(tmp_path / "nope"), str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


def test_failure_while_writing_keeps_the_old_output(tmp_path, monkeypatch, pack_cli):
    # the shards used to be written from a second read of every file; now from the staged bytes:
    # the fault is injected in the writing itself (an I/O error on the second shard)
    make_classes(tmp_path / "images", {"a": 3, "b": 3})
    out = tmp_path / "out"
    pack(str(tmp_path / "images"), str(out))
    before = _tree_bytes(out)
    opened = []
    real_open_next = pack_module._ShardWriter._open_next

    def flaky_open_next(self):
        opened.append(self.split)
        if len(opened) > 1:
            raise OSError(5, "Input/output error", "disk went away")
        return real_open_next(self)

    monkeypatch.setattr(pack_module._ShardWriter, "_open_next", flaky_open_next)
    with pytest.raises(JobFailed, match="cannot write disk went away: Input/output error; nothing was written"):
        pack(str(tmp_path / "images"), str(out), seed=1, overwrite=True)
    assert _tree_bytes(out) == before  # the complete old result, untouched
    assert sorted(os.listdir(tmp_path)) == ["images", "out"]  # no temporary folder left
    opened.clear()
    code, _, err = pack_cli(tmp_path / "images", out, "--seed", "1", "--overwrite")
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("error: cannot write disk went away")
    assert _tree_bytes(out) == before


# -- names ----------------------------------------------------------------------------------------

def test_non_ascii_and_space_names_round_trip(tmp_path, read_packed):
    images = tmp_path / "images"
    files = {
        "002.café au lait/naïve photo 1.png": png(1),
        "002.café au lait/100% sure.png": png(2),
        "001.日本 語/写真 ①.png": png(3),
        "001.日本 語/tab\there.png": png(4),
        "001.日本 語/new\nline.png": png(5),
        "003.emoji 😀/a b c.png": png(6),
    }
    for rel, data in files.items():
        write(images, rel, data)
    out = tmp_path / "out"
    manifest = pack(str(images), str(out), val=SplitSize(0), test=SplitSize(0))
    classes = ["001.日本 語", "002.café au lait", "003.emoji 😀"]
    assert labels.read(str(out / "labels.json")) == classes
    with open(out / "labels.json", encoding="utf-8") as f:
        assert "café" in f.read()  # readable, not \\u-escaped
    assert sorted(manifest["per_class"]) == classes
    got = {i.id: (i.label, i.data) for i in read_packed(str(out))}
    assert got == {rel: (classes.index(rel.split("/")[0]), data) for rel, data in files.items()}
    for shard in manifest["shards"]:
        with open(out / shard["path"], "rb") as f:
            assert f.read().count(b"\n") == shard["images"]  # the newline in a name did not split a line


def test_file_name_that_is_not_utf8(tmp_path):
    images = tmp_path / "images"
    make_classes(images, {"a": 2})
    with open(os.path.join(os.fsencode(str(images)), b"a", b"caf\xe9.png"), "wb") as f:
        f.write(png(9))
    try:
        manifest = pack(str(images), str(tmp_path / "out"))
    except PackError:
        return  # a clear error is acceptable too
    listed = [s["path"] for s in manifest["skipped"]] + [r["id"] for r in manifest["rejected"]]
    assert len(listed) == 1 and manifest["images_packed"] == 2


def test_files_in_a_sub_folder_whose_name_is_not_utf8_are_skipped(tmp_path):
    images = tmp_path / "images"
    make_classes(images, {"a": 2})
    folder = os.path.join(os.fsencode(str(images)), b"a", b"caf\xe9")
    os.makedirs(folder)
    with open(os.path.join(folder, b"x.png"), "wb") as f:
        f.write(png(9))
    manifest = pack(str(images), str(tmp_path / "out"))
    assert [(s["path"], s["kind"]) for s in manifest["skipped"]] == [("a/caf\\xe9/x.png", "bad-name")]
    assert manifest["images_packed"] == 2 and manifest["files_found"] == 3


def test_load_labels_errors(tmp_path):
    with pytest.raises(InputError, match="missing"):
        labels.read(str(tmp_path / "labels.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        labels.read(str(bad))
    bad.write_text(json.dumps({"format": "something/else", "classes": ["a"]}))
    with pytest.raises(InputError, match="not an mr_tl labels file"):
        labels.read(str(bad))
