"""mrjob's runners as mr_tl runs them: the part of mr_tl.jobs.compat that only the driver needs.

Kept apart so a task (which runs a job's mapper or reducer, never a runner)
does not import mrjob's runner modules: ``mrjob.hadoop`` pulls in
``mrjob.bin``, which imports pyspark when it is installed (0.1 s of every
Python task's start-up here; tests/test_mrjob_compat.py checks a round task
imports none of them).  The same rules as mr_tl.jobs.compat: mrjob's private
API is used only here and there, pinned by tests.

* :class:`SingleSplitLocalRunner`, :class:`SingleSplitInlineRunner`: mrjob's
  local and inline runners with Hadoop's "one split per file" behaviour
  (``SimMRJobRunner._pick_mapper_split_size``); the local one with a task pool
  that never hangs (``LocalMRJobRunner._run_multiple``, mrjob.local's
  ``_pickle_safe``).
* :class:`FastHadoopJobRunner`: mrjob's Hadoop runner with every file
  operation in the driver's process (mr_tl.fastfs: ``file://`` in Python,
  ``hdfs://`` over WebHDFS) instead of a ``hadoop fs`` JVM per call, zips
  with bytecode uploaded once per process; the internals it uses are listed
  in :data:`MRJOB_PRIVATE_API`.
"""

import logging
import os
import posixpath
import shutil

from mrjob.hadoop import HadoopJobRunner, fully_qualify_hdfs_path
from mrjob.inline import InlineMRJobRunner
from mrjob.local import LocalMRJobRunner

from mr_tl.fastfs import WebHDFSUnavailable, filesystem
from mr_tl.jobs.jobconf import SPLIT_MINSIZE

log = logging.getLogger(__name__)


class _SingleSplitMixin:
    """mrjob's local and inline runners cut uncompressed inputs into pieces of equal bytes; with
    ``SPLIT_MINSIZE`` in the step's jobconf they now do what Hadoop does: no piece smaller than that
    (so each file is one map task)."""

    def _pick_mapper_split_size(self, input_paths, step_num):
        size = super()._pick_mapper_split_size(input_paths, step_num)
        minimum = self._jobconf_for_step(step_num).get(SPLIT_MINSIZE)
        return max(size, int(minimum)) if minimum else size


class SingleSplitLocalRunner(_SingleSplitMixin, LocalMRJobRunner):
    """Also: when a task fails, wait for the others instead of ``Pool.terminate()``, which can hang
    for good (CPython issue #96995; measured here: 1 run in 25)."""

    def _run_multiple(self, funcs, num_processes=None):
        from functools import partial
        from multiprocessing import Pool

        from mrjob.local import _pickle_safe

        pool = Pool(processes=self._opts["num_cores"])
        try:
            results = [pool.apply_async(partial(_pickle_safe, func)) for func in funcs]
            errors = []
            for result in results:
                try:
                    result.get()
                except Exception as e:  # the task's own failure, re-raised below
                    errors.append(e)
            if errors:
                raise errors[0]
        finally:
            pool.close()
            pool.join()


class SingleSplitInlineRunner(_SingleSplitMixin, InlineMRJobRunner):
    pass


# mrjob 0.7.4 internals FastHadoopJobRunner and compat.jvm_free use (tests/test_fastfs.py checks they
# are still there)
MRJOB_PRIVATE_API = (
    ("mrjob.runner.MRJobRunner", "_fs"),                 # instance attribute behind the `fs` property
    ("mrjob.runner.MRJobRunner", "_opts"),               # instance attribute: the options (hadoop_bin)
    ("mrjob.bin.MRJobBinRunner", "_create_mrjob_zip"),   # method: builds mrjob.zip, sets _mrjob_zip_path
    ("mrjob.bin.MRJobBinRunner", "_mrjob_zip_path"),     # instance attribute
    ("mrjob.bin.MRJobBinRunner", "_py_files"),           # method: py_files + mrjob.zip (URIs are not uploaded)
    ("mrjob.fs.composite.CompositeFilesystem", "_fs_names"),  # jvm_free(): sub-filesystems in order
    ("mrjob.fs.composite.CompositeFilesystem", "_disabled"),  # jvm_free(): ... and the disabled ones
)

_ZIP_CACHE: dict[tuple[str, str], str] = {}  # (sha256[:16], base name) -> compiled twin
_ZIP_DIR: list[str] = []                     # the per-process folder, once made


def _cache_dir():
    """A per-process temporary folder, removed when the process exits."""
    if not _ZIP_DIR:
        import atexit
        import tempfile
        _ZIP_DIR.append(tempfile.mkdtemp(prefix="mr_tl-zips-"))
        atexit.register(shutil.rmtree, _ZIP_DIR[0], True)
    return _ZIP_DIR[0]


def compiled_zip(src):
    """A twin of the zip ``src`` (same base name) with an unchecked hash-based ``.pyc``
    (PEP 552) beside every ``.py``, built once per process and content.

    Python imports a module from a zip by compiling its source every time (zipimport never
    writes bytecode), in every task: 0.1 s per task for mrjob + mr_tl here.  zipimport takes
    ``name.pyc`` before ``name.py``; a task Python of another version sees another magic
    number and falls back to the source, so the twin is never worse than the original.
    """
    import hashlib
    import py_compile
    import tempfile
    import zipfile

    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    key = (digest, os.path.basename(src))
    path = _ZIP_CACHE.get(key)
    if path and os.path.exists(path):
        return path
    folder = os.path.join(_cache_dir(), digest)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(src))
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as zout, \
            tempfile.TemporaryDirectory(prefix="mr_tl-pyc-") as scratch:
        names = set(zin.namelist())
        source, compiled = os.path.join(scratch, "module.py"), os.path.join(scratch, "module.pyc")
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data)
            if info.filename.endswith(".py") and info.filename + "c" not in names:
                with open(source, "wb") as f:
                    f.write(data)
                try:   # the .pyc exactly as Python writes it (header + code), named after the zip's entry
                    py_compile.compile(source, cfile=compiled, dfile=info.filename, doraise=True,
                                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                except py_compile.PyCompileError:  # leave it to the task to report
                    continue
                pyc = zipfile.ZipInfo(info.filename + "c", date_time=info.date_time)
                pyc.external_attr = info.external_attr
                with open(compiled, "rb") as f:
                    zout.writestr(pyc, f.read(), zipfile.ZIP_DEFLATED)
    os.replace(path + ".tmp", path)
    _ZIP_CACHE[key] = path
    return path


# (root, sha256[:16], base name) -> uploaded URI; ("folder", root) -> [the per-process folder]
_SHARED: dict[tuple[str, ...], str | list[str]] = {}


def _shared_uri(fs, root, local):
    """The URI of a copy of the local file ``local`` in a per-process folder under ``root``
    (``<root>/mr_tl-shared-<pid>-<random>/<sha256[:16]>/<name>``), uploaded on first use and
    removed when the process exits."""
    import atexit
    import hashlib
    import uuid

    with open(local, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    key = (root, digest, os.path.basename(local))
    if key in _SHARED:
        return _SHARED[key]
    folders = _SHARED.setdefault(("folder", root), [])
    if not folders:
        folder = "%s/mr_tl-shared-%d-%s" % (root.rstrip("/"), os.getpid(), uuid.uuid4().hex[:8])
        folders.append(folder)

        # at exit, without a JVM: the sub-filesystem that can (a cluster already gone is no error)
        sub = next((getattr(fs, name) for name in ("fast_local", "webhdfs")
                    if getattr(fs, name, None) is not None and getattr(fs, name).can_handle_path(folder)), fs)

        def remove(sub=sub, folder=folder):
            try:
                sub.rm(folder)
            except WebHDFSUnavailable:
                log.debug("could not remove %s: WebHDFS unavailable", folder)
            except Exception as e:  # at exit: say so, never raise
                log.warning("could not remove %s: %s", folder, e)
        atexit.register(remove)
    uri = "%s/%s/%s" % (folders[0], digest, os.path.basename(local))
    fs.mkdir(posixpath.dirname(uri))
    fs.put(local, uri)
    _SHARED[key] = uri
    return uri


class FastHadoopJobRunner(HadoopJobRunner):
    """mrjob's Hadoop runner whose every file operation goes through :func:`filesystem` (no JVM),
    with ``hadoop version`` asked and mrjob's zip built once per process: only the job itself
    (``hadoop jar``) starts a JVM.

    ``compile_zips`` (default on): the zips on the tasks' PYTHONPATH (``py_files`` and mrjob's
    own) carry bytecode (:func:`compiled_zip`).
    ``share_py_files`` (default on): those zips are uploaded once per process, next to the jobs'
    temp folders, and reused by every job of the process (mrjob uploads them twice per job, one
    copy unused); YARN's per-user cache then localizes them once per node, not once per job.
    ``private_job_files`` (default on): with a ``file://`` temp root (standalone Hadoop), files it
    puts there are readable by their owner only, which spares Hadoop's distributed cache a forked
    ``ls -ld`` for every folder above them (see :class:`_PrivatePuts`).
    ``webhdfs_url``: the NameNode's HTTP address (a subclass attribute), default
    ``$MR_TL_WEBHDFS_URL``, else the cluster configuration.
    """

    webhdfs_url = None
    compile_zips = True
    share_py_files = True
    private_job_files = True

    @property
    def fs(self):
        if self._fs is None:
            # on a local file system (standalone), what the runner puts into its temp folders (the
            # job's files) is private to the user; on HDFS the permissions stay mrjob's (YARN
            # localizes public files with the NodeManager's shared localizer, and caches them)
            tmp_root = fully_qualify_hdfs_path(self._opts["hadoop_tmp_dir"]).rstrip("/") + "/"
            private = self.private_job_files and tmp_root.startswith("file://")
            self._fs = filesystem(self._opts["hadoop_bin"] or None, webhdfs_url=self.webhdfs_url,
                                  private_under=[tmp_root] if private else ())
        return self._fs

    def _create_mrjob_zip(self):
        if not self._mrjob_zip_path:
            import mrjob
            key = ("mrjob", mrjob.__file__, self.compile_zips)
            cached = _ZIP_CACHE.get(key)
            if not (cached and os.path.exists(cached)):
                built = super()._create_mrjob_zip()  # in this runner's temp dir, removed with it
                folder = os.path.join(_cache_dir(), "mrjob-%d" % self.compile_zips)
                os.makedirs(folder, exist_ok=True)
                cached = os.path.join(folder, "mrjob.zip")
                shutil.copyfile(compiled_zip(built) if self.compile_zips else built, cached)
                _ZIP_CACHE[key] = cached
            self._mrjob_zip_path = cached
        return self._mrjob_zip_path

    def _py_files(self):
        files = []
        for p in super()._py_files():
            if p.endswith(".zip") and not _is_uri(p) and os.path.isfile(p):
                if self.compile_zips and p != self._mrjob_zip_path:  # mrjob's: compiled already
                    p = compiled_zip(p)
                if self.share_py_files:
                    p = _shared_uri(self.fs, fully_qualify_hdfs_path(self._opts["hadoop_tmp_dir"]), p)
            files.append(p)
        return files


def _is_uri(path):
    return "://" in path
