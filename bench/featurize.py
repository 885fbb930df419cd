"""Featurize benchmark: how close the featurize job gets to the machine's peak.

    python bench/featurize.py --quick            # a few minutes
    python bench/featurize.py                    # fuller sweep, more images and repeats
    python bench/featurize.py --tune             # + onnxruntime session-option sweep (RSS, creation, speed)
    python bench/featurize.py --images 256 --no-hadoop

On the same N generated 224x224 JPEGs (``mr_tl.demo_data.draw_image``,
seeded; packed with ``mr_tl.pack`` into two shards) and the full
random-weights VGG16 cut at fc2 (built once and cached in
``~/.cache/mr_tl/bench/<version>/``), it measures:

(a) peak   dense FP32 GEMM GFLOP/s with all cores (numpy/OpenBLAS in its own
           process without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, see
           bench/common.py) and onnxruntime's own MatMul; the images/s
           ceiling = peak / (2 x the graph's MACs per image, 30.9 GFLOP for VGG16);
(b) raw    onnxruntime in-process on preprocessed batches: P processes x T
           threads x batch B, the best setting is "raw";
(c) inline the featurize job, inline runner (one task, all cores);
(d) local  the featurize job, local runner (mrjob's default: 2 tasks at a time x 1 thread);
(e) hadoop the featurize job on Apache Hadoop standalone (tests/hadoop_harness.py:
           LocalJobRunner, 2 map slots), when Java and the fetched jars are there;
plus onnxruntime session-creation time, peak RSS of each featurize task,
feature-record encodings (size, parse speed), and int8 vs fp32 (speed,
cosine of features) for VGG16 and for the real EfficientNet-Lite0 (on
generated demo images and on crops of tests/data/chelsea_cat.jpg).

Each job runs on N and on 2N images: N / (extra time) is its steady-state
("marginal") rate, free of fixed costs (JVM launches, uploads, session
creation), and the fixed cost is what remains; a job's end-to-end ratio
to raw grows towards its marginal ratio as N grows.  Rates per CPU-second
are printed too: they hardly move when other processes load the machine,
wall-clock rates do.  The model is stored as mr_tl stores big models, with
its weights in NAME.onnx.data beside the graph (memory-mapped); (d') and
(e') repeat (d)/(e) with the weights inside the graph file instead.

Only ratios measured in the same run mean anything: every figure here is
measured in this run, best of several repeats.  On a shared machine run it
as ``nice -n -10 python bench/featurize.py ...`` to shield it from other
work.  The last line printed is one JSON object with every figure.
"""

import argparse
import base64
import glob
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402  (bench/common.py, beside this script)

REPO = common.REPO
PYTHON = sys.executable
VGG16_SEED = 0
EFFNET = os.path.join(REPO, "models", "efficientnet-lite0-features.onnx")


def log(*args):
    print(*args, flush=True)


# -- inputs ------------------------------------------------------------------------------------------

def ensure_vgg16():
    """The full random-weights VGG16 cut at fc2, built once per mr_tl version (~40 s) and cached.

    As mr_tl writes every big model: the graph with its weights in
    ``NAME.onnx.data`` beside it (external data, memory-mapped by onnxruntime).
    """
    folder = common.cache_dir("models")
    path = os.path.join(folder, "vgg16-random%d-fc2.onnx" % VGG16_SEED)
    if os.path.exists(path) and os.path.exists(path[:-5] + ".json") and os.path.exists(path + ".data"):
        return path
    log("building the full random-weights VGG16 (seed %d) into %s ..." % (VGG16_SEED, folder))
    tmp = tempfile.mkdtemp(dir=folder)
    try:
        full = os.path.join(tmp, "vgg16.onnx")
        for args in (["build-vgg16", "--random-weights", "--seed", str(VGG16_SEED), "-o", full],
                     ["cut", full, "--at", "fc2", "-o", path]):
            subprocess.run([PYTHON, "-m", "mr_tl.model"] + args, check=True, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def ensure_inline(model):
    """A copy of ``model`` with its weights inside the graph file (the layout before external data), cached.

    For comparison: a session then parses and copies 500 MB of protobuf, and
    concurrent tasks on a node cannot share the weights' pages.
    """
    import onnx

    from mr_tl.model import graph
    from mr_tl.model.spec import ModelSpec, sidecar_path

    path = model[:-5] + "-inline.onnx"
    if os.path.exists(path) and os.path.exists(sidecar_path(path)):
        return path
    graph.save_model(onnx.load(model), path, ModelSpec.load(sidecar_path(model)), external_data=False)
    return path


def write_images(folder, n, size, seed):
    """``n`` seeded demo-style JPEGs (shapes on noisy tinted backgrounds) in class folders."""
    from mr_tl.demo_data import CLASSES, draw_image
    from mr_tl.seeding import rng

    for i in range(n):
        kind = CLASSES[i % len(CLASSES)]
        sub = os.path.join(folder, "%03d.%s" % (CLASSES.index(kind), kind))
        os.makedirs(sub, exist_ok=True)
        image = draw_image(kind, rng(seed, "bench-featurize", i), size)
        image.save(os.path.join(sub, "%05d.jpg" % i), "JPEG", quality=90)


def make_pack(work, name, n, size=224, seed=0, shards=1):
    """Generate and pack ``n`` images into ``shards`` shards of equal size.

    One shard by default: mrjob's local runner cuts its input into 2 x cores
    pieces, and several files give it a tiny left-over piece (one more task,
    one more session creation, alone in a third wave).  Hadoop's local job
    runner makes one map task per (small) file, so its jobs get a pack of
    ``cores`` shards.
    """
    from mr_tl.pack import SplitSize, pack

    images = os.path.join(work, name + "-images")
    out = os.path.join(work, name)
    write_images(images, n, size, seed)
    everything = SplitSize(0)
    manifest = pack(images, out + "-probe", val=everything, test=everything, seed=seed, shard_size=1 << 40)
    total = sum(s["bytes"] for s in manifest["shards"])
    longest = 0
    for shard in manifest["shards"]:
        with open(os.path.join(out + "-probe", shard["path"]), "rb") as f:
            longest = max([longest] + [len(line) for line in f])
    shutil.rmtree(out + "-probe")
    # a shard is closed once the next line would take it past shard_size
    pack(images, out, val=everything, test=everything, seed=seed, shard_size=-(-total // shards) + longest)
    return out


def preprocessed(pack_dir, spec):
    """Every image of a pack, preprocessed for ``spec``: ``(ids, (N, C, H, W) float32)``."""
    from mr_tl.images import preprocess
    from mr_tl.records import PackedImage

    ids, xs = [], []
    for path in sorted(glob.glob(os.path.join(pack_dir, "*.tsv"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                image = PackedImage.from_line(line)
                ids.append(image.id)
                xs.append(preprocess(image.data, spec))
    return ids, np.stack(xs)


def decode_ms_per_image(pack_dir, spec, repeats=3):
    """Milliseconds to turn one packed line into a network input (base64 + JPEG decode + normalize)."""
    from mr_tl.images import preprocess
    from mr_tl.records import PackedImage

    lines = []
    for path in sorted(glob.glob(os.path.join(pack_dir, "*.tsv"))):
        with open(path, encoding="utf-8") as f:
            lines += f.read().splitlines()
    best, _ = common.best_of(lambda: [preprocess(PackedImage.from_line(line).data, spec) for line in lines], repeats)
    return 1000.0 * best / len(lines)


def model_gmacs(path):
    """Multiply-accumulates per image (GMAC) of the Conv/Gemm/MatMul nodes, from ONNX shape inference."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(path, load_external_data=False)  # shapes only
    # batch 1: fix the symbolic batch dimension so shapes are numbers
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_param")
    dim.dim_value = 1
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    for i in model.graph.initializer:
        i.ClearField("raw_data")  # shapes only; keeps inference cheap
    inferred = shape_inference.infer_shapes(model)
    shapes = dict(inits)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # (cout, cin/group, kh, kw)
            out = shapes[node.output[0]]
            macs += math.prod(out) * math.prod(w[1:])
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_b = any(at.name == "transB" and at.i for at in node.attribute)
            n_out = b[0] if trans_b else b[-1]
            macs += math.prod(a) * n_out
    return macs / 1e9


# -- raw onnxruntime: one worker process per measurement -----------------------------------------------

def worker_main(config):
    """Runs in a fresh process: create a session, wait at the barrier, run timed passes; print JSON."""
    import onnxruntime as ort

    from mr_tl.model.session import session_options

    threads, batch = config["threads"], config["batch"]
    xs = np.load(config["inputs"], mmap_mode="r")
    xs = np.ascontiguousarray(xs[:config.get("limit") or len(xs)])
    options = session_options(threads)  # exactly what the featurize job uses ...
    overrides = config.get("options") or {}  # ... unless a tuning run changes it
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    if "opt" in overrides:
        options.graph_optimization_level = levels[overrides["opt"]]
    if "arena" in overrides:
        options.enable_cpu_mem_arena = bool(overrides["arena"])
    if "mem_pattern" in overrides:
        options.enable_mem_pattern = bool(overrides["mem_pattern"])
    for key, value in (overrides.get("config") or {}).items():
        options.add_session_config_entry(key, str(value))
    t0 = time.perf_counter()
    session = ort.InferenceSession(config["model"], options, providers=["CPUExecutionProvider"])
    create = time.perf_counter() - t0
    rss_create = _vm("VmHWM")
    name = session.get_inputs()[0].name
    output = config.get("output_name") or session.get_outputs()[0].name
    batches = [xs[i:i + batch] for i in range(0, len(xs), batch)]
    session.run([output], {name: batches[0]})  # warm-up: first-run allocations, lazy init
    if config.get("ready"):
        open(config["ready"], "w").close()
        while not os.path.exists(config["go"]):
            time.sleep(0.005)
    passes, saved = [], []
    for p in range(config["passes"]):
        start, cpu0 = time.time(), time.process_time()
        for b in batches:
            out = session.run([output], {name: b})[0]
            if p == 0 and config.get("save"):
                saved.append(out.reshape(len(b), -1).copy())
        passes.append((start, time.time(), time.process_time() - cpu0))
    if config.get("save"):
        np.save(config["save"], np.concatenate(saved))
    best = min(end - start for start, end, _ in passes)
    cpu = min(c for _, _, c in passes)
    print(json.dumps({"create_s": round(create, 3), "rss_after_create_mb": rss_create,
                      "rss_peak_mb": _vm("VmHWM"), "images": len(xs), "passes": passes,
                      "best_img_s": round(len(xs) / best, 3), "img_per_cpu_s": round(len(xs) / cpu, 3)}))


def _vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return None


def raw(model, inputs, procs=1, threads=2, batch=8, passes=2, options=None, save=None, limit=None,
        output_name=None, work=None):
    """onnxruntime throughput of ``procs`` processes x ``threads`` threads, each on all the inputs.

    The processes create their sessions, then start together (file barrier);
    for pass i the aggregate rate is (procs x images) / (last end - first
    start) over the processes; the best pass is reported.
    """
    work = tempfile.mkdtemp(dir=work)
    configs = []
    for p in range(procs):
        configs.append({"model": model, "inputs": inputs, "threads": threads, "batch": batch, "passes": passes,
                        "options": options or {}, "limit": limit, "output_name": output_name,
                        "save": save if p == 0 else None,
                        "ready": os.path.join(work, "ready%d" % p) if procs > 1 else None,
                        "go": os.path.join(work, "go")})
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    workers = [subprocess.Popen([PYTHON, __file__, "--worker", json.dumps(c)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for c in configs]
    if procs > 1:
        deadline = time.time() + 600
        while not all(os.path.exists(c["ready"]) for c in configs):
            if any(w.poll() is not None for w in workers) or time.time() > deadline:
                break
            time.sleep(0.01)
        open(os.path.join(work, "go"), "w").close()
    results = []
    for w in workers:
        out, err = w.communicate(timeout=3600)
        if w.returncode != 0:
            raise RuntimeError("raw worker failed (%d):\n%s" % (w.returncode, err[-4000:]))
        results.append(json.loads(out.strip().splitlines()[-1]))
    shutil.rmtree(work, ignore_errors=True)
    images = results[0]["images"]
    rates = []
    for i in range(passes):
        first = min(r["passes"][i][0] for r in results)
        last = max(r["passes"][i][1] for r in results)
        rates.append(procs * images / (last - first))
    return {"procs": procs, "threads": threads, "batch": batch, "img_s": round(max(rates), 3),
            "img_s_passes": [round(r, 3) for r in rates],
            # images per CPU-second of one process (best pass): barely affected by other load on
            # the machine; procs x this is what 1-thread processes would reach on idle cores
            "img_per_cpu_s": round(min(r["img_per_cpu_s"] for r in results), 3),
            "create_s": max(r["create_s"] for r in results),
            "rss_after_create_mb": max(r["rss_after_create_mb"] for r in results),
            "rss_peak_mb": max(r["rss_peak_mb"] for r in results), "options": options or {}}


# -- the featurize job ---------------------------------------------------------------------------------

def MAPPER(cmdline):
    """Is this the python process of a map task?  (Not the sh wrapper or Hadoop's JVM, which
    carry ``--mapper`` in their command lines too.)"""
    args = cmdline.split()
    return bool(args) and os.path.basename(args[0]).startswith("python") and "--mapper" in args


def run_job(runner, model, pack_dir, out, batch=8, threads=None, extra=(), env=None, repeats=1):
    """Run ``python -m mr_tl.featurize`` ``repeats`` times; best wall time, images/s, task RSS."""
    from mr_tl.model.spec import load_model_spec

    dim = load_model_spec(model, verify_hash=False).output_dim
    best = None
    for r in range(repeats):
        target = "%s-%d" % (out, r)
        cmd = [PYTHON, "-m", "mr_tl.featurize", "-r", runner, "--model", model, pack_dir,
               "-o", ("file://" + target) if runner == "hadoop" else target, "--batch-size", str(batch)]
        if threads:
            cmd += ["--threads", str(threads)]
        cmd += list(extra)
        seconds, proc, rss = common.run(cmd, env=env, cwd=os.path.dirname(out))
        with open(os.path.join(target, "_summary.json")) as f:
            summary = json.load(f)
        summary = {"featurized": sum(summary["records"]["featurized"].values()), "input": summary["input"]["images"],
                   "rejected": summary["records"]["rejected"]}
        if summary["featurized"] != summary["input"] or summary["rejected"]:
            raise RuntimeError("%s job did not featurize every image: %s" % (runner, summary))
        sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(target, "part-*"))]
        result = {"seconds": round(seconds, 2), "images": summary["featurized"],
                  "img_s": round(summary["featurized"] / seconds, 3), "cpu_s": round(proc.cpu_s, 2),
                  "img_per_cpu_s": round(summary["featurized"] / proc.cpu_s, 3),
                  "task_rss_peak_mb": rss.peak_mb(MAPPER) if runner != "inline" else rss.peak_mb(),
                  "map_tasks": rss.count(MAPPER) if runner != "inline" else 1,
                  "driver_rss_peak_mb": round(rss.seen.get(rss.root_pid, (0.0,))[0], 1),
                  "output_bytes_per_image": round(sum(sizes) / summary["featurized"]),
                  "dim": dim, "command": " ".join(cmd)}
        if best is None or result["seconds"] < best["seconds"]:
            best = result
        if r < repeats - 1:
            shutil.rmtree(target, ignore_errors=True)
    best["repeats"] = repeats
    return best


def hadoop_standalone(work):
    """A tests/hadoop_harness.Standalone, or ``(None, reason)`` when Hadoop cannot run here.

    Hook for enabling (e): Java 17+, Maven and ``hadoop/fetch`` (jars from
    Maven Central, cached in ~/.cache/mr_tl/hadoop-<version>).  The job is
    then ``python -m mr_tl.featurize -r hadoop -c WORK/mrjob.conf ...`` with
    the harness' environment, the same as ``-r hadoop --hadoop-bin
    hadoop/bin/hadoop --hadoop-streaming-jar JAR`` with
    ``HADOOP_CONF_DIR=hadoop/conf-standalone``.
    """
    sys.path.insert(0, os.path.join(REPO, "tests"))
    try:
        import hadoop_harness
    except ImportError as e:
        return None, "tests/hadoop_harness.py cannot be imported (%s)" % e
    try:
        home = hadoop_harness.hadoop_home(skip=False)
        return hadoop_harness.Standalone(os.path.join(work, "hadoop"), home=home), None
    except Exception as e:  # HadoopUnavailable, a failed fetch, ...
        return None, "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[-1] if str(e).strip() else "")


# -- feature-record encodings ------------------------------------------------------------------------------

def encodings(vectors, repeats=3):
    """Bytes per record and encode/parse microseconds for candidate encodings of float32 vectors."""
    from mr_tl.records import FeatureRecord, parse_feature_line

    vectors = [np.ascontiguousarray(v, dtype="<f4") for v in vectors]
    lines = [FeatureRecord("class/%05d.jpg" % i, 1, "train", v).to_line() for i, v in enumerate(vectors)]
    candidates = {
        "base64-f32 (current)": (lambda v: base64.b64encode(v.tobytes()),
                                 lambda s: np.frombuffer(base64.b64decode(s), dtype="<f4")),
        "base85-f32": (lambda v: base64.b85encode(v.tobytes()),
                       lambda s: np.frombuffer(base64.b85decode(s), dtype="<f4")),
        "hex-f32": (lambda v: v.tobytes().hex().encode(), lambda s: np.frombuffer(bytes.fromhex(s.decode()), "<f4")),
        "zlib1+base64-f32": (lambda v: base64.b64encode(zlib.compress(v.tobytes(), 1)),
                             lambda s: np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype="<f4")),
        "base64-f16 (lossy)": (lambda v: base64.b64encode(v.astype("<f2").tobytes()),
                               lambda s: np.frombuffer(base64.b64decode(s), dtype="<f2").astype(np.float32)),
        "text %.9g": (lambda v: " ".join("%.9g" % x for x in v.tolist()).encode(),
                      lambda s: np.array(s.split(), dtype=np.float32)),
    }
    results = {}
    for name, (enc, dec) in candidates.items():
        encoded = [enc(v) for v in vectors]
        t_enc, _ = common.best_of(lambda: [enc(v) for v in vectors], repeats)
        t_dec, _ = common.best_of(lambda: [dec(s) for s in encoded], repeats)
        back = dec(encoded[0])
        results[name] = {"bytes": round(sum(len(s) for s in encoded) / len(vectors)),
                         "encode_us": round(1e6 * t_enc / len(vectors), 1),
                         "decode_us": round(1e6 * t_dec / len(vectors), 1),
                         "max_abs_err": float(np.max(np.abs(back - vectors[0])))}
    t_parse, _ = common.best_of(lambda: [parse_feature_line(line) for line in lines], repeats)
    results["base64-f32 (current)"]["parse_feature_line_us"] = round(1e6 * t_parse / len(lines), 1)
    results["raw_f32_bytes"] = vectors[0].nbytes
    results["zero_fraction"] = round(float(np.mean([np.mean(v == 0) for v in vectors])), 3)
    return results


# -- int8 ----------------------------------------------------------------------------------------------------

def quantized(model, calibration_pack, samples, seed=42):
    """int8 copy of ``model`` (cached beside the benchmark's models by model hash, samples and seed)."""
    from mr_tl.model.quantize import quantize_model
    from mr_tl.model.spec import load_model_spec

    sha = load_model_spec(model, verify_hash=False).model_sha256
    path = os.path.join(common.cache_dir("models"), "%s-int8-%s-n%d-s%d.onnx"
                        % (os.path.basename(model)[:-5], sha[:12], samples, seed))
    seconds = 0.0
    if not (os.path.exists(path) and os.path.exists(path[:-5] + ".json")):
        t0 = time.perf_counter()
        quantize_model(model, [calibration_pack], path, samples=samples, seed=seed)
        seconds = time.perf_counter() - t0
    return path, seconds


def cosines(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}


PHOTO = os.path.join(REPO, "tests", "data", "chelsea_cat.jpg")


def photo_crops(n=24, seed=0):
    """JPEG bytes of ``n`` random crops (50-100 %% of each side, every other one mirrored) of the
    repository's one real photograph: real image statistics for the int8 cosine, which synthetic
    shapes do not have."""
    from PIL import Image, ImageOps

    g = np.random.default_rng(seed)
    image = Image.open(PHOTO).convert("RGB")
    w, h = image.size
    out = []
    for i in range(n):
        s = g.uniform(0.5, 1.0)
        cw, ch = int(w * s), int(h * s)
        x0, y0 = int(g.integers(0, w - cw + 1)), int(g.integers(0, h - ch + 1))
        crop = image.crop((x0, y0, x0 + cw, y0 + ch))
        if i % 2:
            crop = ImageOps.mirror(crop)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def int8_study(name, model, pack_dir, calibration_pack, samples, work, settings, passes, photos=None):
    """Speed of int8 vs fp32 (same processes x threads x batch, same run) and cosine of their features.

    ``photos``: optional JPEG bytes whose features are also compared (in-process).
    """
    from mr_tl.model.spec import load_model_spec

    spec = load_model_spec(model, verify_hash=False)
    ids, xs = preprocessed(pack_dir, spec)
    inputs = os.path.join(work, name + "-inputs.npy")
    np.save(inputs, xs)
    int8, q_seconds = quantized(model, calibration_pack, samples)
    out = {"model": os.path.basename(model), "int8_model": os.path.basename(int8), "images": len(ids),
           "calibration_images": samples, "quantize_s": round(q_seconds, 1) if q_seconds else "cached",
           "int8_mb": round(os.path.getsize(int8) / 2 ** 20, 1), "fp32_mb": round(os.path.getsize(model) / 2 ** 20, 1)}
    feats = {}
    for procs, threads, batch in settings:
        key = "%dx%d b%d" % (procs, threads, batch)
        row = {}
        for kind, path in (("fp32", model), ("int8", int8)):
            save = os.path.join(work, "%s-%s.npy" % (name, kind)) if kind not in feats else None
            r = raw(path, inputs, procs, threads, batch, passes, save=save, output_name=spec.output_name, work=work)
            if save:
                feats[kind] = np.load(save)
            row[kind] = r["img_s"]
            row[kind + "_per_cpu_s"] = r["img_per_cpu_s"]
            row[kind + "_rss_mb"] = r["rss_peak_mb"]
            row[kind + "_create_s"] = r["create_s"]
        row["speedup"] = round(row["int8"] / row["fp32"], 2)
        row["speedup_cpu"] = round(row["int8_per_cpu_s"] / row["fp32_per_cpu_s"], 2)
        out[key] = row
        log("  %-16s %-8s fp32 %7.2f img/s  int8 %7.2f img/s  speedup %.2fx (per CPU-second %.2fx)"
            "  RSS %s / %s MB" % (name, key, row["fp32"], row["int8"], row["speedup"], row["speedup_cpu"],
                                  row["fp32_rss_mb"], row["int8_rss_mb"]))
    out["cosine"] = cosines(feats["fp32"], feats["int8"])
    if photos:
        from mr_tl.images import preprocess
        from mr_tl.model.session import Featurizer

        x = np.stack([preprocess(data, spec) for data in photos])
        out["cosine_photo"] = cosines(Featurizer(model, spec)(x), Featurizer(int8)(x))
        out["cosine_photo"]["images"] = len(photos)
        log("  %-16s cosine int8 vs fp32 on %d crops of %s: mean %.4f, min %.4f"
            % (name, len(photos), os.path.basename(PHOTO), out["cosine_photo"]["mean"], out["cosine_photo"]["min"]))
    out["best_speedup"] = max(v["speedup"] for k, v in out.items() if isinstance(v, dict) and "speedup" in v)
    log("  %-16s cosine int8 vs fp32: mean %.4f, min %.4f" % (name, out["cosine"]["mean"], out["cosine"]["min"]))
    return out


# -- the run ----------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer images, settings and repeats (a few minutes)")
    p.add_argument("--images", type=int, help="images per run (default 32 quick, 96 full)")
    p.add_argument("--tune", action="store_true", help="also sweep onnxruntime session options")
    p.add_argument("--no-hadoop", action="store_true", help="skip (e) even when Hadoop is available")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 study")
    p.add_argument("--work", help="scratch folder (default: a temporary one, removed at the end)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))

    quick = args.quick
    n = args.images or (32 if quick else 96)
    repeats = 1 if quick else 2
    passes = 2
    figures = {"mode": "quick" if quick else "full", "images": n}
    work = args.work or tempfile.mkdtemp(prefix="mr_tl-bench-featurize-")
    os.makedirs(work, exist_ok=True)
    t_start = time.time()
    try:
        machine = common.machine_info()
        figures["machine"] = machine
        log("machine: %s (family/model %s), %d cores, %s GiB, flags %s; load %s"
            % (machine["cpu"], machine["cpu_family_model"], machine["cores"], machine["mem_gib"],
               " ".join(machine["flags"]), " ".join("%.1f" % x for x in machine["loadavg_start"])))

        model = ensure_vgg16()
        from mr_tl.model.spec import load_model_spec
        spec = load_model_spec(model, verify_hash=False)
        gmacs = model_gmacs(model)
        gflop = 2 * gmacs
        figures["model"] = {"name": os.path.basename(model), "gmac_per_image": round(gmacs, 2),
                            "gflop_per_image": round(gflop, 2), "mb": round(os.path.getsize(model) / 2 ** 20, 1)}
        log("model: %s, %.2f GMAC = %.1f GFLOP per image" % (model, gmacs, gflop))

        # (a) peak
        # best of many short runs: on a shared machine the fastest run is the one nobody disturbed
        size = 2048 if quick else 3072
        peak = common.peak_probe(n=size, repeats=10 if quick else 15)
        # OpenBLAS' AVX2 kernel, as OPENBLAS_CORETYPE=Haswell pins it: on Intel AVX-512 it is about
        # half the AVX-512 kernel, on AMD Zen 4 (AVX-512 on 256-bit units) it can be as fast or
        # faster; the peak is the better of the two, both are reported
        haswell = common.peak_probe(n=size, repeats=10 if quick else 15, coretype="Haswell")
        one_core = common.peak_probe(n=size, repeats=10, threads=1)
        ort_peak = {t: common.ort_matmul_probe(t, n=2048, repeats=10)["gflops"] for t in (1, machine["cores"])}
        auto = dict(peak)
        if haswell["gflops"] > peak["gflops"]:
            peak = dict(haswell, removed_env=peak["removed_env"])
        # An all-core GEMM stalls whenever any one core is taken by another process; one core's
        # rate x cores is the bound a quiet machine reaches (within 3 % here, 198.5 vs 204.6).
        # The larger of the two is the peak; both are reported.
        peak["all_core_gflops"] = peak["gflops"]
        peak["cores_x_one_core_gflops"] = round(machine["cores"] * one_core["gflops"], 1)
        peak["gflops"] = max(peak["gflops"], peak["cores_x_one_core_gflops"])
        figures["peak"] = dict(peak, ceiling_img_s=round(peak["gflops"] / gflop, 3),
                               auto_kernel={"architecture": auto["architecture"], "gflops": auto["gflops"]},
                               haswell_kernel={"architecture": haswell["architecture"], "gflops": haswell["gflops"]},
                               one_core_gflops=one_core["gflops"], ort_matmul_gflops=ort_peak,
                               ort_ceiling_img_s=round(ort_peak[machine["cores"]] / gflop, 3))
        log("(a) peak: SGEMM %.1f GFLOP/s (%s %s, %s threads; removed from env: %s) -> ceiling %.2f img/s;"
            " all cores: auto kernel %s %.1f, pinned Haswell %.1f; 1 thread %.1f GFLOP/s;"
            " onnxruntime MatMul %s GFLOP/s (1/%d threads)"
            % (peak["gflops"], peak["internal_api"], peak["architecture"], peak["num_threads"],
               peak["removed_env"] or "nothing", figures["peak"]["ceiling_img_s"], auto["architecture"],
               auto["gflops"], haswell["gflops"], one_core["gflops"],
               "/".join(str(ort_peak[t]) for t in sorted(ort_peak)), machine["cores"]))

        pack_dir = make_pack(work, "pack", n)
        ids, xs = preprocessed(pack_dir, spec)
        inputs = os.path.join(work, "inputs.npy")
        np.save(inputs, xs)
        figures["decode_ms_per_image"] = round(decode_ms_per_image(pack_dir, spec), 2)
        log("inputs: %d images in %s; decode+preprocess %.2f ms/image"
            % (len(ids), pack_dir, figures["decode_ms_per_image"]))

        # (b) raw onnxruntime
        cores = machine["cores"]
        settings = [(1, cores, 8), (cores, 1, 8)] if quick else \
            [(1, cores, 8)] + [(cores, 1, b) for b in (1, 4, 8, 16)]
        raws = []
        for procs, threads, batch in settings:
            r = raw(model, inputs, procs, threads, batch, passes, work=work)
            raws.append(r)
            log("(b) raw %d proc x %d thr, batch %2d: %6.3f img/s (passes %s; %.3f img/CPU-s per process),"
                " create %.2f s, RSS %s MB" % (procs, threads, batch, r["img_s"], r["img_s_passes"],
                                               r["img_per_cpu_s"], r["create_s"], r["rss_peak_mb"]))
        best_raw = max(raws, key=lambda r: r["img_s"])
        figures["raw"] = {"best": best_raw, "all": [{k: r[k] for k in ("procs", "threads", "batch", "img_s",
                                                                       "img_per_cpu_s", "create_s", "rss_peak_mb")}
                                                    for r in raws]}
        figures["session_create_s"] = min(r["create_s"] for r in raws)

        if args.tune:
            figures["tune"] = tune(model, inputs, work, cores, passes, quick)

        # (c), (d), (e): the featurize job
        jobs = {}
        inline_weights = ensure_inline(model)
        plan = [("inline", "c", model, {}), ("local", "d", model, {}),
                ("local_inline_weights", "d'", inline_weights, {})]
        if args.no_hadoop:
            jobs["hadoop"] = {"skipped": "--no-hadoop"}
        else:
            standalone, reason = hadoop_standalone(work)
            if standalone is None:
                jobs["hadoop"] = {"skipped": reason}
            else:
                hadoop = {"extra": ["-c", str(standalone.mrjob_conf)], "env": standalone.env()}
                plan.append(("hadoop", "e", model, hadoop))
                if not quick:
                    plan.append(("hadoop_inline_weights", "e'", inline_weights, hadoop))
        # Each job also runs on 2N images (a superset: same seed): the extra N images over the extra
        # time is the job's steady-state rate, free of its fixed costs (JVMs, uploads, sessions),
        # which are then (time at N) - N / rate.
        pack2_dir = make_pack(work, "pack2x", 2 * n)
        if any(name.startswith("hadoop") for name, _, _, _ in plan):
            packs_hadoop = (make_pack(work, "pack-hadoop", n, shards=cores),
                            make_pack(work, "pack2x-hadoop", 2 * n, shards=cores))
        for name, letter, path, kwargs in plan:
            runner = name.split("_")[0]
            small, large = packs_hadoop if runner == "hadoop" else (pack_dir, pack2_dir)
            jobs[name] = j = run_job(runner, path, small, os.path.join(work, "out-" + name), repeats=repeats,
                                     **kwargs)
            big = run_job(runner, path, large, os.path.join(work, "out2x-" + name), repeats=repeats, **kwargs)
            j["at_2n"] = {k: big[k] for k in ("images", "seconds", "img_s", "cpu_s", "task_rss_peak_mb")}
            extra = big["seconds"] - j["seconds"]
            j["marginal_img_s"] = round(n / extra, 3) if extra > 0 else None
            j["fixed_overhead_s"] = round(j["seconds"] - n / j["marginal_img_s"], 1) if extra > 0 else None
            log("(%s) %-22s %6.3f img/s (%d images in %.1f s; %.1f CPU-s = %.3f img/CPU-s; %d map tasks,"
                " task peak RSS %s MB, driver %s MB); %d images in %.1f s -> marginal %s img/s, fixed cost %s s"
                % (letter, name, j["img_s"], j["images"], j["seconds"], j["cpu_s"], j["img_per_cpu_s"],
                   j["map_tasks"], j["task_rss_peak_mb"], j["driver_rss_peak_mb"], big["images"], big["seconds"],
                   j["marginal_img_s"], j["fixed_overhead_s"]))
        if "skipped" in jobs.get("hadoop", {}):
            log("(e) hadoop standalone: SKIPPED: %s" % jobs["hadoop"]["skipped"])
        figures["jobs"] = jobs

        b = best_raw["img_s"]
        ratios = {"b/peak": round(b / figures["peak"]["ceiling_img_s"], 3)}
        for name, letter in (("inline", "c"), ("local", "d"), ("local_inline_weights", "d'"), ("hadoop", "e"),
                             ("hadoop_inline_weights", "e'")):
            j = jobs.get(name, {})
            if "img_s" in j:
                ratios["%s/b" % letter] = round(j["img_s"] / b, 3)
                if j.get("marginal_img_s"):
                    m = j["marginal_img_s"]
                    ratios["%s/b marginal" % letter] = round(m / b, 3)
                    # images a job needs before its end-to-end rate reaches 0.9 x raw:
                    # N / (fixed + N / m) = 0.9 b  ->  N = 0.9 b fixed / (1 - 0.9 b / m)
                    if m > 0.9 * b and j["fixed_overhead_s"] > 0:
                        j["images_for_0.9"] = int(math.ceil(0.9 * b * j["fixed_overhead_s"] / (1 - 0.9 * b / m)))
        # the same in CPU time (robust to other load): a job's images per CPU-second against one
        # single-threaded raw process's; what the job's overheads cost in CPU, not in waiting
        # and its marginal form: N / (CPU at 2N - CPU at N) against raw's images per CPU-second,
        # the steadiest figure this benchmark has on a busy machine
        one_thread = [r for r in raws if r["threads"] == 1]
        if one_thread:
            per_cpu = max(r["img_per_cpu_s"] for r in one_thread)
            for name in ("local", "local_inline_weights", "hadoop", "hadoop_inline_weights"):
                j = jobs.get(name, {})
                if "img_per_cpu_s" in j:
                    ratios["cpu %s/b" % name] = round(j["img_per_cpu_s"] / per_cpu, 3)
                    extra_cpu = j["at_2n"]["cpu_s"] - j["cpu_s"]
                    if extra_cpu > 0:
                        j["marginal_img_per_cpu_s"] = round(n / extra_cpu, 3)
                        j["fixed_cpu_s"] = round(j["cpu_s"] - extra_cpu, 1)
                        ratios["cpu %s/b marginal" % name] = round(n / extra_cpu / per_cpu, 3)
        figures["ratios"] = ratios
        figures["task_rss_peak_mb"] = {k: v.get("task_rss_peak_mb") for k, v in jobs.items()}

        # feature records
        vectors = _job_vectors(os.path.join(work, "out-local-%d" % (repeats - 1)), spec)  # the kept repeat
        if not vectors:
            raise RuntimeError("the local job wrote no feature records")
        figures["encoding"] = encodings(vectors[:256])
        log("encodings (bytes/record, encode/decode us):")
        for k, v in figures["encoding"].items():
            if isinstance(v, dict):
                log("  %-22s %7d B  %8.1f / %8.1f us  max err %.2g"
                    % (k, v["bytes"], v["encode_us"], v["decode_us"], v["max_abs_err"]))

        # int8
        if not args.no_int8:
            figures["int8"] = {}
            samples = 16 if quick else 64
            calib = make_pack(work, "calibration", samples, seed=1, shards=1)
            int8_settings = [(cores, 1, 8)] if quick else [(1, cores, 8), (cores, 1, 8)]
            figures["int8"]["vgg16"] = int8_study("vgg16", model, pack_dir, calib, samples, work, int8_settings,
                                                  passes, photos=photo_crops(8) if os.path.exists(PHOTO) else None)
            if os.path.exists(EFFNET):
                eff_pack = make_pack(work, "demo", max(n, 64), size=160, seed=2)
                eff_calib = make_pack(work, "demo-calibration", samples, size=160, seed=3, shards=1)
                figures["int8"]["efficientnet_lite0"] = int8_study(
                    "efficientnet-lite0", EFFNET, eff_pack, eff_calib, samples, work,
                    int8_settings, passes, photos=photo_crops() if os.path.exists(PHOTO) else None)
            else:
                figures["int8"]["efficientnet_lite0"] = {"skipped": "%s missing (run scripts/setup)" % EFFNET}
                log("int8 EfficientNet-Lite0: SKIPPED (%s missing; scripts/setup builds it)" % EFFNET)

        log("")
        log("summary: peak %.1f GFLOP/s (ceiling %.2f img/s) | raw %.2f img/s (%dx%d b%d) | inline %.2f | local %.2f"
            " | hadoop %s" % (peak["gflops"], figures["peak"]["ceiling_img_s"], b, best_raw["procs"],
                             best_raw["threads"], best_raw["batch"], jobs["inline"]["img_s"], jobs["local"]["img_s"],
                             jobs.get("hadoop", {}).get("img_s", "skipped")))
        log("ratios: " + "  ".join("%s %.3f" % kv for kv in ratios.items()))
        log("session creation %.2f s; task peak RSS: %s" % (figures["session_create_s"], figures["task_rss_peak_mb"]))
        figures["seconds"] = round(time.time() - t_start, 1)
        figures["machine"]["loadavg_end"] = os.getloadavg()
        common.emit_json(figures)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def _job_vectors(out_dir, spec):
    from mr_tl.records import FeatureRecord, parse_feature_line

    vectors = []
    for path in sorted(glob.glob(os.path.join(out_dir, "part-*"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = parse_feature_line(line, spec.output_dim)
                if isinstance(r, FeatureRecord):
                    vectors.append(r.features)
    return vectors


def tune(model, inputs, work, cores, passes, quick):
    """Session options one at a time against the job's defaults: creation time, RSS, speed."""
    external = os.path.join(work, "external", os.path.basename(model))
    if not os.path.exists(external):
        import onnx
        os.makedirs(os.path.dirname(external), exist_ok=True)
        m = onnx.load(model)
        onnx.save(m, external, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=os.path.basename(external) + ".data")
        del m
    variants = [
        ("default", model, {}),
        ("opt=extended", model, {"opt": "extended"}),
        ("opt=basic", model, {"opt": "basic"}),
        ("no prepacking", model, {"config": {"session.disable_prepacking": "1"}}),
        ("no arena", model, {"arena": 0}),
        ("no spinning", model, {"config": {"session.intra_op.allow_spinning": "0"}}),
        ("external data", external, {}),
        ("external data, no prepacking", external, {"config": {"session.disable_prepacking": "1"}}),
    ]
    out = []
    # one process x one thread: its images per CPU-second compare the variants even on a busy
    # machine; then the job's two layouts (one task with every core, a task per core)
    for procs, threads in ((1, 1), (1, cores), (cores, 1)):
        for name, path, options in variants:
            if threads == 1 and name == "no spinning":
                continue  # single-threaded sessions never spin (session_options sets it)
            if (procs, threads) != (1, 1) and name in ("opt=extended", "opt=basic", "no arena"):
                continue
            r = raw(path, inputs, procs, threads, 8, passes, options=options, limit=16 if quick else None,
                    work=work)
            r["variant"] = name
            out.append({k: r[k] for k in ("variant", "procs", "threads", "batch", "img_s", "img_per_cpu_s",
                                          "create_s", "rss_after_create_mb", "rss_peak_mb")})
            log("tune %-30s %dx%d: %6.3f img/s (%.3f img/CPU-s), create %5.2f s, RSS after create %6.0f MB,"
                " peak %6.0f MB" % (name, procs, threads, r["img_s"], r["img_per_cpu_s"], r["create_s"],
                                    r["rss_after_create_mb"], r["rss_peak_mb"]))
    return out


if __name__ == "__main__":
    main()
