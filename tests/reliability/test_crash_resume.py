"""The driver killed (SIGKILL) anywhere, then ``--resume``: the same head, bit for bit.

Kills at chosen points go through a small launcher (``CRASHING_DRIVER``)
that wraps one function of the real driver with "die here at round N";
random kills just SIGKILL the real command line after a seeded random delay.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from feature_folders import write_feature_folder

from mr_tl.records import FeatureRecord
from mr_tl.run_dir import RunDir

CLASSES = ["a", "b", "c", "d"]
ARGS = ["--workers", "2", "--averaging-frequency", "2", "--epochs", "3", "--lr", "0.05"]

# Runs mr_tl.train.main with one point of the driver patched to SIGKILL the
# process at a given round: MR_TL_DIE_AT = "<where>:<round>".
CRASHING_DRIVER = r'''
import os, signal, sys
where, at = os.environ["MR_TL_DIE_AT"].split(":")
at = int(at)
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
import mr_tl.jobs.round_runner, mr_tl.jobs.train_round, mr_tl.records, mr_tl.run_dir, mr_tl.train

if where == "checkpoint-before-rename":      # temp file written, not yet renamed
    real = mr_tl.run_dir.save_npz
    def save_npz(path, meta, arrays):
        real(path, meta, arrays)
        if ".tmp-" in path and meta.get("round") == at:
            die()
    mr_tl.run_dir.save_npz = save_npz
elif where == "checkpoint-before-checksum":  # renamed, checksum file not yet written
    real = mr_tl.run_dir.atomic_write
    def atomic_write(path, data):
        if path.endswith("round-%06d.npz.sha256" % at):
            die()
        real(path, data)
    mr_tl.run_dir.atomic_write = atomic_write
elif where == "during-round":                # after the mappers trained, while their sums are averaged
    real = mr_tl.jobs.train_round.next_state   # (by the driver after a map-only round job, or the reducer)
    def next_state(lines, arrays, candidates, spec, worker_sizes=None):
        if spec.epoch * 100 + spec.first_batch >= at:
            die()
        return real(lines, arrays, candidates, spec, worker_sizes)
    mr_tl.jobs.train_round.next_state = mr_tl.jobs.round_runner.next_state = next_state
elif where == "between-rounds":              # after the metrics line of round `at`
    real = mr_tl.run_dir.RunDir.append_metrics
    def append_metrics(self, record):
        real(self, record)
        if record["round"] == at:
            die()
    mr_tl.run_dir.RunDir.append_metrics = append_metrics
else:
    raise SystemExit("unknown MR_TL_DIE_AT " + where)
mr_tl.train.main(sys.argv[1:])
'''


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    g = np.random.default_rng(3)
    centres = g.normal(0, 1.5, (len(CLASSES), 24))
    records = []
    for i in range(200):
        label = i % len(CLASSES)
        split = "test" if i % 10 == 0 else "train"
        vector = (centres[label] + g.normal(0, 1, 24)).astype(np.float32)
        records.append(FeatureRecord("img%04d" % i, label, split, vector))
    return write_feature_folder(folder, records, CLASSES, parts=1)


def train(features, run_dir, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "mr_tl.train", "-r", "inline", features, "-o", str(run_dir)]
                          + ARGS + list(extra), capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(features, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = train(features, run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def files_of(run_dir):
    out = {}
    for sub in ("checkpoints", ""):
        folder = os.path.join(str(run_dir), sub)
        for name in sorted(os.listdir(folder)):
            if name.endswith((".npz", ".sha256")):
                with open(os.path.join(folder, name), "rb") as f:
                    out[os.path.join(sub, name)] = f.read()
    return out


def assert_same_run(run_dir, reference):
    assert files_of(run_dir) == files_of(reference)
    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(RunDir(str(run_dir)).read_metrics()) == strip(RunDir(str(reference)).read_metrics())


@pytest.mark.parametrize("where, at", [
    ("checkpoint-before-rename", 2),
    ("checkpoint-before-checksum", 2),
    ("during-round", 102),          # epoch 1, second round of the epoch
    ("between-rounds", 3),
])
def test_killed_at_a_chosen_point_then_resumed(features, reference, tmp_path, where, at):
    run_dir = tmp_path / "run"
    env = dict(os.environ, MR_TL_DIE_AT="%s:%d" % (where, at), TMPDIR=str(tmp_path))
    crashed = subprocess.run([sys.executable, "-c", CRASHING_DRIVER, "-r", "inline", features, "-o", str(run_dir)]
                             + ARGS, capture_output=True, text=True, env=env, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not (run_dir / "head.npz").exists()
    result = train(features, run_dir, "--resume")
    assert result.returncode == 0, result.stderr
    if where == "checkpoint-before-checksum":
        assert "skipping checkpoint of round %d" % at in result.stdout  # found, not trusted, redone
    assert_same_run(run_dir, reference)


def test_killed_at_random_moments_then_resumed(features, tmp_path):
    """Seeded random SIGKILLs over a longer run (startup, rounds, checkpoints alike), resumed each time."""
    longer = ["--epochs", "10"]
    reference = tmp_path / "reference"
    started = time.monotonic()
    assert train(features, reference, *longer).returncode == 0
    checkpoints = len(RunDir(str(reference)).checkpoint_rounds())
    per_round = (time.monotonic() - started) / checkpoints
    run_dir = tmp_path / "run"
    g = np.random.default_rng(2026)
    progress_at_kill = []
    # Eight runs killed at seeded random moments, then one left to finish.  A moment is a seeded number of
    # checkpoints on disk plus a seeded part of a round's time after it (a target already passed: that part
    # of a round after the resumed run started, i.e. during its start-up), so that how loaded the machine
    # is moves the kills in time but not in the run; each resume pays the start-up (scan, partition check)
    # again, so a kill-every-time loop could starve on a slow machine.  In the order of the run: a late
    # first target would leave every later one passed, and every kill in the start-up at the same point.
    moments = sorted((int(g.integers(0, checkpoints)), float(g.uniform(0.0, 1.0)) * per_round) for _ in range(8))
    for moment in moments + [None]:
        cmd = [sys.executable, "-m", "mr_tl.train", "-r", "inline", features, "-o", str(run_dir)] + ARGS + longer
        if (run_dir / "config.json").exists():
            cmd.append("--resume")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, TMPDIR=str(tmp_path)))
        if moment is not None:
            target, delay = moment
            while proc.poll() is None and len(RunDir(str(run_dir)).checkpoint_rounds()) < target:
                time.sleep(0.01)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                progress_at_kill.append(len(RunDir(str(run_dir)).checkpoint_rounds()))
        out, err = proc.communicate()
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err
    assert proc.returncode == 0, err
    assert len(progress_at_kill) >= 2, "the moments were too late to kill anything: %s" % moments
    assert len(set(progress_at_kill)) >= 2, "every kill hit the same point: %s" % progress_at_kill
    assert_same_run(run_dir, reference)
