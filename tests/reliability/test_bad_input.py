"""Junk in, nothing lost: every image is featurized or rejected with its reason, and the counts add up."""

import json
import os

import numpy as np
import pytest

from mr_tl.records import FeatureRecord, RejectedRecord, parse_feature_line

from .corpus import make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("corpus") / "images")
    expected, twins = make_corpus(root)
    return root, expected, twins


@pytest.fixture(scope="module")
def packed(corpus, tmp_path_factory, run_module):
    root, _, _ = corpus
    out = str(tmp_path_factory.mktemp("packed") / "packed")
    result = run_module("mr_tl.pack", root, out, "--val", 0, "--test", 0)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def featurized(packed, tiny_vgg16_fc2, tmp_path_factory, run_module):
    out = str(tmp_path_factory.mktemp("features") / "features")
    result = run_module("mr_tl.featurize", "-r", "local", "--model", tiny_vgg16_fc2, packed[0], "-o", out)
    assert result.returncode == 0, result.stderr[-3000:]
    records = {}
    for name in sorted(os.listdir(out)):
        if name.startswith("part-"):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                for line in f:
                    record = parse_feature_line(line)
                    assert record.id not in records, "duplicate record for %r" % record.id
                    records[record.id] = record
    with open(os.path.join(out, "_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    return records, summary, result


def test_pack_finishes_and_accounts_for_every_file(corpus, packed):
    root, expected, _ = corpus
    out, result = packed
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["files_found"] == len(expected)
    assert manifest["files_found"] == \
        manifest["images_packed"] + manifest["images_rejected"] + manifest["files_skipped"]
    rejected = {r["id"]: r["reason"] for r in manifest["rejected"]}
    header_checks = {"empty-file", "not-an-image", "too-small", "too-large", "unreadable"}
    assert rejected == {i: r for i, r in expected.items() if r in header_checks}
    assert "files found %d = packed" % len(expected) in result.stdout


def test_featurize_finishes_and_every_image_is_featurized_or_rejected_with_its_reason(corpus, packed, featurized):
    _, expected, _ = corpus
    records, summary, result = featurized
    with open(os.path.join(packed[0], "manifest.json"), encoding="utf-8") as f:
        packed_ids = {i for i in expected} - {r["id"] for r in json.load(f)["rejected"]}
    assert set(records) == packed_ids  # each packed image has exactly one output record
    for image_id, record in records.items():
        if expected[image_id] == "featurized":
            assert isinstance(record, FeatureRecord), (image_id, record)
            assert np.all(np.isfinite(record.features))
        else:
            assert isinstance(record, RejectedRecord) and record.reason == expected[image_id], (image_id, record)
    featurized, rejected = sum(summary["records"]["featurized"].values()), summary["records"]["rejected"]
    assert featurized + rejected == summary["input"]["images"] == summary["input"]["expected_from_manifest"]
    assert summary["reasons"] == {"corrupt": 1}
    assert [r["id"] for r in summary["rejected_images"]] == ["dogs/truncated.jpg"]
    assert "rejected 1 (corrupt 1)" in result.stderr and "dogs/truncated.jpg" in result.stderr


def test_odd_but_valid_images_are_featurized_correctly(corpus, featurized):
    _, _, twins = corpus
    records, _, _ = featurized
    for odd, plain in twins.items():
        a, b = records[odd].features, records[plain].features
        np.testing.assert_array_equal(a, b, err_msg="%s should look exactly like %s" % (odd, plain))
    # CMYK goes through lossy JPEG: the same picture, not the same bits
    cmyk, reference = records["cats/cmyk.jpg"].features, records["cats/reference.png"].features
    cosine = float(cmyk @ reference / (np.linalg.norm(cmyk) * np.linalg.norm(reference)))
    assert cosine > 0.98


def test_names_with_spaces_and_non_ascii_survive(featurized):
    records, _, _ = featurized
    assert isinstance(records["chats tigrés/éléphant ☃.png"], FeatureRecord)
    assert isinstance(records["seul/only one.png"], FeatureRecord)
    assert records["seul/only one.png"].split == "train"  # a class of one keeps it in train


def test_the_summary_check_catches_lost_records(packed, tiny_vgg16_fc2, tmp_path, run_module):
    """If input went missing between pack and featurize, the command says so and fails."""
    import shutil

    copy = str(tmp_path / "packed")
    shutil.copytree(packed[0], copy)
    shard = sorted(n for n in os.listdir(copy) if n.endswith(".tsv"))[0]
    with open(os.path.join(copy, shard), encoding="utf-8") as f:
        lines = f.readlines()
    with open(os.path.join(copy, shard), "w", encoding="utf-8") as f:
        f.writelines(lines[1:])  # one image lost after packing
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tiny_vgg16_fc2, copy, "-o", tmp_path / "out")
    with open(os.path.join(copy, "manifest.json"), encoding="utf-8") as f:
        packed_count = json.load(f)["images_packed"]
    assert result.returncode == 1
    assert "is not marked complete" in result.stderr
    assert "the tasks read %d images, the pack manifest lists %d" % (packed_count - 1, packed_count) in result.stderr
    assert not os.path.exists(tmp_path / "out" / "_COMPLETE")
