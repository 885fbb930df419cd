"""Fixtures of the reliability tests.

``small_disk(size)``   a folder on a tmpfs of ``size`` bytes (rounded up to whole pages), mounted for
                       the test and unmounted after it, to fill up; the test is skipped (with the
                       reason) where the machine cannot mount one (needs root and CAP_SYS_ADMIN).
"""

import subprocess

import pytest


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
