"""The README's Hadoop quick start, run as it stands in a fresh copy of the checkout (issue 17).

The copy holds the tracked files only (what ``git clone`` gives), plus what
``scripts/setup`` would have made there, which the quick start assumes: the
``.venv`` (this test's Python environment, linked) and the demo model
(``models/*.onnx`` and sidecars, linked from this checkout).  The block is
taken from README.md between the marker comment and the end of its fence,
and run with ``bash -e`` from the copy's root.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hadoop_harness
import pytest

pytestmark = [pytest.mark.hadoop, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MARKER = "tests/engines/test_readme_quickstart.py"


def quick_start_block(readme):
    """The shell block that follows the README's marker comment naming this test."""
    at = readme.index(MARKER)
    found = re.compile(r"```sh\n(.*?)```", re.S).search(readme, at)
    assert found, "no ```sh block after the marker"
    return found.group(1)


def fresh_copy(dest):
    """The tracked files of this checkout (as they are in the working tree) in ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode("utf-8").split("\0")):
        src, dst = REPO / name, dest / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return dest


def test_the_readme_hadoop_quick_start_works_in_a_fresh_checkout(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    hadoop_harness.hadoop_home()   # skips without Java/Maven; fetches (cached) the jars otherwise
    model = REPO / "models" / "efficientnet-lite0-features.onnx"
    if not model.exists():
        pytest.skip("no demo model (scripts/setup builds it)")
    copy = fresh_copy(tmp_path / "mr_tl")
    # what scripts/setup would have made in the copy
    (copy / ".venv").symlink_to(Path(sys.prefix))
    for f in (REPO / "models").iterdir():
        if f.suffix in (".onnx", ".json") or f.name.endswith(".onnx.data"):
            (copy / "models" / f.name).symlink_to(f)
    block = quick_start_block((copy / "README.md").read_text(encoding="utf-8"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOOP_")}
    env.update(hadoop_harness.THREAD_ENV, TMPDIR=str(tmp_path))
    env.pop("MR_TL_TASK_PYTHON", None)
    proc = subprocess.run(["bash", "-e", "-c", block], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, "the quick start failed (%d):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:],
                                                                         proc.stderr[-6000:])
    demo = copy / "hadoop-demo"
    assert (demo / "features" / "_COMPLETE").exists()
    metrics = json.loads((demo / "run" / "evaluation" / "test" / "metrics.json").read_text())
    assert metrics["examples"] > 0 and metrics["accuracy"] > 0.2   # 10 classes: chance is 0.1
    conf = json.loads((demo / "hadoop" / "mrjob.conf").read_text())["runners"]["hadoop"]
    assert conf["hadoop_bin"] == str(demo / "hadoop" / "bin" / "hadoop")
    # the local job runner worked in scratch folders, not in the copy
    assert sorted(p.name for p in copy.iterdir() if p.name.endswith((".py", ".zip")) and not (REPO / p.name).exists()) \
        == []
