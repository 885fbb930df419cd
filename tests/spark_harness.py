"""A real Apache Spark cluster for the tests: pyspark's own standalone master and worker.

The pyspark wheel (``pip install 'pyspark>=4.0'``, mr_tl's ``spark`` extra)
carries Spark's jars and ``bin/spark-class`` / ``bin/spark-submit``, but not
the ``sbin/start-*.sh`` scripts; :class:`StandaloneCluster` starts the two
daemons itself::

    spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 ...
    spark-class org.apache.spark.deploy.worker.Worker ... spark://127.0.0.1:PORT

Both bind to 127.0.0.1 on free ports, keep everything (logs, the worker's
application dirs, scratch dirs) under one work dir, use small heaps, and are
stopped by :meth:`StandaloneCluster.stop` (their process groups, by id), at
interpreter exit, or by a watchdog process if the test process dies.  Each
``spark-submit`` (each mr_tl job, each training round) is one application:
a driver JVM on this machine plus one executor JVM (all the worker's cores)
started by the worker, which runs the tasks in Python workers.

Why not ``local-cluster[N,C,M]``: it works from the wheel, but every
application then starts its own master, workers and executors (about 50 s
per application here, against about 10 s on a running standalone cluster),
and mr_tl's training runs one application per round.

mrjob's Spark runner (``-r spark``) is pointed at the cluster with the
mrjob.conf of :meth:`StandaloneCluster.write_mrjob_conf`:

* ``spark_master: spark://127.0.0.1:PORT``;
* ``python_bin``: the tests' Python (the project's venv); mrjob makes it
  ``PYSPARK_PYTHON`` of the driver and ``spark.executorEnv.PYSPARK_PYTHON``
  of the executors (the default, ``python3``, has no numpy/onnxruntime);
* ``spark_tmp_dir`` = ``local_tmp_dir``, one local directory.  With a
  non-local master mrjob puts its Spark temp dir on HDFS by default, and a
  ``file://`` URI goes through ``hadoop fs`` (mrjob's Hadoop filesystem
  claims every URI), so both need a ``hadoop`` command.  A plain local path
  avoids Hadoop, but mrjob never creates ``SPARK_TMP_DIR/JOB_KEY`` and its
  Spark harness then fails writing the counters (``os.mkdir`` of
  ``.../JOB_KEY/counter-output-step-0``: no such file or directory).  With
  the two options equal, ``SPARK_TMP_DIR/JOB_KEY`` *is* mrjob's local temp
  dir: created before the job and removed after it, so nothing is left
  behind.  (mrjob warns that executors may not see a local spark_tmp_dir:
  here they run on the same machine.)
* ``jobconf`` (spark-submit ``--conf``): no UI, driver on 127.0.0.1, small
  heaps, C1-only JIT (the JVMs live for seconds), the driver's scratch dir in
  the work dir.

The drivers need ``spark-submit`` (mrjob looks in ``$SPARK_HOME/bin``, on
PATH and in the installed pyspark) and Java: :meth:`StandaloneCluster.env`
is an environment with both.

``MR_TL_SKIP_SPARK=1`` skips the Spark tests; ``MR_TL_REQUIRE_SPARK=1``
makes a missing pyspark/Java an error instead of a skip (for CI).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# python that runs the tasks (mrjob's python_bin -> PYSPARK_PYTHON): the one
# running the tests, i.e. the project's venv, unless MR_TL_TASK_PYTHON says otherwise
TASK_PYTHON = os.environ.get('MR_TL_TASK_PYTHON') or sys.executable

MIN_JAVA = 17  # Spark 4

# wall-clock seconds of cluster start-up and of the jobs, printed at the end
# of a pytest run (tests/engines/conftest_spark.py)
TIMINGS = {}

# the logs' tails that explain a failure
_MARKERS = ('Exception', 'Error', 'Traceback', 'FAILED', 'Lost executor', 'exited')


class SparkUnavailable(Exception):
    """pyspark or Java is missing (tests should skip), or MR_TL_SKIP_SPARK=1."""


def _skip_or_raise(reason, skip):
    if skip and os.environ.get('MR_TL_REQUIRE_SPARK') != '1':
        import pytest
        pytest.skip(reason)
    raise SparkUnavailable(reason)


def find_pyspark_home():
    """The installed pyspark package directory (SPARK_HOME of the wheel), or None."""
    import importlib.util
    spec = importlib.util.find_spec('pyspark')
    if spec is None or not spec.origin:
        return None
    home = Path(spec.origin).parent
    if not (home / 'bin' / 'spark-class').exists() or not (home / 'jars').is_dir():
        return None
    return home


def find_java_home():
    java_home = os.environ.get('JAVA_HOME')
    if java_home and os.access(os.path.join(java_home, 'bin', 'java'), os.X_OK):
        return java_home
    java = shutil.which('java')
    if java:
        return str(Path(os.path.realpath(java)).parent.parent)
    return None


def java_major(java_home):
    proc = subprocess.run([os.path.join(java_home, 'bin', 'java'), '-version'],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 else major


def check_available(skip=True):
    """(pyspark home, java home); skips the calling test (or raises SparkUnavailable) with
    the precise reason if Spark cannot run here."""
    if os.environ.get('MR_TL_SKIP_SPARK') == '1':
        _skip_or_raise('MR_TL_SKIP_SPARK=1', skip)
    home = find_pyspark_home()
    if home is None:
        _skip_or_raise('Spark tests need pyspark (with its jars and bin/spark-class) in %s: '
                       "pip install 'pyspark>=4.0' (mr_tl's spark extra; scripts/setup --dev installs it)"
                       % sys.executable, skip)
    java_home = find_java_home()
    if not java_home:
        _skip_or_raise('Spark tests need Java %d+: no JAVA_HOME and no java on PATH '
                       '(e.g. apt-get install openjdk-17-jdk-headless)' % MIN_JAVA, skip)
    major = java_major(java_home)
    if major is None or major < MIN_JAVA:
        _skip_or_raise('Spark 4 needs Java %d+, found %s at %s' % (MIN_JAVA, major, java_home), skip)
    return home, java_home


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# A separate process that kills the cluster's process groups if the test
# process dies without stopping it (SIGKILL, a crash): no JVM outlives a run.
_WATCHDOG = r'''
import os, signal, sys, time
parent, groups = int(sys.argv[1]), [int(g) for g in sys.argv[2:]]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    if os.getppid() != parent:
        break
    time.sleep(1)
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
'''


class StandaloneCluster:
    """A Spark standalone master and one worker on 127.0.0.1 (see the module docstring).

    ``start()`` returns once the master lists the worker as ALIVE with all its
    cores; ``stop()`` ends both daemons and the executors they started.
    Attributes after start: ``master_url`` (spark://127.0.0.1:PORT),
    ``master_web`` (http://127.0.0.1:PORT), ``startup_seconds``.
    """

    def __init__(self, work_dir, cores=2, worker_memory='1536m', executor_memory='512m',
                 driver_memory='512m', daemon_memory='256m', pyspark_home=None, java_home=None,
                 timeout=180):
        if pyspark_home is None or java_home is None:
            found_home, found_java = check_available(skip=False)
            pyspark_home, java_home = pyspark_home or found_home, java_home or found_java
        self.home = Path(pyspark_home)
        self.java_home = str(java_home)
        self.work_dir = Path(work_dir).resolve()
        self.cores = cores
        self.worker_memory = worker_memory
        self.executor_memory = executor_memory
        self.driver_memory = driver_memory
        self.daemon_memory = daemon_memory
        self.timeout = timeout
        self.procs = {}
        self.master_url = self.master_web = None
        self.startup_seconds = None
        self._watchdog = None
        self._started_at = None

    # -- paths and environments ---------------------------------------------------------

    @property
    def spark_submit(self):
        return self.home / 'bin' / 'spark-submit'

    @property
    def worker_dir(self):
        """The worker's work dir: one folder per application, one per executor in it
        (the executor's working directory, with its stdout/stderr)."""
        return self.work_dir / 'worker'

    def env(self, base=None):
        """An environment for drivers (``python -m mr_tl.X -r spark``): Java, ``spark-submit``
        of the wheel on PATH (SPARK_HOME too), and no ``hadoop`` on PATH nor HADOOP_* variables."""
        env = dict(os.environ if base is None else base)
        # no Hadoop: nothing of the Spark pipeline may need a hadoop command or its config
        env = {k: v for k, v in env.items() if not k.startswith(('HADOOP_', 'YARN_'))}
        path = [d for d in env.get('PATH', '').split(os.pathsep)
                if d and not os.access(os.path.join(d, 'hadoop'), os.X_OK)]
        env['PATH'] = os.pathsep.join([str(self.home / 'bin'), os.path.join(self.java_home, 'bin')] + path)
        env['JAVA_HOME'] = self.java_home
        env['SPARK_HOME'] = str(self.home)
        env['SPARK_LOCAL_IP'] = '127.0.0.1'
        for name in ('SPARK_CONF_DIR', 'PYSPARK_PYTHON', 'PYSPARK_DRIVER_PYTHON', 'PYSPARK_SUBMIT_ARGS'):
            env.pop(name, None)
        return env

    def _daemon_env(self):
        env = self.env()
        env.update({
            'SPARK_DAEMON_MEMORY': self.daemon_memory,
            # no REST submission server (port 6066 by default in Spark 4)
            'SPARK_MASTER_OPTS': '-Dspark.master.rest.enabled=false',
            'SPARK_WORKER_OPTS': '-Dspark.worker.cleanup.enabled=false',
            # the executors' scratch space (shuffle files, block manager)
            'SPARK_LOCAL_DIRS': str(self.work_dir / 'local'),
            'SPARK_LOG_DIR': str(self.work_dir / 'logs'),
            'SPARK_PID_DIR': str(self.work_dir),
        })
        return env

    def spark_conf(self):
        """spark-submit ``--conf`` settings every job gets (mrjob's ``jobconf``)."""
        jvm = '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC'
        return {
            'spark.ui.enabled': 'false',
            'spark.driver.host': '127.0.0.1',
            'spark.driver.bindAddress': '127.0.0.1',
            'spark.driver.memory': self.driver_memory,
            'spark.executor.memory': self.executor_memory,
            'spark.cores.max': str(self.cores),
            'spark.local.dir': str(self.work_dir / 'driver-local'),
            'spark.driver.extraJavaOptions': jvm,
            'spark.executor.extraJavaOptions': jvm,
        }

    def mrjob_opts(self, tmp_dir):
        """mrjob options of the spark runner (see the module docstring)."""
        tmp_dir = str(Path(tmp_dir).resolve())
        return {
            'spark_master': self.master_url,
            'python_bin': TASK_PYTHON,
            'local_tmp_dir': tmp_dir,
            'spark_tmp_dir': tmp_dir,
            'jobconf': self.spark_conf(),
        }

    def write_mrjob_conf(self, path, tmp_dir):
        """Write an mrjob.conf (JSON, which is YAML too) for ``-r spark -c PATH``; mrjob's temp
        files go to ``tmp_dir`` (created; empty again after every job)."""
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        path = Path(path)
        path.write_text(json.dumps({'runners': {'spark': self.mrjob_opts(tmp_dir)}}, indent=2) + '\n')
        return path

    def mrjob_args(self, tmp_dir):
        """The same as command-line switches (what ``python -m mr_tl.train`` passes on to mrjob)."""
        opts = self.mrjob_opts(tmp_dir)
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        args = ['--spark-master', opts['spark_master'], '--python-bin', opts['python_bin'],
                '--local-tmp-dir', opts['local_tmp_dir'], '--spark-tmp-dir', opts['spark_tmp_dir']]
        for key, value in sorted(opts['jobconf'].items()):
            args += ['-D', '%s=%s' % (key, value)]
        return args

    # -- life cycle ----------------------------------------------------------------------

    def _spawn(self, name, cls, args):
        log = open(self.work_dir / ('%s.log' % name), 'wb')
        try:
            proc = subprocess.Popen([str(self.home / 'bin' / 'spark-class'), cls] + args,
                                    cwd=str(self.work_dir), env=self._daemon_env(),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own process group: stop() ends it by id
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def start(self):
        if self.procs:
            return self
        t0 = time.time()
        for sub in ('worker', 'local', 'driver-local', 'logs'):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        master_port, master_web_port = free_port(), free_port()
        self.master_url = 'spark://127.0.0.1:%d' % master_port
        self.master_web = 'http://127.0.0.1:%d' % master_web_port
        try:
            self._spawn('master', 'org.apache.spark.deploy.master.Master',
                        ['--host', '127.0.0.1', '--port', str(master_port),
                         '--webui-port', str(master_web_port)])
            # started at once: the worker retries until the master is up
            self._spawn('worker', 'org.apache.spark.deploy.worker.Worker',
                        ['--host', '127.0.0.1', '--port', str(free_port()),
                         '--webui-port', str(free_port()), '--cores', str(self.cores),
                         '--memory', self.worker_memory, '--work-dir', str(self.worker_dir),
                         self.master_url])
            self._watchdog = subprocess.Popen(
                [sys.executable, '-c', _WATCHDOG, str(os.getpid())] + [str(p.pid) for p in self.procs.values()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            import atexit
            atexit.register(self.stop)
            self._wait_ready()
        except BaseException:
            details = self.failure_details()
            self.stop()
            if isinstance(details, str) and details:
                raise RuntimeError('the Spark standalone cluster did not start:%s' % details) from None
            raise
        self.startup_seconds = round(time.time() - t0, 1)
        self._started_at = time.time()
        TIMINGS['cluster start-up (master + worker)'] = self.startup_seconds
        return self

    def _wait_ready(self):
        deadline = time.time() + self.timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError('the Spark %s exited (%d) while starting' % (name, proc.returncode))
            try:
                state = self.master_state()
                alive = [w for w in state.get('workers', []) if w.get('state') == 'ALIVE']
                if alive and sum(w.get('cores', 0) for w in alive) >= self.cores:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError('no ALIVE worker after %d s' % self.timeout)
            time.sleep(0.5)

    def master_state(self, timeout=10):
        """The master's status page as JSON (``MASTER_WEB/json/``): workers, active and
        completed applications."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.master_web + '/json/', timeout=timeout) as resp:
            return json.load(resp)

    def applications(self):
        """Applications the master has seen since start, oldest first (dicts of its JSON:
        id, name, state, cores, memoryperexecutor, duration...)."""
        state = self.master_state()
        apps = state.get('completedapps', []) + state.get('activeapps', [])
        return sorted(apps, key=lambda a: (a.get('starttime', 0), a.get('id', '')))

    def executor_dirs(self, app_id=None):
        """Working directories of the executors the worker started (WORKER_DIR/APP/EXEC)."""
        pattern = '%s/*' % (app_id or 'app-*')
        return sorted(p for p in self.worker_dir.glob(pattern) if p.is_dir())

    def is_running(self):
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def stop(self):
        procs, self.procs = self.procs, {}
        # worker first: it ends its executors (same process group) on the way
        for name in ('worker', 'master'):
            proc = procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            try:  # anything left in the group (an executor, a Python worker)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._watchdog is not None:
            if self._watchdog.poll() is None:
                self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        if self._started_at is not None:
            TIMINGS['cluster up (start to stop)'] = round(time.time() - self._started_at, 1)
            self._started_at = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- diagnostics ---------------------------------------------------------------------

    def failure_details(self, lines=40):
        """Tails of the daemons' logs and of the newest executors' stderr, for an assertion message."""
        parts = []
        files = [self.work_dir / 'master.log', self.work_dir / 'worker.log']
        files += [d / 'stderr' for d in sorted(self.executor_dirs(), key=lambda d: d.stat().st_mtime)[-2:]]
        for path in files:
            try:
                text = path.read_text(errors='replace').splitlines()
            except OSError:
                continue
            interesting = [line for line in text if any(m in line for m in _MARKERS)]
            tail = (interesting[-lines // 2:] + ['...'] + text[-lines // 2:]) if interesting else text[-lines:]
            parts.append('--- %s\n%s' % (path, '\n'.join(tail)))
        return ('\n\nSpark logs:\n' + '\n'.join(parts)) if parts else ''
