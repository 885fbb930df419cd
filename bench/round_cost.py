"""What a training round costs on Hadoop besides its job, and what a JVM-free filesystem saves (issue 16).

    python bench/round_cost.py            # standalone + mini cluster, 3 rounds per runner, 20-round e2e
    python bench/round_cost.py --quick    # 2 rounds per runner, 5-round e2e
    python bench/round_cost.py --modes standalone

Measures, in one run, on the project's own Hadoop 3.5.0 (tests/hadoop_harness.py), per mode
(standalone = local job runner + file://; cluster = single-node HDFS + YARN):

* the **floor**: a bare Hadoop Streaming job (``hadoop jar <streaming jar> -mapper cat -reducer cat``
  on a one-line input), run directly, median of a few;
* mr_tl's **round** (the train_round job of a held-out-sized run: ~2,000 train examples, 1280-d,
  28 classes, 2 workers, one round per epoch, block momentum) as ``mr_tl.train`` runs it today
  (mrjob's HadoopJobRunner, ``hadoop fs`` for every file operation), and with the prototype
  ``mr_tl.compat.FastHadoopJobRunner`` (file operations in the driver's process, ``hadoop version``
  once per process), rounds of the two alternating.  Each round is split into its parts from
  timestamps taken in this process (every ``hadoop`` command mrjob or mr_tl starts, each runner
  phase) and in the tasks themselves (bench/round_job.py: process starts, work begin and end);
* what ``hadoop jar`` costs with the command line mrjob builds (``-files``, ``-D``, ``-cmdenv``,
  the setup wrapper) but ``cat`` for the Python tasks;
* end to end on standalone: ``python -m mr_tl.train`` for 20 rounds (``--quick``: 5) as today, and
  with FastHadoopJobRunner put in (same heads, bit for bit).

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
TRAIN_FLAGS = ["--workers", "2", "--averaging-frequency", "epoch", "--outer-optimizer", "block-momentum"]


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


# the runners compared: mrjob's (what mr_tl.train uses today); the prototype with its filesystem
# only; the whole prototype (also: zips with bytecode, uploaded once per process, owner-only job files
# on file://); and, as a design option for the lead, the whole prototype with a map-only round job
# whose reduce (finish_round) the driver runs
VARIANTS = ("mrjob", "fastfs", "fast", "maponly")
VARIANT_NAMES = {"mrjob": "mrjob runner", "fastfs": "fast fs", "fast": "fast runner",
                 "maponly": "fast, map-only"}


def runner_for(variant):
    from mr_tl.jobs import compat

    if variant == "fastfs":
        return type("FastFsOnlyRunner", (compat.FastHadoopJobRunner,), {"compile_zips": False,
                                                                        "share_py_files": False})
    return compat.FastHadoopJobRunner


def job_for(variant, args):
    from round_job import MRTimedTrainRound

    job = MRTimedTrainRound(args=args)
    if variant != "mrjob":
        plain, fast = job._runner_class, runner_for(variant)

        def runner_class():
            cls = plain()
            return fast if cls.alias == "hadoop" else cls
        job._runner_class = runner_class
    return job


def read_output(variant, runner, job=None, state_path=None):
    from mrjob.util import to_lines

    from mr_tl import storage

    if variant == "mrjob":
        return list(storage.cat_lines(runner))  # what mr_tl.train.run_round does today
    # mrjob's own cat_output(): ls + cat through the runner's (fast) filesystem
    lines = [line.decode("utf-8").rstrip("\r\n") for line in to_lines(runner.cat_output()) if line]
    if variant == "maponly":  # the reducer's work, in the driver: the same function on the same lines
        from mr_tl.records import encode_arrays, load_npz
        from mr_tl.rounds import RoundParams, finish_round
        from mr_tl.train_round import decode_contribution

        contributions = [decode_contribution(line)[0] for line in lines]
        _, state = load_npz(state_path)
        new_arrays, meta = finish_round(contributions, state, RoundParams.from_options(job.options))
        lines = [encode_arrays(meta, new_arrays)]
    return lines


def run_round(rec, variant, mode, runner_args, config, state_path, epoch, inputs, tasks, scratch, keep=False):
    """One round; returns (next arrays, breakdown dict)."""
    from mr_tl import train as mtrain
    from mr_tl.records import decode_arrays

    times = tempfile.mkdtemp(prefix="times-", dir=scratch)
    extra = ["--cmdenv", "MR_TL_BENCH_TIMES=" + times] + (["--cleanup", "NONE"] if keep else []) + (
        ["--map-only"] if variant == "maponly" else [])
    rec.events = []
    t0 = time.time()
    job = job_for(variant, mtrain.job_args(config, list(runner_args) + extra, state_path, epoch, 0, inputs, tasks))
    runner = job.make_runner()
    t_made = time.time()
    runner.run()
    t_ran = time.time()
    lines = read_output(variant, runner, job, state_path)
    t_read = time.time()
    if not keep:
        runner.cleanup()
    t_end = time.time()
    if len(lines) != 1:
        raise RuntimeError("round wrote %d lines" % len(lines))
    _, arrays = decode_arrays(lines[0])
    parts = breakdown(rec.events, task_times(times, mode, _phase(rec.events, "hadoop jar")[0]), mode,
                      t0, t_made, t_ran, t_read, t_end)
    shutil.rmtree(times, ignore_errors=True)
    return arrays, parts, (runner if keep else None)


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
        "make job + runner": t_made - t0,
        "hadoop version": _phase_seconds(events, "version"),
        "setup script, zips": _phase_seconds(events, "scripts"),
        "uploads (mkdir, put)": _phase_seconds(events, "uploads"),
        "jar: JVM, submission, scheduling": submission,
        "jar: task start-up": startup_cp,
        "jar: tasks' work": work,
        "jar: shuffle, commit, exit": (j1 - j0) - submission - startup_cp - work,
        "output read-back (map-only: + reduce)": t_read - t_ran,
        "cleanup": t_end - t_read,
    }
    wall = t_end - t0
    parts["other driver work"] = wall - sum(parts.values())
    jvm_by_part = {
        "hadoop version": _count(events, "jvm", *_phase(events, "version")) if _phase(events, "version")[0] else 0,
        "uploads (mkdir, put)": _count(events, "jvm", *_phase(events, "uploads")) if _phase(events, "uploads")[0]
        else 0,
        "output read-back (map-only: + reduce)": _count(events, "jvm", t_ran, t_read),
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
    from train import make_features

    from mr_tl import storage
    from mr_tl import train as mtrain

    n = int(round(n_train / 0.70))  # bench/synthetic.py: 70 % train
    feat = os.path.join(tmp, "features")
    make_features(feat, n, 1280, 28, seed=0)
    fs = storage.filesystem()
    features = mtrain.load_features(fs, [feat])
    train_set = features.select("train")
    config = {"seed": 42, "workers": 2, "averaging_frequency": 0, "batch_size": 32, "lr": 0.01, "momentum": 0.8,
              "l2": 0.0, "outer_optimizer": "block-momentum", "block_momentum": 0.5, "block_lr": 1.0}
    paths, sizes = mtrain.write_worker_files(train_set, 2, 2, 42, os.path.join(tmp, "workers"))
    arrays = mtrain.initial_state(features.dim, len(features.classes), config)
    return feat, config, paths, arrays, len(train_set), features.dim, len(features.classes)


# -- a mode -------------------------------------------------------------------------------------


def measure_mode(mode, rec, tmp, prepared, rounds, floors, home):
    """Floors, rounds of every runner, mrjob's command line with cat; interleaved."""
    import hadoop_harness

    from mr_tl import fastfs
    from mr_tl.records import save_npz

    feat, config, paths, arrays, *_ = prepared
    scratch = os.path.join(tmp, mode)
    os.makedirs(scratch, exist_ok=True)
    cluster = None
    if mode == "standalone":
        mode_obj = hadoop_harness.Standalone(os.path.join(scratch, "hadoop"), home)
        base = mode_obj.uri(os.path.join(scratch, "data"))
        inputs = list(paths)  # local worker files, as mr_tl.train writes them (RUN_DIR/data)
    else:
        t = time.time()
        cluster = hadoop_harness.MiniCluster(os.path.join(scratch, "hadoop"), home).start()
        print("  mini cluster up in %.0f s" % (time.time() - t), flush=True)
        mode_obj = cluster
        base = "hdfs:///bench-round-cost"
    try:
        fs = fastfs.filesystem([str(mode_obj.hadoop_bin)])
        one = os.path.join(scratch, "one-line.txt")
        with open(one, "w") as f:
            f.write("hello\n")
        fs.mkdir(base)
        one_uri = base + "/one-line.txt"
        fs.put(one, one_uri)
        if mode == "cluster":  # worker files on HDFS, as with --work-dir hdfs:///...
            fs.mkdir(base + "/work")
            inputs = []
            for p in paths:
                fs.put(p, base + "/work/" + os.path.basename(p))
                inputs.append(base + "/work/" + os.path.basename(p))
        runner_args = ["-r", "hadoop", "-c", str(mode_obj.mrjob_conf)]
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

        results = {v: [] for v in VARIANTS}
        state_dir = os.path.join(scratch, "state")
        os.makedirs(state_dir, exist_ok=True)
        heads = {v: arrays for v in VARIANTS}
        for r in range(rounds):
            floor()  # floors and rounds interleaved: the machine is shared
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for variant in order:
                state = os.path.join(state_dir, "state-%s-%d.npz" % (variant, r))
                save_npz(state, {"round": r}, heads[variant])
                heads[variant], parts, _ = run_round(rec, variant, mode, runner_args, config, state, r, inputs, 2,
                                                     scratch)
                results[variant].append(parts)
                print("  round %d, %-13s: wall %5.2f s, tasks' work %.2f s, %2d JVM calls (%4.1f s), "
                      "%2d fast fs calls (%.2f s)" % (r + 1, VARIANT_NAMES[variant], parts["wall"], parts["work"],
                                                     parts["jvm_total"], parts["jvm_seconds"], parts["fast_calls"],
                                                     parts["fast_seconds"]), flush=True)
        same = all(np.array_equal(heads["mrjob"][k], heads[v][k]) for v in VARIANTS for k in heads["mrjob"])
        print("  same state after %d rounds with every runner: %s" % (rounds, same), flush=True)

        # what hadoop jar costs with mrjob's command line, Python tasks replaced by cat
        state = os.path.join(state_dir, "state-probe.npz")
        save_npz(state, {"round": 0}, arrays)
        _, _, kept = run_round(rec, "fast", mode, runner_args, config, state, 0, inputs, 2, scratch, keep=True)
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
        return {"floor": floor_s, "version_jvm": version_s, "ls_jvm": ls_s, "rounds": results,
                "same_state": same, "cmdline": cmdline, "jar_args": args}
    finally:
        if cluster is not None:
            cluster.stop()


# -- end to end ---------------------------------------------------------------------------------


def train_fast_main(argv):
    """``--train-fast ARGS``: mr_tl.train with FastHadoopJobRunner for the rounds (a preview of the wiring)."""
    from mr_tl import train as mtrain
    from mr_tl.jobs import compat
    from mr_tl.train_round import MRTrainRound

    plain = MRTrainRound._runner_class

    def runner_class(self):
        cls = plain(self)
        return compat.FastHadoopJobRunner if cls.alias == "hadoop" else cls
    MRTrainRound._runner_class = runner_class
    mtrain.main(argv)


def end_to_end(tmp, feat, rounds, home):
    import hadoop_harness

    mode_obj = hadoop_harness.Standalone(os.path.join(tmp, "e2e-hadoop"), home)
    env = dict(mode_obj.env(), PYTHONPATH=REPO)
    out = {}
    for variant in ("mrjob", "fast"):
        run_dir = os.path.join(tmp, "e2e-" + variant)
        args = ["-r", "hadoop", "-c", str(mode_obj.mrjob_conf), feat, "-o", run_dir, "--epochs", str(rounds)] + \
            TRAIN_FLAGS
        cmd = [PY, "-m", "mr_tl.train"] + args if variant == "mrjob" else \
            [PY, os.path.abspath(__file__), "--train-fast"] + args
        seconds = timed_run(cmd, env, cwd=tmp)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            per_round = [json.loads(line)["seconds"] for line in f]
        with np.load(os.path.join(run_dir, "head.npz")) as z:
            head = {k: z[k] for k in z.files if k in ("W", "b")}
        out[variant] = {"seconds": seconds, "round_median": statistics.median(per_round), "head": head}
        print("  %-5s runner: %d rounds in %.1f s (median %.2f s per round)"
              % (variant, rounds, seconds, statistics.median(per_round)), flush=True)
    same = all(np.array_equal(out["mrjob"]["head"][k], out["fast"]["head"][k]) for k in out["mrjob"]["head"])
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
    p.add_argument("--train-fast", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.train_fast is not None:
        return train_fast_main(args.train_fast)

    import hadoop_harness
    from common import machine_info

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
    figures = {"machine": {k: info[k] for k in ("cpu", "cpu_family_model", "cores", "mem_gib", "date")}}
    with tempfile.TemporaryDirectory(prefix="mr_tl-round-cost-") as tmp:
        # mr_tl.job.package_zip() keeps the newest 5 zips of a cache shared by every checkout on the
        # machine; another checkout's jobs can remove ours before mrjob uploads it: use our own
        os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "xdg-cache")
        t = time.time()
        prepared = prepare(tmp, args.train_examples)
        feat, _, _, _, n_train, dim, n_classes = prepared
        print("features: %d train examples, %d-d, %d classes (%.1f s); 2 workers, one round per epoch, "
              "block momentum" % (n_train, dim, n_classes, time.time() - t), flush=True)
        figures.update({"train_examples": n_train, "dim": dim, "classes": n_classes})
        measured, summaries = {}, {}
        for mode in modes:
            load0 = os.getloadavg()[0]
            print("\n== %s (load average %.1f)" % (mode, load0), flush=True)
            measured[mode] = measure_mode(mode, rec, tmp, prepared, rounds, floors, home)
            measured[mode]["load_average"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
            summaries[mode] = summarize(mode, measured[mode])
            print("  load average at start and end: %.1f, %.1f (%d cores)"
                  % (tuple(measured[mode]["load_average"]) + (info["cores"],)), flush=True)
        if e2e_rounds and "standalone" in modes:
            print("\n== end to end on standalone: python -m mr_tl.train, %d rounds (load average %.1f)"
                  % (e2e_rounds, os.getloadavg()[0]), flush=True)
            try:
                figures["e2e_standalone"] = end_to_end(tmp, feat, e2e_rounds, home)
            except RuntimeError as e:
                print("  failed: %s" % str(e)[-2000:], flush=True)
                figures["e2e_standalone"] = {"error": str(e)[-300:]}
    for mode in modes:
        floor, out = summaries[mode]
        m = measured[mode]
        figures["floor_%s" % mode] = round(floor, 2)
        for variant, o in out.items():
            suffix = {"fast": "", "fastfs": "_fastfs_only", "mrjob": "_mrjob_runner", "maponly": "_map_only"}[variant]
            for key in ("wall", "work", "overhead", "ratio", "jar", "jvm_calls"):
                figures["round_%s_%s%s" % ("overhead_ratio" if key == "ratio" else key, mode, suffix)] = \
                    round(o[key], 3) if isinstance(o[key], float) else o[key]
        figures["cmdline_cat_%s" % mode] = {k: round(med(v), 2) for k, v in m["cmdline"].items()}
        figures["same_state_%s" % mode] = m["same_state"]
        figures["load_average_%s" % mode] = m["load_average"]
    if "speedup" in figures.get("e2e_standalone", {}):
        e = figures["e2e_standalone"]
        print("\nend to end on standalone (%d rounds): mrjob runner %.1f s, fast runner %.1f s: %.2fx"
              % (e2e_rounds, e["mrjob"]["seconds"], e["fast"]["seconds"], e["speedup"]))
    print(json.dumps(figures, sort_keys=True, default=lambda x: round(x, 3) if isinstance(x, float) else str(x)))


if __name__ == "__main__":
    main()
