"""Helpers of the fault tests (issue 14): running commands, checking their one error line, damaging
and filling things."""

import hashlib
import os
import subprocess
import sys

import numpy as np
from feature_folders import write_feature_folder

from mr_tl.records import FeatureRecord

PYTHON = sys.executable
CLASSES = ["a", "b", "c"]
PAGE = 4096   # tmpfs counts whole pages


def one_error_line(result, code, *fragments):
    """The one ``error: ...`` line of a command that failed with ``code``, holding every fragment."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def snapshot(root):
    """Every file under ``root`` with its bytes' hash and mtime (to prove nothing was touched)."""
    out = {}
    for directory, _, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, str(root))] = (hashlib.sha256(f.read()).hexdigest(),
                                                         os.stat(path).st_mtime_ns)
    return out


def good_rows(n=30, dim=8, seed=0):
    """(id, label, split, vector) of separable classes: 3 train, 1 val, 1 test in every 5."""
    g = np.random.default_rng(seed)
    splits = ["train", "train", "train", "val", "test"]
    return [("x%03d" % i, i % 3, splits[i % 5], g.normal(i % 3, 0.3, dim)) for i in range(n)]


def write_features(folder, rows, classes=CLASSES, parts=2):
    """rows -> a complete featurize-style folder (``parts`` part files)."""
    records = [FeatureRecord(image_id, label, split, np.asarray(vector, dtype=np.float32))
               for image_id, label, split, vector in rows]
    return write_feature_folder(folder, records, classes, parts=parts)


def run_with_closed_stdout(module, *args, timeout=300):
    """``python -m module ARGS | head -0``: stdout is a pipe whose reader has gone (the read end is
    closed before the command starts, so its first write to stdout fails)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([PYTHON, "-m", module, *[str(a) for a in args]], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    finally:
        os.close(write_end)


def free_pages(folder):
    st = os.statvfs(str(folder))
    return st.f_bavail * st.f_frsize // PAGE


def leave_free(folder, pages, name="filler"):
    """Fill the file system of ``folder`` with one file so that ``pages`` pages stay free; returns its path."""
    path = os.path.join(str(folder), name)
    size = (free_pages(folder) - pages) * PAGE
    assert size >= 0, "the disk has fewer than %d free pages" % pages
    with open(path, "wb") as f:
        f.write(b"\0" * size)
    assert free_pages(folder) == pages
    return path


def pages_of(folder, names=None):
    """Pages the files in ``folder`` (or those named) take on a tmpfs."""
    names = sorted(os.listdir(str(folder))) if names is None else names
    return sum(-(-os.path.getsize(os.path.join(str(folder), n)) // PAGE) for n in names)
