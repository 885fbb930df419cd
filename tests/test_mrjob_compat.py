"""What mr_tl relies on in mrjob's private API (mr_tl/jobs/compat.py), pinned one behaviour per test.

If mrjob changes (or a fork replaces it), the failing test names the one
thing to fix in mr_tl/jobs/compat.py.
"""

import json
import os

import pytest
from mr_compat_probe import MRTaskOfEachLine
from mrjob.hadoop import HadoopJobRunner
from mrjob.inline import InlineMRJobRunner
from mrjob.job import MRJob
from mrjob.local import LocalMRJobRunner
from mrjob.sim import SimMRJobRunner

from mr_tl.jobs import compat, compat_runners


def run_job(job):
    from mrjob.util import to_lines

    with job.make_runner() as runner:
        runner.run()
        lines = [line.decode("utf-8").rstrip("\n") for line in to_lines(runner.cat_output()) if line.strip()]
        return runner, lines


@pytest.fixture
def two_big_files(tmp_path):
    """Two uncompressed input files, each far larger than the split size mrjob's local runner picks."""
    paths = []
    for name in ("a", "b"):
        path = tmp_path / ("%s.txt" % name)
        path.write_text("".join("%s%06d %s\n" % (name, i, "x" * 200) for i in range(3000)))
        paths.append(str(path))
    return paths


def test_the_runner_class_hook_gives_local_and_inline_runners_of_mr_tl():
    # MRJob._runner_class is what HookedMRJob overrides
    assert compat.runner_alias(MRTaskOfEachLine(["-r", "local"])) == "local"
    assert isinstance(MRTaskOfEachLine(["-r", "local"]).make_runner(), compat_runners.SingleSplitLocalRunner)
    assert isinstance(MRTaskOfEachLine(["-r", "inline"]).make_runner(), compat_runners.SingleSplitInlineRunner)
    assert issubclass(compat_runners.SingleSplitLocalRunner, LocalMRJobRunner)
    assert issubclass(compat_runners.SingleSplitInlineRunner, InlineMRJobRunner)
    assert compat.runner_alias(MRTaskOfEachLine(["-r", "hadoop"])) == "hadoop"
    # -r hadoop: the runner whose file operations start no JVM
    hadoop_job = MRTaskOfEachLine(["-r", "hadoop", "--hadoop-bin", "/nonexistent/hadoop"])
    assert hadoop_job._runner_class() is compat_runners.FastHadoopJobRunner
    assert issubclass(compat_runners.FastHadoopJobRunner, HadoopJobRunner)


def test_pick_mapper_split_size_is_the_hook_for_one_split_per_file(two_big_files):
    # without the jobconf, mrjob's local runner cuts each file into pieces ...
    _, lines = run_job(MRTaskOfEachLine(["-r", "local", "--num-cores", "2"] + two_big_files))
    tasks_of = {}
    for line in lines:
        task, first, _ = line.split("\t")
        tasks_of.setdefault(first, set()).add(task)
    assert max(len(t) for t in tasks_of.values()) > 1, tasks_of
    # ... with it, each file is exactly one map task, as on Hadoop
    _, lines = run_job(MRTaskOfEachLine(["-r", "local", "--num-cores", "2", "--one-split"] + two_big_files))
    tasks_of = {}
    for line in lines:
        task, first, _ = line.split("\t")
        tasks_of.setdefault(first, set()).add(task)
    assert sorted(tasks_of) == ["a", "b"] and all(len(t) == 1 for t in tasks_of.values())
    assert tasks_of["a"] != tasks_of["b"]
    assert hasattr(SimMRJobRunner, "_pick_mapper_split_size") and hasattr(SimMRJobRunner, "_jobconf_for_step")


def test_runner_kwargs_hook_reaches_the_runner(two_big_files):
    runner = MRTaskOfEachLine(["-r", "local"] + two_big_files).make_runner()
    assert runner._opts["cmdenv"]["MR_TL_COMPAT_PROBE"] == "1"


def test_add_to_command_line_ships_a_file_option(tmp_path, two_big_files):
    shipped = tmp_path / "shipped.txt"
    shipped.write_text("hello")
    job = MRTaskOfEachLine(["-r", "local", two_big_files[0]])
    job.options.shipped = str(shipped)
    compat.add_to_command_line(job, ["--shipped", str(shipped)])
    _, lines = run_job(job)
    assert lines and all(line.endswith("\thello") for line in lines)


def test_runner_option_reads_the_mrjob_conf(tmp_path):
    conf = tmp_path / "mrjob.conf"
    conf.write_text(json.dumps({"runners": {"hadoop": {"hadoop_bin": "/opt/hadoop/bin/hadoop"}}}))
    job = MRTaskOfEachLine(["-r", "hadoop", "-c", str(conf), "x"])
    assert compat.runner_option(job, "hadoop_bin") == ["/opt/hadoop/bin/hadoop"]
    assert compat.runner_option(MRTaskOfEachLine(["-r", "local", "x"]), "hadoop_bin") is None


def test_runner_command_line_keeps_only_the_runner_options(tmp_path):
    job = MRTaskOfEachLine(["-r", "hadoop", "-c", "my.conf", "--shipped", "f.txt", "-D", "a=b", "--hadoop-bin",
                            "/bin/hadoop", "--one-split", "-o", "out", "input.txt", "--num-cores=3"])
    assert compat.runner_command_line(job) == ["-r", "hadoop", "-c", "my.conf", "-D", "a=b", "--hadoop-bin",
                                               "/bin/hadoop", "--num-cores=3"]


def test_cat_file_reads_one_file(tmp_path):
    from mrjob.fs.local import LocalFilesystem

    (tmp_path / "f*.txt").write_bytes(b"one\ntwo\n")
    (tmp_path / "f1.txt").write_bytes(b"other\n")
    assert b"".join(compat.cat_file(LocalFilesystem(), str(tmp_path / "f*.txt"))) == b"one\ntwo\n"


def test_option_actions_of_an_mrjob_parser():
    actions = compat.option_actions(MRJob(args=[]).arg_parser)
    assert {"-c", "--conf-path", "-r", "--runner", "-D", "--hadoop-bin", "-o", "--output-dir"} <= set(actions)
    assert actions["-c"].nargs is None and actions["--no-conf"].nargs == 0


def test_a_failing_task_fails_the_job_without_terminating_the_pool(tmp_path):
    from mrjob.step import StepFailedException

    (tmp_path / "a.txt").write_text("a1\n")
    (tmp_path / "b.txt").write_text("b1\n")
    job = MRTaskOfEachLine(["-r", "local", "--one-split", "--fail-on", "b", str(tmp_path / "a.txt"),
                            str(tmp_path / "b.txt")])
    with pytest.raises(StepFailedException):
        run_job(job)


@pytest.mark.parametrize("key, reducers, expected", [
    # the Java hash by hand: h = 31 * h + byte, from 0
    ("a", 7, 97 % 7), ("ab", 5, (31 * 97 + 98) % 5), ("t00000", 2, None), ("é", 3, None),
])
def test_hadoop_key_partition_is_the_java_hash(key, reducers, expected):
    h = 0
    for byte in key.encode("utf-8"):
        h = (31 * h + (byte - 256 if byte > 127 else byte)) & 0xFFFFFFFF
    java = (h & 0x7FFFFFFF) % reducers
    assert compat.hadoop_key_partition(key, reducers) == (java if expected is None else expected)


def test_key_for_reducer_reaches_every_reducer():
    for reducers in (1, 2, 3, 8, 17):
        for reducer in range(reducers):
            key = compat.key_for_reducer("t%05d" % reducer, reducer, reducers)
            assert key.startswith("t%05d" % reducer)
            assert compat.hadoop_key_partition(key, reducers) == reducer


def test_no_other_module_uses_mrjob_private_api():
    """Every ``._name`` of mrjob's used by mr_tl is in compat.py or compat_runners.py."""
    import re

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mr_tl")
    private = re.compile(r"\._(runner_class|runner_kwargs|cl_args|opts|cat_file|option_string_actions|"
                         r"pick_mapper_split_size|run_multiple|pickle_safe|jobconf_for_step|usage|print_help)\b")
    offenders = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(".py") and path not in (os.path.join(root, "jobs", "compat.py"),
                                                     os.path.join(root, "jobs", "compat_runners.py")):
                with open(path, encoding="utf-8") as f:
                    offenders += ["%s: %s" % (os.path.relpath(path, root), m.group(0))
                                  for m in private.finditer(f.read())]
    assert offenders == []


RUNNER_MODULES = ("mrjob.hadoop", "mrjob.bin", "mrjob.local", "mrjob.inline", "mrjob.sim", "mrjob.spark.runner",
                  "pyspark", "mr_tl.jobs.compat_runners")


def _imported_modules(args):
    """The modules ``python -X importtime ARGS`` imported (the rows of its import-time report on stderr:
    ``import time: <self us> | <cumulative us> | <module>``, after one header row)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", *args], input=b"", capture_output=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    rows = [line[len("import time:"):].split("|") for line in done.stderr.decode().splitlines()
            if line.startswith("import time:")]
    return {row[2].strip() for row in rows if len(row) == 3 and row[0].strip().isdigit()}


def test_a_task_imports_none_of_mrjobs_runner_modules():
    """Every Python task starts by importing its job: mrjob's runner modules (mrjob.hadoop imports
    mrjob.bin, which imports pyspark when installed: ~0.1 s per task, on every round's critical
    path) are the driver's only, through compat._runner_classes()."""
    modules = _imported_modules(["-c", "import mr_tl.jobs.train_round, mr_tl.jobs.predict, mr_tl.jobs.scan, "
                                       "mr_tl.jobs.partition, mr_tl.featurize, mr_tl.evaluate"])
    assert "mr_tl.jobs.train_round" in modules and "mrjob.job" in modules   # the report is read right
    assert sorted(modules & set(RUNNER_MODULES)) == []
    # a real task: the record-check job's mapper on empty input, as a Hadoop task runs it
    task = _imported_modules(["-m", "mr_tl.jobs.check_records", "--step-num=0", "--mapper"])
    assert "mr_tl.jobs.base" in task and sorted(task & set(RUNNER_MODULES)) == []
    # the driver does import them, when it picks a runner
    driver = _imported_modules(["-c", "from mr_tl.jobs.check_records import MRCheckRecords as J; "
                                      "J(['-r', 'local'])._runner_class()"])
    assert {"mrjob.local", "mr_tl.jobs.compat_runners"} <= driver
