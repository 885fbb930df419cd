"""Helpers of the monitor tests (imported by tests/monitor/conftest.py and the test files)."""

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import numpy as np
from feature_folders import write_feature_folder

from mr_tl.monitor import make_server
from mr_tl.records import FeatureRecord

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLASSES = ("cat", "dog", "bird")


def write_features(folder, n_train=96, n_val=24, n_test=24, dim=16, classes=CLASSES, seed=0):
    """Featurize-like output: ``part-00000`` of F records (separable blobs) and the side files."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(classes), dim)) * 2
    records = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for i in range(n):
            y = i % len(classes)
            x = (centers[y] + rng.normal(size=dim)).astype("<f4")
            records.append(FeatureRecord("%s/%s_%04d.jpg" % (classes[y], split, i), y, split, x))
    return write_feature_folder(folder, records, list(classes), parts=1)


def run_train(features, run_dir, *args, timeout=300):
    """``python -m mr_tl.train -r inline FEATURES -o RUN_DIR --workers 2 ...ARGS`` (must succeed)."""
    cmd = [sys.executable, "-m", "mr_tl.train", "-r", "inline", str(features), "-o", str(run_dir),
           "--workers", "2", "--batch-size", "8", *[str(a) for a in args]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "train failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    return r


def metrics_points(run_dir):
    """Loss points in RUN_DIR/metrics.jsonl: the sum of len(losses) over its (complete) lines."""
    from mr_tl.run_dir import RunDir

    return sum(len(m.get("losses") or []) for m in RunDir(str(run_dir)).read_metrics())


@contextlib.contextmanager
def serving(root):
    server = make_server(str(root), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def http_request(base, path, method="GET", headers=None):
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(base, path, headers=None):
    status, hdrs, body = http_request(base, path, headers=headers)
    assert status == 200, (path, status, body[:300])

    def no_nan(text):
        raise AssertionError("the API sent %s, which JavaScript's JSON.parse rejects" % text)

    return json.loads(body, parse_constant=no_nan), hdrs


# -- run directories written by hand (for the API and page edge cases) -----------------------------


def fake_config(rounds=10, averaging_frequency=2, workers=2):
    return {
        "training": {"seed": 42, "workers": workers, "averaging_frequency": averaging_frequency, "batch_size": 8,
                     "lr": 0.01, "momentum": 0.8, "l2": 0.0, "outer_optimizer": "average", "block_momentum": 0.0,
                     "block_lr": 1.0},
        "epochs": 5, "tasks": workers, "rounds_per_epoch": rounds // 5, "rounds": rounds, "validate_every": 2,
        "early_stopping": 0, "runner": "inline", "mr_tl_version": "0.1.0",
        "features": {"inputs": ["features"], "fingerprint": "ab" * 32, "dim": 16, "classes": 3,
                     "train_examples": 96, "val_examples": 24, "test_examples": 24},
        "worker_examples": [48, 48],
    }


def fake_record(r, per_round=2):
    losses = [2.0 / (1 + (r - 1) * per_round + k) for k in range(per_round)]
    record = {"round": r, "epoch": (r + 1) // 2, "iteration": r * per_round, "losses": losses,
              "loss": sum(losses) / len(losses), "examples": 32, "seconds": 0.5 + 0.1 * r}
    if r % 2 == 0:
        record.update(val_accuracy=0.5 + 0.04 * r, val_loss=1.0 / r, train_accuracy=0.55 + 0.04 * r, train_loss=0.9 / r)
    return record


def line(record):
    return json.dumps(record, sort_keys=True) + "\n"


def fake_run(path, rounds=3, config=None):
    """A run directory written by hand: config.json, labels.json and ``rounds`` metric lines."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config or fake_config(), f)
    with open(os.path.join(path, "labels.json"), "w") as f:
        json.dump({"format": "mr_tl.labels/1", "classes": ["cat", "dog", "bird"]}, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(line(fake_record(r)) for r in range(1, rounds + 1))
    return str(path)
