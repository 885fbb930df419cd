"""Every use of mrjob's private API (and of argparse's and Hadoop's internals), in one place: here and in
this module's driver-only half, mr_tl.jobs.compat_runners.

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
  first in ``--help``, mrjob's after).  The runner classes themselves
  (``FastHadoopJobRunner``, the single-split local and inline runners) are in
  mr_tl.jobs.compat_runners, this module's driver-only half: a task never
  imports mrjob's runner modules.
* :func:`jvm_free`: whether a filesystem answers a path without a JVM.
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

from mrjob.fs.composite import CompositeFilesystem
from mrjob.fs.local import LocalFilesystem
from mrjob.job import MRJob

from mr_tl.fastfs import LocalURIFilesystem, WebHDFSFilesystem


def _runner_classes():
    """mrjob's runner classes -> mr_tl's (mr_tl.jobs.compat_runners: imported by the driver only)."""
    from mrjob.hadoop import HadoopJobRunner
    from mrjob.inline import InlineMRJobRunner
    from mrjob.local import LocalMRJobRunner

    from mr_tl.jobs.compat_runners import FastHadoopJobRunner, SingleSplitInlineRunner, SingleSplitLocalRunner
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
