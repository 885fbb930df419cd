"""What every mr_tl MRJob shares: shipping the package, threads per task, the driver side.

* **Shipping.** A job module inside a package only runs in Hadoop/Spark
  tasks if the package is importable there.  :class:`MRTLJob` zips the
  installed ``mr_tl`` package (deterministically, content-addressed) and
  adds it to mrjob's ``py_files``, which puts it on the tasks' PYTHONPATH;
  users never zip anything by hand.  Job modules use absolute imports.
* **Threads.** Each task gets an explicit thread count for onnxruntime and
  BLAS (``--threads``; default: the cores divided by the tasks that run at
  once), passed as ``MR_TL_THREADS``/``OPENBLAS_NUM_THREADS``/... so
  concurrent tasks never oversubscribe the cores.
* **Driver.** :meth:`MRTLJob.run_job` validates the inputs before any job
  is submitted (:meth:`check_inputs`), runs the job, then lets the job
  report and verify its result (:meth:`report`).
"""

import codecs
import errno
import hashlib
import io
import logging
import os
import sys
import tempfile
import zipfile

from mrjob.step import StepFailedException

import mr_tl
from mr_tl import storage
from mr_tl.cli import run_command
from mr_tl.errors import JobFailed, RecordError
from mr_tl.jobs.compat import HookedMRJob, option_actions, runner_alias, runner_option
from mr_tl.threads import THREAD_ENV_VARS, task_threads

log = logging.getLogger("mr_tl")




def package_zip():
    """A zip of the ``mr_tl`` package for the tasks' PYTHONPATH (built once, cached by content)."""
    root = os.path.dirname(os.path.abspath(mr_tl.__file__))
    files = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                files.append((os.path.join("mr_tl", os.path.relpath(path, root)), path))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, path in files:
            info = zipfile.ZipInfo(arcname.replace(os.sep, "/"), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with open(path, "rb") as f:
                z.writestr(info, f.read(), zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mr_tl", "py_files")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "mr_tl-%s.zip" % digest)
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".zip.tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        # keep only the newest few: every code change makes a new zip
        old = sorted((os.path.getmtime(os.path.join(cache, n)), n) for n in os.listdir(cache) if n.endswith(".zip"))
        for _, name in old[:-5]:
            try:
                os.unlink(os.path.join(cache, name))
            except OSError:
                pass
    return path


def runner_hadoop_bin(job):
    """The hadoop command (a list of arguments) ``job``'s runner would use for hdfs:// paths:
    ``--hadoop-bin``, or ``hadoop_bin`` of the mrjob.conf given with ``-c``.  None if that runner has
    no such option (inline, local) or leaves the command to be found like mrjob does (PATH,
    ``$HADOOP_HOME/bin``)."""
    return runner_option(job, "hadoop_bin") or None


def summed_counters(runner):
    """``{group: {name: value}}`` over all steps of a finished job."""
    out = {}
    for step in runner.counters():
        for group, names in step.items():
            for name, n in names.items():
                out.setdefault(group, {})[name] = out.get(group, {}).get(name, 0) + n
    return out


class _FailureLog(logging.Handler):
    """What mrjob logs while a job fails (the "probable cause of failure": a task's error), so the one
    error line can say what the cause was when it is a full disk."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage())
        except Exception:   # a log record must never break the driver
            pass

    def job_failed(self, error):
        logged = "\n".join(self.messages)
        for code, text in ((errno.ENOSPC, "No space left on device"), (errno.EDQUOT, "Disk quota exceeded")):
            if "[Errno %d] %s" % (code, text) in logged:
                return JobFailed("no space left on the device%s in a task of the job (%s); nothing written there "
                                 "is marked complete, free some space and run the command again"
                                 % ("" if code == errno.ENOSPC else " (%s)" % text, error))
        return JobFailed(str(error))


class MRTLJob(HookedMRJob):
    """Base class of mr_tl's jobs (see the module docstring)."""

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--threads", type=int, default=0,
                              help="threads per task for onnxruntime and BLAS (default 0 = auto: "
                                   "all cores inline, cores/concurrent tasks locally, 1 on a cluster)")

    # -- driver side ------------------------------------------------------

    def adjust_runner_kwargs(self, kwargs):
        alias = runner_alias(self)
        if alias != "inline":  # inline tasks run in this process and import mr_tl directly
            kwargs["py_files"] = list(kwargs.get("py_files") or []) + [package_zip()]
        threads = self.options.threads or task_threads(alias, getattr(self.options, "num_cores", None))
        env = {name: str(threads) for name in THREAD_ENV_VARS}
        env.update(kwargs.get("cmdenv") or {})
        kwargs["cmdenv"] = env
        return kwargs

    def check_inputs(self):
        """Raise an mr_tl error (InputError...) if the job should not run; called before submitting."""

    def driver_fs(self):
        """Filesystem for the driver's own reads of inputs and side files: local paths, and hdfs:// URIs
        through the hadoop command the job's runner uses (see :func:`runner_hadoop_bin`)."""
        if getattr(self, "_driver_fs", None) is None:
            self._driver_fs = storage.filesystem(runner_hadoop_bin(self))
        return self._driver_fs

    def output_check_lines(self, job_class, runner, extra_args=()):
        """The output lines of ``job_class`` (a checking job: scan, check_records) run the way this job
        ran (its runner options) over this job's finished output part files."""
        from mr_tl.jobs.compat import runner_command_line

        args = runner_command_line(self) + ["--no-check-input-paths"] + list(extra_args)
        # the part files by name, not a glob: mrjob's Spark runner quotes a glob's * in a file:// URI
        output_dir = runner.get_output_dir()
        parts = storage.list_data_files(self.driver_fs(), [output_dir], storage.FEATURES_PATTERN)
        if output_dir.startswith("file://"):   # still the same files, not local ones to upload
            parts = [p if storage.is_uri(p) else "file://" + p for p in parts]
        job = job_class(args=args + parts)
        with job.make_runner() as check_runner:
            try:
                check_runner.run()
            except StepFailedException as e:
                raise JobFailed("the check of the output failed: %s" % e) from None
            return list(storage.cat_lines(check_runner))

    def report(self, runner):
        """Called after a successful run with the finished runner."""

    def _should_cat_output(self):
        # outputs are large (feature vectors, parameters); print them only if asked
        return bool(self.options.cat_output)

    # what mrjob puts on a task's command line (a task's traceback is what the job's log should show)
    TASK_SWITCHES = ("--mapper", "--combiner", "--reducer", "--spark", "--steps")

    @classmethod
    def run(cls):
        """mrjob's entry point (``python -m mr_tl.featurize ...``) with mr_tl's one-line errors and exit
        codes around all of the driver: argument parsing and ``--help`` too.  Tasks run as mrjob runs them."""
        if any(arg in cls.TASK_SWITCHES for arg in sys.argv[1:]):
            super().run()
            return
        run_command(super().run)

    def run_job(self):
        """The driver: check the inputs, run the job, let it report.  Every error, also one raised by
        mrjob while it writes the output or inside :meth:`report`, ends as one line and an exit code
        (:func:`mr_tl.cli.run_command`)."""
        run_command(self._run_job)

    def _run_job(self):
        log_stream = codecs.getwriter("utf_8")(self.stderr)
        self.set_up_logging(quiet=self.options.quiet, verbose=self.options.verbose, stream=log_stream)
        if not self.options.quiet:
            for name in ("mr_tl", type(self).__module__):
                logger = logging.getLogger(name)
                if not logger.handlers:
                    handler = logging.StreamHandler(log_stream)
                    handler.setFormatter(logging.Formatter("%(message)s"))
                    logger.addHandler(handler)
                    logger.setLevel(logging.INFO)
        self.check_inputs()
        failures = _FailureLog()
        logging.getLogger("mrjob").addHandler(failures)
        with self.make_runner() as runner:
            try:
                runner.run()
            except StepFailedException as e:
                raise failures.job_failed(e) from None
            except OSError as e:
                if e.errno is None:   # mrjob's own complaints ("Output path ... already exists!")
                    raise JobFailed(str(e)) from None
                raise
            finally:
                logging.getLogger("mrjob").removeHandler(failures)
            try:
                self.report(runner)
            except RecordError as e:   # the job's own output does not read back
                raise JobFailed("the job's output cannot be read back: %s" % e) from None
            # after the report: the output is checked and marked complete even if the reader goes away
            if self._should_cat_output():
                for chunk in runner.cat_output():
                    self.stdout.write(chunk)
                self.stdout.flush()


def split_runner_args(argv, parser, job_class):
    """Split a driver's command line into its own arguments and mrjob's.

    ``parser`` is the driver's argparse parser; options it does not know but
    ``job_class``'s mrjob parser does (``-c mrjob.conf``, ``--hadoop-streaming-jar
    JAR``, ``-D k=v``, ...) go to mrjob, with their values, so a value is
    never mistaken for one of the driver's positional arguments.
    """
    ours = option_actions(parser)
    theirs = option_actions(job_class(args=[]).arg_parser)
    own, runner = [], []
    i = 0
    while i < len(argv):
        token = argv[i]
        name = token.split("=", 1)[0]
        if token == "--":
            own += argv[i:]
            break
        target, action = None, None
        if token.startswith("-") and name not in ours and name in theirs:
            target, action = runner, theirs[name]
        elif token.startswith("-") and name in ours:
            target, action = own, ours[name]
        if target is None:
            own.append(token)
            i += 1
            continue
        target.append(token)
        i += 1
        if "=" not in token:
            nargs = action.nargs
            count = 0 if nargs == 0 else 1 if nargs is None else nargs if isinstance(nargs, int) else None
            if count is None:  # '?', '*', '+': take values up to the next option
                while i < len(argv) and not argv[i].startswith("-"):
                    target.append(argv[i])
                    i += 1
            else:
                target += argv[i:i + count]
                i += count
    return own, runner
