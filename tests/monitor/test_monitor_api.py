"""The monitor's HTTP server and JSON API, without a browser."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from monitor_helpers import fake_config, fake_record, fake_run, get_json, line, metrics_points

from mr_tl.monitor import BadPath, Monitor, clean_record, safe_relative
from mr_tl.plots import loss_series, smooth
from mr_tl.run_dir import RunDir

SECRET = "TOPSECRET-must-not-be-served"


@pytest.fixture(scope="module")
def features(tmp_path_factory, make_features):
    return make_features(str(tmp_path_factory.mktemp("monitor-features") / "features"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, features, train):
    """A finished real run (inline runner, 2 epochs), evaluated on the test split. Read-only."""
    run = str(tmp_path_factory.mktemp("monitor-trained") / "run")
    train(features, run, "--epochs", "2", "--averaging-frequency", "2", "--validate-every", "2")
    r = subprocess.run([sys.executable, "-m", "mr_tl.evaluate", "-r", "inline", "-q", "--run", run, features,
                        "--split", "test"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return run


# -- one run ------------------------------------------------------------------------------------


def test_single_run_series_is_the_reports(trained, serve):
    """The API's points are mr_tl.plots.loss_series/smooth of the run's metrics, one per minibatch."""
    metrics = RunDir(trained).read_metrics()
    xs, ys = loss_series(metrics)
    with serve(trained) as base:
        runs, _ = get_json(base, "/api/runs")
        assert runs["mode"] == "single"
        assert [r["name"] for r in runs["runs"]] == ["run"]
        summary = runs["runs"][0]
        assert summary["status"]["state"] == "finished"
        assert summary["status"]["round"] == summary["config"]["rounds"] == len(metrics)
        run, _ = get_json(base, "/api/run/run")
    assert run["total_points"] == len(xs) == metrics_points(trained) == sum(len(m["losses"]) for m in metrics)
    assert run["points"]["iteration"] == xs
    assert run["points"]["loss"] == ys
    assert run["points"]["smoothed"] == pytest.approx(smooth(ys))
    assert [r["round"] for r in run["rounds"]] == [m["round"] for m in metrics]
    assert run["config"]["training"]["averaging_frequency"] == 2
    assert run["labels"] == ["cat", "dog", "bird"]
    assert run["status"]["eta_seconds"] == 0 and run["status"]["rounds_left"] == 0
    assert "metrics.jsonl" in run["file_list"] and "head.npz" in run["file_list"]


def test_evaluation_included_when_present(trained, serve, tmp_path):
    with serve(trained) as base:
        run, _ = get_json(base, "/api/run/run")
        listing, _ = get_json(base, "/api/runs")
    test = run["evaluation"]["test"]
    with open(os.path.join(trained, "evaluation", "test", "metrics.json")) as f:
        assert test["metrics"] == json.load(f)
    conf = test["confusion"]
    assert conf["classes"] == ["cat", "dog", "bird"]
    assert sum(map(sum, conf["matrix"])) == test["metrics"]["examples"] == 24
    assert [c["class"] for c in test["per_class"]] == ["cat", "dog", "bird"]
    assert listing["runs"][0]["evaluation"]["test"]["accuracy"] == test["metrics"]["accuracy"]

    # without evaluation: no key; a half-written evaluation (another split) is left out, not an error
    bare = str(tmp_path / "bare")
    shutil.copytree(trained, bare)
    shutil.rmtree(os.path.join(bare, "evaluation"))
    with serve(bare) as base:
        assert get_json(base, "/api/run/bare")[0]["evaluation"] == {}
        os.makedirs(os.path.join(bare, "evaluation", "val"))
        with open(os.path.join(bare, "evaluation", "val", "metrics.json"), "w") as f:
            f.write('{"accuracy": 0.9, "exam')
        assert get_json(base, "/api/run/bare")[0]["evaluation"] == {}
        with open(os.path.join(bare, "evaluation", "val", "metrics.json"), "w") as f:
            f.write('{"accuracy": 0.9, "examples": 24, "split": "val"}')
        assert get_json(base, "/api/run/bare")[0]["evaluation"]["val"]["metrics"]["accuracy"] == 0.9


def test_incremental_cursor_etag_and_reset(tmp_path, serve, http):
    run = fake_run(str(tmp_path / "r"), rounds=3)
    with serve(run) as base:
        first, hdrs = get_json(base, "/api/run/r")
        assert first["cursor"] == 3 and first["total_points"] == 6 and len(first["points"]["loss"]) == 6
        assert first["status"]["state"] == "running"
        # nothing new: the same URL with its ETag is a 304 without a body
        path = "/api/run/r?after=3&points=6"
        again, hdrs = get_json(base, path)
        assert again["rounds"] == [] and again["points"]["loss"] == [] and again["first_point"] == 6
        status, h304, body = http(base, path, headers={"If-None-Match": hdrs["etag"]})
        assert status == 304 and body == b"" and h304["etag"] == hdrs["etag"]
        # a new round: only it is sent, and the ETag changes
        with open(os.path.join(run, "metrics.jsonl"), "a") as f:
            f.write(line(fake_record(4)))
        status, _, body = http(base, path, headers={"If-None-Match": hdrs["etag"]})
        assert status == 200
        new = json.loads(body)
        assert [r["round"] for r in new["rounds"]] == [4] and new["first_point"] == 6
        assert new["points"]["iteration"] == [7, 8] and new["cursor"] == 4 and not new["reset"]
        assert new["rounds"][0]["val_accuracy"] == fake_record(4)["val_accuracy"]
        assert "losses" not in new["rounds"][0]  # sent once, as points
        xs, ys = loss_series([fake_record(r) for r in range(1, 5)])
        assert new["points"]["smoothed"] == pytest.approx(smooth(ys)[6:])
        # the run restarted (metrics rewritten shorter): the client is told to start over
        RunDir(run).rewrite_metrics([fake_record(1)])
        reset, _ = get_json(base, "/api/run/r?after=4&points=8")
        assert reset["reset"] and reset["first_point"] == 0 and reset["total_points"] == 2
        # same round count but other points than the client holds: reset as well
        assert get_json(base, "/api/run/r?after=1&points=5")[0]["reset"]
        assert not get_json(base, "/api/run/r?after=1&points=2")[0]["reset"]
        for bad in ("after=-1", "after=x", "points=1.5"):
            assert http(base, "/api/run/r?" + bad)[0] == 400


def test_malformed_and_half_written_lines_are_skipped(tmp_path, serve, http):
    run = fake_run(str(tmp_path / "r"), rounds=2)
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write("this is not json\n")
        f.write("[1, 2, 3]\n")
        f.write('{"no_round": 1}\n')
        f.write('{"round": "3", "iteration": 6, "losses": [1.0]}\n')          # round not a number
        f.write('{"round": 3, "losses": [1.0]}\n')                            # no iteration
        f.write('{"round": 3, "iteration": 6, "losses": [NaN, 1.0]}\n')       # NaN loss
        f.write('{"round": 3, "iteration": 6, "losses": "1.0"}\n')            # losses not a list
        f.write("\n")
        f.write(line(dict(fake_record(3), val_accuracy=float("nan"))))       # a NaN metric is sent as null
        f.write(line(fake_record(4))[:37])                                    # half-written (driver mid-append)
    with serve(run) as base:
        data, _ = get_json(base, "/api/run/r")   # strict JSON: no NaN in the answer
        assert [r["round"] for r in data["rounds"]] == [1, 2, 3]
        assert data["rounds"][2]["val_accuracy"] is None
        assert data["total_points"] == 6
        listing, _ = get_json(base, "/api/runs")
        assert listing["runs"][0]["status"]["round"] == 3
        # the driver finishes its line: the round shows up
        with open(os.path.join(run, "metrics.jsonl"), "a") as f:
            f.write(line(fake_record(4))[37:])
        more, _ = get_json(base, "/api/run/r?after=3&points=6")
        assert [r["round"] for r in more["rounds"]] == [4] and more["total_points"] == 8
        # a metrics file that is gone (rewritten) or empty is no error either
        os.unlink(os.path.join(run, "metrics.jsonl"))
        empty, _ = get_json(base, "/api/run/r")
        assert empty["rounds"] == [] and empty["status"]["state"] in ("starting", "running")
        with open(os.path.join(run, "config.json"), "w") as f:
            f.write('{"training": {"wor')                                    # half-written config
        assert http(base, "/api/runs")[0] == 200 and http(base, "/api/run/r")[0] == 200


def test_clean_record():
    assert clean_record({"round": 1, "iteration": 2}) == {"round": 1, "iteration": 2, "losses": []}
    assert clean_record({"round": True, "iteration": 2}) is None
    assert clean_record({"round": 1, "iteration": 2, "losses": [1, float("inf")]}) is None
    assert clean_record({"round": 1, "iteration": 2, "loss": float("inf")})["loss"] is None


# -- several runs -----------------------------------------------------------------------------------


def test_multi_run_listing(tmp_path, serve, http):
    root = tmp_path / "runs"
    fake_run(str(root / "freq2"), rounds=4, config=fake_config(averaging_frequency=2))
    fake_run(str(root / "freq5"), rounds=2, config=fake_config(averaging_frequency=5, workers=4))
    os.makedirs(root / "notes")                                   # not a run: no config.json
    (root / "README.txt").write_text("hello")
    fake_run(str(root / ".hidden"), rounds=1)
    outside = fake_run(str(tmp_path / "elsewhere"), rounds=1)     # a run outside ROOT, linked in
    os.symlink(outside, root / "linked")
    with serve(root) as base:
        listing, _ = get_json(base, "/api/runs")
        assert listing["mode"] == "multi"
        assert [r["name"] for r in listing["runs"]] == ["freq2", "freq5"]
        by_name = {r["name"]: r for r in listing["runs"]}
        assert by_name["freq2"]["config"]["training"]["averaging_frequency"] == 2
        assert by_name["freq5"]["config"]["training"]["workers"] == 4
        assert by_name["freq2"]["status"]["round"] == 4 and by_name["freq5"]["status"]["round"] == 2
        assert by_name["freq2"]["latest"]["best_val_accuracy"] == fake_record(4)["val_accuracy"]
        assert by_name["freq2"]["files"] == "files/freq2/"
        assert by_name["freq2"]["status"]["eta_seconds"] == pytest.approx(6 * (0.6 + 0.7 + 0.8 + 0.9) / 4)
        one, _ = get_json(base, "/api/run/freq5")
        assert one["total_points"] == 4 and one["files"] == "files/freq5/"
        assert http(base, "/files/freq2/config.json")[0] == 200
        for name in ("notes", "linked", ".hidden", "elsewhere"):
            assert http(base, "/api/run/" + name)[0] == 404
        # a run that starts later appears on the next poll
        fake_run(str(root / "freq10"), rounds=1, config=fake_config(averaging_frequency=10))
        listing, _ = get_json(base, "/api/runs")
        assert [r["name"] for r in listing["runs"]] == ["freq10", "freq2", "freq5"]


def test_status_finished_running_stalled(tmp_path):
    run = fake_run(str(tmp_path / "r"), rounds=3)
    monitor = Monitor(str(tmp_path / "r"))
    status = monitor.api_run("single", "r", run)["status"]
    assert status["state"] == "running"
    assert status["rounds_left"] == 7
    assert status["seconds_per_round"] == pytest.approx((0.6 + 0.7 + 0.8) / 3)
    assert status["eta_seconds"] == pytest.approx(7 * (0.6 + 0.7 + 0.8) / 3)
    assert status["elapsed_seconds"] == pytest.approx(0.6 + 0.7 + 0.8)
    later = Monitor(str(tmp_path / "r"), clock=lambda: time.time() + 3600)
    assert later.api_run("single", "r", run)["status"]["state"] == "stalled"
    with open(os.path.join(run, "head.npz"), "wb") as f:
        f.write(b"x")
    finished = monitor.api_run("single", "r", run)["status"]
    assert finished["state"] == "finished" and finished["eta_seconds"] == 0
    # train --resume rewrites config.json: running again although head.npz is there
    time.sleep(0.02)
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(fake_config(rounds=20), f)
    assert monitor.api_run("single", "r", run)["status"]["state"] == "running"


# -- what is served, and what is not ----------------------------------------------------------------


TRAVERSALS = [
    "/files/../secret.txt",
    "/files/%2e%2e/secret.txt",
    "/files/%2E%2E/secret.txt",
    "/files/..%2fsecret.txt",
    "/files/..%2Fsecret.txt",
    "/files/%2e%2e%2fsecret.txt",
    "/files/.%2e/secret.txt",
    "/files/..%5csecret.txt",
    "/files/..\\secret.txt",
    "/files/%252e%252e/secret.txt",            # double-encoded: a literal '%2e%2e' folder, which is not there
    "/files/./../secret.txt",
    "/files/run/../../secret.txt",
    "/files//SECRET_ABS",
    "/files/%2FSECRET_ABS",
    "/files/link-to-secret.txt",               # a symlink inside RUN_DIR that points outside
    "/files/linked-dir/secret.txt",            # a symlinked folder that points outside
    "/files/secret.txt%00.json",
    "/files/%c0%ae%c0%ae/secret.txt",          # overlong UTF-8 dots
    "/static/../monitor.py",
    "/static/%2e%2e/monitor.py",
    "/static/..%2fmonitor.py",
    "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/api/run/..%2F..%2Fsecret.txt",
    "/api/run/%2e%2e",
    "/api/run/..",
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "//SECRET_ABS",
]


def test_path_traversal_rejected(tmp_path, serve, http):
    root = tmp_path / "root"
    run = fake_run(str(root / "run"), rounds=1)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    os.symlink(str(secret), os.path.join(run, "..", "link-to-secret.txt"))
    os.symlink(str(tmp_path / "outside"), str(root / "linked-dir"))
    with serve(root) as base:
        assert http(base, "/files/run/config.json")[0] == 200         # what is under RUN_DIR is served
        for path in TRAVERSALS:
            path = path.replace("SECRET_ABS", str(secret).lstrip("/"))
            status, _, body = http(base, path)
            assert status in (400, 403, 404), (path, status)
            assert SECRET.encode() not in body, path
        # the request-target in absolute form, too
        status, _, body = http(base, "http://127.0.0.1/files/../secret.txt")
        assert status in (400, 403, 404) and SECRET.encode() not in body


def test_safe_relative():
    assert safe_relative("a/b%20c.txt") == ["a", "b c.txt"]
    for bad in ("", "/etc", "a//b", "..", "a/%2e%2e/b", "a%2fb", "C:", "x%00"):
        with pytest.raises(BadPath):
            safe_relative(bad)


def test_page_assets_and_methods(tmp_path, serve, http):
    run = fake_run(str(tmp_path / "r"), rounds=1)
    with serve(run) as base:
        status, hdrs, body = http(base, "/")
        assert status == 200 and b"static/monitor.js" in body
        csp = hdrs["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert b"http://" not in body and b"https://" not in body       # nothing from the network
        for asset, ctype in (("monitor.js", "javascript"), ("monitor.css", "text/css"), ("favicon.svg", "svg")):
            status, hdrs, body = http(base, "/static/" + asset)
            assert status == 200 and ctype in hdrs["content-type"], asset
            assert b"https://" not in body and b"//cdn" not in body
        assert http(base, "/static/nope.js")[0] == 404
        # HTML under RUN_DIR (mr_tl.report's page) is served, but its scripts would not run
        os.makedirs(os.path.join(run, "report"))
        with open(os.path.join(run, "report", "index.html"), "w") as f:
            f.write("<script>alert(1)</script>")
        status, hdrs, _ = http(base, "/files/report/index.html")
        assert status == 200 and "script-src 'none'" in hdrs["content-security-policy"]
        assert http(base, "/nope")[0] == 404
        status, hdrs, body = http(base, "/", method="HEAD")
        assert status == 200 and body == b"" and int(hdrs["content-length"]) > 0
        status, hdrs, body = http(base, "/api/runs", method="HEAD")
        assert status == 200 and body == b""
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            status, hdrs, _ = http(base, "/api/runs", method=method)
            assert status == 405 and hdrs["allow"] == "GET, HEAD", method
        assert http(base, "/files/config.json", method="DELETE")[0] == 405
        assert os.path.exists(os.path.join(run, "config.json"))
        # on loopback, another Host (DNS rebinding) is refused
        assert http(base, "/api/runs", headers={"Host": "evil.example:80"})[0] == 403
        assert http(base, "/api/runs", headers={"Host": "localhost:1234"})[0] == 200
        assert http(base, "/api/runs", headers={"Host": "[::1]:1234"})[0] == 200


# -- the command line -------------------------------------------------------------------------------


def test_cli_missing_run_dir(tmp_path, run_module):
    r = run_module("mr_tl.monitor", tmp_path / "nope")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "file").write_text("x")
    r = run_module("mr_tl.monitor", tmp_path / "file")
    assert r.returncode == 2 and "not a folder" in r.stderr


def test_cli_port_in_use(tmp_path, run_module):
    fake_run(str(tmp_path / "r"), rounds=1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_module("mr_tl.monitor", tmp_path / "r", "--port", port, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "already in use" in r.stderr and "--port" in r.stderr and "Traceback" not in r.stderr


def test_cli_help_says_loopback(run_module):
    r = run_module("mr_tl.monitor", "--help")
    assert r.returncode == 0 and "127.0.0.1" in r.stdout and "--port" in r.stdout


@pytest.mark.parametrize("stop, background", [("SIGINT", False), ("SIGTERM", False), ("SIGINT", True)],
                         ids=["ctrl-c", "kill", "ctrl-c-started-in-background"])
def test_cli_serves_until_interrupted(tmp_path, monitor_cli, http, stop, background):
    import signal

    fake_run(str(tmp_path / "runs" / "a"), rounds=2)
    # a shell starts a background job (monitor ... &) with SIGINT ignored
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None
    proc, url = monitor_cli(tmp_path / "runs", preexec_fn=ignore_sigint)
    assert url.startswith("http://127.0.0.1:")
    status, _, body = http(url, "/api/runs")
    assert status == 200 and [r["name"] for r in json.loads(body)["runs"]] == ["a"]
    proc.send_signal(getattr(signal, stop))
    assert proc.wait(30) == 0  # generous: CI machines may be loaded
    assert proc.stdout.read().strip() == "stopped"
