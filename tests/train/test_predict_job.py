"""python -m mr_tl.predict as a MapReduce job (issue 18.1), on the inline and local runners.

The job's predictions equal the single-image CLI's on the same images (same classes, probabilities within
float tolerance), over packed images (--model: the exported classifier) and over feature records (--run: the
head in numpy, text or Parquet); its accounting is featurize's (rejected images, _summary.json, _COMPLETE).
"""

import json
import os

import numpy as np
import pytest
from test_featurize import append_to_shard, copy_pack, load_json, part_lines, truncated_jpeg

from mr_tl.digest import file_digest
from mr_tl.records import PackedImage, PredictionRecord, RejectedRecord, load_npz, parse_prediction_line, save_npz

BROKEN = "000.circle/broken.jpg"
CLASSES = ["000.circle", "001.square", "002.triangle", "003.star"]


@pytest.fixture(scope="module")
def case(tiny_vgg16_fc2, packed_demo, run_module, train_cli, tmp_path_factory):
    """A pack with a broken image, its features, a head trained on them, the exported classifier."""
    root = tmp_path_factory.mktemp("predict_job")
    packed = copy_pack(packed_demo, root / "packed")
    append_to_shard(packed, "train-00000.tsv", [PackedImage(BROKEN, 0, "train", truncated_jpeg()).to_line()])
    features = str(root / "features")
    result = run_module("mr_tl.featurize", "-r", "inline", "-q", "--model", tiny_vgg16_fc2, packed, "-o", features)
    assert result.returncode == 0, result.stderr
    run = str(root / "run")
    result = train_cli("-r", "inline", features, "-o", run, "--workers", 1, "--epochs", 3,
                       "--averaging-frequency", "epoch", "--lr", 0.001)
    assert result.code == 0, result.err
    classifier = str(root / "classifier.onnx")
    assert run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run, "-o", classifier).returncode == 0
    parquet = str(root / "features.parquet")
    assert run_module("mr_tl.parquet", features, "-o", parquet).returncode == 0
    return {"root": root, "packed": packed, "features": features, "parquet": parquet, "run": run,
            "classifier": classifier}


def image_files(packed, folder, read_packed):
    """Every packed image as a file ``folder/ID`` (the single-image CLI reads files): ``{path: id}``."""
    out = {}
    for image in read_packed(packed):
        path = os.path.join(str(folder), image.id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(image.data)
        out[path] = image.id
    return out


@pytest.fixture(scope="module")
def cli_predictions(case, read_packed, run_module):
    """The single-image CLI on every packed image: ``{id: [(class, probability)]}`` or ``{id: reason}``."""
    files = image_files(case["packed"], case["root"] / "images", read_packed)
    result = run_module("mr_tl.predict", case["classifier"], *sorted(files), "--top", 4, "--json")
    assert result.returncode == 1, result.stderr       # the broken image
    out = {}
    for line in result.stdout.splitlines():
        row = json.loads(line)
        image_id = files[row["image"]]
        out[image_id] = row["error"] if "error" in row else [(t["class"], t["probability"]) for t in row["top"]]
    assert len(out) == 49 and out[BROKEN] == "corrupt"
    return out


def read_predictions(out):
    records = [parse_prediction_line(line) for line in part_lines(out)]
    by_id = {r.id: r for r in records}
    assert len(by_id) == len(records)
    return by_id


def assert_same_as_cli(got, cli, atol, with_broken=True):
    assert sorted(got) == sorted(i for i in cli if with_broken or i != BROKEN)
    for image_id, expected in cli.items():
        if image_id not in got:
            continue
        record = got[image_id]
        if isinstance(expected, str):
            assert isinstance(record, RejectedRecord) and record.reason == expected
            continue
        assert isinstance(record, PredictionRecord), image_id
        assert [c for c, _ in record.top] == [c for c, _ in expected] or \
            np.allclose(sorted(p for _, p in record.top), sorted(p for _, p in expected), atol=atol), image_id
        probability = dict(record.top)
        for name, p in expected:
            assert abs(probability[name] - p) <= atol, (image_id, name, probability[name], p)


def test_help_shows_both_forms(run_module):
    result = run_module("mr_tl.predict", "--help")
    assert result.returncode == 0
    assert "CLASSIFIER IMAGE..." in result.stdout and "--model CLASSIFIER PACKED... -o OUT" in result.stdout
    assert "--run RUN_DIR FEATURES... -o OUT" in result.stdout and "--parquet" in result.stdout


@pytest.mark.parametrize("runner", ["inline", "local"])
def test_job_over_packed_images_equals_the_single_image_cli(case, cli_predictions, runner, run_module, tmp_path,
                                                            read_packed):
    out = tmp_path / "predictions"
    result = run_module("mr_tl.predict", "-r", runner, "--model", case["classifier"], case["packed"], "-o", out,
                        "--top", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicted 48, rejected 1 (corrupt 1) of 49 images" in result.stderr
    got = read_predictions(out)
    assert_same_as_cli(got, cli_predictions, atol=1e-6)
    packed = {i.id: i for i in read_packed(case["packed"])}
    assert all((r.label, r.split) == (packed[i].label, packed[i].split) for i, r in got.items())
    summary = load_json(out / "_summary.json")
    assert summary["input"] == {"images": 49, "expected": 49, "from": "packed images"}
    assert summary["records"]["predicted"] == 48 and summary["records"]["rejected"] == 1
    assert summary["reasons"] == {"corrupt": 1} and [r["id"] for r in summary["rejected_images"]] == [BROKEN]
    assert summary["classifier"]["sha256"] == file_digest(case["classifier"])
    assert summary["classifier"]["classes"] == CLASSES and summary["top"] == 4
    assert load_json(out / "_labels.json")["classes"] == CLASSES
    assert os.path.exists(out / "_COMPLETE")


@pytest.mark.parametrize("form", ["text", "parquet"])
def test_job_over_features_equals_the_single_image_cli(case, cli_predictions, form, run_module, tmp_path):
    """--run: the head (numpy) on the features instead of the trunk + head graph: the same predictions."""
    out = tmp_path / "predictions"
    features = case["features"] if form == "text" else case["parquet"]
    result = run_module("mr_tl.predict", "-r", "inline", "--run", case["run"], features, "-o", out, "--top", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    got = read_predictions(out)
    assert_same_as_cli(got, cli_predictions, atol=1e-5, with_broken=form == "text")   # Parquet holds no R records
    summary = load_json(out / "_summary.json")
    assert summary["input"]["images"] == summary["input"]["expected"] == (49 if form == "text" else 48)
    assert summary["classifier"]["sha256"] == file_digest(os.path.join(case["run"], "head.npz"))
    # the probabilities mean something: not all 0 or 1
    assert any(0.01 < p < 0.99 for r in got.values() if isinstance(r, PredictionRecord) for _, p in r.top)


def test_local_runner_over_features(case, cli_predictions, run_module, tmp_path):
    out = tmp_path / "predictions"
    result = run_module("mr_tl.predict", "-r", "local", "--run", case["run"], case["features"], "-o", out,
                        "--top", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    got = read_predictions(out)
    top2 = {i: (v if isinstance(v, str) else v[:2]) for i, v in cli_predictions.items()}
    assert_same_as_cli(got, top2, atol=1e-5)


def test_parquet_output(case, run_module, tmp_path):
    from mr_tl.predictions import read_parquet

    out, parquet = tmp_path / "predictions", tmp_path / "predictions.parquet"
    result = run_module("mr_tl.predict", "-r", "inline", "--model", case["classifier"], case["packed"], "-o", out,
                        "--parquet", parquet)
    assert result.returncode == 0, result.stderr[-3000:]
    text = {r.id: r for r in read_predictions(out).values() if isinstance(r, PredictionRecord)}
    rows = {r.id: r for r in read_parquet(str(parquet))}
    assert sorted(rows) == sorted(text) and len(rows) == 48
    for image_id, r in rows.items():
        assert (r.label, r.split, r.sha256) == (text[image_id].label, text[image_id].split, text[image_id].sha256)
        assert [c for c, _ in r.top] == [c for c, _ in text[image_id].top]
        assert [np.float32(p) for _, p in r.top] == [np.float32(p) for _, p in text[image_id].top]
    summary = load_json(parquet / "_summary.json")
    assert summary["data"] == "parquet" and summary["records"] == {"predicted": 48, "rejected_not_written": 1}
    assert os.path.exists(parquet / "_COMPLETE")
    import pandas as pd

    frame = pd.read_parquet(str(parquet))
    assert len(frame) == 48 and list(frame.columns)[:3] == ["id", "label", "split"]


def test_features_made_another_way_are_refused(case, run_module, tmp_path):
    import shutil

    run = shutil.copytree(case["run"], tmp_path / "run")
    meta, arrays = load_npz(str(run / "head.npz"))
    meta["features"]["made_by"]["augment"] = "flip"
    save_npz(str(run / "head.npz"), meta, arrays)
    out = tmp_path / "out"
    result = run_module("mr_tl.predict", "-r", "inline", "--run", run, case["features"], "-o", out)
    assert result.returncode == 2
    assert "were made with another augmentation than the features the head was trained on" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "CLASSIFIER", "--run", "RUN", "PACKED", "-o", "OUT"], "give either --model CLASSIFIER"),
    (["-r", "inline", "PACKED", "-o", "OUT"], "give either --model CLASSIFIER"),
    (["--model", "CLASSIFIER", "PACKED"], "-o/--output-dir is required"),
    (["--model", "CLASSIFIER", "PACKED", "-o", "OUT", "--top", "0"], "--top must be at least 1"),
])
def test_argument_errors(case, run_module, tmp_path, args, message):
    fill = {"CLASSIFIER": case["classifier"], "RUN": case["run"], "PACKED": case["packed"], "OUT": tmp_path / "out"}
    result = run_module("mr_tl.predict", *[fill.get(a, a) for a in args])
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_counts_that_do_not_match_the_manifest_fail_the_job(case, run_module, tmp_path):
    packed = copy_pack(case["packed"], tmp_path / "packed")
    append_to_shard(packed, "val-00000.tsv", [PackedImage("001.square/extra.jpg", 1, "val", truncated_jpeg())
                                              .to_line()], update_manifest=False)
    out = tmp_path / "out"
    result = run_module("mr_tl.predict", "-r", "inline", "--model", case["classifier"], packed, "-o", out)
    assert result.returncode == 1
    assert "not marked complete: the tasks read 50 images, the pack manifest lists 49" in result.stderr
    assert not (out / "_COMPLETE").exists()
