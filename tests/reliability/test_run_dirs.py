"""A run directory is used only as what it is (issue 14, item 12): a config.json of the wrong shape and a
checkpoint copied in from another run are one ``error:`` line with exit 2, and change nothing.
"""

import os
import shutil

import pytest

from .faults import good_rows, one_error_line, snapshot, write_features


@pytest.mark.parametrize("config", ['[]', '"a string"', '{"training": []}', '{"training": {}, "features": []}',
                                    '{"training": {"lr": "fast"}}'])
def test_a_config_of_the_wrong_shape_is_one_line(config, features, run, tmp_path, run_module):
    run = shutil.copytree(run, str(tmp_path / "the-run"))
    with open(os.path.join(run, "config.json"), "w") as f:
        f.write(config)
    before = snapshot(run)
    one_error_line(run_module("mr_tl.train", "-r", "inline", features, "-o", run, "--workers", 1, "--epochs", 2,
                              "--resume"), 2, "config.json is not a configuration of this version of mr_tl")
    one_error_line(run_module("mr_tl.report", run), 2, "config.json is not a configuration")
    assert snapshot(run) == before


@pytest.mark.parametrize("other", ["another shape", "the same shape, another configuration"])
def test_a_checkpoint_of_another_run_is_refused(other, features, tmp_path, run_module):
    """A checkpoint copied into RUN_DIR/checkpoints from another run (with its checksum, so it verifies)
    is never resumed from: the run would go on with another model and write its head under these labels."""
    ours = tmp_path / "ours"
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", ours, "--workers", 1, "--epochs", 3,
                        "--stop-after-rounds", 1)
    assert result.returncode == 0, result.stderr
    if other == "another shape":
        theirs = write_features(tmp_path / "theirs-features", [(i, lab % 2, s, v) for i, lab, s, v
                                                                 in good_rows(dim=6, seed=1)], classes=["p", "q"])
        extra = []
    else:
        theirs, extra = features, ["--lr", 0.1]
    result = run_module("mr_tl.train", "-r", "inline", theirs, "-o", tmp_path / "theirs", "--workers", 1,
                        "--epochs", 3, *extra)
    assert result.returncode == 0, result.stderr
    for name in ("round-000002.npz", "round-000002.npz.sha256"):
        shutil.copy(tmp_path / "theirs" / "checkpoints" / name, ours / "checkpoints" / name)
    before = snapshot(ours)
    line = one_error_line(run_module("mr_tl.train", "-r", "inline", features, "-o", ours, "--workers", 1,
                                     "--epochs", 3, "--resume"), 2, "round-000002.npz does not belong to the run")
    assert "remove it" in line
    assert snapshot(ours) == before and not (ours / "head.npz").exists()
