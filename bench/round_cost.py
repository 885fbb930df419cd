"""What a training round costs on Hadoop besides its job, and what a JVM-free filesystem saves (issue 16).

    python bench/round_cost.py            # standalone + mini cluster, 3 rounds per runner, 20-round e2e
    python bench/round_cost.py --quick    # 2 rounds per runner, 5-round e2e
    python bench/round_cost.py --modes standalone

Measures, in one run, on the project's own Hadoop 3.5.0 (tests/hadoop_harness.py), per mode
(standalone = local job runner + file://; cluster = single-node HDFS + YARN):

* the **floor**: a bare Hadoop Streaming job (``hadoop jar <streaming jar> -mapper cat -reducer cat``
  on a one-line input), run directly, median of a few;
* mr_tl's **round** (the train_round job of a held-out-sized run: ~2,000 train examples, 1280-d,
  28 classes, 2 workers, one round per epoch, block momentum, one head) run by
  ``mr_tl.jobs.round_runner.MapReduceRunner.run_round`` itself (state file, job arguments, output
  read-back, cleanup: what ``python -m mr_tl.train -r hadoop`` does per round), over worker files
  its ``prepare`` found (written once by the partition job on the local runner; on the cluster copied
  to HDFS), three ways, rounds alternating: **mrjob runner** = mrjob's HadoopJobRunner forced
  (``hadoop fs`` for every file operation) and the job's reducer adding up the workers: mr_tl before
  issue 16; **fast, reducer** = ``mr_tl.jobs.compat_runners.FastHadoopJobRunner`` as ``-r hadoop`` uses it
  (JVM-free filesystem, zips with bytecode uploaded once per process, owner-only job files on
  ``file://``), still with the reducer; **fast, map-only** = what mr_tl does now: the same runner, a
  map-only round job, the driver adding up the tasks' contributions with the reducer's function
  (its seconds count as overhead here, not as work).  Each round is split into its parts from
  timestamps taken in this process (every ``hadoop`` command mrjob or mr_tl starts, each runner
  phase) and in the tasks themselves (bench/round_job.py: process starts, work begin and end);
* what ``hadoop jar`` costs with the command line mrjob builds (``-files``, ``-D``, ``-cmdenv``,
  the setup wrapper) but ``cat`` for the Python tasks;
* end to end on standalone: ``python -m mr_tl.train -r hadoop`` for 20 rounds (``--quick``: 5) with
  mrjob's HadoopJobRunner forced for every job and the rounds' reducer (before) and as it is (after;
  same heads, bit for bit).

Once-per-process costs (``hadoop version``, building the zips, uploading the shared ones) are paid by
a warm-up round that is not counted (printed); the rounds measured are what every further round costs.

Round overhead = round wall - tasks' work (the union of the intervals in which a task ran mr_tl's
code), compared with the floor.  Ends with one JSON line.
"""

import argparse
import glob
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (HERE, REPO):
    if p not in sys.path:
        sys.path.insert(0, p)
sys.path.append(os.path.join(REPO, "tests"))  # hadoop_harness (after bench/: tests/train is a package)

import numpy as np  # noqa: E402

PY = sys.executable
# the default recipe (2 workers, one round per epoch, block momentum) with one head, as prepare() trains
TRAIN_FLAGS = ["--workers", "2", "--averaging-frequency", "epoch", "--outer-optimizer", "block-momentum",
               "--candidates", "none"]


# -- recording what happens in this process ----------------------------------------------------


class Recorder:
    """Timestamps of calls of wrapped methods: ``(kind, label, start, end)``."""

    def __init__(self):
        self.events = []
        self.jar_args = None

    def wrap(self, owner, name, kind, label):
        orig = getattr(owner, name)
        rec = self
        label_of = label if callable(label) else (lambda *a, **k: label)

        def consume(gen, lab, t0):
            try:
                yield from gen
            finally:
                rec.events.append((kind, lab, t0, time.time()))

        if inspect.isgeneratorfunction(orig):
            def wrapper(*args, **kwargs):
                return consume(orig(*args, **kwargs), label_of(*args, **kwargs), time.time())
        else:
            def wrapper(*args, **kwargs):
                t0 = time.time()
                lab = label_of(*args, **kwargs)
                try:
                    result = orig(*args, **kwargs)
                except BaseException:
                    rec.events.append((kind, lab, t0, time.time()))
                    raise
                if isinstance(result, types.GeneratorType):  # opened now, read later
                    return consume(result, lab, t0)
                rec.events.append((kind, lab, t0, time.time()))
                return result
        wrapper.__wrapped__ = orig
        setattr(owner, name, staticmethod(wrapper) if isinstance(owner.__dict__.get(name), staticmethod)
                else wrapper)


def install_recorder():
    from mrjob.fs.hadoop import HadoopFilesystem
    from mrjob.hadoop import HadoopJobRunner

    from mr_tl import fastfs, storage

    rec = Recorder()
    rec.wrap(HadoopFilesystem, "invoke_hadoop", "jvm", lambda self, args, *a, **k: "hadoop " + " ".join(args[:2]))
    rec.wrap(HadoopFilesystem, "_cat_file", "jvm", "hadoop fs -cat")
    rec.wrap(storage, "_hadoop_cat", "jvm", "hadoop fs -cat")
    for cls, short in ((fastfs.LocalURIFilesystem, "local"), (fastfs.WebHDFSFilesystem, "webhdfs")):
        for op in ("ls", "exists", "du", "mkdir", "put", "rm", "touchz", "_cat_file"):
            rec.wrap(cls, op, "fast", "%s %s" % (short, op.strip("_")))
    for name, label in (("_find_binaries_and_jars", "version"), ("_create_setup_wrapper_scripts", "scripts"),
                        ("_add_job_files_for_upload", "scripts"), ("_upload_local_files", "uploads"),
                        ("cleanup", "cleanup")):
        rec.wrap(HadoopJobRunner, name, "phase", label)
    rec.wrap(HadoopJobRunner, "run", "phase", "run")
    rec.wrap(storage, "cat_lines", "phase", "read")
    orig_run_hadoop = HadoopJobRunner._run_hadoop

    def run_hadoop(self, hadoop_args, env, record_callback):
        rec.jar_args = list(hadoop_args)
        t0 = time.time()
        try:
            return orig_run_hadoop(self, hadoop_args, env, record_callback)
        finally:
            rec.events.append(("phase", "hadoop jar", t0, time.time()))
    HadoopJobRunner._run_hadoop = run_hadoop
    return rec


# -- intervals --------------------------------------------------------------------------------


def union(intervals):
    total, end = 0.0, None
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def task_times(folder, mode, jar_start):
    """Per task: role, start of the task's own process tree, Python start, work begin/end."""
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        procs = r["procs"]  # [python, sh wrapper, JVM]
        py = procs[0]["start"]
        sh = procs[1]["start"] if len(procs) > 1 and procs[1]["comm"] in ("sh", "bash", "dash") else py
        jvm = procs[2]["start"] if len(procs) > 2 and procs[2]["comm"] == "java" else None
        # standalone: the JVM is the client's (started with `hadoop jar`); on YARN, the task's own
        start = jvm if mode == "cluster" and jvm is not None and jvm > jar_start else sh
        out.append({"role": r["role"], "start": start, "sh": sh, "python": py, "import": r["t_import"],
                    "init": r["t_init"], "end": r["t_end"], "jvm": start if start != sh else None})
    return out


# -- one round ----------------------------------------------------------------------------------


# the rounds compared: mrjob's runner (forced) and the averaging in the job's reducer: what mr_tl did
# before issue 16; FastHadoopJobRunner (as -r hadoop uses it), still with the reducer; FastHadoopJobRunner
# and a map-only round job, the driver adding up the tasks' contributions: what mr_tl does now (default)
VARIANTS = ("mrjob", "reduce", "fast")
VARIANT_NAMES = {"mrjob": "mrjob runner", "reduce": "fast, reducer", "fast": "fast, map-only"}


def runner_for(variant):
    """The runner class a round job of ``variant`` uses for ``-r hadoop``; None: the job's own (the default)."""
    from mrjob.hadoop import HadoopJobRunner

    if variant == "mrjob":
        return HadoopJobRunner
    return None


def map_only_limit(variant):
    """MapReduceRunner.map_only_max_tasks for ``variant``: the reducer (0) or mr_tl's default."""
    from mr_tl.jobs.round_runner import MAP_ONLY_MAX_TASKS

    return MAP_ONLY_MAX_TASKS if variant == "fast" else 0


class RoundJobs:
    """Stands in for ``mr_tl.jobs.round_runner.MRTrainRound``: makes bench/round_job.py's timed twin,
    with the runner of ``self.variant`` for ``-r hadoop``; remembers the last runner made."""

    def __init__(self):
        self.variant = "fast"
        self.runner = None

    def __call__(self, args):
        from round_job import MRTimedTrainRound

        job = MRTimedTrainRound(args=args)
        forced = runner_for(self.variant)
        if forced is not None:
            own = job._runner_class  # mr_tl's (compat.HookedMRJob): hadoop -> FastHadoopJobRunner

            def runner_class():
                cls = own()
                return forced if cls.alias == "hadoop" else cls
            job._runner_class = runner_class
        make_runner = job.make_runner

        def remembered():
            self.runner = make_runner()
            return self.runner
        job.make_runner = remembered
        return job


def run_round(rec, jobs, variant, mode, hr, runner_args, state, spec, scratch, keep=False):
    """One round through MapReduceRunner ``hr``; returns (next arrays, breakdown dict, runner if kept)."""
    times = tempfile.mkdtemp(prefix="times-", dir=scratch)
    hr.runner_args = list(runner_args) + ["--cmdenv", "MR_TL_BENCH_TIMES=" + times] + (
        ["--cleanup", "NONE"] if keep else [])
    jobs.variant = variant
    hr.map_only_max_tasks = map_only_limit(variant)
    rec.events = []
    t0 = time.time()
    arrays, _ = hr.run_round(state, hr.bench_candidates, hr.bench_tasks, spec)
    t_end = time.time()
    t_made, t_ran = _phase(rec.events, "run")
    t_read = _phase(rec.events, "read")[1]
    parts = breakdown(rec.events, task_times(times, mode, _phase(rec.events, "hadoop jar")[0]), mode,
                      t0, t_made, t_ran, t_read, t_end)
    shutil.rmtree(times, ignore_errors=True)
    return arrays, parts, (jobs.runner if keep else None)


def _phase(events, label):
    spans = [(a, b) for kind, lab, a, b in events if kind == "phase" and lab == label]
    return (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (None, None)


def _phase_seconds(events, label):
    return sum(b - a for kind, lab, a, b in events if kind == "phase" and lab == label)


def _count(events, kind, t0, t1):
    return sum(1 for k, _, a, b in events if k == kind and a >= t0 - 1e-3 and b <= t1 + 1e-3)


def breakdown(events, tasks, mode, t0, t_made, t_ran, t_read, t_end):
    j0, j1 = _phase(events, "hadoop jar")
    work = union([(t["init"], t["end"]) for t in tasks])
    starts = [(t["start"], t["init"]) for t in tasks]
    startup_cp = union(starts + [(t["init"], t["end"]) for t in tasks]) - work
    submission = min(t["start"] for t in tasks) - j0
    parts = {
        "state file, job + runner": t_made - t0,
        "hadoop version": _phase_seconds(events, "version"),
        "setup script, zips": _phase_seconds(events, "scripts"),
        "uploads (mkdir, put)": _phase_seconds(events, "uploads"),
        "jar: JVM, submission, scheduling": submission,
        "jar: task start-up": startup_cp,
        "jar: tasks' work": work,
        "jar: shuffle, commit, exit": (j1 - j0) - submission - startup_cp - work,
        "output read-back": t_read - t_ran,
        "cleanup": t_end - t_read,
    }
    wall = t_end - t0
    parts["other driver work"] = wall - sum(parts.values())
    jvm_by_part = {
        "hadoop version": _count(events, "jvm", *_phase(events, "version")) if _phase(events, "version")[0] else 0,
        "uploads (mkdir, put)": _count(events, "jvm", *_phase(events, "uploads")) if _phase(events, "uploads")[0]
        else 0,
        "output read-back": _count(events, "jvm", t_ran, t_read),
        "cleanup": _count(events, "jvm", t_read, t_end),
    }
    maps = [t for t in tasks if t["role"] == "map"]
    return {
        "parts": parts, "jvm_calls": jvm_by_part, "wall": wall, "work": work, "overhead": wall - work,
        "jar": j1 - j0, "jvm_total": sum(1 for e in events if e[0] == "jvm"),
        "jvm_seconds": sum(b - a for k, _, a, b in events if k == "jvm"),
        "fast_calls": sum(1 for e in events if e[0] == "fast"),
        "fast_seconds": sum(b - a for k, _, a, b in events if k == "fast"),
        "python_startup_per_task": statistics.median(t["init"] - t["sh"] for t in tasks),
        "imports_per_task": statistics.median(t["init"] - t["import"] for t in tasks),
        "task_jvm_startup": statistics.median(t["sh"] - t["jvm"] for t in tasks) if all(
            t["jvm"] for t in tasks) else None,
        "map_work": max(t["end"] - t["init"] for t in maps) if maps else None,
        "labels": sorted({lab for k, lab, _, _ in events if k in ("jvm", "fast")}),
    }


# -- the floor and mrjob's command line --------------------------------------------------------


def timed_run(cmd, env, cwd=None):
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd[:4]), proc.returncode, proc.stderr[-3000:]))
    return seconds


def floor_job(mode_obj, streaming_jar, one_line_uri, out_uri, fs, mapper="cat", reducer="cat", base_args=None):
    """Seconds of one bare streaming job through `hadoop jar` (its output removed afterwards)."""
    if base_args is None:
        cmd = [str(mode_obj.hadoop_bin), "jar", str(streaming_jar), "-input", one_line_uri, "-output", out_uri,
               "-mapper", mapper, "-reducer", reducer]
    else:
        cmd = with_io(base_args, one_line_uri, out_uri, mapper, reducer)
    try:
        return timed_run(cmd, mode_obj.env())
    finally:
        fs.rm(out_uri)


def with_io(args, input_uri, output_uri, mapper, reducer):
    """mrjob's `hadoop jar` command line with other input, output, mapper and reducer."""
    out, i, seen_input = [], 0, False
    while i < len(args):
        a = args[i]
        if a == "-input":
            if not seen_input:
                out += ["-input", input_uri]
                seen_input = True
            i += 2
        elif a == "-output":
            out += ["-output", output_uri]
            i += 2
        elif a in ("-mapper", "-reducer", "-combiner"):
            if a == "-mapper":
                out += ["-mapper", mapper]
            elif a == "-reducer":
                out += ["-reducer", reducer]
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def wrapped(command_line, program):
    """``/bin/sh -ex setup-wrapper.sh python job.py ...`` -> ``/bin/sh -ex setup-wrapper.sh PROGRAM``."""
    head, sep, _ = command_line.partition(" setup-wrapper.sh ")
    return head + sep + program if sep else program


# -- features, worker files ---------------------------------------------------------------------


def prepare(tmp, n_train):
    """Features, the run's plan and worker files (scan and partition jobs on the local runner, once)."""
    from synthetic import write_feature_folder

    from mr_tl.jobs.round_runner import MapReduceRunner
    from mr_tl.training.hyperparameters import resolve
    from mr_tl.training.loop import Schedule, Trainer
    from mr_tl.training.round import initial_state

    n = int(round(n_train / 0.70))  # bench/synthetic.py: 70 % train
    feat = os.path.join(tmp, "features")
    write_feature_folder(feat, n, 1280, 28, seed=0)
    candidates = resolve("default", {"candidates": "none"})  # one head: 2 workers, epoch, block momentum
    work = os.path.join(tmp, "work")
    local = MapReduceRunner([feat], ["-r", "local"], work, out=lambda m: None)
    trainer = Trainer(local, os.path.join(tmp, "plan-run"), candidates, Schedule(epochs=100))
    trainer.plan()
    local.prepare(trainer.hyper, trainer.tasks, trainer.scan, trainer.run_arrays())
    local.close()
    arrays = initial_state(trainer.dim, len(trainer.classes), candidates)
    return {"features": feat, "work": work, "trainer": trainer, "candidates": candidates, "arrays": arrays,
            "n_train": trainer.counts["train"], "dim": trainer.dim, "classes": len(trainer.classes)}


def round_spec(trainer, r):
    """Round ``r``'s RoundSpec as Trainer.rounds() makes it (no validation)."""
    from mr_tl.training.round import RoundSpec

    epoch, j, passes = trainer.schedule_of_rounds[r]
    return RoundSpec(epoch, j * max(trainer.hyper.averaging_frequency, 0), passes, train=True, score=False)


def round_runner(prepared, runner_args, work_uri):
    """A MapReduceRunner for ``runner_args`` whose prepare() finds the worker files in ``work_uri``."""
    from mr_tl.jobs.round_runner import MapReduceRunner

    trainer = prepared["trainer"]
    hr = MapReduceRunner([prepared["features"]], runner_args, work_uri, out=lambda m: None)
    hr.prepare(trainer.hyper, trainer.tasks, trainer.scan, trainer.run_arrays())
    hr.bench_candidates, hr.bench_tasks = prepared["candidates"], trainer.tasks
    return hr


# -- a mode -------------------------------------------------------------------------------------


def measure_mode(mode, rec, jobs, tmp, prepared, rounds, floors, home):
    """Floors, rounds of every runner, mrjob's command line with cat; interleaved."""
    import hadoop_harness

    from mr_tl import fastfs

    trainer, arrays = prepared["trainer"], prepared["arrays"]
    scratch = os.path.join(tmp, mode)
    os.makedirs(scratch, exist_ok=True)
    cluster = hr = None
    if mode == "standalone":
        mode_obj = hadoop_harness.Standalone(os.path.join(scratch, "hadoop"), home)
        base = mode_obj.uri(os.path.join(scratch, "data"))
        work_uri = "file://" + prepared["work"]  # as mr_tl.train's default --work-dir for -r hadoop
    else:
        t = time.time()
        cluster = hadoop_harness.MiniCluster(os.path.join(scratch, "hadoop"), home).start()
        print("  mini cluster up in %.0f s" % (time.time() - t), flush=True)
        mode_obj = cluster
        base = "hdfs:///bench-round-cost"
        work_uri = base + "/work"  # as with --work-dir hdfs:///...
    try:
        fs = fastfs.filesystem([str(mode_obj.hadoop_bin)])
        one = os.path.join(scratch, "one-line.txt")
        with open(one, "w") as f:
            f.write("hello\n")
        fs.mkdir(base)
        one_uri = base + "/one-line.txt"
        fs.put(one, one_uri)
        if mode == "cluster":  # the worker files (and their manifest) on HDFS
            local_workers = os.path.join(prepared["work"], "workers")
            fs.mkdir(work_uri + "/workers")
            for name in sorted(os.listdir(local_workers)):
                if not name.startswith(".") and not name.endswith(".crc"):
                    fs.put(os.path.join(local_workers, name), work_uri + "/workers/" + name)
        runner_args = ["-r", "hadoop", "-c", str(mode_obj.mrjob_conf)]
        hr = round_runner(prepared, runner_args, work_uri)
        jar = mode_obj.home.streaming_jar

        floor_s = []

        def floor():
            floor_s.append(floor_job(mode_obj, jar, one_uri, "%s/floor-out-%d" % (base, len(floor_s)), fs))
            print("  floor: bare streaming job %.2f s" % floor_s[-1], flush=True)

        # single JVM calls, for scale
        env = mode_obj.env()
        version_s = timed_run([str(mode_obj.hadoop_bin), "version"], env)
        ls_s = timed_run([str(mode_obj.hadoop_bin), "fs", "-ls", base], env)
        print("  one `hadoop version`: %.2f s; one `hadoop fs -ls`: %.2f s" % (version_s, ls_s), flush=True)

        # once per process (mr_tl.train pays it in its first job): `hadoop version`, mrjob's zip and the
        # zips with bytecode built, the shared zips uploaded; a warm-up round, not counted, pays it here
        _, warm, _ = run_round(rec, jobs, "fast", mode, hr, runner_args, arrays, round_spec(trainer, 0), scratch)
        print("  warm-up round (fast runner; once-per-process costs, not counted): wall %.2f s, of which hadoop "
              "version %.2f s, setup script and zips %.2f s, uploads %.2f s"
              % (warm["wall"], warm["parts"]["hadoop version"], warm["parts"]["setup script, zips"],
                 warm["parts"]["uploads (mkdir, put)"]), flush=True)
        results = {v: [] for v in VARIANTS}
        heads = {v: arrays for v in VARIANTS}
        for r in range(rounds):
            floor()  # floors and rounds interleaved: the machine is shared
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for variant in order:
                heads[variant], parts, _ = run_round(rec, jobs, variant, mode, hr, runner_args, heads[variant],
                                                     round_spec(trainer, r), scratch)
                results[variant].append(parts)
                print("  round %d, %-13s: wall %5.2f s, tasks' work %.2f s, %2d JVM calls (%4.1f s), "
                      "%2d fast fs calls (%.2f s)" % (r + 1, VARIANT_NAMES[variant], parts["wall"], parts["work"],
                                                     parts["jvm_total"], parts["jvm_seconds"], parts["fast_calls"],
                                                     parts["fast_seconds"]), flush=True)
        same = all(np.array_equal(heads["mrjob"][k], heads[v][k]) for v in VARIANTS for k in heads["mrjob"])
        print("  same state after %d rounds with every runner: %s" % (rounds, same), flush=True)

        # what hadoop jar costs with mrjob's command line, Python tasks replaced by cat
        _, _, kept = run_round(rec, jobs, "fast", mode, hr, runner_args, arrays, round_spec(trainer, 0), scratch,
                               keep=True)
        args = rec.jar_args
        mapper = args[args.index("-mapper") + 1]
        cmdline = {"files, -D, -cmdenv; cat": [], "+ setup wrapper; cat": [], "bare, map only": []}
        try:
            for _ in range(max(1, floors - 1)):
                floor()
                cmdline["bare, map only"].append(floor_job(
                    mode_obj, jar, one_uri, base + "/cmdline-out", fs,
                    base_args=[str(mode_obj.hadoop_bin), "jar", str(jar), "-D", "mapreduce.job.reduces=0",
                               "-input", "", "-output", "", "-mapper", "cat"]))
                print("  bare streaming job, map only: %.2f s" % cmdline["bare, map only"][-1], flush=True)
                for name, m in (("files, -D, -cmdenv; cat", "cat"), ("+ setup wrapper; cat", wrapped(mapper, "cat"))):
                    cmdline[name].append(floor_job(mode_obj, jar, one_uri, base + "/cmdline-out", fs, m, m,
                                                   base_args=args))
                    print("  mrjob's hadoop jar command line, %s: %.2f s" % (name, cmdline[name][-1]), flush=True)
        finally:
            kept.cleanup(["ALL"])
        fs.rm(base)
        return {"floor": floor_s, "version_jvm": version_s, "ls_jvm": ls_s, "rounds": results, "warm_up": warm,
                "same_state": same, "cmdline": cmdline, "jar_args": args}
    finally:
        if hr is not None:
            hr.close()
        if cluster is not None:
            cluster.stop()


# -- end to end ---------------------------------------------------------------------------------


def train_mrjob_main(argv):
    """``--train-mrjob ARGS``: ``python -m mr_tl.train ARGS`` with mrjob's HadoopJobRunner for every job
    (scan, partition, rounds) instead of compat_runners.FastHadoopJobRunner: mr_tl's runner before issue 16."""
    from mrjob.hadoop import HadoopJobRunner

    from mr_tl import train as mtrain
    from mr_tl.jobs import compat, compat_runners, round_runner

    own = compat.HookedMRJob._runner_class

    def runner_class(self):
        cls = own(self)
        return HadoopJobRunner if issubclass(cls, compat_runners.FastHadoopJobRunner) else cls
    compat.HookedMRJob._runner_class = runner_class
    round_runner.MAP_ONLY_MAX_TASKS = 0  # and the round's reducer adds up the contributions
    mtrain.main(argv)


def end_to_end(tmp, feat, rounds, home):
    """``python -m mr_tl.train -r hadoop`` on standalone, mrjob's runner forced (before), then as it is."""
    import hadoop_harness

    mode_obj = hadoop_harness.Standalone(os.path.join(tmp, "e2e-hadoop"), home)
    env = dict(mode_obj.env(), PYTHONPATH=REPO)
    out = {}
    for variant in ("mrjob", "fast"):
        run_dir = os.path.join(tmp, "e2e-" + variant)
        args = ["-r", "hadoop", "-c", str(mode_obj.mrjob_conf), feat, "-o", run_dir, "--epochs", str(rounds)] + \
            TRAIN_FLAGS
        cmd = [PY, os.path.abspath(__file__), "--train-mrjob"] + args if variant == "mrjob" else \
            [PY, "-m", "mr_tl.train"] + args
        seconds = timed_run(cmd, env, cwd=tmp)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            per_round = [json.loads(line)["seconds"] for line in f]
        with np.load(os.path.join(run_dir, "head.npz")) as z:
            head = {k: z[k] for k in z.files}
        out[variant] = {"seconds": seconds, "round_median": statistics.median(per_round), "head": head}
        print("  %-5s runner: %d rounds in %.1f s (median %.2f s per round)"
              % (variant, rounds, seconds, statistics.median(per_round)), flush=True)
    a, b = out["mrjob"]["head"], out["fast"]["head"]
    same = sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    for v in out.values():
        del v["head"]
    out["same_head"] = same
    out["speedup"] = out["mrjob"]["seconds"] / out["fast"]["seconds"]
    print("  end to end %.2fx faster; same head bit for bit: %s" % (out["speedup"], same), flush=True)
    return out


# -- report -------------------------------------------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(mode, m):
    floor = med(m["floor"])
    print("\n%s: floor (bare streaming job) %.2f s, median of %d" % (mode, floor, len(m["floor"])))
    names = list(m["rounds"]["mrjob"][0]["parts"])
    print("  %-38s" % "part of a round (median s, JVMs)" + "".join("%17s" % VARIANT_NAMES[v] for v in VARIANTS))
    for name in names:
        cells = []
        for variant in VARIANTS:
            rs = m["rounds"][variant]
            jvms = med([r["jvm_calls"].get(name) for r in rs])
            cells.append("%7.2f%s" % (med([r["parts"][name] for r in rs]),
                                      " (%2d JVM)" % jvms if jvms is not None else " " * 9))
        print("  %-38s" % name + "".join("%17s" % c for c in cells))
    out = {}
    for variant in VARIANTS:
        rs = m["rounds"][variant]
        wall, work = med([r["wall"] for r in rs]), med([r["work"] for r in rs])
        overhead = med([r["overhead"] for r in rs])
        out[variant] = {"wall": wall, "work": work, "overhead": overhead, "ratio": overhead / floor,
                        "jvm_calls": med([r["jvm_total"] for r in rs]), "jar": med([r["jar"] for r in rs]),
                        "python_startup_per_task": med([r["python_startup_per_task"] for r in rs]),
                        "imports_per_task": med([r["imports_per_task"] for r in rs]),
                        "task_jvm_startup": med([r["task_jvm_startup"] for r in rs])}
    for key, label in (("wall", "round wall"), ("work", "tasks' work"), ("overhead", "round overhead"),
                       ("ratio", "overhead / floor"), ("jar", "hadoop jar of the round")):
        print("  %-38s" % label + "".join("%8.2f%9s" % (out[v][key], "") for v in VARIANTS))
    for v in VARIANTS:
        o = out[v]
        print("  per task, %s: Python start-up (wrapper, interpreter, imports) %.2f s, of which imports %.2f s%s"
              % (VARIANT_NAMES[v], o["python_startup_per_task"], o["imports_per_task"],
                 "; task JVM %.2f s" % o["task_jvm_startup"] if o["task_jvm_startup"] else ""))
    print("  hadoop jar with mrjob's command line but cat: %s (bare: %.2f s)"
          % (", ".join("%s %.2f s" % (k, med(v)) for k, v in m["cmdline"].items()), floor))
    return floor, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 rounds per runner, 2 floors, 5-round e2e")
    p.add_argument("--modes", default="standalone,cluster", help="standalone,cluster (default both)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per runner and mode (default 3, quick 2)")
    p.add_argument("--e2e-rounds", type=int, default=None, help="rounds of the end-to-end run (default 20, quick 5)")
    p.add_argument("--train-examples", type=int, default=2000)
    p.add_argument("--train-mrjob", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.train_mrjob is not None:
        return train_mrjob_main(args.train_mrjob)

    import hadoop_harness
    from common import machine_info

    from mr_tl.jobs import round_runner as round_runner_module

    rounds = args.rounds or (2 if args.quick else 3)
    floors = 2 if args.quick else 3
    e2e_rounds = args.e2e_rounds if args.e2e_rounds is not None else (5 if args.quick else 20)
    modes = [m for m in args.modes.split(",") if m]
    info = machine_info()
    print("machine: %s (family/model %s), %s cores, %s GiB; Python %s, mrjob %s"
          % (info["cpu"], info["cpu_family_model"], info["cores"], info["mem_gib"], info["python"],
             info["versions"]["mrjob"]), flush=True)
    home = hadoop_harness.hadoop_home(skip=False)
    import logging
    logging.getLogger("mrjob").setLevel(logging.ERROR)  # as mr_tl.train does without -v
    rec = install_recorder()
    jobs = RoundJobs()
    round_runner_module.MRTrainRound = jobs  # MapReduceRunner.run_round makes its round job with it
    figures = {"machine": {k: info[k] for k in ("cpu", "cpu_family_model", "cores", "mem_gib", "date")}}
    with tempfile.TemporaryDirectory(prefix="mr_tl-round-cost-") as tmp:
        # mr_tl.job.package_zip() keeps the newest 5 zips of a cache shared by every checkout on the
        # machine; another checkout's jobs can remove ours before mrjob uploads it: use our own
        os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "xdg-cache")
        t = time.time()
        prepared = prepare(tmp, args.train_examples)
        feat, n_train, dim, n_classes = (prepared[k] for k in ("features", "n_train", "dim", "classes"))
        print("features: %d train examples, %d-d, %d classes; worker files by the local runner (%.1f s); "
              "2 workers, one round per epoch, block momentum, one head" % (n_train, dim, n_classes, time.time() - t),
              flush=True)
        figures.update({"train_examples": n_train, "dim": dim, "classes": n_classes})
        measured, summaries = {}, {}
        # standalone, its end to end, then the cluster (the slowest, last)
        for mode in sorted(modes, key=lambda m: m != "standalone"):
            load0 = os.getloadavg()[0]
            print("\n== %s (load average %.1f)" % (mode, load0), flush=True)
            try:
                measured[mode] = measure_mode(mode, rec, jobs, tmp, prepared, rounds, floors, home)
            except Exception as e:  # noqa: BLE001 - the other mode's figures are still reported
                print("  %s failed: %s: %s" % (mode, type(e).__name__, str(e)[-2000:]), flush=True)
                figures["error_%s" % mode] = str(e)[-300:]
                continue
            measured[mode]["load_average"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
            summaries[mode] = summarize(mode, measured[mode])
            print("  load average at start and end: %.1f, %.1f (%d cores)"
                  % (tuple(measured[mode]["load_average"]) + (info["cores"],)), flush=True)
            if mode == "standalone" and e2e_rounds:
                print("\n== end to end on standalone: python -m mr_tl.train, %d rounds (load average %.1f)"
                      % (e2e_rounds, os.getloadavg()[0]), flush=True)
                try:
                    figures["e2e_standalone"] = end_to_end(tmp, feat, e2e_rounds, home)
                except RuntimeError as e:
                    print("  failed: %s" % str(e)[-2000:], flush=True)
                    figures["e2e_standalone"] = {"error": str(e)[-300:]}
    for mode in modes:
        if mode not in summaries:
            figures["round_overhead_ratio_%s" % mode] = None
            continue
        floor, out = summaries[mode]
        m = measured[mode]
        figures["floor_%s" % mode] = round(floor, 2)
        for variant, o in out.items():
            suffix = {"fast": "", "reduce": "_with_reducer", "mrjob": "_mrjob_runner"}[variant]
            for key in ("wall", "work", "overhead", "ratio", "jar", "jvm_calls"):
                figures["round_%s_%s%s" % ("overhead_ratio" if key == "ratio" else key, mode, suffix)] = \
                    round(o[key], 3) if isinstance(o[key], float) else o[key]
        figures["cmdline_cat_%s" % mode] = {k: round(med(v), 2) for k, v in m["cmdline"].items()}
        figures["same_state_%s" % mode] = m["same_state"]
        figures["warm_up_round_wall_%s" % mode] = round(m["warm_up"]["wall"], 2)
        figures["load_average_%s" % mode] = m["load_average"]
    if "speedup" in figures.get("e2e_standalone", {}):
        e = figures["e2e_standalone"]
        print("\nend to end on standalone (%d rounds): mrjob runner %.1f s, fast runner %.1f s: %.2fx"
              % (e2e_rounds, e["mrjob"]["seconds"], e["fast"]["seconds"], e["speedup"]))
        figures["e2e_speedup_standalone"] = round(e["speedup"], 3)
        figures["e2e_rounds"] = e2e_rounds
    print(json.dumps(figures, sort_keys=True, default=lambda x: round(x, 3) if isinstance(x, float) else str(x)))


if __name__ == "__main__":
    main()
