"""The monitor page in a real headless Chromium, while a real training run writes to it.

Screenshots go to the test's tmp dir and are copied to tests/monitor/artifacts/.
"""

import os
import signal
import subprocess
import sys
import time

from monitor_helpers import fake_record, fake_run, line, metrics_points

from mr_tl.run_dir import RunDir

POINTS = "+document.querySelector('#loss-chart').dataset.points"


def wait_js(page, expression, timeout=30, what=None):
    """Poll a JS expression until it is truthy. (Not page.wait_for_function: it evals strings, which
    the page's Content-Security-Policy forbids, and the tests keep that policy on.)"""
    deadline = time.time() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out after %d s waiting for %s" % (timeout, what or expression))
        time.sleep(0.05)


def wait_points(page, n, timeout=30):
    wait_js(page, "%s === %d" % (POINTS, n), timeout, "%d points on the loss chart (has %s)"
            % (n, page.evaluate(POINTS)))
    return page.evaluate(POINTS)


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


def train_cmd(features, run_dir, *args):
    return [sys.executable, "-m", "mr_tl.train", "-r", "inline", str(features), "-o", str(run_dir),
            "--workers", "2", "--batch-size", "8", "--averaging-frequency", "2", "--validate-every", "2",
            *[str(a) for a in args]]


def test_live_run_in_chromium(tmp_path, make_features, train, monitor_cli, page, save_screenshot):
    """The loss chart plots one point per minibatch of metrics.jsonl, and grows while training runs."""
    features = make_features(str(tmp_path / "features"), n_train=192, n_val=30, n_test=30)
    run = tmp_path / "run"
    train(features, run, "--epochs", "2", "--averaging-frequency", "2", "--validate-every", "2")
    first = metrics_points(run)
    rounds = len(RunDir(str(run)).read_metrics())
    assert first == sum(len(m["losses"]) for m in RunDir(str(run)).read_metrics()) > 0

    _, url = monitor_cli(run)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url + "/")
    page.wait_for_selector("#loss-chart svg path.series")
    assert wait_points(page, first) == first
    assert page.get_attribute("#run-state", "class") == "badge finished"
    assert page.evaluate("+document.querySelector('#card-round').dataset.round") == rounds
    # one SVG path node per series, and both series carry every point
    points = page.eval_on_selector_all("#loss-chart path.series", "ps => ps.map(p => +p.dataset.points)")
    assert points == [first, first]
    assert page.evaluate("+document.querySelector('#acc-chart').dataset.points") == sum(
        1 for m in RunDir(str(run)).read_metrics() if m.get("val_accuracy") is not None)
    page.evaluate("window.__notReloaded = 'yes'")

    # continue the run (more epochs) while the page is open; pause the trainer after its first new
    # round so that the page must show a half-done run, then let it finish
    trainer = subprocess.Popen(train_cmd(features, run, "--epochs", "6", "--resume"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: metrics_points(run) > first or trainer.poll() is not None, what="a new round")
        os.kill(trainer.pid, signal.SIGSTOP)
        middle = metrics_points(run)
        assert middle > first, "the trainer ended without a new round: %s" % trainer.communicate()[0]
        t0 = time.time()
        assert wait_points(page, middle) == middle
        shown_after = time.time() - t0
        assert page.get_attribute("#run-state", "class") == "badge running"
        eta = page.inner_text("#card-eta")
        assert "rounds left" in eta and "0 rounds left" not in eta
        save_screenshot(page, "monitor-live-running.png")
    finally:
        os.kill(trainer.pid, signal.SIGCONT)
    out, _ = trainer.communicate(timeout=300)
    assert trainer.returncode == 0, out

    final = metrics_points(run)
    final_rounds = len(RunDir(str(run)).read_metrics())
    assert final > middle
    assert wait_points(page, final) == final
    wait_js(page, "document.querySelector('#run-state').className === 'badge finished'")
    assert page.evaluate("+document.querySelector('#card-round').dataset.round") == final_rounds
    assert page.evaluate("window.__notReloaded") == "yes", "the page was reloaded"
    # it asked only for what was new: incremental requests with a cursor past round 0
    cursors = [int(u.split("after=")[1].split("&")[0]) for u in requests if "/api/run/" in u]
    assert cursors[0] == 0 and rounds in cursors and max(cursors) > rounds, cursors

    # the evaluation appears when mr_tl.evaluate has written it, still without reloading
    r = subprocess.run([sys.executable, "-m", "mr_tl.evaluate", "-r", "inline", "-q", "--run", str(run), features,
                        "--split", "test"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page.wait_for_selector("table.eval-metrics[data-split=test]", timeout=15000)
    assert page.get_attribute("table.confusion", "data-classes") == "3"
    assert page.evaluate("window.__notReloaded") == "yes"
    shot = save_screenshot(page, "monitor-live.png")
    assert os.path.getsize(shot) > 10000
    print("page showed the paused trainer's new round %.2f s after it was written; %d -> %d -> %d points"
          % (shown_after, first, middle, final))


def test_runs_side_by_side_in_chromium(tmp_path, make_features, train, monitor_cli, page, save_screenshot):
    """A folder of runs: overlaid loss curves with a legend and a table comparing them; a new run appears live."""
    features = make_features(str(tmp_path / "features"))
    root = tmp_path / "runs"
    for freq in (1, 4):
        train(features, root / ("avg-every-%d" % freq), "--epochs", "3", "--averaging-frequency", freq,
              "--validate-every", "2")
    (root / "notes").mkdir()
    _, url = monitor_cli(root)
    page.goto(url + "/")
    page.wait_for_selector("#cmp-table tbody tr")
    expected = {name: metrics_points(root / name) for name in ("avg-every-1", "avg-every-4")}
    wait_js(page, "+document.querySelector('#cmp-loss').dataset.points === %d" % sum(expected.values()))
    paths = page.eval_on_selector_all("#cmp-loss path.series",
                                      "ps => ps.map(p => [p.dataset.name, +p.dataset.points])")
    assert dict(paths) == expected
    assert page.eval_on_selector_all("#cmp-loss .legend text", "ts => ts.map(t => t.textContent)") == sorted(expected)
    assert page.eval_on_selector_all("#cmp-table tbody tr", "rs => rs.map(r => r.dataset.run)") == sorted(expected)
    # the differing hyperparameter is marked; averaging every 1 vs 4
    cells = page.eval_on_selector_all("#cmp-table td[data-key=averaging_frequency]",
                                      "cs => cs.map(c => [c.textContent, c.className])")
    assert cells == [["1", "differs"], ["4", "differs"]]

    page.evaluate("window.__notReloaded = 'yes'")
    # a third run, started while the page is open, joins the comparison
    train(features, root / "avg-every-2", "--epochs", "3", "--averaging-frequency", 2, "--validate-every", "2")
    expected["avg-every-2"] = metrics_points(root / "avg-every-2")
    wait_js(page, "document.querySelectorAll('#cmp-table tbody tr').length === 3")
    wait_js(page, "+document.querySelector('#cmp-loss').dataset.points === %d" % sum(expected.values()))
    assert page.evaluate("window.__notReloaded") == "yes"
    # picking a run in the table shows it below
    page.click("#cmp-table tr[data-run=avg-every-1]")
    wait_js(page, "document.querySelector('#run').dataset.run === 'avg-every-1'")
    wait_points(page, expected["avg-every-1"])
    page.select_option("#cmp-x", "time")
    page.check("#cmp-raw")
    wait_js(page, "document.querySelectorAll('#cmp-loss path.series').length === 6")
    save_screenshot(page, "monitor-compare.png")


def test_empty_folder_bad_lines_and_server_gone(tmp_path, monitor_cli, page):
    """A folder with no run yet, then a run with a malformed and a half-written metrics line; then the
    monitor stops: the page says so each time and never breaks."""
    root = tmp_path / "runs"
    root.mkdir()
    proc, url = monitor_cli(root)
    page.goto(url + "/")
    wait_js(page, "!document.querySelector('#empty').hidden")
    assert "No training run" in page.inner_text("#empty")

    run = fake_run(str(root / "r1"), rounds=3)
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write("{not json}\n")
        f.write(line(fake_record(4))[:30])                    # the driver is mid-append
    wait_points(page, 6)
    assert page.evaluate("document.querySelector('#empty').hidden")
    assert page.evaluate("+document.querySelector('#card-round').dataset.round") == 3
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write(line(fake_record(4))[30:])
    wait_points(page, 8)
    assert page.evaluate("+document.querySelector('#card-round').dataset.round") == 4

    proc.terminate()
    proc.wait(10)
    wait_js(page, "document.querySelector('#live').dataset.state === 'error'", what="the 'cannot reach' state")
    assert "cannot reach the monitor" in page.inner_text("#live")
    assert page.evaluate(POINTS) == 8                         # what was shown stays
    page.errors[:] = [e for e in page.errors if "Failed to load resource" not in e and "ERR_CONNECTION" not in e]
