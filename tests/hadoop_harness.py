"""Run mrjob jobs with ``-r hadoop`` against real Apache Hadoop in tests.

The jars come from Maven Central (``hadoop/fetch``, cached in
``~/.cache/mr_tl/hadoop-3.5.0`` or ``$MR_TL_HADOOP_CACHE``); ``hadoop/bin/hadoop``
is a thin launcher of Hadoop's own main classes.  Two modes:

``Standalone``  local job runner + local file system: the real StreamJob,
                input splits, map, sort/spill, shuffle and reduce, no daemons.
``MiniCluster`` single-node HDFS + YARN + JobHistoryServer started by Hadoop's
                MiniHadoopClusterManager (``hadoop/minicluster``), 127.0.0.1.

Both give: ``hadoop_bin`` (a launcher wrapper with the mode's environment
baked in, usable as mrjob's ``hadoop_bin``), ``mrjob_conf`` (a JSON mrjob.conf
with hadoop_bin, hadoop_streaming_jar, python_bin, cmdenv, and for standalone
a ``file://`` hadoop_tmp_dir), ``env()`` (environment for running the
launcher or a job subprocess), ``hadoop(*args)`` / ``fs(*args)`` (run the
launcher), ``mrjob_args()`` and ``run_job(script, *args)``.

Usage from a test (fixtures are in ``tests/conftest_hadoop.py``)::

    @pytest.mark.hadoop
    def test_on_cluster(hadoop_cluster, tmp_path):
        hadoop_cluster.fs('-mkdir', '-p', '/data')
        hadoop_cluster.fs('-put', str(local_file), '/data/in.txt')
        job = MRMyJob(['-r', 'hadoop', '-c', str(hadoop_cluster.mrjob_conf),
                       'hdfs:///data/in.txt'])
        with job.make_runner() as runner:
            runner.run()
            rows = dict(job.parse_output(runner.cat_output()))

The same with ``hadoop_standalone`` and a local input path runs in local
mode.  Nothing else is needed in the environment: the wrappers set
HADOOP_CONF_DIR, the jar cache, the task python and JAVA_HOME themselves.
"""
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HADOOP_DIR = REPO / 'hadoop'
LAUNCHER = HADOOP_DIR / 'bin' / 'hadoop'
FETCH = HADOOP_DIR / 'fetch'
MINICLUSTER = HADOOP_DIR / 'minicluster'
HADOOP_VERSION = '3.5.0'

# python that runs the streaming tasks (mrjob's python_bin): the one running
# the tests, i.e. the project's venv, unless MR_TL_TASK_PYTHON says otherwise
TASK_PYTHON = os.environ.get('MR_TL_TASK_PYTHON') or sys.executable

# one BLAS/OpenMP thread per task: the test machines have 2 cores
THREAD_ENV = {'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1',
              'MKL_NUM_THREADS': '1'}

# wall-clock seconds of harness steps (fetch, cluster start-up, jobs),
# printed at the end of a pytest run by tests/conftest_hadoop.py
TIMINGS = {}


class HadoopUnavailable(Exception):
    """Java or Maven is missing (tests should skip), or MR_TL_SKIP_HADOOP=1."""


def _skip_or_raise(reason, skip):
    if skip:
        import pytest
        pytest.skip(reason)
    raise HadoopUnavailable(reason)


def find_java_home():
    java_home = os.environ.get('JAVA_HOME')
    if java_home and os.access(os.path.join(java_home, 'bin', 'java'), os.X_OK):
        return java_home
    java = shutil.which('java')
    if java:
        return str(Path(os.path.realpath(java)).parent.parent)
    return None


class HadoopHome:
    """What ``hadoop/fetch`` prepared."""

    def __init__(self, home, java_home):
        self.home = Path(home)                      # HADOOP_HOME-like dir
        self.lib = self.home / 'lib'
        jars = sorted((self.home / 'share/hadoop/tools/lib').glob(
            'hadoop-streaming-*.jar'))
        self.streaming_jar = jars[-1]
        self.launcher = LAUNCHER
        self.java_home = java_home
        self.version = HADOOP_VERSION

    def __repr__(self):
        return 'HadoopHome(%r)' % str(self.home)


@functools.lru_cache(maxsize=None)
def _fetch():
    if os.environ.get('MR_TL_SKIP_HADOOP') == '1':
        raise HadoopUnavailable('MR_TL_SKIP_HADOOP=1')
    java_home = find_java_home()
    if not java_home:
        raise HadoopUnavailable(
            'Apache Hadoop tests need Java (17+): no JAVA_HOME and no java '
            'on PATH (e.g. apt-get install openjdk-17-jdk-headless)')
    env = dict(os.environ, JAVA_HOME=java_home)
    t0 = time.time()
    proc = subprocess.run([str(FETCH)], env=env, capture_output=True,
                          text=True, timeout=1800)
    TIMINGS.setdefault('fetch (hadoop/fetch)', round(time.time() - t0, 1))
    if proc.returncode == 3:
        raise HadoopUnavailable('Apache Hadoop tests: ' + proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError('hadoop/fetch failed (%d):\n%s'
                           % (proc.returncode, proc.stderr[-4000:]))
    return HadoopHome(proc.stdout.strip().splitlines()[-1], java_home)


def hadoop_home(skip=True):
    """Run ``hadoop/fetch`` (once per process; a no-op when the cache is
    complete) and return a :class:`HadoopHome`.  If Java or Maven is missing
    (or MR_TL_SKIP_HADOOP=1), skip the calling test (``skip=True``) or raise
    :class:`HadoopUnavailable`; a failing download raises RuntimeError."""
    try:
        return _fetch()
    except HadoopUnavailable as e:
        _skip_or_raise(str(e), skip)


def _write_json(path, data):
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + '\n')


class _Mode:
    """Common part of Standalone and MiniCluster."""

    name = None
    work_dir = None
    hadoop_bin = None
    mrjob_conf = None

    def env(self, base=None):
        """Environment for running the launcher, or an mrjob job as a
        subprocess (the wrappers do not need it; it helps tools that call
        ``hadoop`` from PATH)."""
        env = dict(os.environ if base is None else base)
        env.update(self._env_vars())
        env['PATH'] = os.pathsep.join([str(Path(self.hadoop_bin).parent),
                                       str(Path(TASK_PYTHON).parent),
                                       env.get('PATH', '/usr/bin:/bin')])
        return env

    def _env_vars(self):
        raise NotImplementedError

    def hadoop(self, *args, check=True, timeout=600, **kwargs):
        """Run ``hadoop ARGS`` through this mode's wrapper; returns the
        CompletedProcess (text).  check=True raises with stderr on failure."""
        proc = subprocess.run([str(self.hadoop_bin)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout,
                              env=self.env(), **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError('hadoop %s failed (%d):\n%s' % (
                ' '.join(map(str, args)), proc.returncode, proc.stderr))
        return proc

    def fs(self, *args, **kwargs):
        """``hadoop fs ARGS``; see :meth:`hadoop`."""
        return self.hadoop('fs', *args, **kwargs)

    def mrjob_args(self):
        """mrjob command-line arguments selecting this mode."""
        return ['-r', 'hadoop', '-c', str(self.mrjob_conf)]

    def run_job(self, script, *args, cwd=None, timeout=900, check=True):
        """Run an mrjob script as ``python SCRIPT -r hadoop -c CONF ARGS`` in a
        subprocess (cwd defaults to a fresh scratch dir); returns the
        CompletedProcess (text; stdout holds the job output)."""
        if cwd is None:
            cwd = self.scratch_dir('job-cwd')
        t0 = time.time()
        proc = subprocess.run(
            [TASK_PYTHON, str(script)] + self.mrjob_args() +
            [str(a) for a in args],
            cwd=str(cwd), env=self.env(), capture_output=True, text=True,
            timeout=timeout)
        proc.seconds = round(time.time() - t0, 1)
        if check and proc.returncode != 0:
            raise AssertionError('job %s failed (%d) after %.0fs:\n%s%s' % (
                script, proc.returncode, proc.seconds, proc.stderr[-8000:],
                self.failure_details()))
        return proc

    def failure_details(self):
        return ''

    def scratch_dir(self, prefix):
        import tempfile
        base = Path(self.work_dir) / 'scratch'
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix + '-', dir=str(base)))

    def _write_mrjob_conf(self, extra=None):
        opts = {
            'hadoop_bin': str(self.hadoop_bin),
            'hadoop_streaming_jar': str(self.home.streaming_jar),
            'python_bin': TASK_PYTHON,
            'cmdenv': dict(THREAD_ENV),
        }
        opts.update(extra or {})
        _write_json(self.mrjob_conf, {'runners': {'hadoop': opts}})


class Standalone(_Mode):
    """Hadoop's local mode (fs.defaultFS=file:///, local job runner).

    Writes ``WORK_DIR/bin/hadoop`` (launcher wrapper: standalone conf, jar
    cache, task python, hadoop.tmp.dir under WORK_DIR; ``hadoop jar`` runs in
    a fresh scratch cwd because the local job runner links the job's files
    into its current directory) and ``WORK_DIR/mrjob.conf`` (with
    ``hadoop_tmp_dir: file://WORK_DIR/mrjob-tmp``: mrjob's default
    ``hdfs:///user/...`` cannot work without HDFS).
    """

    name = 'standalone'

    def __init__(self, work_dir, home=None):
        self.home = home or hadoop_home()
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = self.work_dir / 'hadoop-tmp'
        self.tmp_dir.mkdir(exist_ok=True)
        self.hadoop_bin = self.work_dir / 'bin' / 'hadoop'
        self.mrjob_conf = self.work_dir / 'mrjob.conf'
        self.mrjob_tmp_uri = 'file://%s/mrjob-tmp' % self.work_dir
        self._write_wrapper()
        self._write_mrjob_conf({'hadoop_tmp_dir': self.mrjob_tmp_uri})

    def _env_vars(self):
        return dict(THREAD_ENV,
                    MR_TL_HADOOP_CACHE=str(self.home.home),
                    MR_TL_HADOOP_TMP_DIR=str(self.tmp_dir),
                    MR_TL_TASK_PYTHON=TASK_PYTHON,
                    JAVA_HOME=self.home.java_home)

    def env(self, base=None):
        env = super().env(base)
        env.pop('HADOOP_CONF_DIR', None)
        return env

    def _write_wrapper(self):
        self.hadoop_bin.parent.mkdir(exist_ok=True)
        q = shlex.quote
        lines = ['#!/usr/bin/env bash',
                 '# generated by tests/hadoop_harness.py: hadoop/bin/hadoop in'
                 ' standalone mode',
                 'unset HADOOP_CONF_DIR']
        lines += ['export %s=%s' % (k, q(v))
                  for k, v in sorted(self._env_vars().items())]
        lines += [
            'if [ "${1:-}" = jar ]; then',
            '  # the local job runner links -files into the current directory',
            '  cwd=$(mktemp -d %s/jar-cwd.XXXXXX)' % q(str(self.tmp_dir)),
            '  cd "$cwd"',
            '  %s "$@"' % q(str(LAUNCHER)),
            '  rc=$?',
            '  cd / && rm -rf "$cwd"',
            '  exit $rc',
            'fi',
            'exec %s "$@"' % q(str(LAUNCHER)),
        ]
        self.hadoop_bin.write_text('\n'.join(lines) + '\n')
        self.hadoop_bin.chmod(0o755)

    def uri(self, path):
        """file:// URI of a local path."""
        return 'file://' + str(Path(path).resolve())


class MiniCluster(_Mode):
    """A single-node HDFS + YARN cluster run by ``hadoop/minicluster``.

    ``start()`` blocks until HDFS has a live DataNode and YARN a registered
    NodeManager; ``stop()`` kills the cluster's process group and any
    container left.  It also stops by itself when this Python process exits
    (``--die-with``).  Attributes after start: ``conf_dir`` (HADOOP_CONF_DIR),
    ``hdfs_uri`` (hdfs://127.0.0.1:PORT), ``rm_web``, ``nn_web``, ``state``
    (the cluster.json dict), ``startup_seconds``, ``hadoop_bin`` and
    ``mrjob_conf``; ``job_history(path)`` queries the JobHistoryServer.
    """

    name = 'cluster'

    def __init__(self, work_dir, home=None, timeout=None, nm_memory_mb=None):
        self.home = home or hadoop_home()
        self.work_dir = Path(work_dir).resolve()
        self.timeout = timeout
        self.nm_memory_mb = nm_memory_mb
        self.state = None

    def start(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(MINICLUSTER), 'start',
               '--work-dir', str(self.work_dir), '--die-with', str(os.getpid()),
               '--cache', str(self.home.home), '--task-python', TASK_PYTHON,
               '--java-home', self.home.java_home]
        if self.timeout:
            cmd += ['--timeout', str(self.timeout)]
        if self.nm_memory_mb:
            cmd += ['--nm-memory-mb', str(self.nm_memory_mb)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=(self.timeout or 150) * 2 + 60)
        self.startup_seconds = round(time.time() - t0, 1)
        if proc.returncode != 0:
            raise RuntimeError('hadoop/minicluster start failed (%d):\n%s' % (
                proc.returncode, proc.stderr[-8000:]))
        self.state = json.loads((self.work_dir / 'cluster.json').read_text())
        self.conf_dir = Path(self.state['conf_dir'])
        self.hdfs_uri = self.state['hdfs_uri']
        self.rm_web = self.state['rm_web']
        self.nn_web = self.state['nn_web']
        self.hadoop_bin = Path(self.state['hadoop_bin'])
        self.mrjob_conf = Path(self.state['mrjob_conf'])
        TIMINGS['cluster start-up'] = self.startup_seconds
        return self

    def stop(self):
        if self.state is None:
            return
        subprocess.run([sys.executable, str(MINICLUSTER), 'stop',
                        '--work-dir', str(self.work_dir)],
                       capture_output=True, text=True, timeout=120)
        self.state = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _env_vars(self):
        return dict(THREAD_ENV,
                    HADOOP_CONF_DIR=str(self.conf_dir),
                    MR_TL_HADOOP_CACHE=str(self.home.home),
                    MR_TL_TASK_PYTHON=TASK_PYTHON,
                    JAVA_HOME=self.home.java_home)

    def uri(self, path):
        """Fully qualified hdfs:// URI of an absolute HDFS path."""
        return self.hdfs_uri + '/' + str(path).lstrip('/')

    def is_running(self):
        proc = subprocess.run([sys.executable, str(MINICLUSTER), 'status',
                               '--work-dir', str(self.work_dir)],
                              capture_output=True, text=True, timeout=60)
        return proc.returncode == 0

    def job_history(self, path, timeout=60):
        """GET ``path`` of the JobHistoryServer's REST API
        (``/ws/v1/history/mapreduce/PATH``, e.g. ``jobs/JOB_ID`` or
        ``jobs/JOB_ID/tasks/TASK_ID/attempts``) as JSON; polls (up to
        ``timeout`` s) while the server answers 404, i.e. has not loaded the
        job's history file yet."""
        import urllib.error
        import urllib.request
        url = self.state['jhs_web'] + '/ws/v1/history/mapreduce/' + path.lstrip('/')
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + timeout
        while True:
            try:
                with opener.open(url, timeout=10) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as e:
                if e.code != 404 or time.time() > deadline:
                    raise
            time.sleep(1)

    def container_logs(self, app_id=None, names=('stderr', 'syslog')):
        """{path: text} of the YARN container logs (the NodeManager's log
        dirs), optionally only those of one application."""
        logs = {}
        for log_dir in (self.work_dir / 'test-data').glob('*/yarn-*/*-logDir-nm-*'):
            for f in sorted(log_dir.glob('application_*/container_*/*')):
                if f.name not in names:
                    continue
                if app_id and app_id not in str(f):
                    continue
                logs[str(f)] = f.read_text(errors='replace')
        return logs

    def failure_details(self):
        parts = []
        for path, text in self.container_logs(names=('stderr',)).items():
            if text.strip():
                parts.append('--- %s\n%s' % (path, text[-3000:]))
        return ('\n\ncontainer stderr:\n' + '\n'.join(parts[-6:])) if parts else ''
