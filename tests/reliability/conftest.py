"""Fixtures of the reliability tests.

``features``           (module) a complete features folder of 30 good rows (a module may override it)
``run``                (module) a finished 1-worker run on ``features`` (copy it before changing it)

``small_disk(size)``   a folder on a tmpfs of ``size`` bytes (rounded up to whole pages), mounted for
                       the test and unmounted after it, to fill up; the test is skipped (with the
                       reason) where the machine cannot mount one (needs root and CAP_SYS_ADMIN).
"""

import subprocess

import pytest

from .faults import good_rows, write_features


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return write_features(tmp_path_factory.mktemp("features") / "features", good_rows())


@pytest.fixture(scope="module")
def run(tmp_path_factory, features, run_module):
    """A finished 1-worker run on ``features`` (copy it before changing it)."""
    out = tmp_path_factory.mktemp("run") / "run"
    result = run_module("mr_tl.train", "-r", "inline", features, "-o", out, "--workers", 1, "--epochs", 2)
    assert result.returncode == 0, result.stderr
    return str(out)


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)``: a folder on a tmpfs of ``size`` bytes (unmounted after the test)."""
    mounted = []

    def make(size):
        where = tmp_path / ("disk%d" % len(mounted))
        where.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", str(where)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip("cannot mount a small tmpfs to fill (needs root and CAP_SYS_ADMIN): %s"
                        % (result.stderr.strip() or result.returncode))
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)
