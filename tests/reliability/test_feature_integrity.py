"""Nothing lost, nothing mislabeled between pack, featurize, train, evaluate and parquet (issue 14,
items 3, 7 and 13).

* A shard edited after packing (same line count) fails featurize: its map tasks' digest of the input
  lines differs from the manifest's ``lines_digest``; nothing is marked complete.
* A features folder is used only whole: without ``_COMPLETE``, or with a part file removed, a line
  removed, a part file cut (at a line boundary, or inside a line) or a line edited, train, evaluate and
  parquet refuse it with one line and write nothing -- whichever split the damage is in.
* Evaluate refuses NaN/inf vectors, and names the file of a line that is no feature record.
"""

import os
import shutil

import numpy as np
import pytest

from mr_tl import feature_store
from mr_tl.records import FeatureRecord

from .faults import good_rows, one_error_line, snapshot, write_features


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return write_features(tmp_path_factory.mktemp("features") / "features", good_rows(60), parts=3)


# -- item 7: a shard changed after packing ------------------------------------------------------------------

def edit_one_line(shard, how):
    """Change one line of a packed shard in place, keeping the number of lines."""
    with open(shard, encoding="utf-8") as f:
        lines = f.read().split("\n")
    image_id, label, split, data = lines[1].split("\t")
    if how == "label":
        label = str((int(label) + 1) % 4)
    elif how == "split":
        split = "test" if split != "test" else "train"
    else:   # one character of the image bytes (still valid base64)
        middle = len(data) // 2
        data = data[:middle] + ("B" if data[middle] != "B" else "C") + data[middle + 1:]
    lines[1] = "\t".join((image_id, label, split, data))
    with open(shard, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


@pytest.mark.parametrize("runner, how", [("inline", "label"), ("inline", "split"), ("inline", "image bytes"),
                                         ("local", "label")])
def test_a_shard_changed_after_packing_fails_featurize(runner, how, packed_demo, tiny_vgg16_fc2, tmp_path,
                                                       run_module):
    packed = shutil.copytree(packed_demo, str(tmp_path / "packed"))
    shard = os.path.join(packed, sorted(n for n in os.listdir(packed) if n.startswith("train-"))[0])
    lines_before = open(shard, encoding="utf-8").read().count("\n")
    edit_one_line(shard, how)
    assert open(shard, encoding="utf-8").read().count("\n") == lines_before
    out = tmp_path / "features"
    result = run_module("mr_tl.featurize", "-r", runner, "--model", tiny_vgg16_fc2, packed, "-o", out)
    one_error_line(result, 1, "not marked complete", "a shard was changed after packing")
    assert not os.path.exists(out / feature_store.MARKER)
    # and nothing downstream takes what is there
    one_error_line(run_module("mr_tl.train", "-r", "inline", out, "-o", tmp_path / "run"), 2,
                   "is incomplete: it has no _COMPLETE marker")


# -- item 3: incomplete features ------------------------------------------------------------------------------

def part_files(folder):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("part-"))


def damage(folder, how):
    """Damage a features folder the way a failed or tampered write would; the train split only (evaluate
    scores the test split, and must notice anyway)."""
    if how == "no _COMPLETE":
        os.unlink(os.path.join(folder, feature_store.MARKER))
        return
    if how == "part file removed":
        os.unlink(part_files(folder)[-1])
        return
    path = part_files(folder)[0]
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    train = [i for i, line in enumerate(lines) if line.split("\t")[3] == "train"]
    if how == "line removed":
        del lines[train[1]]
    elif how == "cut at a line boundary":
        lines = lines[:train[-1]]
    elif how == "cut inside a line":
        lines = lines[:train[-1]] + [lines[train[-1]][:40]]
    elif how == "line edited":   # the same counts, another vector
        fields = lines[train[0]].rstrip("\n").split("\t")
        record = FeatureRecord(fields[1], int(fields[2]), fields[3], np.full(8, 5.0, np.float32))
        lines[train[0]] = record.to_line() + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(lines))


DAMAGE = [("no _COMPLETE", "is incomplete: it has no _COMPLETE marker"),
          ("part file removed", "do not add up to their summary"),
          ("line removed", "do not add up to their summary"),
          ("cut at a line boundary", "do not add up to their summary"),
          ("cut inside a line", ("part-00000", "do not add up to their summary")),
          ("line edited", "do not add up to their summary")]


@pytest.mark.parametrize("command", ["train", "evaluate", "parquet"])
@pytest.mark.parametrize("how, message", DAMAGE)
def test_incomplete_features_are_refused(command, how, message, features, run, tmp_path, run_module):
    folder = shutil.copytree(features, str(tmp_path / "features"))
    damage(folder, how)
    run = shutil.copytree(run, str(tmp_path / "the-run"))
    before = snapshot(run)
    module, args, unwritten = {
        "train": ("mr_tl.train", ["-r", "inline", folder, "-o", tmp_path / "run", "--workers", 1],
                  tmp_path / "run"),
        "evaluate": ("mr_tl.evaluate", ["-r", "inline", "--run", run, folder, "--split", "test"],
                     os.path.join(run, "evaluation")),
        "parquet": ("mr_tl.parquet", [folder, "-o", tmp_path / "p"], tmp_path / "p"),
    }[command]
    line = one_error_line(run_module(module, *args), 2)
    assert any(m in line for m in ((message,) if isinstance(message, str) else message)), line
    assert not os.path.exists(unwritten)
    assert snapshot(run) == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]   # no temporary folder left


def test_the_undamaged_folder_is_accepted(features, run, tmp_path, run_module):
    """(the damage above is what is refused, not the folder)"""
    run = shutil.copytree(run, str(tmp_path / "the-run"))
    assert run_module("mr_tl.evaluate", "-r", "inline", "--run", run, features).returncode == 0
    assert run_module("mr_tl.parquet", features, "-o", tmp_path / "p").returncode == 0


# -- item 13: evaluate never scores what it cannot trust --------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_evaluate_refuses_non_finite_vectors(value, run, tmp_path, run_module):
    rows = good_rows(60)
    bad = next(i for i, r in enumerate(rows) if r[2] == "test")
    rows[bad] = (rows[bad][0], rows[bad][1], "test", np.full(8, value))
    folder = write_features(tmp_path / "features", rows, parts=3)
    run = shutil.copytree(run, str(tmp_path / "the-run"))
    line = one_error_line(run_module("mr_tl.evaluate", "-r", "inline", "--run", run, folder), 2,
                          "the test split cannot be scored", "NaN or inf", rows[bad][0])
    assert line
    assert not os.path.exists(os.path.join(run, "evaluation"))


def test_evaluate_names_the_file_of_a_bad_record(run, tmp_path, run_module):
    folder = write_features(tmp_path / "features", good_rows(60), parts=3)
    with open(os.path.join(folder, "part-00001"), "a", encoding="utf-8") as f:
        f.write("F\tx999\t0\ttest\t-\tnot base64 at all\n")
    run = shutil.copytree(run, str(tmp_path / "the-run"))
    one_error_line(run_module("mr_tl.evaluate", "-r", "inline", "--run", run, folder), 2,
                   "not feature records", "part-00001")
    assert not os.path.exists(os.path.join(run, "evaluation"))
