"""No command writes into or over an existing output unless told to (issue 14, item 2).

An existing output is refused with one line (exit 2) and left as it was; ``--overwrite`` replaces the
whole output, so nothing of the old one is left beside the new one.  Featurize has no ``--overwrite``
(Hadoop refuses an existing output folder, and so does featurize on every runner); train continues a
run only with ``--resume`` and never writes into a folder that is not a run; report always rewrites
its own RUN_DIR/report (it holds nothing but a view of the run's files) and refuses another existing
``-o`` folder.
"""

import os
import shutil

import pytest

from .faults import one_error_line, snapshot


def earlier_output(path, kind="folder"):
    """Something a user had at ``path`` before: a folder with a file in it, or a file."""
    if kind == "file":
        os.makedirs(os.path.dirname(str(path)), exist_ok=True)
        with open(str(path), "w") as f:
            f.write("earlier results\n")
        return
    os.makedirs(str(path), exist_ok=True)
    with open(os.path.join(str(path), "part-00000"), "w") as f:
        f.write("earlier results\n")


# -- featurize ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("runner, form, kind", [
    ("inline", "path", "folder"), ("local", "path", "folder"), ("local", "file://", "folder"),
    ("hadoop", "file://", "folder"), ("inline", "path", "file"), ("local", "file://", "file"),
])
def test_featurize_refuses_an_existing_output_on_every_runner(runner, form, kind, packed_demo, tiny_vgg16_fc2,
                                                             tmp_path, run_module):
    """mrjob's inline and local runners would write their part files into an existing folder; Hadoop
    refuses one, and a local ``file://`` output is checked before any runner starts."""
    out = tmp_path / "features"
    earlier_output(out, kind)
    before = snapshot(tmp_path)
    given = "file://%s" % out if form == "file://" else str(out)
    result = run_module("mr_tl.featurize", "-r", runner, "--model", tiny_vgg16_fc2, packed_demo, "-o", given)
    one_error_line(result, 2, given)
    assert snapshot(tmp_path) == before


# -- evaluate -----------------------------------------------------------------------------------------------

def test_evaluate_keeps_an_evaluation_unless_told_to_replace_it(run, features, tmp_path, run_module):
    run = shutil.copytree(run, str(tmp_path / "run"))
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run, features, "--split", "test")
    assert result.returncode == 0, result.stderr
    evaluation = os.path.join(run, "evaluation", "test")
    with open(os.path.join(evaluation, "notes.txt"), "w") as f:
        f.write("mine\n")
    before = snapshot(run)
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run, features, "--split", "test")
    one_error_line(result, 2, "already holds an evaluation of the test split", "--overwrite")
    assert snapshot(run) == before
    # another split is another output
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run, features, "--split", "val")
    assert result.returncode == 0, result.stderr
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run, features, "--split", "test", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert sorted(n for n in os.listdir(evaluation) if n != "confusion.png") == [
        "confusion.csv", "metrics.json", "per_class.csv"]   # replaced as a whole
    assert sorted(os.listdir(os.path.join(run, "evaluation"))) == ["test", "val"]   # nothing half-written beside


# -- report -------------------------------------------------------------------------------------------------

def test_report_rewrites_its_own_folder_and_refuses_another(run, tmp_path, run_module):
    run = shutil.copytree(run, str(tmp_path / "run"))
    assert run_module("mr_tl.report", run).returncode == 0
    stale = os.path.join(run, "report", "old-plot.png")
    with open(stale, "w") as f:
        f.write("from an earlier report\n")
    result = run_module("mr_tl.report", run)
    assert result.returncode == 0, result.stderr
    assert os.path.isfile(os.path.join(run, "report", "index.html")) and not os.path.exists(stale)
    assert not [n for n in os.listdir(run) if n.startswith(".")]

    other = tmp_path / "site"
    earlier_output(other)
    before = snapshot(other)
    one_error_line(run_module("mr_tl.report", run, "-o", other), 2, "already exists", "--overwrite")
    assert snapshot(other) == before
    result = run_module("mr_tl.report", run, "-o", other, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "part-00000" not in os.listdir(other) and "index.html" in os.listdir(other)


# -- train ----------------------------------------------------------------------------------------------

def test_train_never_writes_into_a_folder_that_is_not_a_run(features, tmp_path, run_module):
    other = tmp_path / "photos"
    earlier_output(other)
    before = snapshot(other)
    for extra in ([], ["--resume"]):
        result = run_module("mr_tl.train", "-r", "inline", features, "-o", other, "--workers", 1, *extra)
        one_error_line(result, 2, "holds no run", "part-00000")
        assert snapshot(other) == before
    # an empty folder is fine: nothing in it to lose
    os.makedirs(tmp_path / "empty")
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", tmp_path / "empty", "--workers", 1,
                        "--epochs", 1)
    assert result.returncode == 0, result.stderr


# -- models ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["build-vgg16", "build-efficientnet-lite0", "cut", "quantize", "export"])
def test_models_are_not_written_over_without_overwrite(command, tiny_vgg16, tiny_vgg16_fc2, packed_demo, run,
                                                       tmp_path, run_module):
    out = tmp_path / "model.onnx"
    earlier_output(out, "file")
    earlier_output(tmp_path / "model.json", "file")
    before = snapshot(tmp_path)
    module, args = {
        "build-vgg16": ("mr_tl.model", ["build-vgg16", "--random-weights", "--tiny"]),
        "build-efficientnet-lite0": ("mr_tl.model", ["build-efficientnet-lite0"]),
        "cut": ("mr_tl.model", ["cut", tiny_vgg16, "--at", "fc1"]),
        "quantize": ("mr_tl.model", ["quantize", tiny_vgg16_fc2, "--calibration", packed_demo, "--samples", 4]),
        "export": ("mr_tl.export", ["--trunk", tiny_vgg16_fc2, "--run", run]),
    }[command]
    one_error_line(run_module(module, *args, "-o", out), 2, "model.onnx already exists", "--overwrite")
    assert snapshot(tmp_path) == before
    if command in ("build-vgg16", "cut"):
        result = run_module(module, *args, "-o", out, "--overwrite")
        assert result.returncode == 0, result.stderr
        with open(tmp_path / "model.json") as f:
            assert "earlier results" not in f.read()


# -- the others: pack, parquet, demo_data ----------------------------------------------------------------

@pytest.mark.parametrize("command", ["pack", "parquet", "parquet --to-text", "demo_data"])
def test_an_existing_output_is_refused_and_overwrite_replaces_all_of_it(command, demo_images, features, tmp_path,
                                                                        run_module):
    out = tmp_path / "out"
    module, args = {
        "pack": ("mr_tl.pack", [demo_images, out]),
        "parquet": ("mr_tl.parquet", [features, "-o", out]),
        "parquet --to-text": ("mr_tl.parquet", ["--to-text", tmp_path / "p", "-o", out]),
        "demo_data": ("mr_tl.demo_data", [out, "--classes", 2, "--per-class", 2]),
    }[command]
    if command == "parquet --to-text":
        assert run_module("mr_tl.parquet", features, "-o", tmp_path / "p").returncode == 0
    earlier_output(out)
    before = snapshot(out)
    one_error_line(run_module(module, *args), 2, "already exists", "--overwrite")
    assert snapshot(out) == before
    result = run_module(module, *args, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "part-00000" not in os.listdir(out) or command == "parquet --to-text"
    with open(os.path.join(out, "part-00000") if command == "parquet --to-text" else os.devnull) as f:
        assert "earlier results" not in f.read()
