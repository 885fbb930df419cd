"""Every use of mrjob's private API (and of argparse's and Hadoop's internals), in one place.

mrjob 0.7.4 is its last release.  mr_tl relies on a few of its private
methods and attributes; each is used only here, and tests/test_mrjob_compat.py
pins the behaviour relied on, so an mrjob change (or a fork) fails one test
with a clear message instead of a job somewhere.

* :class:`HookedMRJob` overrides ``MRJob._runner_kwargs`` (to add the
  package zip, thread counts) and ``MRJob._runner_class`` (to give mrjob's
  local and inline runners Hadoop's "one split per file" behaviour:
  ``SimMRJobRunner._pick_mapper_split_size``; the local runner a task
  pool that never hangs: ``LocalMRJobRunner._run_multiple``, mrjob.local's
  ``_pickle_safe``; and ``-r hadoop`` :class:`FastHadoopJobRunner`), and
  ``MRJob._usage``/``MRJob._print_help`` (a command's own usage and options
  first in ``--help``, mrjob's after).
* :class:`FastHadoopJobRunner`: mrjob's Hadoop runner with every file
  operation in the driver's process (mr_tl.fastfs: ``file://`` in Python,
  ``hdfs://`` over WebHDFS) instead of a ``hadoop fs`` JVM per call, zips
  with bytecode uploaded once per process; the internals it uses are listed
  in :data:`MRJOB_PRIVATE_API`.  :func:`jvm_free`: whether such a
  filesystem answers a path without a JVM.
* :func:`runner_alias`, :func:`runner_option`: what runner a job would use,
  and one of its options (``_runner_class``, ``runner._opts``).
* :func:`add_to_command_line`: extend the command line mrjob hands to the
  tasks (``MRJob._cl_args``).
* :func:`cat_file`: one file's bytes through an mrjob filesystem
  (``Filesystem._cat_file``: unlike ``cat``, no glob expansion).
* :func:`option_actions`: an argparse parser's options (``_option_string_actions``).
* :func:`hadoop_key_partition`: the reducer Hadoop's KeyFieldBasedPartitioner
  sends a key to (the partitioner mrjob uses for ``SORT_VALUES`` jobs).
"""

import logging
import os
import posixpath
import shutil

from mrjob.fs.composite import CompositeFilesystem
from mrjob.fs.local import LocalFilesystem
from mrjob.hadoop import HadoopJobRunner, fully_qualify_hdfs_path
from mrjob.inline import InlineMRJobRunner
from mrjob.job import MRJob
from mrjob.local import LocalMRJobRunner

from mr_tl.fastfs import LocalURIFilesystem, WebHDFSFilesystem, WebHDFSUnavailable, filesystem

log = logging.getLogger(__name__)

# Hadoop makes one input split per file when this is larger than every file
# (``splitSize = max(minSize, min(maxSize, blockSize))``).
SPLIT_MINSIZE = "mapreduce.input.fileinputformat.split.minsize"
ONE_SPLIT_PER_FILE = {SPLIT_MINSIZE: str(2 ** 63 - 1)}


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


def _runner_classes():
    """mrjob's runner classes -> mr_tl's (the Hadoop one is defined further down)."""
    return {LocalMRJobRunner: SingleSplitLocalRunner, InlineMRJobRunner: SingleSplitInlineRunner,
            HadoopJobRunner: FastHadoopJobRunner}


class HookedMRJob(MRJob):
    """An MRJob whose runner mr_tl adjusts: override :meth:`adjust_runner_kwargs`."""

    def _runner_kwargs(self):
        return self.adjust_runner_kwargs(super()._runner_kwargs())

    def _runner_class(self):
        runner_class = super()._runner_class()
        return _runner_classes().get(runner_class, runner_class)

    def adjust_runner_kwargs(self, kwargs):
        """The keyword arguments the runner is created with (``py_files``, ``cmdenv``, ...)."""
        return kwargs

    # the command's module docstring (a job that is a command): its first line is the usage, the rest
    # the description; --help then shows them and the command's own options first, mrjob's after
    COMMAND_DOC: str | None = None

    def _usage(self):
        if self.COMMAND_DOC:
            return self.COMMAND_DOC.strip().split("\n", 1)[0].replace("%", "%%")
        return super()._usage()

    def _print_help(self, options):
        if options.runner or not self.COMMAND_DOC:   # -r RUNNER --help: mrjob's list of that runner's options
            return super()._print_help(options)
        import argparse
        import contextlib
        import io

        mrjob_dests = {action.dest for action in MRJob(args=[]).arg_parser._actions}
        parts = self.COMMAND_DOC.strip().split("\n", 1)
        own = argparse.ArgumentParser(usage=self._usage(), description=parts[1].strip() if len(parts) > 1 else None,
                                      formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
        group = own.add_argument_group("options of this command")
        for action in self.arg_parser._actions:
            if action.option_strings and action.dest not in mrjob_dests:
                group._add_action(action)
        own.print_help()
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            super()._print_help(options)
        mrjob_help = text.getvalue()
        if mrjob_help.startswith("usage:"):
            mrjob_help = mrjob_help.split("\n\n", 1)[-1]
        print("\nmrjob's options (runner, configuration, logging; -r RUNNER --help lists that runner's own):\n")
        print(mrjob_help.rstrip())


def runner_alias(job):
    """``"inline"``, ``"local"``, ``"hadoop"``, ``"spark"``... : the runner ``job`` would use."""
    return job._runner_class().alias


def runner_option(job, name):
    """The value of runner option ``name`` (mrjob.conf given with ``-c``, or the command line) for
    ``job``'s runner; None if that runner has no such option.  Creates a runner (reads the config
    files) without running it."""
    if name not in getattr(job._runner_class(), "OPT_NAMES", ()):
        return None
    return job.make_runner()._opts.get(name)


def add_to_command_line(job, args):
    """Add ``args`` to the command line mrjob passes on to the job's tasks (e.g. a file option the
    driver filled in, so it is shipped like one given by the user)."""
    job._cl_args = list(job._cl_args) + list(args)


def runner_command_line(job):
    """The options of ``job``'s command line that configure its runner (``-r``, ``-c``, ``--hadoop-bin``,
    ``-D``, ...; not its own options, inputs or output folder), to run a follow-up job the same way."""
    mrjob_options = option_actions(MRJob(args=[]).arg_parser)
    out, args, i = [], list(job._cl_args), 0
    while i < len(args):
        token = args[i]
        name = token.split("=", 1)[0]
        action = mrjob_options.get(name) if token.startswith("-") else None
        i += 1
        if action is None:
            continue
        nargs = 0 if action.nargs == 0 else 1 if action.nargs is None else action.nargs
        values = [] if "=" in token or not isinstance(nargs, int) else args[i:i + nargs]
        i += len(values)
        if name not in ("-o", "--output-dir"):
            out += [token] + values
    return out


def cat_file(fs, path):
    """Bytes of the single file ``path`` (no glob, no decompression) through an mrjob filesystem."""
    return fs._cat_file(path)


def option_actions(parser):
    """``{option string: argparse action}`` of ``parser`` (``-c``, ``--conf-path``, ...)."""
    return parser._option_string_actions


def hadoop_key_partition(key, reducers):
    """The reducer (0 .. reducers-1) of map output key ``key`` under Hadoop's KeyFieldBasedPartitioner
    with ``-k1,1`` (what mrjob configures for ``SORT_VALUES``): a Java ``31 * h + byte`` hash of the
    key's UTF-8 bytes (signed), ``(h & Integer.MAX_VALUE) % reducers``."""
    h = 0
    for byte in key.encode("utf-8"):
        h = (31 * h + (byte - 256 if byte > 127 else byte)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % reducers


def key_for_reducer(prefix, reducer, reducers):
    """A key that starts with ``prefix`` and goes to ``reducer`` under :func:`hadoop_key_partition`
    (a suffix is searched; deterministic).  Routing each round task's records to a reducer of its
    own gives one worker file per round task on Hadoop; elsewhere the key is just a name."""
    if hadoop_key_partition(prefix, reducers) == reducer:
        return prefix
    n = 0
    while True:
        key = "%s.%d" % (prefix, n)
        if hadoop_key_partition(key, reducers) == reducer:
            return key
        n += 1


# -- Hadoop: a runner that starts no JVM besides `hadoop jar` (issue 16; bench/round_cost.py) -------

def jvm_free(fs, path):
    """Does the composite filesystem ``fs`` answer ``path`` without starting a JVM, i.e. is the
    first enabled sub-filesystem that handles it one of this module's (or mrjob's local one)?

    For code that runs ``hadoop fs`` itself to save JVMs (``mr_tl.storage`` batches ``-cat``
    and ``-put``): where this is true, the plain ``fs.cat/ls/put`` calls are cheaper.
    """
    if not isinstance(fs, CompositeFilesystem):
        return isinstance(fs, (LocalURIFilesystem, WebHDFSFilesystem, LocalFilesystem)) and fs.can_handle_path(path)
    for name in fs._fs_names:
        if name in fs._disabled:
            continue
        sub = getattr(fs, name)
        if sub.can_handle_path(path):
            return isinstance(sub, (LocalURIFilesystem, WebHDFSFilesystem, LocalFilesystem))
    return False


# mrjob 0.7.4 internals FastHadoopJobRunner uses (tests/test_fastfs.py checks they are still there)
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
