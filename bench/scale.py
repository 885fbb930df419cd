"""Does the driver stay small as the data grows?  Driver peak RSS and time per epoch vs training examples.

    python bench/scale.py                  # 30 k, 300 k, 1 M training examples (1280-d), new code, Hadoop at 300 k,
                                           # and the code before the redesign (8baa385) at every size
    python bench/scale.py --quick          # 2 k, 6 k, 20 k training examples (a few minutes)
    python bench/scale.py --parts new      # only some of: new, hadoop, old

For each size N (training examples; generated 1280-d features, bench/synthetic.py, 257 classes,
90/5/5 train/val/test, written as a features folder of 4 part files, streaming), runs

    python -m mr_tl.train -r local FEATURES -o RUN --workers 2 --averaging-frequency epoch --epochs 2 -v

and measures
  * the driver's peak RSS: VmHWM of the ``python -m mr_tl.train`` process itself (sampled from
    /proc every 0.2 s; VmHWM is the kernel's high-water mark, so a sample near the end suffices),
    not of its map/reduce tasks (their largest VmHWM is reported beside it);
  * wall time per epoch: the rounds' own ``seconds`` in metrics.jsonl (one round per epoch), so it
    excludes the one-off jobs, which are reported separately: ``scan`` and ``partition`` (from the
    moment each job's temp directory appears in mrjob's log), and ``start`` before them;
  * time per example per epoch, and its ratio at the largest size to the middle one.
``hadoop``: the middle size also with ``-r hadoop -c CONF`` on Hadoop standalone (tests/hadoop_harness.py).
``old``: the same on the code before the redesign (a ``git worktree`` of 8baa385 in /tmp/mr_tl-old,
made if missing), whose driver reads every feature into memory; its features are written in its own
record format (5-field F records, no ``_summary.json``/``_COMPLETE``).  It runs under a watchdog
that kills it past ``--old-cap-gb`` (default 16) of driver RSS or when the machine has less than 2 GB
available, reported as "failed at N".
Targets: driver peak RSS <= 400 MB at every size, flat in N; time per example at the largest size
within 1.3x of the middle one.  Disk: 1 M examples are ~8 GB of text, plus the jobs' copies;
every size's folders are removed before the next.  Ends with one JSON line (``driver_peak_rss_mb``
per size, and the rest).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import ProcessTreeRSS, Sampler, emit_json, machine_info  # noqa: E402
from synthetic import write_feature_folder  # noqa: E402

OLD_COMMIT = "8baa385"
OLD_TREE = "/tmp/mr_tl-old"
DIM, CLASSES, FRACTIONS = 1280, 257, (0.90, 0.05)
LOGS = os.path.join(tempfile.gettempdir(), "mr_tl-scale-logs")   # each train command's whole output
JOB_START = re.compile(r"Creating temp directory \S*/(scan|partition|train_round)\.")


def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"^%s:\s+(\d+) kB" % field, f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def mem_available_mb():
    with open("/proc/meminfo") as f:
        return int(re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024.0


class DriverWatch(Sampler):
    """Samples the driver's own VmHWM; kills its process group past ``cap_mb`` or when memory runs low."""

    def __init__(self, proc, cap_mb=None, min_available_mb=2048, interval=0.2):
        super().__init__(interval)
        self.proc, self.cap_mb, self.min_available_mb = proc, cap_mb, min_available_mb
        self.peak_mb, self.killed = 0.0, None

    def _sample(self):
        hwm, rss = status_kb(self.proc.pid, "VmHWM"), status_kb(self.proc.pid, "VmRSS")
        if hwm:
            self.peak_mb = max(self.peak_mb, hwm / 1024.0)
        if self.killed is None and rss is not None and self.cap_mb is not None:
            low = mem_available_mb() < self.min_available_mb
            if rss / 1024.0 > self.cap_mb or low:
                self.killed = ("driver RSS %.0f MB > cap %.0f MB" % (rss / 1024.0, self.cap_mb) if not low
                               else "machine memory low (driver RSS %.0f MB)" % (rss / 1024.0))
                os.killpg(self.proc.pid, signal.SIGKILL)   # the group of the driver this benchmark started


def run_driver(cmd, env, cwd, cap_mb=None, timeout=6 * 3600, log=None):
    """Run a train command; driver peak RSS, tasks' peak RSS, job start times, exit status.
    ``log``: a file that gets the command's whole output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    starts, tail = {}, []
    log_file = open(log, "w", encoding="utf-8") if log else None
    with ProcessTreeRSS(proc.pid, interval=0.5) as tree, DriverWatch(proc, cap_mb) as watch:
        for line in proc.stdout:
            if log_file:
                log_file.write(line)
            m = JOB_START.search(line)
            if m and m.group(1) not in starts:
                starts[m.group(1)] = time.perf_counter() - t0
            tail = (tail + [line])[-30:]
            if time.perf_counter() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    if log_file:
        log_file.close()
    total = time.perf_counter() - t0
    tasks_mb = tree.peak_mb(lambda c: "--mapper" in c or "--reducer" in c or "--combiner" in c)
    return {"code": code, "total_s": round(total, 1), "driver_peak_rss_mb": round(watch.peak_mb, 1),
            "task_peak_rss_mb": tasks_mb, "killed": watch.killed, "starts": starts, "tail": "".join(tail)}


def threads_env(base=None):
    env = dict(os.environ if base is None else base)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def measure(name, code_dir, runner_args, features, run_dir, env, n_train, epochs, workers, cap_mb=None):
    import json

    cmd = [sys.executable, "-m", "mr_tl.train", *runner_args, features, "-o", run_dir, "--workers", str(workers),
           "--averaging-frequency", "epoch", "--epochs", str(epochs), "-v"]
    env = dict(env, PYTHONPATH=code_dir)
    os.makedirs(LOGS, exist_ok=True)
    log = os.path.join(LOGS, "%s-%d.log" % (name, n_train))
    r = run_driver(cmd, env, code_dir, cap_mb, log=log)
    out = {"driver_peak_rss_mb": r["driver_peak_rss_mb"], "task_peak_rss_mb": r["task_peak_rss_mb"],
           "total_s": r["total_s"], "train_examples": n_train}
    if r["code"] != 0:
        out["failed"] = r["killed"] or "exit %d" % r["code"]
        out["log"] = log
        print("  %-8s N=%-8d FAILED (%s) after %.0f s, driver peak %.0f MB (whole log: %s)\n%s"
              % (name, n_train, out["failed"], r["total_s"], r["driver_peak_rss_mb"], log, r["tail"][-3000:]),
              flush=True)
        return out
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rounds = [json.loads(line)["seconds"] for line in f]
    s = r["starts"]
    out.update({"epoch_s": [round(x, 1) for x in rounds], "mean_epoch_s": round(sum(rounds) / len(rounds), 2),
                "us_per_example_epoch": round(1e6 * sum(rounds) / len(rounds) / n_train, 2),
                "before_first_round_s": round(s.get("train_round", float("nan")), 1)})
    if "scan" in s and "partition" in s:   # the new code's one-off jobs
        out.update({"start_s": round(s["scan"], 1), "scan_s": round(s["partition"] - s["scan"], 1),
                    "partition_s": round(s["train_round"] - s["partition"], 1)})
    print("  %-8s N=%-8d driver peak RSS %6.0f MB  tasks %6.0f MB  epoch %s s (%.2f us/example)  before round 1 "
          "%.0f s%s  total %.0f s"
          % (name, n_train, out["driver_peak_rss_mb"], out["task_peak_rss_mb"], out["epoch_s"],
             out["us_per_example_epoch"], out["before_first_round_s"],
             " (scan %.0f s, partition %.0f s)" % (out["scan_s"], out["partition_s"]) if "scan_s" in out else "",
             out["total_s"]), flush=True)
    return out


def old_tree():
    if not os.path.isdir(os.path.join(OLD_TREE, "mr_tl")):
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", OLD_TREE, OLD_COMMIT], check=True,
                       stdout=subprocess.DEVNULL)
    return OLD_TREE


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 k, 6 k, 20 k training examples")
    p.add_argument("--sizes", help="training examples, comma-separated (default 30000,300000,1000000)")
    p.add_argument("--parts", default="new,hadoop,old", help="which of new, hadoop, old (default all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--old-cap-gb", type=float, default=16.0, help="kill the old driver past this RSS (GB)")
    p.add_argument("--tmp", default=None, help="scratch folder (default: the temp folder)")
    p.add_argument("--hadoop-heap", default=None, metavar="SIZE",
                   help="HADOOP_HEAPSIZE_MAX of the standalone Hadoop client JVM, which runs the map and reduce "
                        "tasks' Java side and the shuffle (the launcher's default: 1g)")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [2000, 6000, 20000] if args.quick else [30000, 300000, 1000000])
    middle = sizes[len(sizes) // 2] if len(sizes) > 1 else sizes[0]
    info = machine_info()
    print("machine: %s, %s cores, %s GiB; sizes %s, %d workers, %d epochs, parts %s"
          % (info["cpu"], info["cores"], info["mem_gib"], sizes, args.workers, args.epochs, sorted(parts)), flush=True)
    env = threads_env()
    figures = {"benchmark": "scale", "quick": args.quick, "dim": DIM, "classes": CLASSES, "workers": args.workers,
               "epochs": args.epochs, "machine": info, "new": {}, "hadoop": {}, "old": {}}
    standalone = None
    if "hadoop" in parts:
        sys.path.insert(0, os.path.join(REPO, "tests"))
        import hadoop_harness

        standalone = hadoop_harness.Standalone(tempfile.mkdtemp(prefix="mr_tl-scale-hadoop-", dir=args.tmp))
    for n_train in sizes:
        n_total = int(round(n_train / FRACTIONS[0]))
        for kind in ("new", "old"):
            wanted = [k for k in ((["new"] if "new" in parts else []) + (["hadoop"] if "hadoop" in parts
                                                                           and n_train == middle else []))
                      ] if kind == "new" else (["old"] if "old" in parts else [])
            if not wanted:
                continue
            tmp = tempfile.mkdtemp(prefix="mr_tl-scale-", dir=args.tmp)
            try:
                features = os.path.join(tmp, "features")
                t0 = time.perf_counter()
                written = write_feature_folder(features, n_total, DIM, CLASSES, seed=1, parts=4,
                                               old_format=kind == "old", fractions=FRACTIONS)
                n = written["counts"]["train"]
                print("N=%d (%d records): %s features folder, %.2f GB, written in %.0f s; disk free %.0f GB"
                      % (n, n_total, kind, written["bytes"] / 1e9, time.perf_counter() - t0,
                         shutil.disk_usage(tmp).free / 1e9), flush=True)
                for name in wanted:
                    run_dir = os.path.join(tmp, "run-" + name)
                    if name == "new":
                        r = measure(name, REPO, ["-r", "local"], features, run_dir, env, n, args.epochs, args.workers)
                    elif name == "hadoop":
                        hadoop_env = standalone.env(env)
                        if args.hadoop_heap:
                            hadoop_env["HADOOP_HEAPSIZE_MAX"] = args.hadoop_heap
                        r = measure(name, REPO, ["-r", "hadoop", "-c", str(standalone.mrjob_conf)], features,
                                    run_dir, hadoop_env, n, args.epochs, args.workers)
                        r["hadoop_heap"] = args.hadoop_heap or "1g (launcher default)"
                    else:
                        r = measure(name, old_tree(), ["-r", "local"], features, run_dir, env, n, args.epochs,
                                    args.workers, cap_mb=args.old_cap_gb * 1024)
                    r["features_GB"] = round(written["bytes"] / 1e9, 2)
                    figures[name][str(n_train)] = r
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if standalone is not None:
        shutil.rmtree(standalone.work_dir, ignore_errors=True)

    new = figures["new"]
    figures["driver_peak_rss_mb"] = {k: v["driver_peak_rss_mb"] for k, v in new.items()}
    figures["old_driver_peak_rss_mb"] = {k: ("failed at %s: %s (%.0f MB)" % (k, v["failed"], v["driver_peak_rss_mb"])
                                             if "failed" in v else v["driver_peak_rss_mb"])
                                         for k, v in figures["old"].items()}
    figures["hadoop_driver_peak_rss_mb"] = {k: v["driver_peak_rss_mb"] for k, v in figures["hadoop"].items()}
    ok = [v for v in new.values() if "failed" not in v]
    if ok:
        figures["target_rss_met"] = all(v["driver_peak_rss_mb"] <= 400 for v in ok) and len(ok) == len(new)
        peaks = [v["driver_peak_rss_mb"] for v in ok]
        figures["driver_rss_spread_mb"] = round(max(peaks) - min(peaks), 1)
    big, mid = new.get(str(sizes[-1])), new.get(str(middle))
    if big and mid and "us_per_example_epoch" in big and "us_per_example_epoch" in mid and big is not mid:
        figures["time_per_example_ratio_largest_vs_middle"] = round(big["us_per_example_epoch"]
                                                                    / mid["us_per_example_epoch"], 3)
        figures["target_time_met"] = figures["time_per_example_ratio_largest_vs_middle"] <= 1.3
    print("driver peak RSS (MB) new %s; old %s; hadoop %s; time per example largest/middle %s"
          % (figures["driver_peak_rss_mb"], figures["old_driver_peak_rss_mb"], figures["hadoop_driver_peak_rss_mb"],
             figures.get("time_per_example_ratio_largest_vs_middle")), flush=True)
    emit_json(figures)


if __name__ == "__main__":
    main()
