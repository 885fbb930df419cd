"""The featurize MRJob: inline and local runners against onnxruntime, rejections, summary, input checks."""

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from mr_tl import storage
from mr_tl.digest import MultisetHash
from mr_tl.errors import JobFailed
from mr_tl.featurize import MRFeaturize
from mr_tl.images import preprocess
from mr_tl.model.spec import ModelSpec, load_model_spec, sidecar_path
from mr_tl.records import FeatureRecord, PackedImage, RejectedRecord, parse_feature_line

PYTHON = sys.executable


def featurize_in_process(*args):
    """What ``python -m mr_tl.featurize ARGS`` does, minus the exits: ``(job, output lines)``."""
    job = MRFeaturize([str(a) for a in args])
    job.check_inputs()  # validates the model, expands pack folders to their shards
    with job.make_runner() as runner:
        runner.run()
        lines = list(storage.cat_lines(runner))
        job.report(runner)  # checks the output, writes _labels.json, _summary.json, _COMPLETE; raises if not
    return job, lines


def execute_in_process(capsys, *args):
    """``MRFeaturize(args).execute()`` (the CLI's code path): ``(exit code, stderr)``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        MRFeaturize(["--quiet"] + [str(a) for a in args]).execute()
    return info.value.code, capsys.readouterr().err


def part_lines(out_dir):
    lines = []
    for name in sorted(os.listdir(str(out_dir))):
        if name.startswith("part-"):
            with open(os.path.join(str(out_dir), name), encoding="utf-8") as f:
                lines += f.read().splitlines()
    return lines


def load_json(path):
    with open(str(path), encoding="utf-8") as f:
        return json.load(f)


def copy_pack(packed_dir, dest):
    shutil.copytree(packed_dir, str(dest))
    return str(dest)


def append_to_shard(pack_dir, shard, lines, update_manifest=True):
    """Add raw lines to one shard of a pack folder (and keep manifest.json in step with it)."""
    path = os.path.join(pack_dir, shard)
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    if update_manifest:
        manifest_path = os.path.join(pack_dir, "manifest.json")
        manifest = load_json(manifest_path)
        for entry in manifest["shards"]:
            if entry["path"] == shard:
                entry["images"] += len(lines)
                with open(path, "rb") as f:
                    data = f.read()
                entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
                if "lines_digest" in entry:
                    entry["lines_digest"] = MultisetHash.of(data.decode("utf-8").splitlines()).hexdigest()
        with open(manifest_path, "w", encoding="utf-8") as f:
            json.dump(manifest, f)


def counts(summary):
    """The counts of a featurize ``_summary.json`` as one flat dict."""
    return {"input": summary["input"]["images"], "expected_from_manifest": summary["input"]["expected_from_manifest"],
            "featurized": sum(summary["records"]["featurized"].values()), "rejected": summary["records"]["rejected"],
            "reasons": summary["reasons"], "rejected_images": summary["rejected_images"],
            "model": summary["model"]["file"]}


def truncated_jpeg():
    g = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(g.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()[:buf.tell() // 2]


# -- fixtures -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inline_run(tiny_vgg16_fc2, packed_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("featurize_inline") / "features"
    job, lines = featurize_in_process("-r", "inline", "--model", tiny_vgg16_fc2, packed_demo, "-o", out)
    return str(out), lines


@pytest.fixture(scope="module")
def reference(tiny_vgg16_fc2, packed_demo, read_packed):
    """onnxruntime called directly, one image at a time, on the same preprocessed images: ``{id: vector}``."""
    spec = load_model_spec(tiny_vgg16_fc2)
    session = ort.InferenceSession(tiny_vgg16_fc2, providers=["CPUExecutionProvider"])
    out = {}
    for image in read_packed(packed_demo):
        x = preprocess(image.data, spec)[None]
        out[image.id] = session.run([spec.output_name], {spec.input_name: x})[0][0]
    return out


@pytest.fixture(scope="module")
def python_without_editable_mr_tl(tmp_path_factory):
    """A python command for the tasks that cannot import the installed (editable) mr_tl.

    Tasks run with it can only import mr_tl from the zip the job ships on their PYTHONPATH.
    """
    root = tmp_path_factory.mktemp("python_bin")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(
        "import os, sys\n"
        "# an editable install is an import hook (setuptools' finder) or a path entry (a .pth): drop both\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p, 'mr_tl', '__init__.py'))]\n")
    script = root / "python"
    script.write_text('#!/bin/sh\nPYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}%s" exec %s "$@"\n'
                      % (root / "site", PYTHON))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


# -- features -----------------------------------------------------------------------------------------

def test_inline_features_equal_onnxruntime(inline_run, reference, packed_demo, read_packed, tiny_vgg16_fc2):
    out, lines = inline_run
    dim = load_model_spec(tiny_vgg16_fc2).output_dim
    records = [parse_feature_line(line, dim=dim) for line in lines]
    assert all(isinstance(r, FeatureRecord) for r in records)
    assert sorted(part_lines(out)) == sorted(lines)
    packed = {image.id: image for image in read_packed(packed_demo)}
    assert sorted(r.id for r in records) == sorted(packed) and len(records) == 48
    for r in records:
        assert (r.label, r.split) == (packed[r.id].label, packed[r.id].split)
        np.testing.assert_allclose(r.features, reference[r.id], rtol=1e-6, atol=1e-5, err_msg=r.id)
    assert max(np.abs(r.features).max() for r in records) > 1  # real activations, not all zeros


def test_summary_and_labels(inline_run, packed_demo):
    out, _ = inline_run
    summary = counts(load_json(os.path.join(out, "_summary.json")))
    assert (summary["input"], summary["expected_from_manifest"], summary["featurized"], summary["rejected"],
            summary["reasons"], summary["rejected_images"]) == (48, 48, 48, 0, {}, [])
    assert summary["model"] == "vgg16-tiny-fc2.onnx"
    assert sorted(os.listdir(out)) == ["_COMPLETE", "_labels.json", "_summary.json"] + sorted(
        n for n in os.listdir(out) if n.startswith("part-"))
    with open(os.path.join(packed_demo, "labels.json"), encoding="utf-8") as f:
        labels = f.read()
    with open(os.path.join(out, "_labels.json"), encoding="utf-8") as f:
        assert json.loads(f.read()) == json.loads(labels)


def test_local_runner_ships_the_package_and_matches_inline(inline_run, tiny_vgg16_fc2, packed_demo, tmp_path,
                                                           python_without_editable_mr_tl):
    # the tasks' python cannot see the installed package ...
    probe = subprocess.run([python_without_editable_mr_tl, "-c", "import mr_tl"], cwd=str(tmp_path),
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'mr_tl'" in probe.stderr
    # ... so the job only works if it ships mr_tl itself (real subprocess tasks)
    out, tmp = tmp_path / "features", tmp_path / "TMPDIR"
    tmp.mkdir()
    result = subprocess.run([PYTHON, "-m", "mr_tl.featurize", "-r", "local", "--num-cores", "3", "--python-bin",
                             python_without_editable_mr_tl, "--model", tiny_vgg16_fc2, packed_demo, "-o", str(out)],
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
                            env=dict(os.environ, TMPDIR=str(tmp)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "featurized 48, rejected 0 of 48 images" in result.stderr
    assert sorted(part_lines(out)) == sorted(inline_run[1])  # byte for byte
    assert counts(load_json(out / "_summary.json"))["featurized"] == 48
    # one map task per core, each with the same number of images (not of bytes)
    parts = sorted(out.glob("part-*"))
    assert [len(p.read_text().splitlines()) for p in parts] == [16, 16, 16]
    assert [n for n in os.listdir(tmp) if n != ".ses"] == []


def test_balanced_parts_keep_every_line_in_order(tmp_path):
    from mr_tl.featurize import balanced_parts

    (tmp_path / "a.tsv").write_bytes(b"a1\na2\na3")  # no newline at the end
    (tmp_path / "b.tsv").write_bytes(b"b1\nb2\n")
    (tmp_path / "empty.tsv").write_bytes(b"")
    parts = balanced_parts([str(tmp_path / n) for n in ("a.tsv", "empty.tsv", "b.tsv")], 2, str(tmp_path))
    contents = [gzip.open(p).read() for p in parts]
    assert contents == [b"a1\na2\n", b"a3\nb1\nb2\n"]
    assert all(p.endswith(".tsv.gz") for p in parts)
    # more parts than lines: one line each; no lines: one empty part
    (tmp_path / "more").mkdir()
    parts = balanced_parts([str(tmp_path / "b.tsv")], 5, str(tmp_path / "more"))
    assert [gzip.open(p).read() for p in parts] == [b"b1\n", b"b2\n"]
    (tmp_path / "none").mkdir()
    parts = balanced_parts([str(tmp_path / "empty.tsv")], 2, str(tmp_path / "none"))
    assert [gzip.open(p).read() for p in parts] == [b""]


def test_batch_size_does_not_change_the_features(inline_run, tiny_vgg16_fc2, packed_demo, tmp_path):
    _, lines = featurize_in_process("--model", tiny_vgg16_fc2, "--batch-size", "1", packed_demo,
                                    "-o", tmp_path / "b1")
    by_id = {r.id: r.features for r in map(parse_feature_line, inline_run[1])}
    records = [parse_feature_line(line) for line in lines]
    assert sorted(r.id for r in records) == sorted(by_id)
    for r in records:
        np.testing.assert_allclose(r.features, by_id[r.id], rtol=1e-6, atol=1e-5)


def test_single_shard_input(tiny_vgg16_fc2, packed_demo, tmp_path, read_packed):
    shard = os.path.join(packed_demo, "val-00000.tsv")
    job, lines = featurize_in_process("--model", tiny_vgg16_fc2, shard, "-o", tmp_path / "val")
    ids = {parse_feature_line(line).id for line in lines}
    manifest = load_json(os.path.join(packed_demo, "manifest.json"))
    (val_shard,) = [s for s in manifest["shards"] if s["path"] == "val-00000.tsv"]
    assert ids == {i.id for i in read_packed(packed_demo) if i.split == "val"} and len(ids) == val_shard["images"]
    assert counts(load_json(tmp_path / "val" / "_summary.json"))["expected_from_manifest"] == val_shard["images"]


# -- rejections ---------------------------------------------------------------------------------------

def test_corrupt_images_are_rejected_and_the_job_succeeds(tiny_vgg16_fc2, packed_demo, tmp_path, run_module):
    pack_dir = copy_pack(packed_demo, tmp_path / "packed")
    bad = [
        PackedImage("000.circle/broken.jpg", 0, "train", truncated_jpeg()),
        PackedImage("001.square/notes.jpg", 1, "train", b"shopping list: eggs, milk\n"),
        PackedImage("002.triangle/dot.png", 2, "train", _png_1x1()),
    ]
    append_to_shard(pack_dir, "train-00000.tsv", [b.to_line() for b in bad] + ["not a packed image line"])
    out = tmp_path / "features"
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tiny_vgg16_fc2, pack_dir, "-o", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "featurized 48, rejected 4" in result.stderr and "of 52 images" in result.stderr
    summary = counts(load_json(out / "_summary.json"))
    assert (summary["input"], summary["featurized"], summary["rejected"]) == (52, 48, 4)
    assert summary["featurized"] + summary["rejected"] == summary["input"] == summary["expected_from_manifest"]
    assert summary["reasons"] == {"bad-record": 1, "corrupt": 1, "not-an-image": 1, "too-small": 1}
    listed = {r["id"]: (r["reason"], r["label"], r["split"]) for r in summary["rejected_images"]}
    assert listed["000.circle/broken.jpg"] == ("corrupt", 0, "train")
    assert listed["001.square/notes.jpg"] == ("not-an-image", 1, "train")
    assert listed["002.triangle/dot.png"] == ("too-small", 2, "train")
    (bad_line_id,) = [i for i in listed if i.startswith("?line:")]
    assert listed[bad_line_id] == ("bad-record", None, None) and "not a packed image line" in bad_line_id
    assert all(r["detail"] for r in summary["rejected_images"])
    # the output records say the same
    records = [parse_feature_line(line) for line in part_lines(out)]
    rejected = {r.id: r for r in records if isinstance(r, RejectedRecord)}
    assert {r.id: r.reason for r in rejected.values()} == {i: v[0] for i, v in listed.items()}
    assert "truncated" in rejected["000.circle/broken.jpg"].detail
    assert sum(isinstance(r, FeatureRecord) for r in records) == 48


def _png_1x1():
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    return buf.getvalue()


def test_summary_lists_the_real_ids_of_rejected_images(tiny_vgg16_fc2, packed_demo, tmp_path):
    pack_dir = copy_pack(packed_demo, tmp_path / "packed")
    image_id = "000.circle/100% broken\tfile.jpg"
    append_to_shard(pack_dir, "train-00000.tsv", [PackedImage(image_id, 0, "train", truncated_jpeg()).to_line()])
    featurize_in_process("--model", tiny_vgg16_fc2, pack_dir, "-o", tmp_path / "out")
    summary = counts(load_json(tmp_path / "out" / "_summary.json"))
    assert [r["id"] for r in summary["rejected_images"]] == [image_id]


def test_counts_that_do_not_match_the_manifest_fail_the_job(tiny_vgg16_fc2, packed_demo, tmp_path):
    pack_dir = copy_pack(packed_demo, tmp_path / "packed")
    extra = PackedImage("000.circle/extra.jpg", 0, "train", truncated_jpeg()).to_line()
    append_to_shard(pack_dir, "train-00000.tsv", [extra], update_manifest=False)
    with pytest.raises(JobFailed, match=r"not marked complete: the tasks read 49 images, the pack manifest lists 48"):
        featurize_in_process("--model", tiny_vgg16_fc2, pack_dir, "-o", tmp_path / "out")
    assert not (tmp_path / "out" / "_COMPLETE").exists()


# -- input checks: non-zero exit, one clear line, before anything runs --------------------------------------

def test_missing_model_on_the_command_line(packed_demo, tmp_path, run_module):
    missing = tmp_path / "no-such-model.onnx"
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", missing, packed_demo, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert "error: model file %s does not exist" % missing in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_model_whose_sidecar_hash_does_not_match(tiny_vgg16, tiny_vgg16_fc2, packed_demo, tmp_path, capsys):
    model = str(tmp_path / "model.onnx")
    shutil.copyfile(tiny_vgg16, model)                             # the full graph ...
    shutil.copyfile(sidecar_path(tiny_vgg16_fc2), sidecar_path(model))  # ... with the fc2 graph's sidecar
    code, err = execute_in_process(capsys, "--model", model, packed_demo, "-o", tmp_path / "out")
    assert code == 2
    assert "does not match its sidecar" in err and "was the graph replaced" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_model_without_sidecar(tiny_vgg16_fc2, packed_demo, tmp_path, capsys):
    model = str(tmp_path / "model.onnx")
    shutil.copyfile(tiny_vgg16_fc2, model)
    code, err = execute_in_process(capsys, "--model", model, packed_demo, "-o", tmp_path / "out")
    assert code == 2 and "model sidecar %s is missing" % sidecar_path(model) in err


@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: str(tmp / "nowhere"), "input %s does not exist"),
    (lambda tmp: str(tmp / "empty"), "folder %s has no *.tsv files"),
    (lambda tmp: str(tmp / "nothing-*.tsv"), "no input matches %s"),
])
def test_missing_input(tiny_vgg16_fc2, tmp_path, capsys, make_input, message):
    (tmp_path / "empty").mkdir()
    path = make_input(tmp_path)
    code, err = execute_in_process(capsys, "--model", tiny_vgg16_fc2, path, "-o", tmp_path / "out")
    assert code == 2 and ("error: " + message % path) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["PACKED", "-o", "OUT"], "--model is required"),
    (["--model", "MODEL", "PACKED"], "-o/--output-dir is required"),
    (["--model", "MODEL", "-o", "OUT"], "give at least one packed input"),
    (["--model", "MODEL", "--batch-size", "0", "PACKED", "-o", "OUT"], "--batch-size must be at least 1, found 0"),
])
def test_argument_errors(tiny_vgg16_fc2, packed_demo, tmp_path, capsys, args, message):
    fill = {"PACKED": packed_demo, "MODEL": tiny_vgg16_fc2, "OUT": str(tmp_path / "out")}
    code, err = execute_in_process(capsys, *[fill.get(a, a) for a in args])
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_model_with_external_data(tiny_vgg16_fc2, packed_demo, inline_run, tmp_path):
    """Weights stored beside the graph (as save_model does for big models) are shipped and found by the tasks."""
    import onnx

    from mr_tl.model import graph

    path = str(tmp_path / "ext.onnx")
    spec = graph.save_model(onnx.load(tiny_vgg16_fc2), path, ModelSpec.load(sidecar_path(tiny_vgg16_fc2)),
                            external_data=True)
    assert list(spec.external_data) == ["ext.onnx.data"] and os.path.getsize(path + ".data") > 10000
    out = tmp_path / "out"
    result = subprocess.run([PYTHON, "-m", "mr_tl.featurize", "-r", "local", "--model", path, packed_demo,
                             "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(part_lines(out)) == sorted(inline_run[1])


def test_changed_external_weights_are_refused(tiny_vgg16_fc2, packed_demo, tmp_path, run_module):
    import onnx

    from mr_tl.model import graph

    path = str(tmp_path / "ext.onnx")
    graph.save_model(onnx.load(tiny_vgg16_fc2), path, ModelSpec.load(sidecar_path(tiny_vgg16_fc2)),
                     external_data=True)
    with open(path + ".data", "r+b") as f:
        f.seek(100)
        f.write(b"\x7f")
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", path, packed_demo, "-o", tmp_path / "out")
    assert result.returncode == 2 and "weights file" in result.stderr and "does not match" in result.stderr


@pytest.mark.parametrize("module", ["mr_tl.featurize", "mr_tl.evaluate"])
def test_help_shows_the_commands_usage_and_options_before_mrjobs(module, run_module):
    result = run_module(module, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("usage: python -m %s -r RUNNER" % module), text[:200]
    own, mrjob_part = text.split("\nmrjob's options", 1)
    assert "options of this command:" in own and "--threads" in own
    assert ("--model" if module.endswith("featurize") else "--run") in own
    assert "--conf-path" not in own and "--conf-path" in mrjob_part and "--runner" in mrjob_part
