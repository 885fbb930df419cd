"""Every use of mrjob's private API (and of argparse's and Hadoop's internals), in one place.

mrjob 0.7.4 is its last release.  mr_tl relies on a few of its private
methods and attributes; each is used only here, and tests/test_mrjob_compat.py
pins the behaviour relied on, so an mrjob change (or a fork) fails one test
with a clear message instead of a job somewhere.

* :class:`HookedMRJob` overrides ``MRJob._runner_kwargs`` (to add the
  package zip, thread counts) and ``MRJob._runner_class`` (to give mrjob's
  local and inline runners Hadoop's "one split per file" behaviour:
  ``SimMRJobRunner._pick_mapper_split_size``; and the local runner a task
  pool that never hangs: ``LocalMRJobRunner._run_multiple``, mrjob.local's
  ``_pickle_safe``).
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

from mrjob.inline import InlineMRJobRunner
from mrjob.job import MRJob
from mrjob.local import LocalMRJobRunner

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


_SINGLE_SPLIT = {LocalMRJobRunner: SingleSplitLocalRunner, InlineMRJobRunner: SingleSplitInlineRunner}


class HookedMRJob(MRJob):
    """An MRJob whose runner mr_tl adjusts: override :meth:`adjust_runner_kwargs`."""

    def _runner_kwargs(self):
        return self.adjust_runner_kwargs(super()._runner_kwargs())

    def _runner_class(self):
        runner_class = super()._runner_class()
        return _SINGLE_SPLIT.get(runner_class, runner_class)

    def adjust_runner_kwargs(self, kwargs):
        """The keyword arguments the runner is created with (``py_files``, ``cmdenv``, ...)."""
        return kwargs


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
