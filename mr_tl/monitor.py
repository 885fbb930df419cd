"""python -m mr_tl.monitor RUN_DIR: the live training monitor, in a web browser (no JVM, no internet).

    python -m mr_tl.monitor runs/demo              # one run (a folder with config.json)
    python -m mr_tl.monitor runs/                  # every run directory in runs/, side by side
    python -m mr_tl.monitor runs/ --port 9001      # then open http://127.0.0.1:9001/

Like the Deeplearning4j training UI: the page shows the loss vs iteration
(every minibatch, raw and smoothed), train and validation accuracy at each
validation round, seconds per round and the ETA, the run's configuration
and, once ``python -m mr_tl.evaluate`` has run, its evaluation (metrics and
the confusion matrix).  Given a folder of runs, it overlays their loss
curves and compares their hyperparameters and metrics in one table.

The page updates itself while ``python -m mr_tl.train`` writes to the run
directory (and keeps working after it ends): it polls a small JSON API
every second and appends only the new rounds.  Charts are plain SVG drawn
by the page's own script; nothing is loaded from the network.

By default the server listens on 127.0.0.1 only, so only this machine can
see the page (use ``ssh -L 9000:127.0.0.1:9000 HOST`` to watch a remote
run); ``--host 0.0.0.0`` serves every network interface, without any
authentication.  It serves only the files under RUN_DIR and its own page,
read-only (GET and HEAD).

JSON API (all GET, with ETags: send If-None-Match to get 304 when nothing changed)::

    /api/runs                        mode (single|multi), and a summary of every run
    /api/run/NAME?after=R&points=P   one run: config, labels, status, evaluation, and
                                     the rounds after round R (the loss points after
                                     the client's P points); "reset": true when the
                                     client must drop what it has (the run restarted)
    /files/PATH                      a file under RUN_DIR (e.g. files/metrics.jsonl)
"""

import argparse
import csv
import errno
import hashlib
import ipaddress
import json
import math
import mimetypes
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from mr_tl.cli import fail, run_command
from mr_tl.plots import loss_series, smooth
from mr_tl.run_dir import RunDir

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitor_static")
RECENT_ROUNDS = 10          # s/round for the ETA: mean of the last 10 rounds, as the train driver prints it
STALL_SECONDS = 120         # "stalled" after max(this, 5 x s/round) without a write to the run
STARTUP_SECONDS = 600       # ... or after this long without a first round (a cluster's first job starts slowly)
MAX_EVALUATION_CLASSES = 1000
# the page: its own script and style, data from this server only (so nothing from the network)
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# HTML/SVG files under RUN_DIR (e.g. mr_tl.report's index.html): shown, but never run as scripts
RUN_FILE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'none'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


# -- reading a run --------------------------------------------------------------------------------


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _without_losses(record):
    """A metrics line without its per-minibatch losses (they travel as points), its candidates' too."""
    out = {k: v for k, v in record.items() if k != "losses"}
    if isinstance(out.get("candidates"), list):
        out["candidates"] = [{k: v for k, v in c.items() if k != "losses"} if isinstance(c, dict) else c
                             for c in out["candidates"]]
    return out


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _finite(obj):
    """``obj`` with every NaN/inf replaced by None, so that it encodes as strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def clean_record(record):
    """A metrics record fit to plot, or None for one that is not (skipped like a malformed line)."""
    if not isinstance(record, dict) or not _is_int(record.get("round")) or not _is_int(record.get("iteration")):
        return None
    losses = record.get("losses")
    if losses is None:
        losses = []
    if not isinstance(losses, list) or not all(_is_number(x) for x in losses):
        return None
    out = _finite(record)
    out["losses"] = [float(x) for x in losses]
    return out


def _stat_key(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _read_json_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def read_confusion(path):
    """``{"classes", "matrix"}`` of an evaluation's confusion.csv, or None if absent or malformed."""
    try:
        rows = _read_csv(path)
        classes = rows[0][1:]
        matrix = [[int(x) for x in row[1:]] for row in rows[1:]]
    except (OSError, ValueError, IndexError, csv.Error):
        return None
    if not classes or len(matrix) != len(classes) or any(len(r) != len(classes) for r in matrix):
        return None
    return {"classes": classes, "matrix": matrix}


def read_per_class(path):
    """Rows of an evaluation's per_class.csv as dicts, or None."""
    try:
        rows = _read_csv(path)
        header = rows[0]
        out = []
        for row in rows[1:]:
            item = dict(zip(header, row))
            for key in ("precision", "recall", "f1"):
                item[key] = float(item[key])
            for key in ("label", "support"):
                item[key] = int(item[key])
            out.append(_finite(item))
    except (OSError, ValueError, IndexError, KeyError, csv.Error):
        return None
    return out


def read_evaluation(run_path):
    """``{split: {"metrics", "confusion", "per_class"}}`` of RUN_DIR/evaluation; incomplete files are left out."""
    root = os.path.join(run_path, "evaluation")
    out = {}
    try:
        splits = sorted(os.listdir(root))
    except OSError:
        return out
    for split in splits:
        if split.startswith("."):   # an evaluation still being written (mr_tl.evaluation.write_report)
            continue
        folder = os.path.join(root, split)
        metrics = _read_json_file(os.path.join(folder, "metrics.json"))
        if not isinstance(metrics, dict):
            continue
        entry = {"metrics": _finite(metrics)}
        confusion = read_confusion(os.path.join(folder, "confusion.csv"))
        if confusion and len(confusion["classes"]) <= MAX_EVALUATION_CLASSES:
            entry["confusion"] = confusion
        per_class = read_per_class(os.path.join(folder, "per_class.csv"))
        if per_class is not None:
            entry["per_class"] = per_class
        out[split] = entry
    return out


def _evaluation_key(run_path):
    root = os.path.join(run_path, "evaluation")
    try:
        splits = sorted(os.listdir(root))
    except OSError:
        return ()
    return tuple((s, tuple(_stat_key(os.path.join(root, s, n)) for n in ("metrics.json", "confusion.csv",
                                                                          "per_class.csv"))) for s in splits)


class Series:
    """What the monitor derives from one metrics.jsonl: the records and the loss points."""

    def __init__(self, records):
        self.records = records
        self.iteration, self.loss = loss_series(records)
        self.smoothed = smooth(self.loss)
        self.time = []                   # training seconds (sum of round times) at each point
        self.ends = []                   # number of points up to and including each record
        elapsed = 0.0
        for r in records:
            n = len(r["losses"])
            seconds = r.get("seconds") if _is_number(r.get("seconds")) else 0.0
            self.time.extend(round(elapsed + seconds * (k + 1) / n, 3) for k in range(n))
            elapsed += seconds
            self.ends.append(len(self.time))
        self.elapsed = elapsed


class Monitor:
    """Finds the runs under ``root`` and answers the API; caches parsed files by their stat."""

    def __init__(self, root, clock=time.time):
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(root)
        self.clock = clock
        self._lock = threading.Lock()
        self._cache = {}

    # -- which runs ---------------------------------------------------------------------------

    def runs(self):
        """``(mode, [(name, path)])``: ROOT itself if it is a run, else its sub-folders that are."""
        if os.path.isfile(os.path.join(self.root, "config.json")):
            return "single", [(os.path.basename(self.root.rstrip(os.sep)) or "run", self.root)]
        found = []
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if not self.inside(entry.path) or not os.path.isfile(os.path.join(entry.path, "config.json")):
                continue
            found.append((entry.name, entry.path))
        return "multi", found

    def find(self, name):
        mode, runs = self.runs()
        for run_name, path in runs:
            if run_name == name:
                return mode, path
        return mode, None

    def inside(self, path):
        """True if ``path``, symlinks resolved, is ROOT or under it."""
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    # -- cached reading ---------------------------------------------------------------------------

    def _cached(self, key, signature, compute):
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == signature:
            return hit[1]
        value = compute()
        with self._lock:
            self._cache[key] = (signature, value)
        return value

    def series(self, path):
        metrics = os.path.join(path, "metrics.jsonl")

        def compute():
            records = [r for r in map(clean_record, RunDir(path).read_metrics()) if r is not None]
            return Series(records)

        # the stat is taken before reading, so the cached content is never older than its key
        return self._cached(("series", path), _stat_key(metrics), compute)

    def config(self, path):
        name = os.path.join(path, "config.json")
        value = self._cached(("config", path), _stat_key(name), lambda: _read_json_file(name))
        return value if isinstance(value, dict) else {}

    def labels(self, path):
        name = os.path.join(path, "labels.json")
        value = self._cached(("labels", path), _stat_key(name), lambda: _read_json_file(name))
        classes = value.get("classes") if isinstance(value, dict) else None
        return [str(c) for c in classes] if isinstance(classes, list) else []

    def evaluation(self, path):
        return self._cached(("evaluation", path), _evaluation_key(path), lambda: read_evaluation(path))

    # -- status -----------------------------------------------------------------------------------

    def status(self, path, config, series):
        records = series.records
        last = records[-1] if records else {}
        rounds_total = config.get("rounds") if _is_int(config.get("rounds")) else None
        rounds_done = last.get("round", 0)
        recent = [r["seconds"] for r in records[-RECENT_ROUNDS:] if _is_number(r.get("seconds"))]
        per_round = sum(recent) / len(recent) if recent else None
        written = [t for t in (_mtime(os.path.join(path, "metrics.jsonl")), _mtime(os.path.join(path, "config.json")))
                   if t is not None]
        updated = max(written) if written else None
        head = _mtime(os.path.join(path, "head.npz"))
        if head is not None and (updated is None or head >= updated):
            state = "finished"
        elif updated is not None and self.clock() - updated > (max(STALL_SECONDS, 5 * per_round) if per_round
                                                             else STARTUP_SECONDS):
            state = "stalled"
        elif not records:
            state = "starting"
        else:
            state = "running"
        left = max(0, rounds_total - rounds_done) if rounds_total is not None and state != "finished" else 0
        return {
            "state": state,
            "round": rounds_done,
            "rounds": rounds_total,
            "epoch": last.get("epoch", 0),
            "epochs": config.get("epochs"),
            "iteration": last.get("iteration", 0),
            "points": len(series.loss),
            "seconds_per_round": per_round,
            "recent_rounds": RECENT_ROUNDS,   # the rounds averaged into seconds_per_round
            "eta_seconds": left * per_round if per_round is not None else None,
            "rounds_left": left,
            "elapsed_seconds": series.elapsed,
            "updated": updated,
        }

    # -- API answers ------------------------------------------------------------------------------

    @staticmethod
    def _latest(series):
        out = {"loss": None, "smoothed_loss": series.smoothed[-1] if series.smoothed else None,
               "val_accuracy": None, "val_loss": None, "train_accuracy": None, "train_loss": None,
               "validation_round": None, "best_val_accuracy": None, "best_val_round": None}
        if series.records:
            out["loss"] = series.records[-1].get("loss")
        for r in series.records:
            if _is_number(r.get("val_accuracy")):
                out.update(val_accuracy=r["val_accuracy"], val_loss=r.get("val_loss"),
                           train_accuracy=r.get("train_accuracy"), train_loss=r.get("train_loss"),
                           validation_round=r["round"])
                if out["best_val_accuracy"] is None or r["val_accuracy"] > out["best_val_accuracy"]:
                    out.update(best_val_accuracy=r["val_accuracy"], best_val_round=r["round"])
        return out

    def _files_prefix(self, mode, name):
        return "files/" if mode == "single" else "files/%s/" % name

    def _files(self, path, evaluation):
        names = [n for n in ("config.json", "labels.json", "metrics.jsonl", "head.npz", "report/index.html")
                 if os.path.isfile(os.path.join(path, n))]
        for split in evaluation:
            names += ["evaluation/%s/%s" % (split, n) for n in ("metrics.json", "per_class.csv", "confusion.csv")
                      if os.path.isfile(os.path.join(path, "evaluation", split, n))]
        return names

    def summary(self, mode, name, path):
        config = self.config(path)
        series = self.series(path)
        evaluation = self.evaluation(path)
        status = self.status(path, config, series)
        version = hashlib.sha1(repr((_stat_key(os.path.join(path, "metrics.jsonl")),
                                     _stat_key(os.path.join(path, "config.json")),
                                     _stat_key(os.path.join(path, "head.npz")),
                                     _evaluation_key(path), status["state"])).encode()).hexdigest()[:16]
        return {
            "name": name,
            "version": version,
            "files": self._files_prefix(mode, name),
            "config": _finite(config),
            "status": status,
            "latest": _finite(self._latest(series)),
            "evaluation": {split: e["metrics"] for split, e in evaluation.items()},
        }

    def api_runs(self):
        mode, runs = self.runs()
        return {"root": self.root, "mode": mode, "runs": [self.summary(mode, n, p) for n, p in runs]}

    def api_run(self, mode, name, path, after=0, points=None):
        """One run; the rounds after round ``after`` (the client holds ``points`` loss points)."""
        config = self.config(path)
        series = self.series(path)
        evaluation = self.evaluation(path)
        records = series.records
        start = 0                        # index of the first record to send
        reset = False
        if after > 0:
            held = [i for i, r in enumerate(records) if r["round"] == after]
            if not held:
                reset = True             # the client's last round is gone: the run was restarted/rewound
            else:
                start = held[-1] + 1
                if points is not None and series.ends[held[-1]] != points:
                    reset, start = True, 0
        if reset:
            start = 0
        first_point = series.ends[start - 1] if start > 0 else 0
        sent = records[start:]
        return {
            "name": name,
            "after": after,
            "reset": reset,
            "cursor": records[-1]["round"] if records else 0,
            "files": self._files_prefix(mode, name),
            "file_list": self._files(path, evaluation),
            "config": _finite(config),
            "labels": self.labels(path),
            "status": self.status(path, config, series),
            "latest": _finite(self._latest(series)),
            "rounds": [_without_losses(r) for r in sent],
            "first_point": first_point,
            "points": {
                "iteration": series.iteration[first_point:],
                "loss": series.loss[first_point:],
                "smoothed": series.smoothed[first_point:],
                "time": series.time[first_point:],
            },
            "total_points": len(series.loss),
            "evaluation": evaluation,
        }


# -- HTTP ---------------------------------------------------------------------------------------


class BadPath(Exception):
    """A request path that is rejected (traversal, absolute, encoded separators, ...)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def safe_relative(raw):
    """The path segments of a percent-encoded relative path, or BadPath.

    Rejected: empty, absolute, ``.``/``..`` segments (also when encoded, ``%2e%2e``),
    backslashes, NUL, encoded slashes, and segments that are drive letters.
    """
    if not raw:
        raise BadPath(404, "no file named")
    if "\\" in raw or "\0" in raw:
        raise BadPath(400, "bad character in path")
    segments = []
    for part in raw.split("/"):
        try:
            segment = unquote(part, errors="strict")
        except UnicodeDecodeError:
            raise BadPath(400, "path is not UTF-8") from None
        if segment in ("", ".", "..") or any(c in segment for c in "/\\\0") or \
                (len(segment) == 2 and segment[1] == ":"):
            raise BadPath(400, "path must be relative, without '.' or '..' segments")
        segments.append(segment)
    return segments


def _loopback(host):
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class Handler(BaseHTTPRequestHandler):
    server_version = "mr_tl-monitor"
    protocol_version = "HTTP/1.1"
    monitor = None               # set on the subclass made by make_server
    verbose = False
    check_host = True

    # -- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format, *args):
        if self.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def _send(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=(), head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if not head and body and status != 304:
            self.wfile.write(body)

    def _error(self, status, message, head=False):
        body = json.dumps({"error": message, "status": status}).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", head=head)

    def _json(self, obj, head=False):
        body = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        etag = '"%s"' % hashlib.sha1(body).hexdigest()[:24]
        headers = [("ETag", etag), ("Cache-Control", "no-cache")]
        if etag in [t.strip() for t in (self.headers.get("If-None-Match") or "").split(",")]:
            self.send_response(304)
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            return
        self._send(200, body, "application/json; charset=utf-8", headers, head=head)

    def _file(self, path, head=False, csp=None):
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith((".jsonl", ".sha256", ".tsv", ".log")):
            ctype = "text/plain"
        if ctype.startswith("text/") or ctype in ("application/json", "application/javascript", "image/svg+xml"):
            ctype += "; charset=utf-8"
        try:
            f = open(path, "rb")
        except OSError:
            self._error(404, "not found", head)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-cache")
            if csp:
                self.send_header("Content-Security-Policy", csp)
            self.end_headers()
            if not head:
                shutil.copyfileobj(f, self.wfile, 1 << 16)

    def _host_ok(self):
        """Served on loopback, answer only requests naming a loopback host (no DNS rebinding)."""
        if not self.check_host:
            return True
        host = (self.headers.get("Host") or "").strip()
        if not host:
            return True
        if host.startswith("["):
            name = host[1:host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return _loopback(name)

    # -- methods --------------------------------------------------------------------------------

    def do_GET(self):
        self._route(head=False)

    def do_HEAD(self):
        self._route(head=True)

    def _not_allowed(self):
        body = b'{"error":"only GET and HEAD","status":405}'
        self._send(405, body, "application/json; charset=utf-8", [("Allow", "GET, HEAD")])

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = do_PROPFIND = _not_allowed

    def _route(self, head):
        try:
            if not self._host_ok():
                self._error(403, "Host %r not allowed: this monitor serves loopback only (see --host)"
                            % self.headers.get("Host"), head)
                return
            raw = self.path
            if not raw.startswith("/") or raw.startswith("//"):
                self._error(400, "bad request path", head)
                return
            parts = urlsplit(raw)
            path, query = parts.path, parse_qs(parts.query)
            if path in ("/", "/index.html"):
                self._file(os.path.join(STATIC_DIR, "index.html"), head, csp=PAGE_CSP)
            elif path.startswith("/static/"):
                self._static(path[len("/static/"):], head)
            elif path == "/api/runs":
                self._json(self.monitor.api_runs(), head)
            elif path.startswith("/api/run/"):
                self._api_run(path[len("/api/run/"):], query, head)
            elif path.startswith("/files/"):
                self._run_file(path[len("/files/"):], head)
            elif path == "/favicon.ico":
                self._file(os.path.join(STATIC_DIR, "favicon.svg"), head)
            else:
                self._error(404, "not found", head)
        except BadPath as e:
            self._error(e.status, str(e), head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the monitor
            traceback.print_exc()
            try:
                self._error(500, "internal error: %s" % e, head)
            except OSError:
                pass

    def _static(self, raw, head):
        segments = safe_relative(raw)
        if len(segments) != 1 or segments[0].startswith(".") or segments[0] not in os.listdir(STATIC_DIR):
            raise BadPath(404, "no such asset")
        self._file(os.path.join(STATIC_DIR, segments[0]), head, csp=PAGE_CSP)

    def _api_run(self, raw, query, head):
        segments = safe_relative(raw)
        if len(segments) != 1:
            raise BadPath(404, "no such run")
        mode, path = self.monitor.find(segments[0])
        if path is None:
            raise BadPath(404, "no run named %r in %s" % (segments[0], self.monitor.root))

        def number(key):
            values = query.get(key)
            if not values:
                return None
            try:
                value = int(values[-1])
            except ValueError:
                raise BadPath(400, "%s must be a whole number" % key) from None
            if value < 0:
                raise BadPath(400, "%s must not be negative" % key)
            return value

        self._json(self.monitor.api_run(mode, segments[0], path, after=number("after") or 0,
                                        points=number("points")), head)

    def _run_file(self, raw, head):
        segments = safe_relative(raw)
        path = os.path.join(self.monitor.root, *segments)
        if not self.monitor.inside(path):
            raise BadPath(403, "outside the run directory")
        if not os.path.isfile(path):
            raise BadPath(404, "not found")
        self._file(path, head, csp=RUN_FILE_CSP)


class MonitorServer(ThreadingHTTPServer):
    daemon_threads = True


class MonitorServer6(MonitorServer):
    address_family = socket.AF_INET6


def make_server(root, host="127.0.0.1", port=9000, verbose=False):
    """A MonitorServer for ``root`` (not yet serving); raises OSError if the port cannot be bound."""
    monitor = Monitor(root)
    handler = type("MonitorHandler", (Handler,), {"monitor": monitor, "verbose": verbose,
                                                  "check_host": _loopback(host)})
    cls = MonitorServer6 if ":" in host else MonitorServer
    server = cls((host, port), handler)
    server.monitor = monitor
    return server


def url_of(server, host):
    port = server.server_address[1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    return "http://%s:%d/" % ("[%s]" % shown if ":" in shown else shown, port)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.monitor", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory (train -o), or a folder of run directories to compare")
    p.add_argument("--port", type=int, default=9000, help="TCP port (default 9000; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = every "
                        "network interface, with no authentication)")
    p.add_argument("--open", action="store_true", help="also open the page in the default web browser")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    run_command(serve, args)


def serve(args):
    if not os.path.exists(args.run_dir):
        fail("%s does not exist; give a run directory (python -m mr_tl.train ... -o RUN_DIR) "
             "or a folder of run directories" % args.run_dir)
    if not os.path.isdir(args.run_dir):
        fail("%s is not a folder; give a run directory or a folder of run directories" % args.run_dir)
    try:
        server = make_server(args.run_dir, args.host, args.port, args.verbose)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fail("port %d on %s is already in use (another monitor?); choose another one with --port N "
                 "(or --port 0 for any free port)" % (args.port, args.host))
        if e.errno == errno.EACCES:
            fail("no permission to listen on port %d; use --port with a number above 1023" % args.port)
        fail("cannot listen on %s port %d: %s (check --host)" % (args.host, args.port, e.strerror or e))
    mode, runs = server.monitor.runs()
    what = "one run" if mode == "single" else "a folder of %d run%s" % (len(runs), "" if len(runs) == 1 else "s")
    url = url_of(server, args.host)
    where = "" if _loopback(args.host) else " (listening on %s: other machines can see it too)" % (args.host or "*")
    print("mr_tl monitor: %s (%s) at %s%s  (Ctrl-C to stop)" % (os.path.abspath(args.run_dir), what, url, where),
          flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    # Ctrl-C and kill stop the server cleanly, also when the monitor was started in the background
    # (a shell starts background jobs with SIGINT ignored, and Python keeps that)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


def _stop(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main(sys.argv[1:])
