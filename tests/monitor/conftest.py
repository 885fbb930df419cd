"""Fixtures of the training monitor tests (mr_tl.monitor).

Helpers (session fixtures that return a function)

    ``make_features(folder, ...)``  synthetic featurize output (``F`` records + ``_labels.json``)
    ``train(features, run_dir, *args)``  ``python -m mr_tl.train -r inline`` (fast), checked
    ``serve(root)``                 context manager: an in-process monitor on a free port -> base URL
    ``http(base, path, method="GET", headers=None)``  raw request (path sent as is) ->
                                    ``(status, headers, body bytes)``
    ``monitor_cli(root, *args)``    ``python -m mr_tl.monitor ROOT --port 0`` as a subprocess ->
                                    ``(process, base URL)``; stopped at the end of the test

Browser (session-scoped): ``chromium`` is a Playwright BrowserContext of
Debian's /usr/bin/chromium (headless, no sandbox, a fresh user-data-dir).
It runs ``scripts/browser-setup`` first, which installs chromium (apt-get)
and playwright (pip) when they are missing; if that is impossible the
browser tests are skipped with the script's reason (set
``MR_TL_REQUIRE_BROWSER=1`` to make that a failure instead).
"""

import os
import subprocess
import sys
import tempfile
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from monitor_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, http_request, run_train, serving, write_features  # noqa: E402


@pytest.fixture(scope="session")
def make_features():
    return write_features


@pytest.fixture(scope="session")
def train():
    return run_train


@pytest.fixture(scope="session")
def serve():
    return serving


@pytest.fixture(scope="session")
def http():
    return http_request


@pytest.fixture()
def monitor_cli():
    procs = []

    def start(root, *args, preexec_fn=None):
        proc = subprocess.Popen([sys.executable, "-m", "mr_tl.monitor", str(root), "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        procs.append(proc)
        lines = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        line = lines[0] if lines else ""
        assert " at http://" in line, "monitor did not start: %r %s" % (line, proc.poll() is not None and
                                                                         proc.stderr.read())
        url = line.split(" at ", 1)[1].split()[0].rstrip("/")
        return proc, url

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the browser ----------------------------------------------------------------------------------


def _browser_setup():
    """Run scripts/browser-setup; None when it worked, else the reason (its output)."""
    script = os.path.join(REPO, "scripts", "browser-setup")
    env = dict(os.environ, MR_TL_PYTHON=sys.executable)
    try:
        r = subprocess.run([script], env=env, capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "scripts/browser-setup could not run: %s" % e
    if r.returncode != 0:
        return "scripts/browser-setup failed (exit %d): %s" % (r.returncode, (r.stderr or r.stdout).strip()[-800:])
    return None


@pytest.fixture(scope="session")
def chromium():
    """A Playwright BrowserContext of headless Debian chromium (installed on demand)."""
    problem = _browser_setup()
    if problem is None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as e:  # installed into another interpreter than this one?
            problem = "playwright does not import in %s after scripts/browser-setup: %s" % (sys.executable, e)
    if problem is not None:
        if os.environ.get("MR_TL_REQUIRE_BROWSER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    user_data = tempfile.mkdtemp(prefix="mr_tl-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, timeout=60000)
        try:
            yield context
        finally:
            context.close()
    import shutil

    shutil.rmtree(user_data, ignore_errors=True)


@pytest.fixture()
def page(chromium):
    """A new tab; fails the test on any JavaScript error of the page."""
    pg = chromium.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append("page error: %s" % e))
    pg.on("console", lambda m: errors.append("console %s: %s" % (m.type, m.text)) if m.type == "error" else None)
    pg.errors = errors
    yield pg
    pg.close()
    assert not errors, "\n".join(errors)


@pytest.fixture()
def save_screenshot(request, tmp_path):
    """``save_screenshot(page, name)``: full-page PNG in tmp_path, copied to tests/monitor/artifacts/."""

    def save(pg, name):
        path = str(tmp_path / name)
        pg.screenshot(path=path, full_page=True)
        os.makedirs(ARTIFACTS, exist_ok=True)
        import shutil

        kept = os.path.join(ARTIFACTS, name)
        shutil.copyfile(path, kept)
        print("screenshot: %s (copy: %s)" % (path, kept))
        return path

    return save
