"""Same inputs, same bytes: across runs, across runners, and after a task is killed and retried.

(The same on real Hadoop, including a task retried by YARN, is in tests/engines/.)
"""

import os
import stat
import sys

import pytest

from mr_tl.run_dir import RunDir


def folder_bytes(folder, keep=lambda name: True):
    out = {}
    for directory, _, files in os.walk(folder):
        for name in files:
            if keep(name):
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, folder)] = f.read()
    return out


def data_files(name):
    return not name.startswith(("_", ".")) or name in ("_labels.json",)


@pytest.fixture(scope="module")
def pipeline(demo_images, tiny_vgg16_fc2, tmp_path_factory, run_module):
    """pack twice; featurize inline, inline again and local; train inline and local."""
    root = tmp_path_factory.mktemp("determinism")
    for name in ("packed-1", "packed-2"):
        assert run_module("mr_tl.pack", demo_images, root / name).returncode == 0
    for name, runner in (("features-inline-1", "inline"), ("features-inline-2", "inline"),
                         ("features-local-1", "local"), ("features-local-2", "local")):
        result = run_module("mr_tl.featurize", "-r", runner, "--model", tiny_vgg16_fc2, root / "packed-1",
                            "-o", root / name)
        assert result.returncode == 0, result.stderr[-2000:]
    for name, runner in (("run-inline", "inline"), ("run-local", "local")):
        result = run_module("mr_tl.train", "-r", runner, root / "features-inline-1", "-o", root / name,
                            "--workers", 2, "--epochs", 2, "--lr", 0.05)
        assert result.returncode == 0, result.stderr[-2000:]
    return root


def test_pack_output_is_byte_identical(pipeline):
    assert folder_bytes(pipeline / "packed-1") == folder_bytes(pipeline / "packed-2")


def records_and_side_files(folder):
    """The sorted record lines of a job's output and its side files: how records are spread over
    part files is the runner's business (its number of map tasks), the records are not."""
    files = folder_bytes(folder, data_files)
    lines = sorted(line for name, data in files.items() if name.startswith("part-")
                   for line in data.splitlines(keepends=True))
    return lines, {name: data for name, data in files.items() if not name.startswith("part-")}


def test_feature_records_are_byte_identical_across_runs_and_runners(pipeline):
    for runner in ("inline", "local"):  # the same runner twice: the same files, byte for byte
        first = folder_bytes(pipeline / ("features-%s-1" % runner), data_files)
        assert first and first == folder_bytes(pipeline / ("features-%s-2" % runner), data_files)
    inline = records_and_side_files(pipeline / "features-inline-1")
    assert len(inline[0]) == 48 and "_labels.json" in inline[1]
    assert inline == records_and_side_files(pipeline / "features-local-1")


def test_round_checkpoints_are_byte_identical_across_runners(pipeline):
    inline = folder_bytes(pipeline / "run-inline" / "checkpoints")
    assert len(inline) >= 6 and inline == folder_bytes(pipeline / "run-local" / "checkpoints")
    assert (pipeline / "run-inline" / "head.npz").read_bytes() == (pipeline / "run-local" / "head.npz").read_bytes()


KILLING_PYTHON = """#!/bin/bash
# The first map task of a training round that starts is killed after a moment; every other task runs normally.
if [[ " $* " == *"train_round.py"*" --mapper "* ]] && mkdir "{marker}" 2>/dev/null; then
  "{python}" "$@" <&0 &
  pid=$!
  sleep 0.3
  kill -9 $pid 2>/dev/null
  echo "killed map task $pid" >&2
  exit 137
fi
exec "{python}" "$@"
"""


def test_a_killed_map_task_is_retried_and_the_round_is_identical(pipeline, tmp_path, run_module):
    wrapper = tmp_path / "python"
    marker = tmp_path / "killed-once"
    wrapper.write_text(KILLING_PYTHON.format(marker=marker, python=sys.executable))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    result = run_module("mr_tl.train", "-r", "local", "--python-bin", wrapper, pipeline / "features-inline-1",
                        "-o", tmp_path / "run", "--workers", 2, "--epochs", 2, "--lr", 0.05)
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists(), "no map task was killed"
    assert "round 1 failed" in result.stdout and "running it again (attempt 2 of 3)" in result.stdout
    assert folder_bytes(tmp_path / "run" / "checkpoints") == folder_bytes(pipeline / "run-local" / "checkpoints")
    assert len(RunDir(str(tmp_path / "run")).read_metrics()) == len(RunDir(str(pipeline / "run-local")).read_metrics())


def test_a_round_that_keeps_failing_stops_with_the_last_good_checkpoint(pipeline, tmp_path, run_module):
    wrapper = tmp_path / "python"
    wrapper.write_text('#!/bin/bash\nif [[ " $* " == *"train_round.py"*" --mapper "* ]]; then exit 3; fi\n'
                       'exec "%s" "$@"\n' % sys.executable)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    result = run_module("mr_tl.train", "-r", "local", "--python-bin", wrapper, pipeline / "features-inline-1",
                        "-o", tmp_path / "run", "--workers", 2, "--epochs", 2, "--round-retries", 1)
    assert result.returncode == 1
    assert "round 1 failed 2 times" in result.stderr and "--resume" in result.stderr
    assert RunDir(str(tmp_path / "run")).checkpoint_rounds() == [0]
    assert not (tmp_path / "run" / "head.npz").exists()
