"""A full disk is one error line, and leaves nothing a later command would take for finished (issue 14,
item 12; pack has its own test in test_pack_integrity.py).

Each command writes onto a small tmpfs mounted for the test, which fills up at a chosen moment:
while featurize writes its part files or, later, each of its side files; while parquet writes its
part files or side files; while train deals the worker files or writes a checkpoint; while evaluate
writes its files.  Afterwards the command has said so in one line (exit 1), its output is refused by
the commands that read it, no temporary file is left, and once there is space again the same command
(``train --resume``) finishes with the result an undisturbed run gives.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest

from mr_tl import feature_store
from mr_tl.records import load_npz
from mr_tl.run_dir import RunDir

from .faults import PAGE, good_rows, leave_free, one_error_line, pages_of, write_features

NO_SPACE = "no space left on the device"


def temporary_files(root):
    """Files or folders a writer would have removed: ``*.tmp-PID`` names and hidden ``.something``."""
    found = []
    for directory, dirs, files in os.walk(str(root)):
        found += [os.path.join(directory, n) for n in dirs + files
                  if ".tmp-" in n or (n.startswith(".") and n != ".." and "filler" not in n)]
    return found


# -- featurize ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def featurized_pages(packed_demo, tiny_vgg16_fc2, tmp_path_factory, run_module):
    """Pages of the part files featurize (inline) writes for ``packed_demo``: the disk sizes below fill up
    while the part files are written, and then at each side file."""
    out = tmp_path_factory.mktemp("reference") / "features"
    result = run_module("mr_tl.featurize", "-r", "inline", "--model", tiny_vgg16_fc2, packed_demo, "-o", out)
    assert result.returncode == 0, result.stderr
    parts = [n for n in os.listdir(out) if n.startswith("part-")]
    assert len(parts) > 2
    return pages_of(out, parts)


@pytest.mark.parametrize("runner, moment", [
    ("inline", "part files"), ("local", "part files"),
    ("inline", "_labels.json"), ("inline", "_summary.json"), ("inline", "_COMPLETE")])
def test_featurize_on_a_full_disk(runner, moment, featurized_pages, packed_demo, tiny_vgg16_fc2, small_disk,
                                  tmp_path, run_module):
    pages = {"part files": 2, "_labels.json": featurized_pages, "_summary.json": featurized_pages + 1,
             "_COMPLETE": featurized_pages + 2}[moment]
    disk = small_disk(pages * PAGE)
    out = disk / "features"
    result = run_module("mr_tl.featurize", "-r", runner, "--model", tiny_vgg16_fc2, packed_demo, "-o", out)
    if runner == "local":
        # a map task died of the full disk: mrjob quotes the task's own traceback as the "probable cause of
        # failure" (as it does for any failed task, on every runner); the driver says what it means
        ours, _, quoted = result.stderr.partition("Probable cause of failure")
        assert "Traceback" not in ours and "No space left on device" in quoted
        result = subprocess.CompletedProcess(result.args, result.returncode, result.stdout,
                                             ours + quoted.replace("Traceback", "(the task's traceback)"))
    one_error_line(result, 1, NO_SPACE)
    written = sorted(os.listdir(out)) if out.exists() else []
    assert feature_store.MARKER not in written
    if moment != "part files":   # the disk filled up where it was meant to
        side_files = [n for n in written if n.startswith("_")]
        assert side_files == {"_labels.json": [], "_summary.json": ["_labels.json"],
                              "_COMPLETE": ["_labels.json", "_summary.json"]}[moment]
    assert temporary_files(disk) == []
    for command in (["mr_tl.train", "-r", "inline", out, "-o", tmp_path / "run"],
                    ["mr_tl.parquet", out, "-o", tmp_path / "p"]):
        one_error_line(run_module(*command), 2, "is incomplete" if out.exists() else "does not exist")


# -- parquet --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_features(tmp_path_factory):
    """512-d features: part files and checkpoints of several pages each."""
    return write_features(tmp_path_factory.mktemp("wide") / "features", good_rows(45, dim=512), parts=3)


@pytest.mark.parametrize("moment", ["part files", "_labels.json", "_summary.json"])
def test_parquet_on_a_full_disk(moment, wide_features, small_disk, tmp_path, run_module):
    reference = tmp_path / "reference.parquet"
    assert run_module("mr_tl.parquet", wide_features, "-o", reference).returncode == 0
    parts = pages_of(reference, [n for n in os.listdir(reference) if n.startswith("part-")])
    pages = {"part files": parts - 1, "_labels.json": parts, "_summary.json": parts + 1}[moment]
    disk = small_disk(pages * PAGE)
    result = run_module("mr_tl.parquet", wide_features, "-o", disk / "features.parquet")
    one_error_line(result, 1, NO_SPACE)
    assert os.listdir(disk) == []   # no output, no temporary folder


# -- train ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_head(wide_features, tmp_path_factory, run_module):
    """W and b of an undisturbed run (what every interrupted run must end with)."""
    out = tmp_path_factory.mktemp("reference-run") / "run"
    result = run_module("mr_tl.train", "-r", "inline", wide_features, "-o", out, "--workers", 1, "--epochs", 3)
    assert result.returncode == 0, result.stderr
    return load_npz(os.path.join(out, "head.npz"))[1]


def train(run_module, features, run_dir, *extra):
    return run_module("mr_tl.train", "-r", "inline", features, "-o", run_dir, "--workers", 1, "--epochs", 3, *extra)


@pytest.mark.parametrize("moment", ["worker files", "checkpoint"])
def test_train_on_a_full_disk_keeps_the_last_good_checkpoint(moment, wide_features, reference_head, small_disk,
                                                             tmp_path, run_module):
    disk = small_disk(4 << 20)
    run_dir = disk / "run"
    if moment == "worker files":
        filler = leave_free(disk, 2)   # the worker files of 45 512-d examples take ~30 pages
        result = train(run_module, wide_features, run_dir)
        last_good = None
    else:
        result = train(run_module, wide_features, run_dir, "--stop-after-rounds", 1)
        assert result.returncode == 0, result.stderr
        filler = leave_free(disk, 1)   # a checkpoint takes 4 pages, every other write fits in one
        result = train(run_module, wide_features, run_dir, "--resume")
        last_good = 1
    line = one_error_line(result, 1, NO_SPACE, "--resume")
    assert "no head was written" in line
    assert not (run_dir / "head.npz").exists()
    assert temporary_files(run_dir) == []
    found = RunDir(str(run_dir)).latest_good_checkpoint(warn=lambda message: None)
    assert (found and found[0]) == last_good
    # nothing downstream takes the unfinished run
    one_error_line(run_module("mr_tl.evaluate", "-r", "inline", "--run", run_dir, wide_features), 2,
                   "head.npz does not exist")
    # space again: the run goes on and ends as if nothing had happened
    os.unlink(filler)
    result = train(run_module, wide_features, run_dir, "--resume")
    assert result.returncode == 0, result.stderr
    _, arrays = load_npz(os.path.join(run_dir, "head.npz"))
    assert np.array_equal(arrays["W"], reference_head["W"]) and np.array_equal(arrays["b"], reference_head["b"])


# -- evaluate -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("free", [0, 1])   # full at metrics.json, or at per_class.csv
def test_evaluate_on_a_full_disk_writes_no_evaluation(free, wide_features, small_disk, tmp_path, run_module):
    disk = small_disk(4 << 20)
    run_dir = disk / "run"
    result = train(run_module, wide_features, run_dir)
    assert result.returncode == 0, result.stderr
    filler = leave_free(disk, free)
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run_dir, wide_features)
    one_error_line(result, 1, NO_SPACE)
    evaluation = run_dir / "evaluation"
    assert not evaluation.exists() or os.listdir(evaluation) == []   # no half-written evaluation, hidden or not
    report = run_module("mr_tl.report", run_dir, "-o", tmp_path / "report")
    assert report.returncode == 0 and "Evaluation" not in (tmp_path / "report" / "index.html").read_text()
    os.unlink(filler)
    result = run_module("mr_tl.evaluate", "-r", "inline", "--run", run_dir, wide_features)
    assert result.returncode == 0, result.stderr   # nothing was left to refuse as an existing evaluation
    assert (evaluation / "test" / "metrics.json").exists()
    shutil.rmtree(run_dir)
