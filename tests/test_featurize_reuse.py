"""featurize --reuse (incremental featurize) and --augment flip (issue 18.2, 15.3).

``--reuse OLD``: the output equals a full run on the same pack, byte for byte
(sorted records), and exactly the new or changed images go through the trunk
(the job's ``featurized`` counter, in the summary's ``reuse`` entry); old
features of another model, preprocessing or augmentation are refused.
``--augment flip``: each vector is the float32 mean of the trunk's outputs for
the image and its mirror; the exported classifier does the same in its graph.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_featurize import append_to_shard, copy_pack, featurize_in_process, load_json, part_lines, truncated_jpeg

from mr_tl.augment import mirrored
from mr_tl.digest import MultisetHash
from mr_tl.errors import JobFailed
from mr_tl.images import preprocess
from mr_tl.model.session import Featurizer
from mr_tl.model.spec import ModelSpec, sidecar_path
from mr_tl.records import PackedImage, parse_feature_line

PYTHON = sys.executable


def featurize(*args):
    job, lines = featurize_in_process(*args)
    return job, sorted(lines)


def rewrite_pack(pack_dir, change):
    """Apply ``change(PackedImage) -> PackedImage`` to every packed line of a pack folder (a copy), keeping
    manifest.json's per-shard counts and digests in step."""
    manifest_path = os.path.join(pack_dir, "manifest.json")
    manifest = load_json(manifest_path)
    for shard in manifest["shards"]:
        path = os.path.join(pack_dir, shard["path"])
        with open(path, encoding="utf-8") as f:
            lines = [change(PackedImage.from_line(line)).to_line() for line in f]
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        with open(path, "wb") as f:
            f.write(data)
        shard["bytes"], shard["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        shard["lines_digest"] = MultisetHash.of(lines).hexdigest()
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    return pack_dir


def reuse_counts(out):
    summary = load_json(os.path.join(str(out), "_summary.json"))
    return summary["reuse"]["featurized"], summary["reuse"]["reused"]


@pytest.fixture(scope="module")
def pack_with_a_bad_image(packed_demo, tmp_path_factory):
    """packed_demo plus a truncated JPEG (a rejected record in every output)."""
    pack_dir = copy_pack(packed_demo, tmp_path_factory.mktemp("reuse_pack") / "packed")
    append_to_shard(pack_dir, "train-00000.tsv", [PackedImage("000.circle/broken.jpg", 0, "train",
                                                              truncated_jpeg()).to_line()])
    return pack_dir


@pytest.fixture(scope="module")
def full_run(tiny_vgg16_fc2, pack_with_a_bad_image, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reuse_full") / "features")
    _, lines = featurize("-r", "inline", "--model", tiny_vgg16_fc2, pack_with_a_bad_image, "-o", out)
    assert len(lines) == 49 and sum(line.startswith("R\t") for line in lines) == 1
    return out, lines


# -- --reuse --------------------------------------------------------------------------------------------

def test_reusing_everything_runs_no_image_through_the_trunk(tiny_vgg16_fc2, pack_with_a_bad_image, full_run,
                                                            tmp_path):
    old, expected = full_run
    out = tmp_path / "again"
    _, lines = featurize("-r", "inline", "--model", tiny_vgg16_fc2, pack_with_a_bad_image, "-o", out, "--reuse", old)
    assert lines == expected and sorted(part_lines(out)) == expected      # byte for byte
    assert reuse_counts(out) == (0, 48)       # the broken image is decoded again (and rejected again), not reused
    summary = load_json(out / "_summary.json")
    assert summary["records"]["rejected"] == 1 and summary["reasons"] == {"corrupt": 1}
    assert summary["input"] == {"images": 49, "expected_from_manifest": 49}
    assert summary["model"] == load_json(os.path.join(old, "_summary.json"))["model"]
    assert os.path.exists(out / "_COMPLETE")


def train_count(pack_dir, read_packed):
    """Images of the train split that can be featurized (the broken one cannot)."""
    return sum(i.split == "train" and i.id != "000.circle/broken.jpg" for i in read_packed(pack_dir))


def test_reusing_one_split_featurizes_exactly_the_others(tiny_vgg16_fc2, pack_with_a_bad_image, full_run, tmp_path,
                                                         read_packed):
    _, expected = full_run
    train = train_count(pack_with_a_bad_image, read_packed)
    old = tmp_path / "train-only"
    featurize("-r", "inline", "--model", tiny_vgg16_fc2, os.path.join(pack_with_a_bad_image, "train-00000.tsv"),
              "-o", old)
    out = tmp_path / "all"
    _, lines = featurize("-r", "inline", "--model", tiny_vgg16_fc2, pack_with_a_bad_image, "-o", out, "--reuse", old)
    assert lines == expected
    assert reuse_counts(out) == (48 - train, train)      # val + test through the trunk, the train images reused


def test_a_changed_image_and_a_renamed_one(tiny_vgg16_fc2, pack_with_a_bad_image, full_run, tmp_path):
    """One image's bytes change (it is featurized again); another is renamed and moved to another split
    (the same bytes: its old vector under its new id, label and split); the rest is reused."""
    import io

    from PIL import Image

    old, _ = full_run

    def change(image):
        if image.id == "002.triangle/002_0003.jpg":   # the same picture, saved again at another quality
            buf = io.BytesIO()
            Image.open(io.BytesIO(image.data)).save(buf, "JPEG", quality=60)
            return PackedImage(image.id, image.label, image.split, buf.getvalue())
        if image.id == "003.star/003_0005.jpg":
            return PackedImage("003.star/renamed.jpg", image.label, "test" if image.split != "test" else "val",
                               image.data)
        return image

    pack_dir = rewrite_pack(copy_pack(pack_with_a_bad_image, tmp_path / "packed"), change)
    _, expected = featurize("-r", "inline", "--model", tiny_vgg16_fc2, pack_dir, "-o", tmp_path / "full")
    out = tmp_path / "reused"
    _, lines = featurize("-r", "inline", "--model", tiny_vgg16_fc2, pack_dir, "-o", out, "--reuse", old)
    assert lines == expected
    assert reuse_counts(out) == (1, 47)
    assert any(line.startswith("F\t003.star/renamed.jpg\t3\t") for line in lines)


@pytest.fixture
def other_interpolation(tiny_vgg16_fc2, tmp_path):
    """The same graph with a sidecar that resizes with another interpolation."""
    model = str(tmp_path / "other.onnx")
    shutil.copyfile(tiny_vgg16_fc2, model)
    spec = ModelSpec.load(sidecar_path(tiny_vgg16_fc2))
    spec.interpolation = "nearest" if spec.interpolation != "nearest" else "bilinear"
    spec.save(sidecar_path(model))
    return model


@pytest.mark.parametrize("change, key", [
    ("model", "sha256"), ("preprocessing", "preprocessing"), ("augment", "augment"), ("limits", "limits")])
def test_features_made_another_way_are_refused(tiny_vgg16, tiny_vgg16_fc2, other_interpolation, packed_demo,
                                               full_run, tmp_path, run_module, change, key):
    old, _ = full_run
    args = {"model": ["--model", tiny_vgg16],                 # the uncut graph: another model
            "preprocessing": ["--model", other_interpolation],
            "augment": ["--model", tiny_vgg16_fc2, "--augment", "flip"],
            "limits": ["--model", tiny_vgg16_fc2, "--min-side", "9"]}[change]
    out = tmp_path / "out"
    result = run_module("mr_tl.featurize", "-r", "inline", *args, packed_demo, "-o", out, "--reuse", old)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: --reuse %s: those features were made with" % old in result.stderr
    assert "(%s: " % key in result.stderr or key == "limits"
    assert "Traceback" not in result.stderr and not out.exists()


def test_old_features_changed_after_they_were_written_fail_the_job(tiny_vgg16_fc2, pack_with_a_bad_image, full_run,
                                                                   tmp_path):
    old = shutil.copytree(full_run[0], tmp_path / "old")
    part = sorted(old.glob("part-*"))[0]
    lines = part.read_text().splitlines()
    fields = lines[0].split("\t")
    fields[-1] = base64.b64encode(np.zeros(32, dtype="<f4").tobytes()).decode("ascii")   # a vector zeroed
    part.write_text("\n".join(["\t".join(fields)] + lines[1:]) + "\n")
    with pytest.raises(JobFailed, match=r"the features given to --reuse .* do not add up to their summary"):
        featurize("-r", "inline", "--model", tiny_vgg16_fc2, pack_with_a_bad_image, "-o", tmp_path / "out",
                  "--reuse", str(old))
    assert not (tmp_path / "out" / "_COMPLETE").exists()


def test_parquet_old_features_are_refused(tiny_vgg16_fc2, packed_demo, full_run, tmp_path, run_module):
    parquet = tmp_path / "old.parquet"
    assert run_module("mr_tl.parquet", full_run[0], "-o", parquet).returncode == 0
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tiny_vgg16_fc2, packed_demo, "-o",
                        tmp_path / "out", "--reuse", parquet)
    assert result.returncode == 2 and "--reuse needs text features" in result.stderr


def test_local_runner_reuse_equals_a_full_run(tiny_vgg16_fc2, pack_with_a_bad_image, full_run, tmp_path, read_packed):
    """mrjob's local runner: real task processes, two reducers in the join, the featurize step over their output."""
    _, expected = full_run
    train = train_count(pack_with_a_bad_image, read_packed)
    old = tmp_path / "train-only"
    featurize("-r", "inline", "--model", tiny_vgg16_fc2, os.path.join(pack_with_a_bad_image, "train-00000.tsv"),
              "-o", old)
    out = tmp_path / "out"
    result = subprocess.run([PYTHON, "-m", "mr_tl.featurize", "-r", "local", "--model", tiny_vgg16_fc2,
                             pack_with_a_bad_image, "-o", str(out), "--reuse", str(old)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "featurized %d, reused %d, rejected 1 (corrupt 1) of 49 images" % (48 - train, train) in result.stderr
    assert sorted(part_lines(out)) == expected
    assert reuse_counts(out) == (48 - train, train)


# -- --augment flip -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flip_run(tiny_vgg16_fc2, packed_demo, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("flip") / "features")
    _, lines = featurize("-r", "inline", "--model", tiny_vgg16_fc2, "--augment", "flip", packed_demo, "-o", out)
    return out, lines


def test_flip_features_are_the_mean_of_the_image_and_its_mirror(flip_run, tiny_vgg16_fc2, packed_demo, read_packed):
    out, lines = flip_run
    trunk = Featurizer(tiny_vgg16_fc2)
    images = read_packed(packed_demo)
    x = np.stack([preprocess(i.data, trunk.spec) for i in images])
    plain, mirror = trunk(x), trunk(x[:, :, :, ::-1])
    assert np.array_equal(mirrored(x, "NCHW"), x[:, :, :, ::-1])
    expected = (plain + mirror) * np.float32(0.5)
    got = {r.id: r.features for r in map(parse_feature_line, lines)}
    for i, image in enumerate(images):
        assert got[image.id].tobytes() == expected[i].tobytes(), image.id   # bit for bit
    assert np.abs(plain - mirror).max() > 1e-3          # the mirror made a difference
    assert load_json(os.path.join(out, "_summary.json"))["model"]["augment"] == "flip"


def test_reuse_of_flip_features(flip_run, tiny_vgg16_fc2, packed_demo, tmp_path):
    out = tmp_path / "again"
    _, lines = featurize("-r", "inline", "--model", tiny_vgg16_fc2, "--augment", "flip", packed_demo, "-o", out,
                         "--reuse", flip_run[0])
    assert lines == sorted(flip_run[1]) and reuse_counts(out) == (0, 48)


def test_exported_flip_classifier_equals_the_head_on_flip_features(flip_run, tiny_vgg16_fc2, packed_demo,
                                                                   read_packed, run_module, tmp_path):
    from mr_tl.run_dir import RunDir

    run = str(tmp_path / "run")
    result = run_module("mr_tl.train", "-r", "inline", flip_run[0], "-o", run, "--workers", 1, "--epochs", 3,
                        "--averaging-frequency", "epoch", "--lr", 0.001)
    assert result.returncode == 0, result.stderr
    classifier = str(tmp_path / "classifier.onnx")
    result = run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run, "-o", classifier)
    assert result.returncode == 0, result.stderr
    head, meta = RunDir(run).load_head()
    assert meta["features"]["made_by"]["augment"] == "flip"
    features = {r.id: r.features for r in map(parse_feature_line, flip_run[1])}
    images = read_packed(packed_demo)
    expected = head.predict_proba(np.stack([features[i.id] for i in images]))
    model = Featurizer(classifier)
    got = model(np.stack([preprocess(i.data, model.spec) for i in images]))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.any((expected > 0.01) & (expected < 0.99))
    # ... and differs from a classifier without the mirror (the same head on the plain trunk)
    plain = Featurizer(tiny_vgg16_fc2)
    unflipped = head.predict_proba(plain(np.stack([preprocess(i.data, plain.spec) for i in images])))
    assert np.abs(unflipped - expected).max() > 1e-4
