"""One line, never a traceback (issue 14, item 12): every command reports through mr_tl.cli.run_command.

A closed pipe (``cmd | head -1``) ends every command that prints with exit 141 and nothing on stderr,
Ctrl-C with ``interrupted`` and exit 130, and files that are not what they claim to be (not UTF-8, JSON
of the wrong shape, a file where a folder belongs) are one ``error:`` line with exit 2, changing nothing.
Run directories: test_run_dirs.py; a full disk: test_disk_full.py.
"""

import errno
import os
import shutil
import subprocess

import numpy as np
import pytest

from mr_tl import labels
from mr_tl.cli import run_command
from mr_tl.errors import FeatureError, JobFailed
from mr_tl.run_dir import RunDir, atomic_write

from .faults import PYTHON, one_error_line, run_with_closed_stdout, snapshot


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_vgg16_fc2, run_module):
    """An exported classifier: the tiny trunk and a head of 4 classes (made by hand, not trained)."""
    from mr_tl.model.spec import load_model_spec

    root = tmp_path_factory.mktemp("classifier")
    run = RunDir(str(root / "run"))
    dim = load_model_spec(tiny_vgg16_fc2).output_dim
    os.makedirs(run.path)
    atomic_write(run.file("labels.json"), labels.dumps(["circle", "square", "triangle", "star"]))
    g = np.random.default_rng(0)
    run.write_head({"W": g.normal(0, 1, (dim, 4)).astype(np.float32), "b": np.zeros(4, np.float32)}, {})
    result = run_module("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", run.path, "-o", root / "c.onnx")
    assert result.returncode == 0, result.stderr
    return {"run": run.path, "model": str(root / "c.onnx")}


def copy(src, dst):
    shutil.copytree(src, str(dst))
    return str(dst)


def command_lines(tmp_path, features, run, classifier, demo_images, packed_demo, tiny_vgg16_fc2):
    """``{name: (module, args)}``: every command that prints something to stdout, ready to run once."""
    image = os.path.join(demo_images, sorted(os.listdir(demo_images))[0])
    image = os.path.join(image, sorted(os.listdir(image))[0])
    return {
        "pack": ("mr_tl.pack", [demo_images, tmp_path / "packed"]),
        "featurize": ("mr_tl.featurize", ["-r", "inline", "--cat-output", "--model", tiny_vgg16_fc2, packed_demo,
                                          "-o", tmp_path / "featurized"]),
        "parquet": ("mr_tl.parquet", [features, "-o", tmp_path / "features.parquet"]),
        "train": ("mr_tl.train", ["-r", "inline", features, "-o", tmp_path / "run", "--workers", 1, "--epochs", 1]),
        "evaluate": ("mr_tl.evaluate", ["-r", "inline", "--run", copy(run, tmp_path / "evaluated"), features]),
        "report": ("mr_tl.report", [copy(run, tmp_path / "reported")]),
        "export": ("mr_tl.export", ["--trunk", tiny_vgg16_fc2, "--run", classifier["run"],
                                    "-o", tmp_path / "exported.onnx"]),
        "predict": ("mr_tl.predict", [classifier["model"], image]),
        "model summary": ("mr_tl.model", ["summary", tiny_vgg16_fc2]),
        "demo_data": ("mr_tl.demo_data", [tmp_path / "images", "--classes", 1, "--per-class", 1]),
        "monitor": ("mr_tl.monitor", [run, "--port", 0]),
        "baselines": ("mr_tl.baselines", [packed_demo]),
    }


COMMANDS = ["pack", "featurize", "parquet", "train", "evaluate", "report", "export", "predict", "model summary",
            "demo_data", "monitor", "baselines"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_closed_pipe_is_exit_141_and_no_traceback(name, tmp_path, features, run, classifier, demo_images,
                                                    packed_demo, tiny_vgg16_fc2):
    module, args = command_lines(tmp_path, features, run, classifier, demo_images, packed_demo,
                                 tiny_vgg16_fc2)[name]
    result = run_with_closed_stdout(module, *args, timeout=120)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error:")], result.stderr
    if name == "featurize":   # the output was checked and marked complete before it was printed
        assert os.path.exists(tmp_path / "featurized" / "_COMPLETE")


# Ctrl-C while the command prints: print() to stdout raises KeyboardInterrupt
INTERRUPT = """
import builtins, runpy, sys
real = builtins.print
def interrupted(*args, **kwargs):
    if kwargs.get("file") in (None, sys.stdout):
        raise KeyboardInterrupt
    return real(*args, **kwargs)
builtins.print = interrupted
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "featurize"])   # featurize prints with mrjob
def test_ctrl_c_is_exit_130_and_no_traceback(name, tmp_path, features, run, classifier, demo_images, packed_demo,
                                             tiny_vgg16_fc2):
    module, args = command_lines(tmp_path, features, run, classifier, demo_images, packed_demo,
                                 tiny_vgg16_fc2)[name]
    result = subprocess.run([PYTHON, "-c", INTERRUPT, module, *[str(a) for a in args]], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines()[-1] == "interrupted", result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_run_command_maps_every_kind_of_failure(capsys):
    def raising(error):
        def body():
            raise error
        return body

    for error, code, message in [
            (FeatureError("bad features"), 2, "error: bad features"),
            (JobFailed("the job failed"), 1, "error: the job failed"),
            (OSError(errno.ENOSPC, "No space left on device", "/x/part-00000"), 1,
             "error: no space left on the device writing /x/part-00000; nothing written there is marked complete"),
            (OSError(errno.EDQUOT, "Disk quota exceeded"), 1,
             "error: no space left on the device (Disk quota exceeded)"),
            (KeyboardInterrupt(), 130, "interrupted")]:
        with pytest.raises(SystemExit) as exit_:
            run_command(raising(error))
        assert exit_.value.code == code
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith(message), err
    assert run_command(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):   # a bug is not hidden
        run_command(lambda: 1 / 0)


# -- files that are not what they claim to be -------------------------------------------------------------

def refusals(tmp_path, features_dir, run):
    """The three commands that read a features folder, each as (module, args, what must stay unwritten)."""
    return {
        "train": ("mr_tl.train", ["-r", "inline", features_dir, "-o", tmp_path / "run"], tmp_path / "run"),
        "evaluate": ("mr_tl.evaluate", ["-r", "inline", "--run", run, features_dir],
                     os.path.join(run, "evaluation")),
        "parquet": ("mr_tl.parquet", [features_dir, "-o", tmp_path / "out.parquet"], tmp_path / "out.parquet"),
    }


@pytest.mark.parametrize("command", ["train", "evaluate", "parquet"])
@pytest.mark.parametrize("damage, fragments", [
    ("labels not UTF-8", ("_labels.json is not UTF-8",)),
    ("labels not JSON", ("_labels.json is not valid JSON",)),
    ("labels of the wrong shape", ("_labels.json is not an mr_tl labels file",)),
    ("summary not UTF-8", ("_summary.json is not UTF-8",)),
    ("part file not UTF-8", ("part-00000",)),
])
def test_side_and_part_files_that_cannot_be_read_are_one_line(command, damage, fragments, tmp_path, features, run,
                                                              run_module):
    folder = copy(features, tmp_path / "features")
    target, data = {
        "labels not UTF-8": ("_labels.json", b"\xff\xfe{}"),
        "labels not JSON": ("_labels.json", b"{\"format\": "),
        "labels of the wrong shape": ("_labels.json", b"[\"a\", \"b\", \"c\"]"),
        "summary not UTF-8": ("_summary.json", b"\xff\xfe"),
        "part file not UTF-8": ("part-00000", None),
    }[damage]
    path = os.path.join(folder, target)
    if data is None:
        with open(path, "ab") as f:
            f.write(b"\xff\xfe\x00 not text\n")
    else:
        with open(path, "wb") as f:
            f.write(data)
    run = copy(run, tmp_path / "the-run")
    before = snapshot(run)
    module, args, unwritten = refusals(tmp_path, folder, run)[command]
    one_error_line(run_module(module, *args), 2, *fragments)
    assert not os.path.exists(unwritten)
    assert snapshot(run) == before


def test_train_into_a_file_is_one_line(features, tmp_path, run_module):
    (tmp_path / "run").write_text("not a folder")
    one_error_line(run_module("mr_tl.train", "-r", "inline", features, "-o", tmp_path / "run"), 2, "is a file")
    assert (tmp_path / "run").read_text() == "not a folder"


@pytest.mark.parametrize("which", ["part file", "parquet file"])
def test_evaluate_given_a_file_instead_of_a_folder_is_one_line(which, features, run, tmp_path, run_module):
    if which == "parquet file":
        assert run_module("mr_tl.parquet", features, "-o", tmp_path / "p").returncode == 0
        given = tmp_path / "p" / "part-00000.parquet"
    else:
        given = os.path.join(features, "part-00000")
    run = copy(run, tmp_path / "the-run")
    one_error_line(run_module("mr_tl.evaluate", "-r", "inline", "--run", run, given), 2,
                   "is a file; give the features folder")
    assert not os.path.exists(os.path.join(run, "evaluation"))
