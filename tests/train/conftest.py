"""Fixtures of the part II (training) tests: feature sets and trained runs.

Feature sets are written exactly as ``python -m mr_tl.featurize`` writes
them (``part-NNNNN`` files of ``FeatureRecord.to_line()`` lines plus
``_labels.json``), so the train / evaluate commands read them like real
featurize output; no ONNX model is needed for them.

Session-scoped fixtures are shared: treat the folders they return as
READ-ONLY (``copy_tree`` them into ``tmp_path`` before changing anything).

``make_features(out_dir, **kw)``  (fixture returning the function)
    writes a Gaussian-cluster feature set and returns a :class:`Synth`.
``synth``           5 classes, 32 dims, 60/12/20 per class (train/val/test), two part files.
``synth_accuracy``  5 classes, 32 dims, slightly overlapping clusters (~97% reachable):
                    64 train, 20 val, 200 test per class.
``trained_run``     a finished 2-worker inline run on ``synth`` (validation every round).
``train_cli``       ``train_cli(args...)`` runs ``mr_tl.train.main`` in this process and returns
                    ``Result(code, out, err)``; much faster than a subprocess.
``real_features``   ``packed_demo`` featurized with models/efficientnet-lite0-features.onnx
                    (skipped when the model has not been set up).
"""

import contextlib
import io
import os
import shutil
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from mr_tl.records import FeatureRecord

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL_MODEL = os.path.join(REPO, "models", "efficientnet-lite0-features.onnx")


@dataclass
class Synth:
    """A synthetic feature set on disk and the same data in memory."""

    path: str
    classes: list
    ids: list
    labels: np.ndarray
    splits: list
    X: np.ndarray

    def split(self, name):
        keep = [i for i, s in enumerate(self.splits) if s == name]
        return [self.ids[i] for i in keep], self.X[keep], self.labels[keep]

    def train_sorted_by_id(self):
        """The train split in id order (the order a worker holds its examples in)."""
        ids, X, y = self.split("train")
        order = sorted(range(len(ids)), key=ids.__getitem__)
        return [ids[i] for i in order], X[order], y[order]


def write_features(out_dir, ids, labels, splits, X, classes, parts=2, scale=1.0, digests=None):
    """Write feature records as featurize does (``part-NNNNN``, ``_labels.json``, ``_summary.json``, ``_COMPLETE``)."""
    from feature_folders import write_feature_folder

    digests = digests or ["-"] * len(ids)
    records = [FeatureRecord(i, int(label), s, (x * np.float32(scale)).astype(np.float32), d)
               for i, label, s, x, d in zip(ids, labels, splits, X, digests)]
    return write_feature_folder(out_dir, records, classes, parts, X.shape[1] if len(X) else 0)


def make_features(out_dir, n_classes=5, dim=32, per_class=(60, 12, 20), spread=1.0, seed=0, parts=2):
    """Gaussian class clusters (unit noise, centres ~N(0, spread^2) per coordinate), shuffled rows."""
    g = np.random.default_rng(seed)
    centres = g.normal(0.0, spread, (n_classes, dim))
    ids, labels, splits, rows = [], [], [], []
    for split, n in zip(("train", "val", "test"), per_class):
        for c in range(n_classes):
            for i in range(n):
                ids.append("%03d.class%d/%s_%04d.jpg" % (c, c, split, i))
                labels.append(c)
                splits.append(split)
                rows.append(centres[c] + g.normal(0.0, 1.0, dim))
    perm = g.permutation(len(ids))
    ids = [ids[i] for i in perm]
    labels = np.asarray(labels, dtype=np.int64)[perm]
    splits = [splits[i] for i in perm]
    X = np.asarray(rows, dtype=np.float32)[perm]
    classes = ["%03d.class%d" % (c, c) for c in range(n_classes)]
    write_features(out_dir, ids, labels, splits, X, classes, parts=parts)
    return Synth(out_dir, classes, ids, labels, splits, X)


@pytest.fixture(scope="session")
def make_features_fn():
    return make_features


@pytest.fixture(scope="session")
def write_features_fn():
    return write_features


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    return make_features(str(tmp_path_factory.mktemp("synth") / "features"), spread=0.6, seed=0)


@pytest.fixture(scope="session")
def synth_accuracy(tmp_path_factory):
    return make_features(str(tmp_path_factory.mktemp("synth_acc") / "features"), per_class=(64, 20, 200),
                         spread=0.7, seed=0)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_train(*args):
    """``python -m mr_tl.train ARGS`` in this process (inline runner advised): ``Result``."""
    from mr_tl import train

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            train.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def train_cli():
    return run_train


@pytest.fixture(scope="session")
def copy_tree():
    """``copy_tree(src, dst)``: a private copy of a shared folder."""
    def copy(src, dst):
        shutil.copytree(src, dst)
        return str(dst)
    return copy


TRAINED_RUN_ARGS = ("--workers", "2", "--epochs", "3", "--batch-size", "16", "--averaging-frequency", "5",
                    "--lr", "0.05", "--validate-every", "1")


@pytest.fixture(scope="session")
def trained_run(synth, tmp_path_factory):
    """A finished run on ``synth``: 2 workers, 150 examples each, batch 16, K=5 -> 2 rounds/epoch, 6 rounds."""
    out = str(tmp_path_factory.mktemp("trained") / "run")
    result = run_train("-r", "inline", synth.path, "-o", out, *TRAINED_RUN_ARGS)
    assert result.code == 0, result.err
    return out


def file_bytes(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


@pytest.fixture(scope="session")
def snapshot():
    """``snapshot(folder)`` -> ``{relative path: (bytes, mtime_ns)}`` to prove nothing changed."""
    def snap(folder):
        out = {}
        for rel, data in file_bytes(folder).items():
            out[rel] = (data, os.stat(os.path.join(folder, rel)).st_mtime_ns)
        return out
    return snap


@pytest.fixture(scope="session")
def all_bytes():
    return file_bytes


@pytest.fixture(scope="session")
def real_features(packed_demo, tmp_path_factory):
    """``packed_demo`` featurized by the real EfficientNet-Lite0 trunk (1280 features), inline runner."""
    if not os.path.isfile(REAL_MODEL):
        pytest.skip("models/efficientnet-lite0-features.onnx is missing (run scripts/setup)")
    import subprocess

    out = str(tmp_path_factory.mktemp("real_features") / "features")
    result = subprocess.run([sys.executable, "-m", "mr_tl.featurize", "-r", "inline", "-q", "--model", REAL_MODEL,
                             packed_demo, "-o", out], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out
