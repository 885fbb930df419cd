"""Helpers shared by the benchmarks in ``bench/`` (featurize.py, train.py).

Import from a benchmark script run as ``python bench/NAME.py`` (its folder
is ``sys.path[0]``)::

    from common import best_of, machine_info, peak_probe, ProcessTreeRSS

What is here and why:

* :func:`peak_probe` -- the machine's dense FP32 matrix-multiply peak
  (GFLOP/s, all cores) measured by numpy/OpenBLAS in a **separate process**
  whose environment lacks ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``.
  Those variables may be set machine-wide (``OPENBLAS_CORETYPE=Haswell``
  halves OpenBLAS' SGEMM on AVX-512 machines), and a benchmark's "fraction
  of peak" is only meaningful against the kernel the hardware can really
  run.  The probe reports the kernel OpenBLAS picked (threadpoolctl's
  ``internal_api`` / ``architecture``) so a wrong one is visible.  Tests and
  CI never change these variables; only this probe process does.
* :func:`ort_matmul_probe` -- the same peak seen through onnxruntime's MLAS
  (a large MatMul), which is what the featurizer really runs on.
* :func:`best_of` -- best-of-N timing: on a shared machine the minimum is
  the least noisy estimate of what the code costs.
* :class:`ProcessTreeRSS` -- peak resident memory (``VmHWM``) of every
  process under a root pid, sampled from ``/proc``; used to measure map
  tasks spawned by mrjob or Hadoop without touching their code.
* :func:`machine_info`, :func:`cache_dir`, :func:`run` -- the report header,
  a per-version cache for expensive inputs (built models), subprocesses
  with timing and RSS.
"""

import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time

# Variables that pin OpenBLAS to a kernel or cache size; removed only in the
# peak probe's own process.
PROBE_ENV_DROP = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# CPU flags that decide which kernels numpy/onnxruntime can use.
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                     "avx512_bf16", "amx_int8")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- timing ------------------------------------------------------------------

def best_of(fn, repeats=3, warmup=1):
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times; return (best, all) seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


# -- peak probes ---------------------------------------------------------------

def probe_env(base=None):
    """A copy of the environment without the variables that pin OpenBLAS' kernel."""
    env = dict(os.environ if base is None else base)
    for name in PROBE_ENV_DROP:
        env.pop(name, None)
    # all cores: the probe measures the machine, not one task's share
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    return env


def _gemm_probe(n, repeats):
    """Runs inside the probe process: best-of SGEMM GFLOP/s and the BLAS in use."""
    import numpy as np
    from threadpoolctl import threadpool_info

    g = np.random.default_rng(0)
    a = g.standard_normal((n, n), dtype=np.float32)
    b = g.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    best, times = best_of(lambda: np.matmul(a, b, out=c), repeats=repeats, warmup=2)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    info = blas[0] if blas else {}
    return {"gflops": round(2.0 * n ** 3 / best / 1e9, 1), "n": n, "repeats": repeats,
            "seconds_best": round(best, 4), "seconds_all": [round(t, 4) for t in times],
            "internal_api": info.get("internal_api"), "architecture": info.get("architecture"),
            "num_threads": info.get("num_threads"), "blas_version": info.get("version"),
            "removed_env": [k for k in PROBE_ENV_DROP if k in os.environ]}


def peak_probe(n=3072, repeats=5, threads=None, coretype=None, timeout=600):
    """Dense FP32 GEMM peak of this machine (GFLOP/s), measured in its own process.

    All cores unless ``threads`` is given; OpenBLAS picks its kernel for the
    CPU unless ``coretype`` (e.g. "Haswell") pins one, to compare against
    what a pinned environment gets.  Returns the probe's dict
    (``gflops``, ``internal_api``, ``architecture``, ``num_threads``...) plus
    ``removed_env`` = the pinning variables (and values) our own environment
    has and the probe ran without.
    """
    code = ("import json, sys; sys.path.insert(0, %r); import common; "
            "print(json.dumps(common._gemm_probe(%d, %d)))" % (os.path.dirname(os.path.abspath(__file__)),
                                                               n, repeats))
    env = probe_env()
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("peak probe failed:\n%s" % proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["removed_env"] = {k: os.environ[k] for k in PROBE_ENV_DROP if k in os.environ}
    result["pinned_coretype"] = coretype
    return result


def ort_matmul_probe(threads, n=2048, repeats=5):
    """FP32 MatMul GFLOP/s of onnxruntime's MLAS with ``threads`` intra-op threads (in-process).

    onnxruntime does not use OpenBLAS, so the environment fix does not matter
    here; it is the ceiling the featurizer's own kernels can reach.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    g = np.random.default_rng(0)
    feeds = {"a": g.standard_normal((n, n), dtype=np.float32), "b": g.standard_normal((n, n), dtype=np.float32)}
    best, _ = best_of(lambda: session.run(None, feeds), repeats=repeats, warmup=2)
    del onnx
    return {"gflops": round(2.0 * n ** 3 / best / 1e9, 1), "threads": threads, "n": n}


# -- memory --------------------------------------------------------------------

def children_maxrss_mb():
    """Largest peak RSS among waited-for descendants of this process so far (MiB).

    ``ru_maxrss`` of RUSAGE_CHILDREN is a maximum over the process lifetime:
    it only says something about a job if that job's processes are the
    largest ever waited for; prefer :class:`ProcessTreeRSS` per task.
    """
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _read_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None
    ppid = int(re.search(r"^PPid:\s+(\d+)", text, re.M).group(1))
    hwm = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return ppid, (int(hwm.group(1)) / 1024.0 if hwm else 0.0), cmdline


class Sampler:
    """A background thread that calls ``self._sample()`` every ``interval`` seconds while the
    ``with`` block runs (subclasses: :class:`ProcessTreeRSS`, bench/scale.py's DriverWatch)."""

    def __init__(self, interval):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self):
        raise NotImplementedError

    def _loop(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class ProcessTreeRSS(Sampler):
    """Samples peak RSS (``VmHWM``) of every process below ``root_pid`` from /proc.

    ``VmHWM`` is the kernel's own high-water mark of a process, so sampling
    only has to catch each process once near its end, not at its peak; the
    last value seen before it exits is kept (a task that grows in its very
    last ``interval`` would be under-reported by that growth).  Linux only.

    Use as a context manager around a running job::

        proc = subprocess.Popen(...)
        with ProcessTreeRSS(proc.pid) as rss:
            proc.wait()
        rss.peak_mb(lambda cmd: "--mapper" in cmd)
    """

    def __init__(self, root_pid, interval=0.1):
        super().__init__(interval)
        self.root_pid = root_pid
        self.seen = {}  # pid -> (peak MiB, cmdline)

    def _sample(self):
        table = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = _read_status(int(name))
                if st:
                    table[int(name)] = st
        below = {self.root_pid}
        changed = True
        while changed:  # transitive closure over parent links
            changed = False
            for pid, (ppid, _, _) in table.items():
                if ppid in below and pid not in below:
                    below.add(pid)
                    changed = True
        for pid in below:
            if pid in table:
                _, hwm, cmdline = table[pid]
                old = self.seen.get(pid, (0.0, cmdline))
                self.seen[pid] = (max(old[0], hwm), cmdline or old[1])

    def peak_mb(self, select=None):
        """Largest VmHWM (MiB) among processes whose cmdline passes ``select`` (0 if none)."""
        values = [mb for mb, cmd in self.seen.values() if select is None or select(cmd)]
        return round(max(values), 1) if values else 0.0

    def count(self, select=None):
        return sum(1 for _, cmd in self.seen.values() if select is None or select(cmd))


def run(cmd, env=None, cwd=None, timeout=3600, check=True):
    """Run ``cmd``; return ``(wall seconds, CompletedProcess, ProcessTreeRSS)``.

    stdout/stderr are captured; the process tree is sampled for peak RSS;
    ``CompletedProcess.cpu_s`` is the CPU time (user + system) of the tree.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with ProcessTreeRSS(proc.pid) as rss:
        out, err = proc.communicate(timeout=timeout)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    # CPU seconds of the whole process tree (every descendant that was waited for)
    result.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(map(str, cmd)), proc.returncode, err[-6000:]))
    return seconds, result, rss


# -- report header and cache -----------------------------------------------------

def machine_info():
    """CPU model, the flags that matter, cores, memory, library versions, date."""
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    family = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^CPU family:\s+(\d+)", out, re.M)
        m2 = re.search(r"^Model:\s+(\d+)", out, re.M)
        family = "%s/%s" % (m.group(1) if m else "?", m2.group(1) if m2 else "?")
    except (OSError, subprocess.SubprocessError):
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "onnxruntime", "onnx", "PIL", "mrjob"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # missing or without __version__: report it as such
            versions[name] = None
    try:
        import mr_tl
        versions["mr_tl"] = mr_tl.__version__
    except ImportError:
        versions["mr_tl"] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": model, "cpu_family_model": family,
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_gib": mem_gib, "python": platform.python_version(), "versions": versions,
        "env": {k: os.environ.get(k) for k in PROBE_ENV_DROP + ("OPENBLAS_NUM_THREADS",) if k in os.environ},
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def cache_dir(*parts):
    """``~/.cache/mr_tl/bench/<mr_tl version>/PARTS`` (or ``$MR_TL_BENCH_CACHE``), created."""
    import mr_tl

    root = os.environ.get("MR_TL_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mr_tl",
                                                               "bench")
    path = os.path.join(root, mr_tl.__version__, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def emit_json(figures):
    """The one machine-readable line a benchmark ends with (plain JSON, parseable as is)."""
    print(json.dumps(figures, sort_keys=True, separators=(",", ":")))
    sys.stdout.flush()


# -- training with the real loop -----------------------------------------------

def scratch_root():
    """Where benchmark run directories go: /dev/shm when it is there (checkpoints are fsynced every round;
    on tmpfs that costs nothing and no disk is shared), else the default temp folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def feature_set(ids, labels, splits, X, classes=None):
    """A :class:`mr_tl.feature_set.FeatureSet` of arrays held in memory (class names c000, c001... by default)."""
    import numpy as np

    from mr_tl.feature_set import FeatureSet

    labels = np.asarray(labels, dtype=np.int64)
    if classes is None:
        classes = ["c%03d" % c for c in range(int(labels.max()) + 1)]
    return FeatureSet([str(i) for i in ids], labels, [str(s) for s in splits], np.asarray(X, dtype=np.float32),
                      list(classes))


def _epoch_end_run_dir(path):
    """A RunDir that keeps only the last checkpoint of each epoch (and round 0).

    A schedule of K minibatches per round writes a checkpoint per round (hundreds per epoch on
    Caltech-scale data, ~20 MB each); the benchmarks read one per epoch.  The checkpoint a round
    replaces is removed once the next round of the same epoch is written, so the newest checkpoint
    (the one the loop turns into the head) is always there.
    """
    from mr_tl.run_dir import RunDir

    class EpochEnds(RunDir):
        previous = None

        def write_checkpoint(self, round_number, meta, arrays):
            path = super().write_checkpoint(round_number, meta, arrays)
            if self.previous is not None and self.previous[1] == meta["epoch"]:
                for suffix in (".sha256", ""):
                    os.remove(self.checkpoint_path(self.previous[0]) + suffix)
            self.previous = (round_number, meta["epoch"])
            return path

    return EpochEnds(path)


def train_in_process(features, hyper, epochs, score=None, tasks=0, out=None):
    """Train with mr_tl's real loop and score the run's checkpoint at the end of every epoch.

    ``Trainer(InProcessRunner(features), RUN_DIR, hyper, Schedule(epochs, tasks)).run_all()``: the
    loop the train command runs, with the arithmetic of the MapReduce round jobs bit for bit
    (tests/train/test_block_momentum.py).  ``score``: ``{name: (X, y)}`` of *raw* features; each
    epoch's checkpoint (``RunDir.load_checkpoint``) is scored on them through the run's own
    normalizer (``RunDir.load_classifier``).  With an averaging frequency of N epochs only every
    N-th epoch has a checkpoint; with several candidates only the head kept (``final``) is scored.
    The run directory is temporary.

    Returns ``{"epochs": [e...], "rounds_at": [round of each], "accuracy": {name: [...]},
    "final": {name: acc of head.npz}, "rounds", "rounds_per_epoch", "seconds"}``.
    """
    import tempfile

    import numpy as np
    from threadpoolctl import threadpool_limits

    from mr_tl.head import SoftmaxHead
    from mr_tl.training.in_process import InProcessRunner
    from mr_tl.training.loop import Schedule, Trainer

    score = score or {}
    # One BLAS thread: the minibatches are small (32 rows), and OpenBLAS' threads spinning against
    # other processes on a loaded 2-core machine made a run 10-50 times slower.
    with threadpool_limits(limits=1), \
            tempfile.TemporaryDirectory(prefix="mr_tl-bench-run-", dir=scratch_root()) as tmp:
        run = _epoch_end_run_dir(os.path.join(tmp, "run"))
        t0 = time.perf_counter()
        Trainer(InProcessRunner(features), run, hyper, Schedule(epochs=epochs, tasks=tasks),
                out=out or (lambda message: None)).run_all()
        seconds = time.perf_counter() - t0
        head, _, normalizer = run.load_classifier()
        config = run.read_json("config.json")
        data = {name: (normalizer.apply(X), np.asarray(y)) for name, (X, y) in score.items()}
        result = {"epochs": [], "rounds_at": [], "accuracy": {name: [] for name in score}, "rounds": config["rounds"],
                  "rounds_per_epoch": config["rounds_per_epoch"], "seconds": round(seconds, 2),
                  "final": {name: round(float(np.mean(head.predict(X) == y)), 4) for name, (X, y) in data.items()}}
        for r in run.checkpoint_rounds():
            meta, arrays = run.load_checkpoint(r)
            if r == 0 or "W" not in arrays:  # several candidates (c<i>/W): only the kept head is scored
                continue
            checkpoint = SoftmaxHead(arrays["W"], arrays["b"])
            result["epochs"].append(int(meta["epoch"]))
            result["rounds_at"].append(r)
            for name, (X, y) in data.items():
                result["accuracy"][name].append(round(float(np.mean(checkpoint.predict(X) == y)), 4))
    return result
