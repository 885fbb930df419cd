"""What every command line of mr_tl shares: one-line errors and exit codes (mr_tl.errors).

Every command's body runs through :func:`run_command` (the MapReduce jobs' drivers through
:meth:`mr_tl.jobs.base.MRTLJob.run_job`), so all of them report the same way: one line
``error: ...`` on stderr, no traceback, and the exit code says what happened:

* 0 -- done;
* 2 -- refused: the request or its inputs cannot be used as they are; nothing was changed;
* 1 -- the work started but did not finish (a job failed, its output did not add up, the disk
  filled up); nothing unfinished is left where a later command would take it as finished;
* 130 -- interrupted (Ctrl-C);
* 141 -- the reader of the output went away (``cmd | head -1``), as a shell reports SIGPIPE.
"""

import errno
import os
import sys

from mr_tl.errors import MrTlError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def fail(message, code=2):
    """Print one clear error line and exit non-zero (no traceback)."""
    print("error: %s" % message, file=sys.stderr)
    sys.exit(code)


def _quiet_broken_pipe():
    """``cmd | head -1``: the reader went away; exit without a traceback (and without Python's
    second complaint when it flushes stdout at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(141)   # what a shell reports for SIGPIPE


def _flush_stdout():
    """Flush what the command printed, so a closed pipe shows up here and not at exit."""
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError):   # no stdout, or it was closed
        pass


def is_disk_full(error):
    return isinstance(error, OSError) and error.errno in DISK_FULL


def disk_full_message(error):
    """``no space left on the device [writing FILE] [(Disk quota exceeded)]; ...``"""
    return ("no space left on the device%s%s; nothing written there is marked complete, free some space "
            "and run the command again" % (" writing " + str(error.filename) if error.filename else "",
                                           "" if error.errno == errno.ENOSPC else " (%s)" % error.strerror))


def run_command(function, *args, **kwargs):
    """Call a command's body; turn mr_tl's errors, a closed pipe, a full disk and Ctrl-C into one line
    and an exit code instead of a traceback.  Returns what ``function`` returns."""
    try:
        try:
            result = function(*args, **kwargs)
        except SystemExit:
            _flush_stdout()
            raise
        _flush_stdout()
        return result
    except MrTlError as e:
        fail(str(e), e.exit_code)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if is_disk_full(e):
            fail(disk_full_message(e), 1)
        raise
