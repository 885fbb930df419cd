"""A head is never applied to features made another way (issue 15): evaluate and export refuse it.

Real features, not edited metadata: the packed demo images featurized by ``python -m mr_tl.featurize
-r inline`` three ways with the tiny VGG16 cut at fc2 -- its own sidecar (squash), the same graph with a
letterbox sidecar, and its own sidecar with ``--augment flip`` -- and a head trained on the first.
Evaluating that head on the other two, or exporting it with the letterbox trunk, is refused before
any job runs, with one line that names what differs.
"""

import dataclasses
import os
import shutil

import pytest

from mr_tl.model.spec import ModelSpec, sidecar_path


def one_line_error(stderr):
    """The command's error line: exactly one line starting with ``error:``, no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def made_three_ways(tiny_vgg16_fc2, packed_demo, run_module, train_cli, tmp_path_factory):
    root = tmp_path_factory.mktemp("made_by")
    letterbox = str(root / "letterbox.onnx")   # the same graph (same sha256), another sidecar
    shutil.copy(tiny_vgg16_fc2, letterbox)
    spec = ModelSpec.load(sidecar_path(tiny_vgg16_fc2))
    assert spec.resize == "squash"
    dataclasses.replace(spec, resize="letterbox", pad_colour="edge-mean").save(sidecar_path(letterbox))
    folders = {}
    for name, model, extra in (("squash", tiny_vgg16_fc2, []), ("letterbox", letterbox, []),
                               ("flip", tiny_vgg16_fc2, ["--augment", "flip"])):
        folders[name] = str(root / ("features-" + name))
        result = run_module("mr_tl.featurize", "-r", "inline", "-q", "--model", model, *extra, packed_demo,
                            "-o", folders[name])
        assert result.returncode == 0, result.stderr[-3000:]
    run = str(root / "run")
    result = train_cli("-r", "inline", folders["squash"], "-o", run, "--workers", 1, "--epochs", 2,
                       "--averaging-frequency", "epoch")
    assert result.code == 0, result.err
    return {"run": run, "features": folders, "trunk": tiny_vgg16_fc2, "letterbox_trunk": letterbox}


@pytest.mark.parametrize("other, what, names", [
    ("letterbox", "preprocessing", ["resize: 'letterbox' (the head's: 'squash')",
                                    "pad_colour: 'edge-mean' (the head's: not set)"]),
    ("flip", "augmentation", ["augment 'flip' (the head's: 'none')"]),
])
def test_evaluate_refuses_features_made_another_way(made_three_ways, run_module, other, what, names):
    case = made_three_ways
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", case["run"], case["features"][other])
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line_error(result.stderr)
    assert "were made with another %s than the features the head was trained on" % what in line
    for name in names:
        assert name in line, line
    assert not os.path.exists(os.path.join(case["run"], "evaluation"))


def test_evaluate_accepts_the_features_the_head_was_trained_on(made_three_ways, run_module):
    case = made_three_ways
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", case["run"], case["features"]["squash"],
                        "--split", "val")
    assert result.returncode == 0, result.stderr[-3000:]


def test_export_refuses_a_trunk_of_another_preprocessing(made_three_ways, run_module, tmp_path):
    case = made_three_ways
    out = tmp_path / "classifier.onnx"
    result = run_module("mr_tl.export", "--trunk", case["letterbox_trunk"], "--run", case["run"], "-o", out)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line_error(result.stderr)
    assert "the head was trained on features of another preprocessing than %s" % case["letterbox_trunk"] in line
    assert "resize: 'letterbox' (the head's: 'squash')" in line, line
    assert not out.exists() and not os.path.exists(sidecar_path(str(out)))
    # the trunk that made the features exports
    result = run_module("mr_tl.export", "--trunk", case["trunk"], "--run", case["run"], "-o", out)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_head_trained_on_flipped_features_refuses_unflipped_ones(made_three_ways, run_module, train_cli,
                                                                     tmp_path):
    case = made_three_ways
    run = str(tmp_path / "run-flip")
    result = train_cli("-r", "inline", case["features"]["flip"], "-o", run, "--workers", 1, "--epochs", 1,
                       "--averaging-frequency", "epoch")
    assert result.code == 0, result.err
    result = run_module("mr_tl.evaluate", "-r", "inline", "-q", "--run", run, case["features"]["squash"])
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line_error(result.stderr)
    assert "another augmentation" in line and "augment 'none' (the head's: 'flip')" in line, line
